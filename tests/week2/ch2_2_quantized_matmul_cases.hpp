// The quantization fixtures of chapters 2.2 and 2.3 (tools/fixtures/gen_week2_quant.py) and the
// error bounds the tests use for them.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <vector>

#include "tinyllm_test.hpp"

namespace tinyllm::testing {

struct QuantCase {
  std::string describe;
  Tensor w, scales, biases, dequant, x, y;
  std::vector<int64_t> packed;
  std::optional<Tensor> bias;
  int group_size = 0, bits = 0;
};

inline std::vector<QuantCase> load_quant_cases() {
  Fixture f("ch2.2/quantize.safetensors");
  std::vector<QuantCase> cases;
  const int n = std::stoi(f.meta("num_cases"));
  for (int i = 0; i < n; ++i) {
    const std::string p = "case" + std::to_string(i) + ".";
    QuantCase c;
    c.describe = "ch2.2/quantize.safetensors case " + std::to_string(i) + ": " +
                 f.meta("case" + std::to_string(i));
    c.w = f.tensor(p + "w");
    c.scales = f.tensor(p + "scales");
    c.biases = f.tensor(p + "biases");
    c.dequant = f.tensor(p + "dequant");
    c.x = f.tensor(p + "x");
    c.y = f.tensor(p + "y");
    c.packed = f.ints(p + "packed");
    if (f.has(p + "b")) c.bias = f.tensor(p + "b");
    const std::vector<int64_t> config = f.ints(p + "config");
    c.group_size = static_cast<int>(config.at(0));
    c.bits = static_cast<int>(config.at(1));
    cases.push_back(std::move(c));
  }
  return cases;
}

/// The oracle's own quantization of a case (packed words, scales, biases), independent of our
/// quantize.
inline QuantizedWeights oracle_weights(const QuantCase& c) {
  QuantizedWeights w;
  for (int64_t v : c.packed) w.packed.push_back(static_cast<uint32_t>(v));
  w.scales = c.scales;
  w.biases = c.biases;
  w.rows = c.w.dim(0);
  w.cols = c.w.dim(1);
  w.group_size = c.group_size;
  w.bits = c.bits;
  return w;
}

inline Tensor as_matrix(const Tensor& x) {
  return x.reshape({-1, x.dim(-1)});
}

/// Checks y (M x K) against the float64 oracle `expected` (M x K) for x (M x N) times the quantized
/// weight given by its dequantized values, scales and biases. Float32 accumulation, whether of
/// x_j * w_j or of the factored form scale * sum(x q) + bias * sum(x), errs by a few units of 2^-24
/// times the sum of the magnitudes it adds up, at most sum_j |x_j| (|q_j scale| + |bias|) per
/// output. The bound is `slack` (8) times that, plus 1e-6: far below the 1e-2 relative errors of a
/// wrong nibble, group or bias, and independent of how the sums are ordered or fused.
inline ::testing::AssertionResult ProductNear(const Tensor& y, const Tensor& x,
                                              const Tensor& dequant, const Tensor& biases,
                                              int group_size, const Tensor& expected,
                                              double slack = 8.0) {
  if (y.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << "shape " << shape_to_string(y.shape()) << ", expected "
                                         << shape_to_string(expected.shape());
  }
  const int64_t M = x.dim(0), N = x.dim(1), K = dequant.dim(0), groups = N / group_size;
  int bad = 0;
  std::string first;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t k = 0; k < K; ++k) {
      double magnitude = 0.0;
      for (int64_t j = 0; j < N; ++j) {
        const double b = biases.data()[k * groups + j / group_size];
        magnitude +=
            std::abs(x.data()[i * N + j]) * (std::abs(dequant.data()[k * N + j] - b) + std::abs(b));
      }
      const double got = y.data()[i * K + k], want = expected.data()[i * K + k];
      const double bound = 1e-6 + slack * std::ldexp(magnitude, -24);
      if (!(std::abs(got - want) <= bound) && bad++ == 0) {
        first = "[" + std::to_string(i) + ", " + std::to_string(k) + "]: got " +
                std::to_string(got) + ", expected " + std::to_string(want) + ", bound " +
                std::to_string(bound);
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << M * K << " outputs outside the bound, first at " << first;
}

}  // namespace tinyllm::testing
