// SafetensorsFile, save_safetensors and Checkpoint: files written by tools/fixtures/gen_core.py
// (Python + torch) read back in C++, the writer against the Python writer, and one test per kind of
// broken file.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& relative) {
  return testing::data_dir() / "fixtures" / relative;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_all(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

std::string f32_bytes(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

// Runs `fn`, expects exception type E, and checks that its message contains every one of `parts`.
template <typename E, typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception, got none";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("tinyllm_core_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// A file made of the 8-byte header length (`declared`, default: the header's size), the header
  /// and the data.
  fs::path raw_file(const std::string& header, const std::string& data = "",
                    std::optional<uint64_t> declared = std::nullopt) {
    const fs::path p = dir_ / "test.safetensors";
    write_all(p, le64(declared.value_or(header.size())) + header + data);
    return p;
  }

  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Reading Python's files

TEST(Safetensors, ReadsEveryDtypeWrittenByPython) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  EXPECT_TENSOR_NEAR(f.load("f32"), Tensor({2, 3}, {1.0f, -2.5f, 0.0f, 65504.0f, 1e-3f, -7.25f}),
                     0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("f16"), Tensor({4}, {0.5f, -2.25f, 65504.0f, std::ldexp(1.0f, -24)}),
                     0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("bf16"),
                     Tensor({2, 2, 2}, {1.0f, -3.0f, 0.15625f, 256.0f, -0.0f, std::ldexp(1.0f, 100),
                                        -std::ldexp(1.0f, -100), 7.0f}),
                     0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("f64"), Tensor({3}, {0.5f, -3.25f, 1e10f}), 0.0, 0.0);
  EXPECT_EQ(f.load_ints("i64"),
            (std::vector<int64_t>{0, -1, int64_t{1} << 40, -(int64_t{1} << 62), 151643}));
  EXPECT_EQ(f.load_ints("i32"), (std::vector<int64_t>{7, -7, 2147483647, -2147483648LL}));
  EXPECT_EQ(f.load_ints("i16"), (std::vector<int64_t>{-32768, 32767, 3}));
  EXPECT_EQ(f.load_ints("i8"), (std::vector<int64_t>{-128, 127, 0, -5}));
  EXPECT_EQ(f.load_ints("u8"), (std::vector<int64_t>{0, 255, 128}));
  EXPECT_EQ(f.load_ints("bool"), (std::vector<int64_t>{1, 0, 1}));
  // Integers also load as float tensors.
  EXPECT_TENSOR_NEAR(f.load("i32"), Tensor({2, 2}, {7.0f, -7.0f, 2147483648.0f, -2147483648.0f}),
                     0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("bool"), Tensor({3}, {1.0f, 0.0f, 1.0f}), 0.0, 0.0);
}

// Written by the Hugging Face safetensors package itself (tools/fixtures/gen_core_hf.py), which
// orders the data by dtype alignment rather than by name.
TEST(Safetensors, ReadsFileWrittenByHuggingFaceSafetensors) {
  const auto f = SafetensorsFile::open(fixture("core/hf_written.safetensors"));
  EXPECT_EQ(f.names().size(), 8u);
  EXPECT_EQ(f.load_ints("a_u8"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TENSOR_NEAR(f.load("b_f64"), Tensor({2}, {0.25f, -8.0f}), 0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("c_bf16"), Tensor({2, 2}, {1.0f, -0.5f, 3.0f, 1024.0f}), 0.0, 0.0);
  EXPECT_EQ(f.load_ints("d_i64"), (std::vector<int64_t>{151643, -2}));
  EXPECT_TENSOR_NEAR(f.load("e_f16"), Tensor({3}, {0.5f, -65504.0f, std::ldexp(1.0f, -24)}), 0.0,
                     0.0);
  EXPECT_TENSOR_NEAR(f.load("f_f32"), Tensor({3, 1}, {1.5f, -2.0f, 0.125f}), 0.0, 0.0);
  EXPECT_EQ(f.load_ints("g_i32"), (std::vector<int64_t>{-2147483648LL, 2147483647}));
  EXPECT_EQ(f.load_ints("h_bool"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(f.info("d_i64").begin, 0u);  // the 8-byte dtypes come first in the HF layout
  EXPECT_EQ(f.metadata().at("generator"), "tools/fixtures/gen_core_hf.py");
}

TEST(Safetensors, RandomHalfTensorsMatchTorch) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  EXPECT_TENSOR_NEAR(f.load("random_f16"), f.load("random_f16_as_f32"), 0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("random_bf16"), f.load("random_bf16_as_f32"), 0.0, 0.0);
}

TEST(Safetensors, ScalarAndEmptyTensors) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  const Tensor scalar = f.load("scalar");
  EXPECT_EQ(scalar.shape(), Shape{});
  ASSERT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.data()[0], 42.5f);
  const Tensor empty = f.load("empty");
  EXPECT_EQ(empty.shape(), (Shape{0, 3}));
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(f.bytes("empty").size(), 0u);
}

TEST(Safetensors, InfoNamesAndMetadata) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  const std::vector<std::string> names = f.names();
  EXPECT_EQ(names.size(), 16u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_TRUE(f.contains("bf16"));
  EXPECT_FALSE(f.contains("__metadata__"));
  EXPECT_FALSE(f.contains("missing"));
  const TensorInfo& info = f.info("bf16");
  EXPECT_EQ(info.name, "bf16");
  EXPECT_EQ(info.dtype, DType::BF16);
  EXPECT_EQ(info.shape, (Shape{2, 2, 2}));
  EXPECT_EQ(info.end - info.begin, 16u);
  EXPECT_EQ(f.info("i64").dtype, DType::I64);
  EXPECT_EQ(f.metadata().at("generator"), "tools/fixtures/gen_core.py");
  EXPECT_EQ(f.metadata().at("unicode"), "h\u00e9llo \u2713");
  EXPECT_EQ(f.path(), fixture("core/roundtrip.safetensors"));
}

TEST(Safetensors, BytesAreTheRawLittleEndianData) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  const auto raw = f.bytes("i16");
  ASSERT_EQ(raw.size(), 6u);
  const unsigned char expected[] = {0x00, 0x80, 0xFF, 0x7F, 0x03, 0x00};  // -32768, 32767, 3
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(static_cast<unsigned char>(raw[i]), expected[i]) << i;
  const auto bf = f.bytes("bf16");
  ASSERT_EQ(bf.size(), 16u);
  EXPECT_EQ(static_cast<unsigned char>(bf[0]), 0x80);  // 1.0 = 0x3F80
  EXPECT_EQ(static_cast<unsigned char>(bf[1]), 0x3F);
}

TEST(Safetensors, LoadIntsRejectsFloatTensors) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  expect_error<DTypeError>([&] { f.load_ints("f32"); }, {"f32", "F32"});
  EXPECT_THROW(f.load_ints("bf16"), DTypeError);
}

