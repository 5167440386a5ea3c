// The engine's prefill kernel for bf16, q8 and q4 weights: C = A W^T with both operands rounded to
// bf16 and multiplied by AVX512-BF16's vdpbf16ps (32 products per instruction into 16 f32 sums,
// twice the multiply rate of f32 FMAs), as llama.cpp and oneDNN do for bf16 models.
//
//   A: M x N f32 activations -> rounded to bf16 once per call (relative error <= 2^-9 per value)
//   W: K x N, taken 32 rows at a time as f32 (WeightMatrix::rows_f32: widened bf16 or dequantized
//      codes, exact), rounded to bf16 (exact for bf16 weights; q8/q4 values get a relative error
//      <= 2^-9 on top of their quantization) and packed pair-interleaved: for every column pair
//      (n, n+1), the 32 rows' two values side by side, so that one 64-byte load feeds 16 lanes
//   C: blocks of 8 rows x 32 columns held in 16 zmm accumulators (f32) over the whole of N
// Threads share the K panels (OpenMP, static). N must be even.
#pragma once

#include <cstdint>
#include <functional>

#include "tinyllm/tensor.hpp"

namespace tinyllm::engine {

/// Whether this CPU runs the kernel (AVX-512 F/BW/VL and AVX512-BF16).
bool bf16_gemm_supported();

/// Writes rows [k0, k0 + count) of W as count x N f32 values into out.
using WeightRows = std::function<void(int64_t k0, int64_t count, float* out)>;

/// a: M x N -> M x K = a W^T in bf16 x bf16 -> f32 arithmetic, W given by rows (K x N).
/// InvalidArgument unless bf16_gemm_supported() and N is even.
Tensor bf16_gemm(const Tensor& a, int64_t k, const WeightRows& rows, int threads);

}  // namespace tinyllm::engine
