// dtype names and sizes, and the bf16/f16 <-> f32 conversions against torch
// (data/fixtures/core/dtype.safetensors, written by tools/fixtures/gen_core.py).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "tinyllm/dtype.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

bool bf16_is_nan(uint16_t b) {
  return (b & 0x7F80) == 0x7F80 && (b & 0x007F) != 0;
}
bool f16_is_nan(uint16_t b) {
  return (b & 0x7C00) == 0x7C00 && (b & 0x03FF) != 0;
}

std::vector<uint16_t> as_u16(const std::vector<int64_t>& v) {
  std::vector<uint16_t> out;
  for (int64_t x : v) out.push_back(static_cast<uint16_t>(static_cast<int16_t>(x)));
  return out;
}

TEST(DType, NamesRoundTrip) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I8, DType::U8, DType::I16,
                  DType::I32, DType::I64, DType::U32, DType::BOOL}) {
    EXPECT_EQ(dtype_from_string(dtype_name(d)), d) << dtype_name(d);
  }
  EXPECT_EQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(dtype_name(DType::BOOL), "BOOL");
  EXPECT_EQ(dtype_from_string("F16"), DType::F16);
}

TEST(DType, Sizes) {
  EXPECT_EQ(dtype_size(DType::F32), 4u);
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::I8), 1u);
  EXPECT_EQ(dtype_size(DType::U8), 1u);
  EXPECT_EQ(dtype_size(DType::I16), 2u);
  EXPECT_EQ(dtype_size(DType::I32), 4u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
  EXPECT_EQ(dtype_size(DType::U32), 4u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
}

TEST(DType, UnknownNameThrowsDTypeError) {
  EXPECT_THROW(dtype_from_string("F8_E9M9"), DTypeError);
  EXPECT_THROW(dtype_from_string("f32"),
               DTypeError);  // names are case-sensitive, as in safetensors
  EXPECT_THROW(dtype_from_string(""), DTypeError);
  try {
    dtype_from_string("F8_E4M3");
    FAIL() << "no exception";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("F8_E4M3"), std::string::npos) << e.what();
  }
}

TEST(DType, HandPickedBf16) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // Ties go to the even neighbour: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(f32_to_bf16(float_of(0x3F808000)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(float_of(0x3F818000)), 0x3F82);
  EXPECT_EQ(f32_to_bf16(float_of(0x3F808001)), 0x3F81);
  // The largest float rounds up to inf; a NaN with a payload only in the low bits stays NaN.
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(float_of(0x7F800001))));
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC0A0), -5.0f);
  EXPECT_EQ(bf16_to_f32(0x0001), float_of(0x00010000));  // a subnormal
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7FC0)));
}

TEST(DType, HandPickedF16) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);  // largest finite f16
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);  // below the halfway point to 65536
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // the tie rounds to even, which is inf
  EXPECT_EQ(f32_to_f16(1e6f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e6f), 0xFC00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);   // smallest normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);   // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);   // tie between 0 and 2^-24 -> even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);   // tie between 1 and 2 ulps -> even (2)
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -30)), 0x8000);  // underflow keeps the sign
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)),
            0x0400);  // subnormal rounds up to normal
  EXPECT_TRUE(f16_is_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(bits_of(f16_to_f32(0x8000)), 0x80000000u);
  EXPECT_EQ(f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));
}

TEST(DType, F32ToBf16MatchesTorch) {
  testing::Fixture fx("core/dtype.safetensors");
  const Tensor x = fx.tensor("f32_values");
  const auto expected = as_u16(fx.ints("bf16_bits"));
  ASSERT_EQ(static_cast<size_t>(x.numel()), expected.size());
  int failures = 0;
  for (int64_t i = 0; i < x.numel() && failures < 10; ++i) {
    const float v = x.data()[i];
    const uint16_t got = f32_to_bf16(v);
    const bool ok = bf16_is_nan(expected[i]) ? bf16_is_nan(got) : got == expected[i];
    if (!ok) {
      ++failures;
      ADD_FAILURE() << "f32_to_bf16(" << v << " = 0x" << std::hex << bits_of(v) << ") = 0x" << got
                    << ", torch gives 0x" << expected[i];
    }
  }
}

