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
// Error against the exact product: |y_k - (W x)_k| <= sum_j |scale_kj q_kj| * dx_j / 2 (each xq
// is off by at most half a step), about 0.2-0.4% of a typical |W x| term; tests/engine checks
// that bound. 4-bit codes (two per byte, element 2i in the low nibble) are unpacked to bytes, low
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
/// int32 lane (N / 4 floats), and the exact f32 sum of each group (N / G floats).
struct Int8Activations {
  std::vector<int8_t> xq;
  std::vector<float> lane_scale;
  std::vector<float> group_sums;
};
/// N must be a multiple of 64 (InvalidArgument otherwise; the engine then uses chapter 2.3's
/// kernel).
Int8Activations quantize_activations(const float* x, int64_t n, int bits, int group_size);

/// y = W x (K values) for one activation row of N values, with `threads` OpenMP threads.
/// Requires int8_matvec_supported() and w.cols % 64 == 0 (InvalidArgument otherwise).
void int8_matvec(const float* x, const QuantizedWeights& w, float* y, int threads);

}  // namespace tinyllm::engine
