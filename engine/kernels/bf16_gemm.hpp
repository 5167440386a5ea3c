// The engine's prefill kernel for bf16, q8 and q4 weights: C = A W^T with both operands rounded to
// bf16 and multiplied by AVX512-BF16's vdpbf16ps (32 products per instruction into 16 f32 sums,
// twice the multiply rate of f32 FMAs), as llama.cpp and oneDNN do for bf16 models.
//
//   A: M x N f32 activations -> rounded to bf16 once per call (relative error <= 2^-8 per value:
//      bf16 keeps 8 significant bits)
//   W: K x N, taken 32 rows at a time as f32 (WeightMatrix::rows_f32: widened bf16 or dequantized
//      codes, exact), rounded to bf16 (exact for bf16 weights; q8/q4 values get a relative error
//      <= 2^-8 on top of their quantization) and packed pair-interleaved: for every column pair
//      (n, n+1), the 32 rows' two values side by side, so that one 64-byte load feeds 16 lanes
//   C: blocks of 8 rows x 32 columns held in 16 zmm accumulators (f32) over the whole of N
// Threads share the K panels (OpenMP, static). N must be even. The engine runs it for M >
// kSmallMMax (weight_matrix.hpp): below, packing the weights costs more than it saves.
//
// Bound (derived; tests/engine/kernel_bounds_test.cpp checks it on random inputs): against the
// exact product y* = sum_j a_j w_j (w_j the f32 weight of rows_f32), per output
//
//   |y - y*| <= (e_a + e_w + e_a e_w) sum_j |a_j w_j|  +  1.01 gamma_{N + N/16 + 8} sum_j |a_j|
//   |w~_j|
//
// with e_a = 2^-8, e_w = 0 for bf16 weights and 2^-8 for q8/q4, gamma_n = n u / (1 - n u),
// u = 2^-24, and |w~_j| = |w_j| (|scale q_j| + |bias| for q8/q4: what the exact kernel's
// dequantizing FMA rounds against). Why: bf16(a) bf16(w) = a w (1 + d_a)(1 + d_w) with |d_a| <=
// e_a, |d_w| <= e_w, and a product of two bf16 values is exact in f32; each lane of C adds its N
// products one rounded addition at a time (vdpbf16ps adds two per instruction), <= gamma_N times
// the sum of |bf16 products| <= (1 + 2^-8)^2 sum |a w|; the exact kernel errs by its own
// gamma_{N/16 + 6} (bf16_matvec.hpp). vdpbf16ps flushes subnormals: 2^-126 per product more,
// nothing for a model's activations. So about 0.4% of sum |a w| for bf16 weights, 0.8% for q8/q4.
#pragma once

#include <cstdint>
#include <functional>

#include "tinyllm/tensor.hpp"

namespace tinyllm::engine {

/// Whether this CPU runs the kernel (AVX-512 F/BW/VL and AVX512-BF16).
bool bf16_gemm_supported();

/// Rounds n f32 values to bf16, nearest even, by vcvtne2ps2bf16 (f32_to_bf16 for finite values,
/// except that subnormals become zeros): how bf16_gemm and bf16_dot_small_matmul (bf16_dot.hpp)
/// round their activations, any n. Requires bf16_gemm_supported().
void round_to_bf16(const float* x, int64_t n, uint16_t* out);

/// Writes rows [k0, k0 + count) of W as count x N f32 values into out.
using WeightRows = std::function<void(int64_t k0, int64_t count, float* out)>;

/// a: M x N -> M x K = a W^T in bf16 x bf16 -> f32 arithmetic, W given by rows (K x N).
/// InvalidArgument unless bf16_gemm_supported() and N is even.
Tensor bf16_gemm(const Tensor& a, int64_t k, const WeightRows& rows, int threads);

}  // namespace tinyllm::engine