TEST(Safetensors, MissingTensorIsFormatErrorNamingIt) {
  const auto f = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  expect_error<FormatError>([&] { f.load("nope"); }, {"nope", "roundtrip.safetensors"});
  EXPECT_THROW(f.info("nope"), FormatError);
  EXPECT_THROW(f.bytes("nope"), FormatError);
  EXPECT_THROW(f.load_ints("nope"), FormatError);
}

TEST(Safetensors, MoveConstructionAndAssignment) {
  auto a = SafetensorsFile::open(fixture("core/roundtrip.safetensors"));
  SafetensorsFile b(std::move(a));
  EXPECT_EQ(b.load("scalar").data()[0], 42.5f);
  auto c = SafetensorsFile::open(fixture("core/sharded_expected.safetensors"));
  c = std::move(b);  // unmaps c's old file, takes b's
  EXPECT_EQ(c.load("scalar").data()[0], 42.5f);
  EXPECT_TRUE(c.contains("bf16"));
  SafetensorsFile& alias = c;
  c = std::move(alias);  // self-move leaves it usable
  EXPECT_EQ(c.load_ints("u8"), (std::vector<int64_t>{0, 255, 128}));
  std::vector<SafetensorsFile> files;
  for (int i = 0; i < 4; ++i)
    files.push_back(SafetensorsFile::open(fixture("core/roundtrip.safetensors")));
  for (const auto& f : files)
    EXPECT_EQ(f.load_ints("i8"), (std::vector<int64_t>{-128, 127, 0, -5}));
}

// ------------------------------------------------------------------------------------- writing

