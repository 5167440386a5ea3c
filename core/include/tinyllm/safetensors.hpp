// Reading and writing safetensors files (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
// {...}}, then the raw data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tinyllm/dtype.hpp"
#include "tinyllm/tensor.hpp"

namespace tinyllm {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;
};

/// One memory-mapped safetensors file. Opening validates the whole header (FormatError on a
/// truncated file, bad JSON, overlapping or out-of-range offsets, sizes that disagree with shape x
/// dtype; DTypeError on an unknown dtype), so that later reads cannot run off the end of the
/// mapping.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Throws FormatError naming the file if the tensor is missing.
  const TensorInfo& info(const std::string& name) const;
  /// The raw little-endian bytes of one tensor.
  std::span<const std::byte> bytes(const std::string& name) const;
  /// Loads one tensor converted to f32 (from F32, F16, BF16, F64 and the integer types), as it is:
  /// no dtype or value checks (fixtures, tools). Model weights go through load_float.
  Tensor load(const std::string& name) const;
  /// Loads a floating-point tensor (F32, F16, BF16 or F64) converted to f32, as a model weight
  /// must be. DTypeError naming the tensor, its dtype and the file for an integer dtype (its codes
  /// would otherwise turn silently into numbers). With `check_finite`, the conversion also looks
  /// for NaN and infinity (in the same pass) and throws NumericalError naming the tensor, the
  /// file, the first bad element's index and its value.
  Tensor load_float(const std::string& name, bool check_finite) const;
  /// Loads an integer tensor (I8/U8/I16/I32/I64/U32/BOOL) as int64 values, e.g. token ids in
  /// fixtures.
  std::vector<int64_t> load_ints(const std::string& name) const;
  /// The file's size in bytes (header and data).
  uint64_t file_size() const { return mapping_size_; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  const std::byte* data_ = nullptr;  // start of the data section
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
};

/// A tensor to write: f32 values stored as `dtype` (F32, F16 or BF16), or int64 values stored as an
/// integer dtype.
struct TensorToSave {
  std::string name;
  Tensor values;                  // for float dtypes
  std::vector<int64_t> integers;  // for integer dtypes (then `shape` below gives the shape)
  Shape shape;
  DType dtype = DType::F32;
};

void save_safetensors(const std::filesystem::path& path, const std::vector<TensorToSave>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Whether Checkpoint::load scans the weights it converts for NaN and infinity, as llama.cpp's
/// `--check-tensors` does: Auto scans a checkpoint whose files hold less than
/// kCheckTensorsAutoLimitBytes in all (every model this course ships or benchmarks), and leaves a
/// larger one alone unless asked with Always; Never skips the scan.
enum class CheckTensors { Auto, Always, Never };

/// Auto's limit: 2 GiB of safetensors files (Qwen2.5-0.5B in bf16 is 1 GB). The scan adds one
/// compare per element to the conversion that reads it anyway; what it would cost above the limit
/// is the time, not memory, and a caller that wants it there says Always.
inline constexpr uint64_t kCheckTensorsAutoLimitBytes = uint64_t{2} << 30;

/// A model checkpoint directory as Hugging Face writes it: model.safetensors, or shards listed in
/// model.safetensors.index.json ("weight_map": {tensor name: shard file}). The model's front door:
/// load() hands out weights only in a floating-point dtype and (see CheckTensors) only finite.
class Checkpoint {
 public:
  /// Throws FormatError with a readable message for a missing directory, missing files or a bad
  /// index. `check` decides whether load() scans for NaN and infinity (CheckTensors).
  static Checkpoint open(const std::filesystem::path& dir, CheckTensors check = CheckTensors::Auto);
  const std::filesystem::path& dir() const { return dir_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  /// Loads a weight converted to f32 (SafetensorsFile::load_float): FormatError naming the tensor
  /// and the directory if it is missing, DTypeError if its dtype is an integer one, and, when
  /// checks_tensors(), NumericalError for a NaN or an infinity (naming the tensor, the file, the
  /// first bad index and value). Integer tensors (an MLX layer's U32 codes, token ids) are read
  /// with file_of(name).load_ints(name).
  Tensor load(const std::string& name) const;
  /// Loads a weight and checks its shape first (ShapeError naming the tensor if it differs).
  Tensor load(const std::string& name, const Shape& expected_shape) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  /// The size of the checkpoint's safetensors files together, in bytes.
  uint64_t total_bytes() const;
  /// Whether load() scans for NaN and infinity (CheckTensors, resolved at open).
  bool checks_tensors() const { return check_finite_; }

 private:
  std::filesystem::path dir_;
  bool check_finite_ = true;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

}  // namespace tinyllm
