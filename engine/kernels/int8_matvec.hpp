// The engine's decode kernel for quantized weights: y = W x with x quantized to int8, as llama.cpp
// does for Q8_0/Q4_0. Chapter 2.3's quantized_matvec converts every code to float and multiplies
// in f32 (a convert and an FMA per weight: on two Zen 4 cores that, not memory, is the limit).
// Here the activation row is quantized once per call to int8 in blocks of 32 (symmetric: x ~= dx *
// xq, |xq| <= 127, dx = max|x| / 127), and 64 codes at a time are multiplied with 64 int8
// activations by one AVX512-VNNI vpdpbusd (unsigned codes times signed activations, summed in
// fours into 16 int32 lanes). Per lane: dot * dx * scale; the bias term uses the exact f32 group
// sums of x, as chapter 2.3 does:
//
//   y_k = sum_g scale_kg * sum_blocks dx_b * sum_j q_kj xq_j  +  bias_kg * sum_{j in g} x_j
//
// For M activation rows (M requests decoded together), each row is quantized on its own and every
// chunk of codes, once loaded, is multiplied with all M rows (row_blocks.hpp: four weight rows a
// quarter of the matrix apart, tiles of up to four activation rows); row m of an M-row product is
// bitwise the M = 1 product of row m.
//
// Bound (derived; tests/engine/kernel_bounds_test.cpp checks it on random inputs): against the
// exact product y* = sum_j x_j w_kj (w_kj = scale q_kj + bias, dequant_small_matmul), per output
//
//   |y_k - y*_k| <= sum_j |scale_g(j) q_kj| dx_j / 2                        (activation rounding)
//                 + 2 gamma_L sum_j (|scale q_kj| (|x_j| + dx_j / 2) + |bias_g(j)| |x_j|)   (f32)
//
// with dx_j = max|x| / 127 over the 32-block of j, gamma_L = L u / (1 - L u), u = 2^-24,
// L = N/16 + G + 8. Why: x_j - dx_j xq_j is at most dx_j / 2 (round to nearest; xq is never
// clamped since |x_j| / dx_j <= 127), and the bias half uses x itself, so the error of the
// products is sum_j scale q_kj (dx_j xq_j - x_j); the integer dot products are exact (int32), and
// the f32 work of each kernel is a sum of at most L rounded steps over terms bounded as written
// (N/64 chunk FMAs, N/(16 G) bias FMAs and 4 lane additions per lane for this kernel, plus a
// group sum of G terms; N/16 FMAs, 4 lane additions and the dequantizing FMA for the exact one).
// The first term is about (max|x| / 254) / mean|x| of sum_j |scale q x|: 0.2-0.4% of the sum of
// the absolute terms for activations like a transformer's; the second is below 1e-5 of it.
//
// 4-bit codes (two per byte, element 2i in the low nibble) are unpacked to bytes, low
// nibbles then high ones, so xq is stored in that order too: each chunk of 64 activations as its
// 32 even elements then its 32 odd ones.
#pragma once

#include <cstdint>
#include <vector>

#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>

namespace tinyllm::engine {

/// Whether this CPU runs the kernel (AVX-512 F/BW/VL and VNNI).
bool int8_matvec_supported();

/// x quantized for one weight layout (bits, group size): N int8 values in kernel order, one dx per
/// int32 lane (N / 4 floats), and the exact f32 sum of each group (N / G floats); for M rows, each
/// part holds the rows one after the other.
struct Int8Activations {
  std::vector<int8_t> xq;
  std::vector<float> lane_scale;
  std::vector<float> group_sums;
};
/// N must be a multiple of 64 (InvalidArgument otherwise; the engine then uses the exact kernel).
Int8Activations quantize_activations(const float* x, int64_t n, int bits, int group_size);
/// The same for M rows of N values (x row-major, M x N).
Int8Activations quantize_activation_rows(const float* x, int64_t m, int64_t n, int bits,
                                         int group_size);

/// y = a W^T for M rows of activations: a is M x N (row-major), y is M x K (row-major), with
/// `threads` OpenMP threads. Requires int8_matvec_supported() and w.cols % 64 == 0
/// (InvalidArgument otherwise). Any M >= 1; the engine uses it for M <= kSmallMMax
/// (weight_matrix.hpp) when KernelChoice::int8_decode.
void int8_small_matmul(const float* a, int64_t m, const QuantizedWeights& w, float* y, int threads);
/// y = W x (K values) for one activation row of N values: int8_small_matmul with M = 1.
void int8_matvec(const float* x, const QuantizedWeights& w, float* y, int threads);

}  // namespace tinyllm::engine