TEST_F(SafetensorsTest, WriterRoundTripsEveryDtype) {
  const Tensor f32({2, 2}, {1.5f, -2.0f, 3.25f, 1e-20f});
  const Tensor halfs({3}, {0.5f, -1.0f, 65504.0f});
  std::vector<TensorToSave> tensors = {
      {"a.f32", f32, {}, {}, DType::F32},
      {"b.f16", halfs, {}, {}, DType::F16},
      {"c.bf16", halfs.reshape({3, 1}), {}, {}, DType::BF16},
      {"d.f64", f32, {}, {}, DType::F64},
      {"e.i64", {}, {1, -(int64_t{1} << 50), 3, 4}, {2, 2}, DType::I64},
      {"f.i32", {}, {5, -6}, {2}, DType::I32},
      {"g.i16", {}, {-32768}, {1}, DType::I16},
      {"h.i8", {}, {-1, 2}, {2, 1}, DType::I8},
      {"i.u8", {}, {255}, {}, DType::U8},
      {"j.u32", {}, {4294967295LL}, {1}, DType::U32},
      {"k.bool", {}, {1, 0}, {2}, DType::BOOL},
  };
  const fs::path path = dir_ / "all.safetensors";
  save_safetensors(path, tensors, {{"purpose", "test"}});
  const auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("purpose"), "test");
  EXPECT_EQ(f.names().size(), tensors.size());
  EXPECT_TENSOR_NEAR(f.load("a.f32"), f32, 0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("b.f16"), halfs, 0.0, 0.0);
  EXPECT_TENSOR_NEAR(f.load("c.bf16"), Tensor({3, 1}, {0.5f, -1.0f, 65536.0f}), 0.0,
                     0.0);  // bf16 rounding
  EXPECT_TENSOR_NEAR(f.load("d.f64"), f32, 0.0, 0.0);
  EXPECT_EQ(f.info("d.f64").dtype, DType::F64);
  EXPECT_EQ(f.load_ints("e.i64"), (std::vector<int64_t>{1, -(int64_t{1} << 50), 3, 4}));
  EXPECT_EQ(f.info("e.i64").shape, (Shape{2, 2}));
  EXPECT_EQ(f.load_ints("f.i32"), (std::vector<int64_t>{5, -6}));
  EXPECT_EQ(f.load_ints("g.i16"), (std::vector<int64_t>{-32768}));
  EXPECT_EQ(f.load_ints("h.i8"), (std::vector<int64_t>{-1, 2}));
  EXPECT_EQ(f.load_ints("i.u8"), (std::vector<int64_t>{255}));
  EXPECT_EQ(f.info("i.u8").shape, Shape{});
  EXPECT_EQ(f.load_ints("j.u32"), (std::vector<int64_t>{4294967295LL}));
  EXPECT_EQ(f.load_ints("k.bool"), (std::vector<int64_t>{1, 0}));
  EXPECT_FALSE(fs::exists(dir_ / "all.safetensors.tmp"));
}

TEST_F(SafetensorsTest, WriterMatchesPythonWriterByteForByte) {
  // Read the Python-written file, write the same tensors and metadata from C++, compare the bytes.
  const fs::path python_file = fixture("core/roundtrip.safetensors");
  const auto f = SafetensorsFile::open(python_file);
  std::vector<TensorToSave> tensors;
  for (const auto& name : f.names()) {
    const TensorInfo& info = f.info(name);
    TensorToSave t;
    t.name = name;
    t.dtype = info.dtype;
    if (info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16 ||
        info.dtype == DType::F64) {
      t.values = f.load(name);
    } else {
      t.integers = f.load_ints(name);
      t.shape = info.shape;
    }
    tensors.push_back(std::move(t));
  }
  const fs::path path = dir_ / "cpp.safetensors";
  save_safetensors(path, tensors, f.metadata());
  const std::string ours = read_all(path), theirs = read_all(python_file);
  EXPECT_EQ(ours.size(), theirs.size());
  EXPECT_TRUE(ours == theirs) << "C++ header:\n"
                              << ours.substr(8, 300) << "\nPython header:\n"
                              << theirs.substr(8, 300);
}

TEST_F(SafetensorsTest, WriterPadsHeaderWithSpacesTo8Bytes) {
  for (const std::string name :
       {"a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"}) {
    const fs::path path = dir_ / "pad.safetensors";
    save_safetensors(path, {{name, Tensor({1}, {1.0f}), {}, {}, DType::F32}});
    const std::string bytes = read_all(path);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u) << name;
    ASSERT_EQ(bytes.size(), 8 + n + 4) << name;
    const std::string header = bytes.substr(8, n);
    const size_t close = header.rfind('}');
    EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos)
        << name << ": '" << header << "'";
    EXPECT_EQ(header.substr(0, 2), "{\"") << "compact JSON, no metadata when none is given";
    EXPECT_EQ(SafetensorsFile::open(path).load(name).data()[0], 1.0f);
  }
}

TEST_F(SafetensorsTest, WriterRejectsDuplicateNames) {
  EXPECT_THROW(save_safetensors(dir_ / "x.safetensors", {{"w", Tensor({1}), {}, {}, DType::F32},
                                                         {"w", Tensor({1}), {}, {}, DType::F32}}),
               InvalidArgument);
  EXPECT_THROW(
      save_safetensors(dir_ / "x.safetensors", {{"__metadata__", Tensor({1}), {}, {}, DType::F32}}),
      InvalidArgument);
}

