// Element types found in checkpoints, and conversions of the 16-bit float formats to and from f32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tinyllm {

enum class DType { F32, F16, BF16, F64, I8, U8, I16, I32, I64, U32, BOOL };

/// "F32", "BF16", ... as spelled in safetensors headers. Throws DTypeError for anything else.
DType dtype_from_string(const std::string& name);
std::string dtype_name(DType dtype);
/// Bytes per element.
size_t dtype_size(DType dtype);

float bf16_to_f32(uint16_t bits);
float f16_to_f32(uint16_t bits);
/// Round to nearest even (NaN stays NaN).
uint16_t f32_to_bf16(float value);
uint16_t f32_to_f16(float value);

}  // namespace tinyllm
