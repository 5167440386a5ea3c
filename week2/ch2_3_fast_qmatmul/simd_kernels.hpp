// Chapter 2.3, Task 2: the SIMD row kernels of the quantized matrix-vector product (used by
// quantized_matvec in fast_qmatmul.hpp). Book: book/week2/ch2_3_fast_qmatmul.md.
//   Task 2  split_even_odd, qdot_row_avx2, qdot_row_avx512
// Each kernel is compiled for its instruction set with a target attribute, whatever the build's
// -march, and is only called when the CPU has it (kernel_path.hpp). They compute what
// qdot_row_portable computes: row k of W dotted with x, sum_g scale_g * sum_j(x_j q_j) + bias_g *
// sums_g.
#pragma once

#include <cstdint>
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/todo.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define TINYLLM_TARGET(features) __attribute__((target(features)))
#else
#define TINYLLM_TARGET(features)
#endif

namespace tinyllm {

/// Task 2. The 4-bit SIMD kernels read 16 bytes (32 codes) at a time: byte i holds element 2i in
/// its low nibble and element 2i+1 in its high nibble. Rather than shuffling codes, reorder x once:
/// every chunk of 32 values x0..x31 becomes x0, x2, .., x30, x1, x3, .., x31 (even elements, then
/// odd). n is a multiple of 32.
inline std::vector<float> split_even_odd(const float* x, int64_t n) {
  TINYLLM_TODO("ch2.3", "Task 2");
}

/// Provided: sum_g biases[g] * sums[g] with four independent partial sums (one chain would wait on
/// every add).
inline float bias_dot(const float* biases, const float* sums, int64_t groups) {
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int64_t g = 0;
  for (; g + 4 <= groups; g += 4) {
    for (int i = 0; i < 4; ++i) s[i] += biases[g + i] * sums[g + i];
  }
  for (; g < groups; ++g) s[0] += biases[g] * sums[g];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/// Task 2. qdot_row_portable with AVX2 + FMA (8 floats per register). x is split_even_odd(x) for 4
/// bits and x itself for 8 bits. Widen 8 code bytes to 8 int32 lanes (_mm256_cvtepu8_epi32), take
/// the low nibbles (and 0xF) and the high ones (shift right by 4), convert to float and FMA with
/// the matching x; per group, fold the vector accumulator into a running total with the group's
/// scale. Keep at least two totals (latency).
TINYLLM_TARGET("avx2,fma")
inline float qdot_row_avx2(const QuantizedWeights& w, int64_t k, const float* x,
                           const float* sums) {
  TINYLLM_TODO("ch2.3", "Task 2");
}

/// Task 2. The same with AVX-512 (16 floats per register): 16 code bytes widen to 16 int32 lanes
/// (_mm512_cvtepu8_epi32), which hold 32 codes for 4 bits (low nibbles pair with x[0..15] of the
/// split chunk, high nibbles with x[16..31]) and 16 codes for 8 bits.
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx2,fma")
inline float qdot_row_avx512(const QuantizedWeights& w, int64_t k, const float* x,
                             const float* sums) {
  TINYLLM_TODO("ch2.3", "Task 2");
}

}  // namespace tinyllm