TEST_F(SafetensorsTest, WriterRejectsIntegersOutOfRange) {
  EXPECT_THROW(save_safetensors(dir_ / "x.safetensors", {{"i", {}, {128}, {1}, DType::I8}}),
               InvalidArgument);
  EXPECT_THROW(save_safetensors(dir_ / "x.safetensors", {{"u", {}, {-1}, {1}, DType::U8}}),
               InvalidArgument);
  EXPECT_THROW(save_safetensors(dir_ / "x.safetensors", {{"b", {}, {2}, {1}, DType::BOOL}}),
               InvalidArgument);
  EXPECT_THROW(
      save_safetensors(dir_ / "x.safetensors", {{"i", {}, {int64_t{1} << 31}, {1}, DType::I32}}),
      InvalidArgument);
  EXPECT_FALSE(fs::exists(dir_ / "x.safetensors"));
}

TEST_F(SafetensorsTest, WriterRejectsShapeThatDisagreesWithValues) {
  EXPECT_THROW(save_safetensors(dir_ / "x.safetensors", {{"i", {}, {1, 2, 3}, {2, 2}, DType::I64}}),
               ShapeError);
  EXPECT_THROW(
      save_safetensors(dir_ / "x.safetensors", {{"f", Tensor({2, 3}), {}, {3, 2}, DType::F32}}),
      ShapeError);
}

// ---------------------------------------------------------------------------------------------
// Broken files

TEST_F(SafetensorsTest, Open_MissingFileIsFormatError) {
  expect_error<FormatError>([&] { SafetensorsFile::open(dir_ / "absent.safetensors"); },
                            {"absent.safetensors"});
}

TEST_F(SafetensorsTest, Open_DirectoryIsFormatError) {
  EXPECT_THROW(SafetensorsFile::open(dir_), FormatError);
}

TEST_F(SafetensorsTest, Open_EmptyFileIsFormatError) {
  const fs::path p = dir_ / "empty.safetensors";
  write_all(p, "");
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"empty.safetensors", "0 bytes"});
}

TEST_F(SafetensorsTest, Open_ShorterThan8BytesIsFormatError) {
  const fs::path p = dir_ / "short.safetensors";
  write_all(p, std::string("\x02\x00\x00", 3));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"short.safetensors", "3 bytes"});
}

TEST_F(SafetensorsTest, Open_HeaderLengthBeyondFileIsFormatError) {
  const auto p = raw_file("{}", "", 1000);
  expect_error<FormatError>([&] { SafetensorsFile::open(p); },
                            {"test.safetensors", "1000", "truncated"});
}

TEST_F(SafetensorsTest, Open_AbsurdHeaderLengthIsFormatError) {
  // E.g. a PyTorch .bin file opened as safetensors: its first 8 bytes read as a huge number.
  const auto p = raw_file("{}", "", uint64_t{1} << 40);
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"test.safetensors", "100 MB"});
  const auto q = raw_file("{}", "", 100'000'001);
  EXPECT_THROW(SafetensorsFile::open(q), FormatError);
}

TEST_F(SafetensorsTest, Open_InvalidJsonIsFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})",
                          f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"test.safetensors", "JSON"});
}

TEST_F(SafetensorsTest, Open_HeaderNotAnObjectIsFormatError) {
  const auto p = raw_file(R"([{"dtype": "F32"}])");
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"test.safetensors", "object"});
}

TEST_F(SafetensorsTest, Open_EntryNotAnObjectIsFormatError) {
  const auto p = raw_file(R"({"w": [0, 4]})");
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\""});
}

TEST_F(SafetensorsTest, Open_EntryWithoutDtypeIsFormatError) {
  const auto p = raw_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "dtype"});
}

TEST_F(SafetensorsTest, Open_EntryWithoutShapeIsFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "shape"});
}

TEST_F(SafetensorsTest, Open_EntryWithoutDataOffsetsIsFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [1]}})", f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "data_offsets"});
}

TEST_F(SafetensorsTest, Open_UnknownDtypeIsDTypeErrorNamingTensorAndDtype) {
  const auto p = raw_file(
      R"({"layer.w": {"dtype": "F8_E9M9", "shape": [4], "data_offsets": [0, 4]}})", "abcd");
  expect_error<DTypeError>([&] { SafetensorsFile::open(p); },
                           {"layer.w", "F8_E9M9", "test.safetensors"});
}

TEST_F(SafetensorsTest, Open_DtypeNotAStringIsFormatError) {
  const auto p =
      raw_file(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", f32_bytes({1.0f}));
  EXPECT_THROW(SafetensorsFile::open(p), FormatError);
}

TEST_F(SafetensorsTest, Open_NegativeShapeIsFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [-1, 1], "data_offsets": [0, 4]}})",
                          f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "shape"});
}

TEST_F(SafetensorsTest, Open_NonIntegerShapeIsFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})",
                          f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "shape"});
  const auto q = raw_file(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})",
                          f32_bytes({1.0f}));
  EXPECT_THROW(SafetensorsFile::open(q), FormatError);
}

