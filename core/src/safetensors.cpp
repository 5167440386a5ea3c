#include "tinyllm/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tinyllm/errors.hpp"
#include "tinyllm/numerics.hpp"

namespace tinyllm {
namespace {

using json = nlohmann::json;

// A real header is a few hundred KB at most (one line per tensor); anything larger is not a
// safetensors file.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

std::string quoted(const std::filesystem::path& path) {
  return "'" + path.string() + "'";
}

bool is_integer_dtype(DType dtype) {
  switch (dtype) {
    case DType::I8:
    case DType::U8:
    case DType::I16:
    case DType::I32:
    case DType::I64:
    case DType::U32:
    case DType::BOOL:
      return true;
    default:
      return false;
  }
}

template <typename T>
T read_le(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));  // unaligned-safe; the project assumes a little-endian host
  return value;
}

// Reads element i of a raw tensor as int64 (integer dtypes only).
int64_t read_int(DType dtype, const std::byte* base, size_t i) {
  switch (dtype) {
    case DType::I8:
      return read_le<int8_t>(base + i);
    case DType::U8:
      return read_le<uint8_t>(base + i);
    case DType::BOOL:
      return read_le<uint8_t>(base + i) != 0 ? 1 : 0;
    case DType::I16:
      return read_le<int16_t>(base + 2 * i);
    case DType::I32:
      return read_le<int32_t>(base + 4 * i);
    case DType::U32:
      return read_le<uint32_t>(base + 4 * i);
    case DType::I64:
      return read_le<int64_t>(base + 8 * i);
    default:
      throw DTypeError("read_int: " + dtype_name(dtype) + " is not an integer dtype");
  }
}

// Parses the JSON header and validates every entry against the data section of `data_size` bytes.
void parse_header(const std::filesystem::path& path, const char* text, size_t length,
                  size_t data_size, std::map<std::string, TensorInfo>& tensors,
                  std::map<std::string, std::string>& metadata) {
  json header;
  try {
    header = json::parse(text, text + length);
  } catch (const json::parse_error& e) {
    throw FormatError("safetensors file " + quoted(path) + ": the header is not valid JSON (" +
                      e.what() + ")");
  }
  if (!header.is_object()) {
    throw FormatError("safetensors file " + quoted(path) +
                      ": the header must be a JSON object {name: {...}}, got " +
                      std::string(header.type_name()));
  }
  const std::string where = "safetensors file " + quoted(path);
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) {
        throw FormatError(where + ": __metadata__ must be an object of strings, got " +
                          value.type_name());
      }
      for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) {
          throw FormatError(where + ": __metadata__ value \"" + key + "\" must be a string, got " +
                            item.type_name());
        }
        metadata[key] = item.get<std::string>();
      }
      continue;
    }
    const std::string tensor = where + ": tensor \"" + name + "\"";
    if (!value.is_object())
      throw FormatError(tensor + " must be an object {dtype, shape, data_offsets}");
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) throw FormatError(tensor + " has no \"" + field + "\" entry");
    }
    TensorInfo info;
    info.name = name;

    const json& dtype = value["dtype"];
    if (!dtype.is_string()) throw FormatError(tensor + ": dtype must be a string such as \"F32\"");
    try {
      info.dtype = dtype_from_string(dtype.get<std::string>());
    } catch (const DTypeError& e) {
      throw DTypeError(tensor + ": " + e.what());
    }

    const json& shape = value["shape"];
    if (!shape.is_array())
      throw FormatError(tensor + ": shape must be a list of dimensions such as [2, 3]");
    // numel * element size, checked against overflow so that a hostile header cannot wrap it
    // around.
    uint64_t bytes = dtype_size(info.dtype);
    bool overflow = false;
    for (const json& d : shape) {
      // The JSON parser stores every non-negative integer as "unsigned"; negatives and 2.0 are
      // something else.
      if (!d.is_number_unsigned() ||
          d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw FormatError(tensor + ": shape " + shape.dump() +
                          " must contain only non-negative integers");
      }
      const uint64_t dim = d.get<uint64_t>();
      info.shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && bytes > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
      bytes *= dim;
    }
    if (overflow) bytes = std::numeric_limits<uint64_t>::max();

    const json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      throw FormatError(tensor +
                        ": data_offsets must be [begin, end] with non-negative integers, got " +
                        offsets.dump());
    }
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    if (end < begin) {
      throw FormatError(tensor + ": data_offsets " + offsets.dump() + " end before they begin");
    }
    if (end - begin != bytes) {
      throw FormatError(
          tensor + ": data_offsets " + offsets.dump() + " span " + std::to_string(end - begin) +
          " bytes, but shape " + shape_to_string(info.shape) + " x " + dtype_name(info.dtype) +
          " (" + std::to_string(dtype_size(info.dtype)) + " bytes each) needs " +
          (overflow ? std::string("more than 2^64") : std::to_string(bytes)) + " bytes");
    }
    if (end > data_size) {
      throw FormatError(tensor + ": data_offsets " + offsets.dump() +
                        " reach past the end of the data section (" + std::to_string(data_size) +
                        " bytes); the file is probably truncated");
    }
    info.begin = begin;
    info.end = end;
    tensors.emplace(name, std::move(info));
  }

  // No two tensors may share bytes: sort by begin and compare neighbours.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : tensors) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    const TensorInfo& cur = *by_offset[i];
    if (cur.begin < prev.end) {
      throw FormatError(where + ": tensors \"" + prev.name + "\" (bytes " +
                        std::to_string(prev.begin) + ".." + std::to_string(prev.end) + ") and \"" +
                        cur.name + "\" (bytes " + std::to_string(cur.begin) + ".." +
                        std::to_string(cur.end) + ") overlap");
    }
  }
}

}  // namespace

