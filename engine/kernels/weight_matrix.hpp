// One weight matrix of the engine (K x N, "out x in" as in linear) in the precision the engine
// was asked for, with the product y = a W^T for the shapes that matter: decode (M = 1 row of
// activations for one request, M = R rows for R requests decoded together: every weight read once
// per call), and prefill (M = prompt tokens, a matrix-matrix product). Activations stay f32 in
// every format; only the weights change:
//
//   F32   the f32 tensor as loaded
//   Bf16  bf16 bit patterns (real checkpoints' own bits: exact)
//   Q8    MLX affine groups of 8-bit codes (chapter 2.2's quantize)
//   Q4    the same with 4-bit codes
//
// Kernels by M (KernelChoice says which may be fast rather than exact):
//
//   M <= kSmallMMax   exact: f32_small_matmul, bf16_small_matmul, dequant_small_matmul
//                     (bf16_matvec.hpp); fast (int8_decode, int8_batch), q8/q4:
//                     int8_small_matmul (int8_matvec.hpp); fast (bf16_dot), bf16:
//                     bf16_dot_small_matmul (bf16_dot.hpp)
//   M >  kSmallMMax   exact: OpenMP row blocks x Eigen GEMM (f32), chapter 2.3's bf16_matmul and
//                     quantized_matmul_fast; fast (bf16_prefill), bf16/q8/q4: bf16_gemm
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

/// Products with at most this many activation rows (decode: one row per request of a batch; short
/// prefills and prefill chunks) run the streaming kernels, which read each weight once per call for
/// all M rows (bf16_matvec.hpp, int8_matvec.hpp; row m of the product is bitwise the product of row
/// m alone). More rows run the GEMMs. Measured on the 2-core Zen 4 (9728 x 896, one thread, CPU
/// ms): bf16 streaming 1.6 / 3.0 / 5.6 / 8.4 / 11.0 at M = 8 / 16 / 32 / 48 / 64 against
/// bf16_gemm's 5.9 / 6.5 / 7.8 / 9.2 / 10.5 (its packing of the weights costs about 5.5 ms a call);
/// q4 int8 streaming 9.1 at M = 64 against 12.1, q4 exact streaming 13.2 against 12.1; the exact
/// GEMMs of chapter 2.3 and Eigen are slower than the exact streaming kernels at every M <= 64.
inline constexpr int64_t kSmallMMax = 48;

/// How WeightMatrix::matmul runs: OpenMP threads (0: OpenMP's default) and whether it may use the
/// engine's fast kernels, whose results differ from the exact product by a stated bound:
///   int8_decode   q8/q4 products with M = 1 (one request's decode step) quantize the activation
///                 row to int8 and run int8_small_matmul (int8_matvec.hpp; AVX512-VNNI, 64 | N).
///                 Bound: half an activation step per value, sum_j |scale q_kj| dx_j / 2.
///   int8_batch    the same for q8/q4 products with 2 <= M <= kSmallMMax (a decode step of M
///                 requests, a prefill chunk), whose row m is then bitwise row m's own int8_decode
///                 product. Off, those run the exact streaming kernel, also faster than bf16_gemm up
///                 to kSmallMMax rows: int8 rounds each value to a step set by the largest value of
///                 its 32-block (on the random MLX fixtures 6x the logit error of bf16 rounding).
///   bf16_prefill  bf16/q8/q4 products with M > kSmallMMax run bf16_gemm (bf16_gemm.hpp;
///                 AVX512-BF16, 2 | N), both operands rounded to bf16. Bound: 2^-8 per activation
///                 (and per q8/q4 weight) of sum_j |a_j w_j|.
///   bf16_dot      bf16 products with 1 <= M <= kSmallMMax (decode steps of one or M requests,
///                 prefill chunks) round the activations to bf16 and run bf16_dot_small_matmul
///                 (bf16_dot.hpp; AVX512-BF16's vdpbf16ps, 32 | N), row m bitwise row m's own
///                 product. Bound: 2^-8 of sum_j |a_j w_j| (the activations' rounding). Off, those
///                 widen each weight to f32 (bf16_small_matmul). Measured on the 2-core Zen 4, one
///                 thread, M = 8: 9728 x 896 from memory 1.25 ms against 1.59 (M = 1: 0.67 either
///                 way); 64 x 896 from L2 5.2 us against 9.7.
/// Otherwise the product is exact: every weight is the f32 it stands for (f32, widened bf16,
/// dequantized q8/q4) times the f32 activations, and only the order of the f32 sums differs from
/// the exact product (bf16_matvec.hpp's kernels for M <= kSmallMMax, chapter 2.3's and Eigen's
/// above or where the CPU or the shape rules those out). f32 weights are always exact. (int8_batch
/// and bf16_dot come last so that the engine's KernelChoice{threads, int8_decode, bf16_prefill}
/// keeps its meaning.)
struct KernelChoice {
  int threads = 0;
  bool int8_decode = false;
  bool bf16_prefill = false;
  bool int8_batch = false;
  bool bf16_dot = false;

  /// Every product exact up to the order of the f32 sums (what `logits` compares with HF).
  static constexpr KernelChoice exact(int threads = 0) {
    return {threads, false, false, false, false};
  }
  /// Every fast kernel: int8 activations for q8/q4 products of up to kSmallMMax rows, bf16
  /// activations for bf16 products of up to kSmallMMax rows, bf16 x bf16 GEMMs above, each within
  /// its stated bound of the exact product (the engine's default: every row of a product of up to
  /// kSmallMMax rows is then computed the same way whatever M).
  static constexpr KernelChoice fast(int threads = 0) { return {threads, true, true, true, true}; }
  /// Whether this choice computes every product exactly (up to the order of f32 sums).
  constexpr bool is_exact() const {
    return !int8_decode && !bf16_prefill && !int8_batch && !bf16_dot;
  }
  /// Whether a q8/q4 product of m rows runs with int8 activations (if the CPU and N allow).
  constexpr bool int8_rows(int64_t m) const {
    return m == 1 ? int8_decode : m <= kSmallMMax && int8_batch;
  }
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