TEST_F(SafetensorsTest, Open_HugeShapeDoesNotOverflow) {
  const auto p =
      raw_file(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904],
                                     "data_offsets": [0, 0]}})");
  EXPECT_THROW(SafetensorsFile::open(p), FormatError);
}

TEST_F(SafetensorsTest, Open_BadDataOffsetsAreFormatError) {
  for (const char* offsets : {"[0]", "[0, 4, 8]", "[-4, 0]", "[0.0, 4.0]", "\"0-4\""}) {
    const auto p = raw_file(
        std::string(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": )") + offsets + "}}",
        f32_bytes({1.0f}));
    EXPECT_THROW(SafetensorsFile::open(p), FormatError) << offsets;
  }
}

TEST_F(SafetensorsTest, Open_OffsetsEndingBeforeTheyBeginAreFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})",
                          f32_bytes({1.0f}));
  EXPECT_THROW(SafetensorsFile::open(p), FormatError);
}

TEST_F(SafetensorsTest, Open_OffsetsNotMatchingShapeTimesDtypeSizeAreFormatError) {
  // [2, 3] x F32 needs 24 bytes; the offsets give 20.
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})",
                          std::string(24, '\0'));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "24", "20", "[2, 3]"});
}

TEST_F(SafetensorsTest, Open_OffsetsBeyondTheDataSectionAreFormatError) {
  const auto p = raw_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                          f32_bytes({1, 2, 3}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"w\"", "truncated"});
}

TEST_F(SafetensorsTest, Open_TruncatedRealFileIsFormatError) {
  const std::string good = read_all(fixture("core/roundtrip.safetensors"));
  const fs::path p = dir_ / "cut.safetensors";
  write_all(p, good.substr(0, good.size() - 1));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"cut.safetensors", "truncated"});
  write_all(p, good.substr(0, 100));  // cut inside the header
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"cut.safetensors", "truncated"});
}

TEST_F(SafetensorsTest, Open_OverlappingTensorsAreFormatError) {
  const auto p = raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                          f32_bytes({1, 2, 3}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"\"a\"", "\"b\"", "overlap"});
  const auto q = raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                               "b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
                          f32_bytes({1}));
  EXPECT_THROW(SafetensorsFile::open(q), FormatError);
}

TEST_F(SafetensorsTest, Open_MetadataValueNotAStringIsFormatError) {
  const auto p = raw_file(
      R"({"__metadata__": {"seed": 1}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
      f32_bytes({1.0f}));
  expect_error<FormatError>([&] { SafetensorsFile::open(p); }, {"__metadata__", "seed"});
}

TEST_F(SafetensorsTest, Open_MetadataNotAnObjectIsFormatError) {
  const auto p = raw_file(R"({"__metadata__": "v1"})");
  EXPECT_THROW(SafetensorsFile::open(p), FormatError);
}

TEST_F(SafetensorsTest, Open_AcceptsSpacePaddingAndUnalignedData) {
  // 7 bytes of header padding then data at an odd offset: reads must not assume alignment (UBSan
  // checks this).
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const auto p = raw_file(header + "       ", f32_bytes({3.5f, -1.0f}));
  const auto f = SafetensorsFile::open(p);
  EXPECT_TENSOR_NEAR(f.load("w"), Tensor({2}, {3.5f, -1.0f}), 0.0, 0.0);
  const auto q = raw_file(R"({"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                          le64(uint64_t{1} << 60));
  EXPECT_EQ(SafetensorsFile::open(q).load_ints("i"), (std::vector<int64_t>{int64_t{1} << 60}));
}

TEST_F(SafetensorsTest, Open_EmptyHeaderObjectIsAnEmptyFile) {
  const auto f = SafetensorsFile::open(raw_file("{}"));
  EXPECT_TRUE(f.names().empty());
  EXPECT_TRUE(f.metadata().empty());
}

// ------------------------------------------------------------------------------------- Checkpoint

