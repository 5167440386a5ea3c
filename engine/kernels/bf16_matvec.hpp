// The engine's exact streaming kernels: y = a W^T for a few activation rows (decode: M = 1 for one
// request, M = R for R requests decoded together), exact in a. Each weight is turned into the f32
// it stands for and multiplied with the f32 activations by FMAs:
//
//   f32   loaded
//   bf16  widened (a shift or a mask: the f32 whose top 16 bits are the bf16, exact), as chapter
//         2.3's bf16_dot_row_avx512 does
//   q8/q4 dequantized, w = q * scale + bias of its group (one f32 FMA, as chapter 2.2's
//         dequantize: the weight the checkpoint stands for up to one f32 rounding)
//
// What differs from chapter 2.3 is the order of the work (row_blocks.hpp): four weight rows at a
// time, a quarter of the matrix apart, each turned into f32 once per call and multiplied with all M
// activation rows while it is in registers (tiles of up to four activation rows; the second and
// later tiles find the four rows in L1/L2). Decode reads each weight once per call, for one request
// or sixteen. Per output, one f32 accumulator of 16 lanes sums N/16 products (two FMAs per 32
// columns), then the lanes are added: the result differs from the exact sum by float summation
// only, |y - (a W^T)| <= gamma_{N/16 + 5} * sum_j |a_j| |w_j| (gamma_n = n u / (1 - n u), u =
// 2^-24), plus for q8/q4 the weight's own rounding u * sum_j |a_j| (|q_j scale| + |bias|). Row m of
// an M-row product is bitwise the M = 1 product of row m.
#pragma once

#include <cstdint>

#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>

#include "tinyllm/tensor.hpp"

namespace tinyllm::engine {

/// Whether this CPU runs the kernels (AVX-512 F/BW).
bool dense_matvec_supported();

/// y = a W^T for M rows of activations: a is M x N (row-major), y is M x K (row-major), with
/// `threads` OpenMP threads. Requires dense_matvec_supported() and w.cols % 32 == 0
/// (InvalidArgument otherwise). Any M >= 1; the engine uses it for M <= kSmallMMax
/// (weight_matrix.hpp).
void bf16_small_matmul(const float* a, int64_t m, const Bf16Weights& w, float* y, int threads);
/// The same for f32 weights (K x N; ShapeError unless 2-D): exact, like Eigen's product.
void f32_small_matmul(const float* a, int64_t m, const Tensor& w, float* y, int threads);
/// The same for q8/q4 weights (MLX affine groups, any group size of chapter 2.2: 32 | N), each
/// group dequantized once per call: the exact product (chapter 2.2's quantized_matmul up to the
/// order of the f32 sums).
void dequant_small_matmul(const float* a, int64_t m, const QuantizedWeights& w, float* y,
                          int threads);

/// y = W x (K values) for x of N values: bf16_small_matmul with M = 1.
void bf16_matvec(const float* x, const Bf16Weights& w, float* y, int threads);
/// The same for f32 weights: f32_small_matmul with M = 1.
void f32_matvec(const float* x, const Tensor& w, float* y, int threads);

}  // namespace tinyllm::engine