// ----------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw FormatError("cannot open safetensors file " + quoted(path) + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(quoted(path) + " is not a regular file, so it cannot be a safetensors file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw FormatError(
        "safetensors file " + quoted(path) + " is only " + std::to_string(size) +
        " bytes long; it needs at least the 8-byte header length (the file is empty or truncated)");
  }
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (mapping == MAP_FAILED) {
    throw FormatError("cannot memory-map safetensors file " + quoted(path) + ": " +
                      std::strerror(map_errno));
  }

  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = mapping;  // from here on the destructor unmaps, also when validation throws
  file.mapping_size_ = size;
  const auto* bytes = static_cast<const std::byte*>(mapping);

  const uint64_t header_size = read_le<uint64_t>(bytes);
  if (header_size > kMaxHeaderBytes) {
    throw FormatError(
        "safetensors file " + quoted(path) + " declares a " + std::to_string(header_size) +
        "-byte header, which is absurdly large (more than 100 MB); the file is not a safetensors "
        "file or its first 8 bytes are corrupt");
  }
  if (header_size > size - 8) {
    throw FormatError("safetensors file " + quoted(path) + " declares a " +
                      std::to_string(header_size) + "-byte header, but only " +
                      std::to_string(size - 8) +
                      " bytes follow the header length; the file is truncated");
  }
  parse_header(path, reinterpret_cast<const char*>(bytes + 8), header_size, size - 8 - header_size,
               file.tensors_, file.metadata_);
  file.data_ = bytes + 8 + header_size;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      tensors_(std::move(other.tensors_)),
      metadata_(std::move(other.metadata_)),
      data_(std::exchange(other.data_, nullptr)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
    path_ = std::move(other.path_);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    data_ = std::exchange(other.data_, nullptr);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
  }
  return *this;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw FormatError("safetensors file " + quoted(path_) + " has no tensor \"" + name +
                      "\" (it has " + std::to_string(tensors_.size()) + " tensors)");
  }
  return it->second;
}

std::span<const std::byte> SafetensorsFile::bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  return {data_ + t.begin, t.end - t.begin};
}

