// Finding NaNs and infinities: in a checkpoint's weights as they load (Checkpoint), and in a
// model's logits while it generates (check_finite_logits), so that a broken model stops with an
// error that says where instead of printing garbage.
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tinyllm/tensor.hpp"

namespace tinyllm {

/// Whether `value` is neither NaN nor an infinity. A test of the exponent bits, so it keeps working
/// where a compiler's fast-math assumptions would fold std::isfinite to true.
inline bool is_finite_bits(float value) {
  return (std::bit_cast<uint32_t>(value) & 0x7f800000u) != 0x7f800000u;
}

/// The index of the first NaN or infinity in `values`, or -1 when all are finite.
int64_t find_non_finite(std::span<const float> values);

/// "nan", "inf", "-inf" or the number as printf's %g writes it.
std::string format_float(float value);

/// Throws NumericalError when `logits` (the last dimension is the vocabulary V: V, B x V or
/// B x L x V) holds a NaN or an infinity:
///   "<who>: non-finite logits at position P (first bad value at vocab id i: nan) ..."
/// naming the row too when there is more than one. `position` is the sequence position whose
/// logits these are (the caller's count: the prompt length plus the tokens generated so far).
/// Generation loops call it on every step's logits, so that a model whose weights or activations
/// went non-finite stops with an error instead of sampling garbage and exiting 0. One pass over
/// the logits (V floats per row), negligible next to the forward that produced them.
void check_finite_logits(const Tensor& logits, int64_t position, std::string_view who);

}  // namespace tinyllm
