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
  // SOLUTION BEGIN ch2.3 Task 2
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; c += 32) {
    for (int64_t i = 0; i < 16; ++i) {
      out[static_cast<size_t>(c + i)] = x[c + 2 * i];
      out[static_cast<size_t>(c + 16 + i)] = x[c + 2 * i + 1];
    }
  }
  return out;
  // SOLUTION END
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
  // SOLUTION BEGIN ch2.3 Task 2
#if defined(__x86_64__)
  const int64_t groups = w.cols / w.group_size;
  const auto* p = reinterpret_cast<const uint8_t*>(w.packed.data() + k * (w.cols * w.bits / 32));
  const float* scales = w.scales.data() + k * groups;
  __m256 total[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  const __m256i low = _mm256_set1_epi32(0xF);
  for (int64_t g = 0; g < groups; ++g) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    if (w.bits == 4) {
      for (int c = 0; c < w.group_size; c += 32, p += 16, x += 32) {
        for (int h = 0; h < 2;
             ++h) {  // bytes 0-7 pair with x[0..7] and x[16..23], bytes 8-15 with the next 8
          const __m256i v =
              _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
          acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, low)),
                                 _mm256_loadu_ps(x + 8 * h), acc0);
          acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)),
                                 _mm256_loadu_ps(x + 16 + 8 * h), acc1);
        }
      }
    } else {
      for (int c = 0; c < w.group_size; c += 16, p += 16, x += 16) {
        const __m256i v0 =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        const __m256i v1 =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v0), _mm256_loadu_ps(x), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v1), _mm256_loadu_ps(x + 8), acc1);
      }
    }
    total[g & 1] =
        _mm256_fmadd_ps(_mm256_set1_ps(scales[g]), _mm256_add_ps(acc0, acc1), total[g & 1]);
  }
  const __m256 t = _mm256_add_ps(total[0], total[1]);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s) + bias_dot(w.biases.data() + k * groups, sums, groups);
#else
  throw InvalidArgument("qdot_row_avx2: not an x86-64 build");
#endif
  // SOLUTION END
}

/// Task 2. The same with AVX-512 (16 floats per register): 16 code bytes widen to 16 int32 lanes
/// (_mm512_cvtepu8_epi32), which hold 32 codes for 4 bits (low nibbles pair with x[0..15] of the
/// split chunk, high nibbles with x[16..31]) and 16 codes for 8 bits.
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx2,fma")
inline float qdot_row_avx512(const QuantizedWeights& w, int64_t k, const float* x,
                             const float* sums) {
  // SOLUTION BEGIN ch2.3 Task 2
#if defined(__x86_64__)
  const int64_t groups = w.cols / w.group_size;
  const auto* p = reinterpret_cast<const uint8_t*>(w.packed.data() + k * (w.cols * w.bits / 32));
  const float* scales = w.scales.data() + k * groups;
  __m512 total[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  const __m512i low = _mm512_set1_epi32(0xF);
  for (int64_t g = 0; g < groups; ++g) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    if (w.bits == 4) {
      for (int c = 0; c < w.group_size; c += 32, p += 16, x += 32) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        acc0 =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, low)), _mm512_loadu_ps(x), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), _mm512_loadu_ps(x + 16),
                               acc1);
      }
    } else {
      for (int c = 0; c < w.group_size; c += 32, p += 32, x += 32) {
        const __m512i v0 =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        const __m512i v1 =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v0), _mm512_loadu_ps(x), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v1), _mm512_loadu_ps(x + 16), acc1);
      }
    }
    total[g & 1] =
        _mm512_fmadd_ps(_mm512_set1_ps(scales[g]), _mm512_add_ps(acc0, acc1), total[g & 1]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(total[0], total[1])) +
         bias_dot(w.biases.data() + k * groups, sums, groups);
#else
  throw InvalidArgument("qdot_row_avx512: not an x86-64 build");
#endif
  // SOLUTION END
}

}  // namespace tinyllm