namespace {

// Converts the n elements at `src` to f32 into `dst`, each with `element(src, i)`. With `scan`,
// also tests each converted value's exponent bits in the same pass (a branch-free OR, so the loop
// stays as fast as the plain conversion) and returns whether all were finite.
template <typename Element>
bool convert(const std::byte* src, float* dst, size_t n, bool scan, Element element) {
  if (!scan) {
    for (size_t i = 0; i < n; ++i) dst[i] = element(src, i);
    return true;
  }
  uint32_t all_ones = 0;  // nonzero once some value had an all-ones exponent (NaN or infinity)
  for (size_t i = 0; i < n; ++i) {
    const float v = element(src, i);
    dst[i] = v;
    all_ones |= static_cast<uint32_t>((std::bit_cast<uint32_t>(v) & 0x7f800000u) == 0x7f800000u);
  }
  return all_ones == 0;
}

// One tensor converted to f32; false when `scan` found a non-finite value.
bool convert_tensor(const TensorInfo& t, const std::byte* src, std::vector<float>& values,
                    bool scan) {
  const size_t n = values.size();
  switch (t.dtype) {
    case DType::F32:
      return convert(src, values.data(), n, scan,
                     [](const std::byte* p, size_t i) { return read_le<float>(p + 4 * i); });
    case DType::F16:
      return convert(src, values.data(), n, scan, [](const std::byte* p, size_t i) {
        return f16_to_f32(read_le<uint16_t>(p + 2 * i));
      });
    case DType::BF16:
      return convert(src, values.data(), n, scan, [](const std::byte* p, size_t i) {
        return bf16_to_f32(read_le<uint16_t>(p + 2 * i));
      });
    case DType::F64:
      return convert(src, values.data(), n, scan, [](const std::byte* p, size_t i) {
        return static_cast<float>(read_le<double>(p + 8 * i));
      });
    default:
      return convert(src, values.data(), n, scan, [&t](const std::byte* p, size_t i) {
        return static_cast<float>(read_int(t.dtype, p, i));
      });
  }
}

}  // namespace

Tensor SafetensorsFile::load(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::vector<float> values(static_cast<size_t>(shape_numel(t.shape)));
  convert_tensor(t, data_ + t.begin, values, /*scan=*/false);
  return Tensor(t.shape, std::move(values));
}

Tensor SafetensorsFile::load_float(const std::string& name, bool check_finite) const {
  const TensorInfo& t = info(name);
  if (is_integer_dtype(t.dtype)) {
    throw DTypeError("tensor \"" + name + "\" in " + quoted(path_) + " has dtype " +
                     dtype_name(t.dtype) +
                     ", an integer type, where a floating-point weight is expected (F32, F16 or "
                     "BF16); its integer codes cannot be used as the weight's values");
  }
  std::vector<float> values(static_cast<size_t>(shape_numel(t.shape)));
  if (!convert_tensor(t, data_ + t.begin, values, check_finite)) {
    const int64_t bad = find_non_finite(values);
    // The flat index and, for a tensor of rank 2 or more, the same element as [i, j, ...].
    std::string where = std::to_string(bad);
    if (t.shape.size() > 1) {
      std::vector<int64_t> index(t.shape.size());
      int64_t rest = bad;
      for (size_t d = t.shape.size(); d-- > 0;) {
        index[d] = rest % t.shape[d];
        rest /= t.shape[d];
      }
      where += " (" + shape_to_string(index) + ")";
    }
    throw NumericalError("tensor \"" + name + "\" in " + quoted(path_) + " (" +
                         dtype_name(t.dtype) + ", shape " + shape_to_string(t.shape) +
                         ") is not finite: element " + where + " is " +
                         format_float(values[static_cast<size_t>(bad)]) +
                         ", the first bad one. The checkpoint is corrupt (or was saved after "
                         "training diverged); this load-time scan is CheckTensors, like "
                         "llama.cpp's --check-tensors");
  }
  return Tensor(t.shape, std::move(values));
}

std::vector<int64_t> SafetensorsFile::load_ints(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (!is_integer_dtype(t.dtype)) {
    throw DTypeError("tensor \"" + name + "\" in " + quoted(path_) + " has dtype " +
                     dtype_name(t.dtype) +
                     ", not an integer dtype; use load() for floating-point tensors");
  }
  const size_t n = static_cast<size_t>(shape_numel(t.shape));
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = read_int(t.dtype, data_ + t.begin, i);
  return out;
}

// ----------------------------------------------------------------------------------------------
// save_safetensors

