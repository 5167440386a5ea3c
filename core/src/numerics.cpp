#include "tinyllm/numerics.hpp"

#include <bit>
#include <cstdio>

#include "tinyllm/errors.hpp"

namespace tinyllm {

int64_t find_non_finite(std::span<const float> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!is_finite_bits(values[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

std::string format_float(float value) {
  if (!is_finite_bits(value)) {
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    if ((bits & 0x007fffffu) != 0) return "nan";
    return (bits >> 31) != 0 ? "-inf" : "inf";
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", static_cast<double>(value));
  return text;
}

void check_finite_logits(const Tensor& logits, int64_t position, std::string_view who) {
  const int64_t bad =
      find_non_finite(std::span<const float>(logits.data(), static_cast<size_t>(logits.numel())));
  if (bad < 0) return;
  const int64_t vocab = logits.ndim() > 0 ? logits.dim(logits.ndim() - 1) : 1;  // > 0: bad < numel
  const int64_t rows = logits.numel() / vocab;
  const int64_t row = bad / vocab, id = bad % vocab;
  std::string message = std::string(who) + ": non-finite logits at position " +
                        std::to_string(position) + " (first bad value at vocab id " +
                        std::to_string(id);
  if (rows > 1) message += " of row " + std::to_string(row) + " of " + std::to_string(rows);
  message += ": " + format_float(logits.data()[bad]) +
             "); the model's weights or activations are not finite, so generation stops here "
             "instead of sampling from garbage";
  throw NumericalError(message);
}

}  // namespace tinyllm