TEST(Checkpoint, ShardedDirectoryWrittenByPython) {
  const auto ckpt = Checkpoint::open(fixture("core/sharded"));
  const auto expected = SafetensorsFile::open(fixture("core/sharded_expected.safetensors"));
  EXPECT_EQ(ckpt.names(), expected.names());
  EXPECT_EQ(ckpt.names().size(), 6u);
  for (const std::string name :
       {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias", "lm_head.weight"}) {
    EXPECT_TENSOR_NEAR(ckpt.load(name), expected.load(name), 0.0, 0.0) << name;
  }
  EXPECT_EQ(ckpt.file_of("token_ids").load_ints("token_ids"), expected.load_ints("token_ids"));
  EXPECT_EQ(ckpt.file_of("positions").load_ints("positions"), expected.load_ints("positions"));
  EXPECT_EQ(ckpt.info("model.layers.0.self_attn.q_proj.weight").dtype, DType::BF16);
  EXPECT_EQ(ckpt.info("model.layers.0.self_attn.q_proj.bias").dtype, DType::F16);
  EXPECT_EQ(ckpt.info("positions").dtype, DType::I32);
  EXPECT_EQ(ckpt.file_of("lm_head.weight").path().filename(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(ckpt.file_of("model.embed_tokens.weight").path().filename(),
            "model-00001-of-00002.safetensors");
  EXPECT_TRUE(ckpt.contains("lm_head.weight"));
  EXPECT_FALSE(ckpt.contains("model.norm.weight"));
  EXPECT_EQ(ckpt.dir(), fixture("core/sharded"));
}

TEST(Checkpoint, LoadWithExpectedShape) {
  const auto ckpt = Checkpoint::open(fixture("core/sharded"));
  EXPECT_EQ(ckpt.load("lm_head.weight", {8, 4}).shape(), (Shape{8, 4}));
  expect_error<ShapeError>(
      [&] {
        ckpt.load("lm_head.weight", {4, 8});
      },
      {"lm_head.weight", "[8, 4]", "[4, 8]"});
}

TEST(Checkpoint, MissingTensorIsFormatErrorNamingIt) {
  const auto ckpt = Checkpoint::open(fixture("core/sharded"));
  expect_error<FormatError>([&] { ckpt.load("model.norm.weight"); },
                            {"model.norm.weight", "sharded"});
  EXPECT_THROW(ckpt.load("model.norm.weight", {4}), FormatError);
  EXPECT_THROW(ckpt.info("model.norm.weight"), FormatError);
  EXPECT_THROW(ckpt.file_of("model.norm.weight"), FormatError);
}

TEST_F(SafetensorsTest, Checkpoint_SingleFile) {
  save_safetensors(dir_ / "model.safetensors",
                   {{"w", Tensor({2}, {1.0f, 2.0f}), {}, {}, DType::BF16}});
  const auto ckpt = Checkpoint::open(dir_);
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"w"});
  EXPECT_TENSOR_NEAR(ckpt.load("w", {2}), Tensor({2}, {1.0f, 2.0f}), 0.0, 0.0);
}

TEST_F(SafetensorsTest, Checkpoint_NonexistentDirectoryIsFormatError) {
  expect_error<FormatError>([&] { Checkpoint::open(dir_ / "no_such_model"); }, {"no_such_model"});
}

TEST_F(SafetensorsTest, Checkpoint_FileInsteadOfDirectoryIsFormatError) {
  save_safetensors(dir_ / "model.safetensors", {{"w", Tensor({1}), {}, {}, DType::F32}});
  EXPECT_THROW(Checkpoint::open(dir_ / "model.safetensors"), FormatError);
}

TEST_F(SafetensorsTest, Checkpoint_DirectoryWithoutWeightsIsFormatError) {
  expect_error<FormatError>(
      [&] { Checkpoint::open(dir_); },
      {"no model.safetensors or model.safetensors.index.json in", dir_.string()});
}

// Copies data/fixtures/core/sharded into the temp dir so a test can break it.
fs::path copy_sharded(const fs::path& dir) {
  const fs::path dst = dir / "sharded";
  fs::copy(fixture("core/sharded"), dst, fs::copy_options::recursive);
  return dst;
}

TEST_F(SafetensorsTest, Checkpoint_MissingShardIsFormatErrorNamingIt) {
  const fs::path d = copy_sharded(dir_);
  fs::remove(d / "model-00002-of-00002.safetensors");
  expect_error<FormatError>([&] { Checkpoint::open(d); },
                            {"model-00002-of-00002.safetensors", "missing"});
}

TEST_F(SafetensorsTest, Checkpoint_TensorAbsentFromItsShardIsFormatError) {
  const fs::path d = copy_sharded(dir_);
  std::string index = read_all(d / "model.safetensors.index.json");
  const std::string from = R"("lm_head.weight": "model-00002-of-00002.safetensors")";
  const auto at = index.find(from);
  ASSERT_NE(at, std::string::npos);
  index.replace(at, from.size(), R"("lm_head.weight": "model-00001-of-00002.safetensors")");
  write_all(d / "model.safetensors.index.json", index);
  expect_error<FormatError>([&] { Checkpoint::open(d); },
                            {"lm_head.weight", "model-00001-of-00002.safetensors"});
}

TEST_F(SafetensorsTest, Checkpoint_IndexWithBadJsonIsFormatError) {
  const fs::path d = copy_sharded(dir_);
  write_all(d / "model.safetensors.index.json", R"({"weight_map": {"a": )");
  expect_error<FormatError>([&] { Checkpoint::open(d); }, {"model.safetensors.index.json"});
}

TEST_F(SafetensorsTest, Checkpoint_IndexWithoutWeightMapIsFormatError) {
  const fs::path d = copy_sharded(dir_);
  write_all(d / "model.safetensors.index.json", R"({"metadata": {"total_size": 4}})");
  expect_error<FormatError>([&] { Checkpoint::open(d); }, {"weight_map"});
}

TEST_F(SafetensorsTest, Checkpoint_ShardOutsideTheDirectoryIsFormatError) {
  const fs::path d = copy_sharded(dir_);
  write_all(d / "model.safetensors.index.json",
            R"({"weight_map": {"w": "../model-00001-of-00002.safetensors"}})");
  EXPECT_THROW(Checkpoint::open(d), FormatError);
}

TEST_F(SafetensorsTest, Checkpoint_BrokenShardIsFormatError) {
  const fs::path d = copy_sharded(dir_);
  const fs::path shard = d / "model-00001-of-00002.safetensors";
  const std::string bytes = read_all(shard);
  write_all(shard, bytes.substr(0, bytes.size() - 8));
  expect_error<FormatError>([&] { Checkpoint::open(d); },
                            {"model-00001-of-00002.safetensors", "truncated"});
}

// ------------------------------------------------------------------------------------- what the
// front door refuses: integer dtypes where weights belong, and non-finite weights (issue 8)

// A one-file checkpoint in dir: an f32 "model.embed_tokens.weight" plus `extra`.
void write_checkpoint(const fs::path& dir, std::vector<TensorToSave> extra) {
  extra.push_back(
      {"model.embed_tokens.weight", Tensor({2, 2}, {1.0f, 2.0f, 3.0f, 4.0f}), {}, {}, DType::F32});
  save_safetensors(dir / "model.safetensors", extra);
}

TEST_F(SafetensorsTest, Checkpoint_IntegerDtypeWeightIsDTypeErrorNamingTensorDtypeAndFile) {
  // The user's case: model.norm.weight stored as I16 used to load as its integer codes.
  write_checkpoint(dir_, {{"model.norm.weight", {}, {1, -2, 3, 4}, {4}, DType::I16}});
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const std::string file = (dir_ / "model.safetensors").string();
  expect_error<DTypeError>([&] { ckpt.load("model.norm.weight", {4}); },
                           {"model.norm.weight", "I16", file, "F32, F16 or BF16"});
  expect_error<DTypeError>([&] { ckpt.load("model.norm.weight"); }, {"model.norm.weight", "I16"});
  // Also with the scan off: the dtype check is not part of it.
  EXPECT_THROW(Checkpoint::open(dir_, CheckTensors::Never).load("model.norm.weight"), DTypeError);
  // The raw-code paths stay open: load_ints (MLX codes, token ids) and SafetensorsFile::load.
  EXPECT_EQ(ckpt.file_of("model.norm.weight").load_ints("model.norm.weight"),
            (std::vector<int64_t>{1, -2, 3, 4}));
  EXPECT_TENSOR_NEAR(ckpt.file_of("model.norm.weight").load("model.norm.weight"),
                     Tensor({4}, {1.0f, -2.0f, 3.0f, 4.0f}), 0.0, 0.0);
  EXPECT_TENSOR_NEAR(ckpt.load("model.embed_tokens.weight", {2, 2}),
                     Tensor({2, 2}, {1.0f, 2.0f, 3.0f, 4.0f}), 0.0, 0.0);
}

TEST_F(SafetensorsTest, Checkpoint_EveryIntegerDtypeIsRefusedAsAWeight) {
  for (const DType dtype :
       {DType::I8, DType::U8, DType::I16, DType::I32, DType::I64, DType::U32, DType::BOOL}) {
    write_checkpoint(dir_, {{"w", {}, {0, 1}, {2}, dtype}});
    expect_error<DTypeError>([&] { Checkpoint::open(dir_).load("w", {2}); },
                             {"\"w\"", dtype_name(dtype)});
  }
  for (const DType dtype : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    write_checkpoint(dir_, {{"w", Tensor({2}, {0.5f, -1.0f}), {}, {}, dtype}});
    EXPECT_TENSOR_NEAR(Checkpoint::open(dir_).load("w", {2}), Tensor({2}, {0.5f, -1.0f}), 0.0, 0.0)
        << dtype_name(dtype);
  }
}

TEST_F(SafetensorsTest, Checkpoint_NanWeightIsNumericalErrorNamingTensorFileIndexAndValue) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  for (const DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    write_checkpoint(dir_, {{name, Tensor({2, 3}, {0, 1, 2, nan, 4, nan}), {}, {}, dtype}});
    const Checkpoint ckpt = Checkpoint::open(dir_);
    EXPECT_TRUE(ckpt.checks_tensors());  // Auto, and the file is tiny
    expect_error<NumericalError>(
        [&] {
          ckpt.load(name, {2, 3});
        },
        {name, (dir_ / "model.safetensors").string(), dtype_name(dtype), "element 3 ([1, 0])",
         "nan", "--check-tensors"});
    EXPECT_THROW(ckpt.load(name), NumericalError);
    // The other tensors still load.
    EXPECT_NO_THROW(ckpt.load("model.embed_tokens.weight", {2, 2}));
  }
}