namespace {

void append_raw(std::string& out, const void* p, size_t n) {
  out.append(static_cast<const char*>(p), n);
}

template <typename T>
void append_int(std::string& out, int64_t value, const std::string& name, DType dtype) {
  if (value < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
      (value > 0 &&
       static_cast<uint64_t>(value) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
    throw InvalidArgument("save_safetensors: value " + std::to_string(value) + " of tensor \"" +
                          name + "\" does not fit into " + dtype_name(dtype));
  }
  const T v = static_cast<T>(value);
  append_raw(out, &v, sizeof v);
}

// Encodes one tensor's data and returns its shape.
Shape encode(const TensorToSave& t, std::string& out) {
  if (!is_integer_dtype(t.dtype)) {
    if (!t.integers.empty()) {
      throw InvalidArgument("save_safetensors: tensor \"" + t.name + "\" has float dtype " +
                            dtype_name(t.dtype) +
                            " but was given integers; put the values into `values`");
    }
    if (!t.shape.empty() && t.shape != t.values.shape()) {
      throw ShapeError("save_safetensors: tensor \"" + t.name + "\" has shape " +
                       shape_to_string(t.shape) + " but its values have shape " +
                       shape_to_string(t.values.shape()));
    }
    if (shape_numel(t.values.shape()) != t.values.numel()) {
      throw ShapeError("save_safetensors: tensor \"" + t.name +
                       "\" has no values (a default-constructed Tensor)");
    }
    const float* v = t.values.data();
    const auto n = static_cast<size_t>(t.values.numel());
    for (size_t i = 0; i < n; ++i) {
      switch (t.dtype) {
        case DType::F32:
          append_raw(out, &v[i], 4);
          break;
        case DType::F16: {
          const uint16_t h = f32_to_f16(v[i]);
          append_raw(out, &h, 2);
          break;
        }
        case DType::BF16: {
          const uint16_t b = f32_to_bf16(v[i]);
          append_raw(out, &b, 2);
          break;
        }
        case DType::F64: {
          const double d = v[i];
          append_raw(out, &d, 8);
          break;
        }
        default:
          break;
      }
    }
    return t.values.shape();
  }
  if (!t.values.empty()) {
    throw InvalidArgument("save_safetensors: tensor \"" + t.name + "\" has integer dtype " +
                          dtype_name(t.dtype) +
                          " but was given float values; put the values into `integers`");
  }
  if (shape_numel(t.shape) != static_cast<int64_t>(t.integers.size())) {
    throw ShapeError("save_safetensors: tensor \"" + t.name + "\" has shape " +
                     shape_to_string(t.shape) + " (" + std::to_string(shape_numel(t.shape)) +
                     " values) but " + std::to_string(t.integers.size()) + " integers were given");
  }
  for (int64_t value : t.integers) {
    switch (t.dtype) {
      case DType::I8:
        append_int<int8_t>(out, value, t.name, t.dtype);
        break;
      case DType::U8:
        append_int<uint8_t>(out, value, t.name, t.dtype);
        break;
      case DType::BOOL:
        if (value != 0 && value != 1) {
          throw InvalidArgument("save_safetensors: BOOL tensor \"" + t.name +
                                "\" may only hold 0 and 1, got " + std::to_string(value));
        }
        append_int<uint8_t>(out, value, t.name, t.dtype);
        break;
      case DType::I16:
        append_int<int16_t>(out, value, t.name, t.dtype);
        break;
      case DType::I32:
        append_int<int32_t>(out, value, t.name, t.dtype);
        break;
      case DType::U32:
        append_int<uint32_t>(out, value, t.name, t.dtype);
        break;
      case DType::I64:
        append_int<int64_t>(out, value, t.name, t.dtype);
        break;
      default:
        break;
    }
  }
  return t.shape;
}

}  // namespace

void save_safetensors(const std::filesystem::path& path, const std::vector<TensorToSave>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Tensors in name order, each one's data directly after the previous one's.
  std::vector<const TensorToSave*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->name < b->name; });
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i]->name == "__metadata__") {
      throw InvalidArgument(
          "save_safetensors: \"__metadata__\" is reserved and cannot be a tensor name");
    }
    if (i > 0 && sorted[i]->name == sorted[i - 1]->name) {
      throw InvalidArgument("save_safetensors: tensor name \"" + sorted[i]->name +
                            "\" is given twice");
    }
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  std::string data;
  for (const TensorToSave* t : sorted) {
    const size_t begin = data.size();
    const Shape shape = encode(*t, data);
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = dtype_name(t->dtype);
    entry["shape"] = shape;
    entry["data_offsets"] = {begin, data.size()};
    header[t->name] = std::move(entry);
  }
  // Like the Hugging Face writer: pad the header with spaces so that the data section starts 8-byte
  // aligned.
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  const auto tmp = std::filesystem::path(path.string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw FormatError("save_safetensors: cannot create " + quoted(tmp) + ": " +
                        std::strerror(errno));
    const uint64_t header_size = header_text.size();
    out.write(reinterpret_cast<const char*>(&header_size), sizeof header_size);
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.close();
    if (!out) throw FormatError("save_safetensors: writing " + quoted(tmp) + " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw FormatError("save_safetensors: cannot move the written file to " + quoted(path));
  }
}

