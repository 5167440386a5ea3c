// One weight matrix of the engine (K x N, "out x in" as in linear) in the precision the engine
// was asked for, with the product y = a W^T for both shapes that matter: decode (M = 1 row of
// activations, a matrix-vector product that reads every weight once) and prefill (M > 1 rows, a
// matrix-matrix product). Activations stay f32 in every format; only the weights change:
//
//   F32   the f32 tensor as loaded; an OpenMP split over row blocks, each an Eigen product
//   Bf16  bf16 bit patterns (real checkpoints' own bits: exact), chapter 2.3's bf16_matmul
//   Q8    MLX affine groups of 8-bit codes (chapter 2.2's quantize), chapter 2.3's
//         quantized_matmul_fast
//   Q4    the same with 4-bit codes
//
// Bytes per weight (what decode reads): f32 4, bf16 2, q8 1 + 8/G, q4 0.5 + 8/G (a f32 scale and a
// f32 bias per group of G). Defaults: G = 32 for q8 and 64 for q4, the group sizes of llama.cpp's
// Q8_0 and (twice) Q4_0 blocks.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>

#include "tinyllm/tensor.hpp"

namespace tinyllm::engine {

enum class WeightFormat { F32, Bf16, Q8, Q4 };

/// "f32", "bf16", "q8", "q4" -> the format; anything else is InvalidArgument.
WeightFormat parse_weight_format(const std::string& name);
std::string weight_format_name(WeightFormat format);
/// The default group size of a quantized format (32 for q8, 64 for q4; 0 for f32 and bf16).
int default_group_size(WeightFormat format);

/// How the linear layers are stored. group_size 0 means default_group_size(format); a quantized
/// format needs 32, 64 or 128 (InvalidArgument otherwise, from check_weight_spec).
struct WeightSpec {
  WeightFormat format = WeightFormat::F32;
  int group_size = 0;
};
/// The spec with its group size resolved; InvalidArgument for a bad group size (a quantized format
/// with G not 32/64/128, or G given for f32/bf16).
WeightSpec check_weight_spec(WeightSpec spec);

/// How WeightMatrix::matmul runs: OpenMP threads (0: OpenMP's default) and the engine's own
/// kernels. int8_decode: a q8/q4 decode product (M = 1) quantizes the activation row to int8 and
/// runs int8_matvec (int8_matvec.hpp; AVX512-VNNI, 64 | N). bf16_prefill: a bf16/q8/q4 product
/// with M > 1 runs bf16_gemm (bf16_gemm.hpp; AVX512-BF16, 2 | N). Where the CPU or the shape does
/// not allow them, and for f32 weights, chapter 2.3's kernels run.
struct KernelChoice {
  int threads = 0;
  bool int8_decode = false;
  bool bf16_prefill = false;
};

class WeightMatrix {
 public:
  WeightMatrix() = default;
  /// Converts a K x N f32 weight to `spec` (bf16: rounded to nearest even, exact for weights that
  /// were bf16 on disk; q8/q4: chapter 2.2's quantize). ShapeError if w is not 2-D or N is not a
  /// multiple of the group size.
  WeightMatrix(const Tensor& w, WeightSpec spec);
  /// An already quantized weight (e.g. from an MLX checkpoint), kept as it is.
  explicit WeightMatrix(QuantizedWeights w);

  int64_t rows() const;  // K
  int64_t cols() const;  // N
  WeightFormat format() const { return spec_.format; }
  int group_size() const { return spec_.group_size; }
  /// What one full pass over the weight reads: codes + scales + biases, or the dense values.
  int64_t bytes() const;

  /// a: M x N -> M x K = a W^T, run as `how` says.
  Tensor matmul(const Tensor& a, const KernelChoice& how = {}) const;
  /// Rows [k0, k0 + count) of W as count x N floats (exact: widened or dequantized); row k is the
  /// embedding lookup of a tied table.
  void rows_f32(int64_t k0, int64_t count, float* out) const;
  /// The underlying storage, for tests.
  const std::variant<Tensor, Bf16Weights, QuantizedWeights>& storage() const { return w_; }

 private:
  WeightSpec spec_;
  std::variant<Tensor, Bf16Weights, QuantizedWeights> w_;
};

/// Several weight matrices with the same N used as one (K1 + K2 + ..) x N: matmul returns their
/// products side by side. The engine fuses q/k/v and gate/up into one of these: a single
/// WeightMatrix when the parts share a format (their rows stacked: one pass over x, one parallel
/// region), several when an MLX checkpoint stores them differently (per-layer overrides).
class StackedMatrix {
 public:
  StackedMatrix() = default;
  /// Adjacent quantized parts with the same bits and group size are stacked into one matrix.
  /// ShapeError unless every part has the same N.
  explicit StackedMatrix(std::vector<WeightMatrix> parts);
  int64_t rows() const;  // K1 + K2 + ..
  int64_t bytes() const;
  /// a: M x N -> M x (K1 + K2 + ..).
  Tensor matmul(const Tensor& a, const KernelChoice& how = {}) const;
  const std::vector<WeightMatrix>& parts() const { return parts_; }

 private:
  std::vector<WeightMatrix> parts_;
};

/// Stacks 2-D f32 tensors with the same N row-wise: K1 x N, K2 x N, .. -> (K1 + K2 + ..) x N (the
/// engine fuses q/k/v and gate/up into one matrix each: one pass over x, one parallel region).
Tensor stack_rows(const std::vector<const Tensor*>& parts);

}  // namespace tinyllm::engine