TEST_F(SafetensorsTest, Checkpoint_InfinitiesAreNumericalErrorsToo) {
  const float inf = std::numeric_limits<float>::infinity();
  write_checkpoint(dir_, {{"a", Tensor({3}, {1, -inf, 2}), {}, {}, DType::BF16},
                          {"b", Tensor({2}, {inf, 0}), {}, {}, DType::F32},
                          // 1e6 does not fit into f16: save_safetensors stores +inf.
                          {"c", Tensor({2}, {0, 1e6f}), {}, {}, DType::F16}});
  const Checkpoint ckpt = Checkpoint::open(dir_);
  expect_error<NumericalError>([&] { ckpt.load("a"); }, {"\"a\"", "element 1 ", "-inf"});
  expect_error<NumericalError>([&] { ckpt.load("b"); }, {"\"b\"", "element 0 ", "inf"});
  expect_error<NumericalError>([&] { ckpt.load("c"); }, {"\"c\"", "element 1 ", "inf"});
}

TEST_F(SafetensorsTest, Checkpoint_F64BeyondTheF32RangeIsNumericalError) {
  // A raw file: one F64 value 1e300, which converts to +inf in f32.
  const double big = 1e300;
  std::string data(8, '\0');
  std::memcpy(data.data(), &big, 8);
  const std::string header = R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})";
  write_all(dir_ / "model.safetensors", le64(header.size()) + header + data);
  expect_error<NumericalError>([&] { Checkpoint::open(dir_).load("w"); }, {"\"w\"", "inf"});
}

