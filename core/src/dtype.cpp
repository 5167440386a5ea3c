#include "tinyllm/dtype.hpp"

#include <cmath>
#include <cstring>

#include "tinyllm/errors.hpp"

namespace tinyllm {
namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},
    {DType::F64, "F64", 8}, {DType::I8, "I8", 1},     {DType::U8, "U8", 1},
    {DType::I16, "I16", 2}, {DType::I32, "I32", 4},   {DType::I64, "I64", 8},
    {DType::U32, "U32", 4}, {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& entry(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  throw DTypeError("unknown DType value " + std::to_string(static_cast<int>(dtype)));
}

uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

}  // namespace

DType dtype_from_string(const std::string& name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  std::string known;
  for (const auto& e : kDTypes) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throw DTypeError("unknown dtype \"" + name + "\" (tiny-llm.cpp knows " + known + ")");
}

std::string dtype_name(DType dtype) {
  return entry(dtype).name;
}

size_t dtype_size(DType dtype) {
  return entry(dtype).size;
}

// bfloat16 is the upper half of a float32: same sign and 8-bit exponent, 7 mantissa bits.
float bf16_to_f32(uint16_t bits) {
  return bits_float(static_cast<uint32_t>(bits) << 16);
}

// float16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
float f16_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) {  // inf (mantissa 0) or NaN (payload kept)
    return bits_float(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in f32
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

uint16_t f32_to_bf16(float value) {
  const uint32_t bits = float_bits(value);
  if (std::isnan(value)) {
    // A quiet NaN with the sign kept (truncating could turn a NaN with a low payload into inf).
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  // Round to nearest even on the 16 dropped bits; a carry into the exponent is the correct result
  // (up to inf).
  const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

uint16_t f32_to_f16(float value) {
  const uint32_t bits = float_bits(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t exponent = (bits >> 23) & 0xFFu;
  const uint32_t mantissa = bits & 0x7FFFFFu;

  if (exponent == 0xFF)
    return mantissa ? static_cast<uint16_t>(sign | 0x7E00u) : static_cast<uint16_t>(sign | 0x7C00u);

  // Rounds `significand >> shift` to nearest, ties to even.
  auto round_shift = [](uint32_t significand, int shift) {
    const uint32_t kept = significand >> shift;
    const uint32_t rest = significand & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
  };

  // The biased f16 exponent, if the value is a normal f16 number.
  const int e16 = static_cast<int>(exponent) - 127 + 15;
  if (e16 >= 0x1F) return static_cast<uint16_t>(sign | 0x7C00u);  // too large: inf
  if (e16 >= 1) {
    // Normal: keep 10 of the 23 mantissa bits. A rounding carry moves into the exponent, up to inf
    // (0x7C00).
    const uint32_t result = round_shift((static_cast<uint32_t>(e16) << 23) | mantissa, 13);
    return static_cast<uint16_t>(sign | (result >= 0x7C00u ? 0x7C00u : result));
  }
  // Subnormal in f16 (or zero): the value is mantissa16 * 2^-24.
  // Shift from the 24-bit significand (implicit 1 included) down to units of 2^-24.
  const int shift = 14 - e16;
  if (exponent == 0 || shift > 24) return sign;  // below half of the smallest subnormal: +-0
  const uint32_t significand = 0x800000u | mantissa;
  // round_shift may return 0x400, which is exactly the smallest normal f16 (exponent 1,
  // mantissa 0).
  return static_cast<uint16_t>(sign | round_shift(significand, shift));
}

}  // namespace tinyllm
