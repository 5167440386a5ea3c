// The engine's fast streaming kernel for bf16 weights: y = a W^T for a few activation rows (decode:
// M = 1 for one request, M = R for R requests decoded together; prefill chunks of up to
// kSmallMMax rows), with the activations rounded to bf16 and multiplied with the stored bf16
// weights by AVX512-BF16's vdpbf16ps: 32 products per instruction into 16 f32 sums, where the
// exact kernel (bf16_small_matmul, bf16_matvec.hpp) widens every weight and runs two f32 FMAs. At
// M = 8 the exact kernel is bound by its multiplies (8 x 2 x 494M flops per step of Qwen2-0.5B on
// two cores), this one by half as many instructions and no widening.
//
//   a: M x N f32 -> rounded to bf16 once per call, nearest even (bf16_gemm.hpp's round_to_bf16)
//   W: K x N bf16 as stored: element pair (2i, 2i + 1) of 32 columns is lane i of a 64-byte load,
//      which is what vdpbf16ps multiplies with the activations' pair (2i, 2i + 1)
//
// The order of work is the other streaming kernels' (row_blocks.hpp): four weight rows a quarter of
// the matrix apart, each read from memory once per call and multiplied with all M activation rows
// in tiles of up to six; per output one accumulator of 16 lanes (each lane adds its N/16
// products, two per vdpbf16ps), then the 16 lanes are added by reduce4. Row m of an M-row product
// is bitwise the M = 1 product of row m.
//
// Bound (derived; tests/engine/kernel_bounds_test.cpp checks it on random inputs): against the
// exact kernel's result y_e (bf16_small_matmul, itself within gamma_{N/16 + 5} S of the exact
// y* = sum_j a_j w_j, w_j the widened bf16 weight, S = sum_j |a_j w_j|), per output
//
//   |y - y_e| <= 2^-8 S  +  2.01 gamma_{N/16 + 5} S  +  2^-124 (N + 8 + sum_j |w_j|)
//
// with gamma_n = n u / (1 - n u), u = 2^-24. Why: bf16(a_j) = a_j (1 + d_j) with |d_j| <= 2^-8
// (round to nearest with 8 significant bits), so the rounded operands' exact product p* is within
// 2^-8 S of y*; a product of two bf16 values has at most 16 significant bits, exact in f32; each
// term reaches the result through at most N/16 rounded additions in its lane (at most two per
// vdpbf16ps, to nearest even) and 4 in the lane sum, so |y - p*| <= gamma_{N/16 + 4} (1 + 2^-8) S;
// add y_e's own error. vdpbf16ps and the rounding flush subnormals: each input a_j below 2^-126
// loses |a_j w_j| < 2^-126 |w_j|, each of the N products and N + 15 additions flushed < 2^-126
// (the last term, with room for their propagation: nothing at a model's scales). So at most about
// 0.4% of S, the activations' own rounding, as in bf16_gemm (whose weights are bf16 too).
#pragma once

#include <cstdint>

#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>

namespace tinyllm::engine {

/// Whether this CPU runs the kernel (AVX-512 F/BW/VL and AVX512-BF16: bf16_gemm_supported()).
bool bf16_dot_supported();

/// y = a W^T for M rows of activations rounded to bf16: a is M x N (row-major), y is M x K
/// (row-major), with `threads` OpenMP threads. Requires bf16_dot_supported() and w.cols % 32 == 0
/// (InvalidArgument otherwise). Any M >= 1; the engine uses it for M <= kSmallMMax
/// (weight_matrix.hpp) when KernelChoice::bf16_dot.
void bf16_dot_small_matmul(const float* a, int64_t m, const Bf16Weights& w, float* y, int threads);

}  // namespace tinyllm::engine