TEST_F(SafetensorsTest, Checkpoint_NeverSkipsTheScanAndAlwaysKeepsIt) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  write_checkpoint(dir_, {{"w", Tensor({2}, {nan, 1}), {}, {}, DType::BF16}});
  const Checkpoint never = Checkpoint::open(dir_, CheckTensors::Never);
  EXPECT_FALSE(never.checks_tensors());
  const Tensor w = never.load("w", {2});
  EXPECT_TRUE(std::isnan(w.data()[0]));
  EXPECT_EQ(w.data()[1], 1.0f);
  EXPECT_TRUE(Checkpoint::open(dir_, CheckTensors::Always).checks_tensors());
  EXPECT_THROW(Checkpoint::open(dir_, CheckTensors::Always).load("w"), NumericalError);
  EXPECT_THROW(Checkpoint::open(dir_, CheckTensors::Auto).load("w"), NumericalError);
  EXPECT_THROW(Checkpoint::open(dir_).load("w"), NumericalError);  // the default is Auto
}

TEST(Checkpoint, TotalBytesIsTheFilesTogether) {
  const fs::path dir = fixture("core/sharded");
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_EQ(ckpt.total_bytes(), fs::file_size(dir / "model-00001-of-00002.safetensors") +
                                    fs::file_size(dir / "model-00002-of-00002.safetensors"));
  EXPECT_TRUE(ckpt.checks_tensors());
  EXPECT_LT(ckpt.total_bytes(), kCheckTensorsAutoLimitBytes);
}

// Auto leaves a checkpoint of kCheckTensorsAutoLimitBytes or more unscanned. The file is sparse: a
// NaN tensor "w" and then a 2 GiB tensor that is never read, so it takes no disk space or memory.
TEST_F(SafetensorsTest, Checkpoint_AutoSkipsTheScanAboveTheLimit) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const uint64_t big = kCheckTensorsAutoLimitBytes;
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)" +
                       std::string(R"("big":{"dtype":"U8","shape":[)") + std::to_string(big) +
                       "],\"data_offsets\":[8," + std::to_string(8 + big) + "]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const fs::path file = dir_ / "model.safetensors";
  write_all(file, le64(header.size()) + header + f32_bytes({nan, 2.0f}));
  fs::resize_file(file, 8 + header.size() + 8 + big);

  const Checkpoint ckpt = Checkpoint::open(dir_);
  EXPECT_GE(ckpt.total_bytes(), kCheckTensorsAutoLimitBytes);
  EXPECT_FALSE(ckpt.checks_tensors());
  EXPECT_TRUE(std::isnan(ckpt.load("w", {2}).data()[0]));
  EXPECT_THROW(Checkpoint::open(dir_, CheckTensors::Always).load("w", {2}), NumericalError);
}

}  // namespace
}  // namespace tinyllm