TEST(DType, F32ToF16MatchesTorch) {
  testing::Fixture fx("core/dtype.safetensors");
  const Tensor x = fx.tensor("f32_values");
  const auto expected = as_u16(fx.ints("f16_bits"));
  ASSERT_EQ(static_cast<size_t>(x.numel()), expected.size());
  int failures = 0;
  for (int64_t i = 0; i < x.numel() && failures < 10; ++i) {
    const float v = x.data()[i];
    const uint16_t got = f32_to_f16(v);
    const bool ok = f16_is_nan(expected[i]) ? f16_is_nan(got) : got == expected[i];
    if (!ok) {
      ++failures;
      ADD_FAILURE() << "f32_to_f16(" << v << " = 0x" << std::hex << bits_of(v) << ") = 0x" << got
                    << ", torch gives 0x" << expected[i];
    }
  }
}

// Compares bit patterns so that -0 vs +0 and NaN are checked too.
void expect_same_floats(const Tensor& actual, const Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  int failures = 0;
  for (int64_t i = 0; i < actual.numel() && failures < 10; ++i) {
    const float a = actual.data()[i], e = expected.data()[i];
    const bool ok = std::isnan(e) ? std::isnan(a) : bits_of(a) == bits_of(e);
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what << "[" << i << "]: got " << a << ", torch gives " << e;
    }
  }
}

TEST(DType, Bf16ToF32MatchesTorch) {
  testing::Fixture fx("core/dtype.safetensors");
  const auto bits = as_u16(fx.ints("bf16_bits"));
  const Tensor expected = fx.tensor("bf16_as_f32");
  Tensor converted({static_cast<int64_t>(bits.size())});
  for (size_t i = 0; i < bits.size(); ++i) converted.data()[i] = bf16_to_f32(bits[i]);
  expect_same_floats(converted, expected, "bf16_to_f32");
  // The same values stored as a BF16 tensor and converted by SafetensorsFile::load.
  expect_same_floats(fx.tensor("bf16_values"), expected, "load(BF16)");
}

TEST(DType, F16ToF32MatchesTorch) {
  testing::Fixture fx("core/dtype.safetensors");
  const auto bits = as_u16(fx.ints("f16_bits"));
  const Tensor expected = fx.tensor("f16_as_f32");
  Tensor converted({static_cast<int64_t>(bits.size())});
  for (size_t i = 0; i < bits.size(); ++i) converted.data()[i] = f16_to_f32(bits[i]);
  expect_same_floats(converted, expected, "f16_to_f32");
  expect_same_floats(fx.tensor("f16_values"), expected, "load(F16)");
}

TEST(DType, EveryF16BitPatternMatchesTorch) {
  testing::Fixture fx("core/dtype.safetensors");
  const Tensor expected = fx.tensor("f16_all_positive_as_f32");
  ASSERT_EQ(expected.numel(), 0x8000);
  const auto raw = fx.file().bytes("f16_all_positive");
  ASSERT_EQ(raw.size(), 2u * 0x8000);
  Tensor converted({0x8000});
  Tensor negated({0x8000});
  Tensor expected_negated({0x8000});
  for (uint32_t b = 0; b < 0x8000; ++b) {
    uint16_t stored;
    std::memcpy(&stored, raw.data() + 2 * b, 2);
    ASSERT_EQ(stored, b);
    converted.data()[b] = f16_to_f32(static_cast<uint16_t>(b));
    negated.data()[b] = f16_to_f32(static_cast<uint16_t>(b | 0x8000));
    expected_negated.data()[b] = -expected.data()[b];
  }
  expect_same_floats(converted, expected, "f16_to_f32");
  expect_same_floats(negated, expected_negated, "f16_to_f32 (sign bit set)");
  expect_same_floats(fx.tensor("f16_all_positive"), expected, "load(F16)");
}

TEST(DType, F16RoundTripIsExactForEveryPattern) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<uint16_t>(b);
    if (f16_is_nan(h)) {
      ASSERT_TRUE(f16_is_nan(f32_to_f16(f16_to_f32(h)))) << std::hex << b;
    } else {
      ASSERT_EQ(f32_to_f16(f16_to_f32(h)), h) << std::hex << b;
    }
  }
}

TEST(DType, Bf16RoundTripIsExactForEveryPattern) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<uint16_t>(b);
    if (bf16_is_nan(h)) {
      ASSERT_TRUE(bf16_is_nan(f32_to_bf16(bf16_to_f32(h)))) << std::hex << b;
    } else {
      ASSERT_EQ(f32_to_bf16(bf16_to_f32(h)), h) << std::hex << b;
    }
  }
}

}  // namespace
}  // namespace tinyllm