// ----------------------------------------------------------------------------------------------
// Checkpoint

namespace {

// Whether loads from a checkpoint of `total_bytes` scan for NaN and infinity.
bool scans_for_non_finite(CheckTensors check, uint64_t total_bytes) {
  switch (check) {
    case CheckTensors::Always:
      return true;
    case CheckTensors::Never:
      return false;
    case CheckTensors::Auto:
      break;
  }
  return total_bytes < kCheckTensorsAutoLimitBytes;
}

}  // namespace

Checkpoint Checkpoint::open(const std::filesystem::path& dir, CheckTensors check) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    throw FormatError("model directory " + quoted(dir) + " does not exist");
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    throw FormatError(quoted(dir) +
                      " is not a directory; Checkpoint::open expects a model directory containing "
                      "model.safetensors or model.safetensors.index.json");
  }
  Checkpoint ckpt;
  ckpt.dir_ = dir;

  const auto single = dir / "model.safetensors";
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(single, ec)) {
    ckpt.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(single)));
    for (const auto& name : ckpt.files_[0]->names()) ckpt.where_[name] = 0;
    ckpt.check_finite_ = scans_for_non_finite(check, ckpt.total_bytes());
    return ckpt;
  }
  if (!std::filesystem::exists(index_path, ec)) {
    throw FormatError("no model.safetensors or model.safetensors.index.json in " + quoted(dir));
  }

  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw FormatError("cannot read " + quoted(index_path));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(quoted(index_path) + " is not valid JSON (" + e.what() + ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw FormatError(quoted(index_path) +
                      " has no \"weight_map\" object {tensor name: shard file}");
  }
  std::map<std::string, size_t> shard_index;  // shard file name -> index into files_
  for (const auto& [tensor, shard_json] : index["weight_map"].items()) {
    if (!shard_json.is_string()) {
      throw FormatError(quoted(index_path) + ": the shard of tensor \"" + tensor +
                        "\" must be a file name string");
    }
    const std::string shard = shard_json.get<std::string>();
    auto it = shard_index.find(shard);
    if (it == shard_index.end()) {
      const std::filesystem::path relative(shard);
      const bool escapes = std::any_of(relative.begin(), relative.end(),
                                       [](const auto& part) { return part == ".."; });
      if (relative.is_absolute() || escapes || shard.empty()) {
        throw FormatError(quoted(index_path) + " lists shard \"" + shard +
                          "\", which is not a file name inside the model directory");
      }
      const auto shard_path = dir / relative;
      if (!std::filesystem::exists(shard_path, ec)) {
        throw FormatError("shard \"" + shard + "\" listed in " + quoted(index_path) +
                          " is missing (expected " + quoted(shard_path) + ")");
      }
      ckpt.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(shard_path)));
      it = shard_index.emplace(shard, ckpt.files_.size() - 1).first;
    }
    if (!ckpt.files_[it->second]->contains(tensor)) {
      throw FormatError("tensor \"" + tensor + "\" is listed in " + quoted(index_path) +
                        " under shard \"" + shard + "\", but that shard does not contain it");
    }
    ckpt.where_[tensor] = it->second;
  }
  ckpt.check_finite_ = scans_for_non_finite(check, ckpt.total_bytes());
  return ckpt;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) {
    throw FormatError("tensor \"" + name + "\" is not in the checkpoint " + quoted(dir_) +
                      " (it has " + std::to_string(where_.size()) + " tensors)");
  }
  return *files_[it->second];
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  return file_of(name).info(name);
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& file : files_) total += file->file_size();
  return total;
}

Tensor Checkpoint::load(const std::string& name) const {
  return file_of(name).load_float(name, check_finite_);
}

Tensor Checkpoint::load(const std::string& name, const Shape& expected_shape) const {
  const TensorInfo& t = info(name);
  if (t.shape != expected_shape) {
    throw ShapeError("tensor \"" + name + "\" in checkpoint " + quoted(dir_) + " has shape " +
                     shape_to_string(t.shape) + ", but the model expects " +
                     shape_to_string(expected_shape));
  }
  return file_of(name).load_float(name, check_finite_);
}

}  // namespace tinyllm
