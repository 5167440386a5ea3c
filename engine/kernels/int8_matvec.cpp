#include "engine/kernels/int8_matvec.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>

#include "engine/kernels/row_blocks.hpp"
#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

bool int8_matvec_supported() {
  // Asked once: the engine checks it before every decode product.
  static const bool supported = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
  }();
  return supported;
}

namespace {

void check_columns(int64_t n) {
  if (n % 64 != 0) {
    throw InvalidArgument("int8_matvec: N = " + std::to_string(n) + " is not a multiple of 64");
  }
}

#if defined(__x86_64__)
#define TINYLLM_INT8_TARGET TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")

// One row of n activations (64 | n) quantized: per chunk of 64, the two blocks of 32 get dx =
// max|x| / 127 and xq = nearbyint(x * 127 / max|x|) (cvtps_epi32 rounds to nearest even, as
// nearbyint does), stored in kernel order: 8 bits the natural order, 4 bits the chunk's 32 even
// elements then its 32 odd ones (element e at (e % 2) * 32 + e / 2). Lane l of the chunk (kernel
// positions 4l .. 4l + 3) gets its block's dx: the upper 8 lanes for 8 bits, lanes 4-7 and 12-15
// for 4 bits. Then the f32 sum of each group of G.
template <int Bits>
TINYLLM_INT8_TARGET void quantize_row(const float* x, int64_t n, int group_size, int8_t* xq,
                                      float* lane_scale, float* group_sums) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t c = 0; c < n; c += 64) {
    __m512 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm512_loadu_ps(x + c + 16 * i);
    float dx[2], inv[2];
    for (int b = 0; b < 2; ++b) {
      const float amax =
          _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[2 * b]), _mm512_abs_ps(v[2 * b + 1])));
      dx[b] = amax / 127.0f;
      inv[b] = amax > 0.0f ? 127.0f / amax : 0.0f;
    }
    __m512i q[4];
    for (int i = 0; i < 4; ++i) {
      q[i] = _mm512_cvtps_epi32(_mm512_mul_ps(v[i], _mm512_set1_ps(inv[i / 2])));
    }
    if constexpr (Bits == 4) {
      const __m512i e0 = _mm512_permutex2var_epi32(q[0], even, q[1]);
      const __m512i e1 = _mm512_permutex2var_epi32(q[2], even, q[3]);
      const __m512i o0 = _mm512_permutex2var_epi32(q[0], odd, q[1]);
      q[3] = _mm512_permutex2var_epi32(q[2], odd, q[3]);
      q[0] = e0;
      q[1] = e1;
      q[2] = o0;
    }
    for (int i = 0; i < 4; ++i) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(xq + c + 16 * i), _mm512_cvtsepi32_epi8(q[i]));
    }
    const __mmask16 second_block = Bits == 8 ? 0xFF00 : 0xF0F0;
    _mm512_storeu_ps(lane_scale + c / 4, _mm512_mask_blend_ps(second_block, _mm512_set1_ps(dx[0]),
                                                              _mm512_set1_ps(dx[1])));
  }
  for (int64_t g = 0; g < n / group_size; ++g) {
    __m512 sum = _mm512_loadu_ps(x + g * group_size);
    for (int i = 16; i < group_size; i += 16) {
      sum = _mm512_add_ps(sum, _mm512_loadu_ps(x + g * group_size + i));
    }
    group_sums[g] = _mm512_reduce_add_ps(sum);
  }
}
#endif

}  // namespace

Int8Activations quantize_activation_rows(const float* x, int64_t m, int64_t n, int bits,
                                         int group_size) {
  check_columns(n);
  check_quantization(group_size, bits);
  if (!int8_matvec_supported()) {
    throw InvalidArgument("quantize_activations: this CPU has no AVX512-VNNI");
  }
  Int8Activations a{std::vector<int8_t>(static_cast<size_t>(m * n)),
                    std::vector<float>(static_cast<size_t>(m * n / 4)),
                    std::vector<float>(static_cast<size_t>(m * (n / group_size)))};
#if defined(__x86_64__)
  const int64_t groups = n / group_size;
  for (int64_t i = 0; i < m; ++i) {
    (bits == 8 ? quantize_row<8> : quantize_row<4>)(x + i * n, n, group_size, a.xq.data() + i * n,
                                                    a.lane_scale.data() + i * n / 4,
                                                    a.group_sums.data() + i * groups);
  }
#endif
  return a;
}

Int8Activations quantize_activations(const float* x, int64_t n, int bits, int group_size) {
  return quantize_activation_rows(x, 1, n, bits, group_size);
}

namespace {

#if defined(__x86_64__)
// Chunk j (64 codes) of a row as 64 unsigned bytes: 8-bit codes as they are; 4-bit codes unpacked,
// the 32 low nibbles then the 32 high ones (the order quantize_activations stores xq in).
template <int Bits>
TINYLLM_INT8_TARGET inline __m512i load_codes(const uint8_t* codes, int64_t j) {
  if constexpr (Bits == 8) {
    return _mm512_loadu_si512(codes + j);
  } else {
    // The 32 bytes in both halves; the upper half shifted right by 4, then both masked.
    const __m512i both =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + j / 2)));
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(both, shift), _mm512_set1_epi8(0x0F));
  }
}

// The scale of each of the 16 int32 lanes of chunk j of one row: with G = 32 a chunk spans two
// groups, and each lane picks its group's scale (lane_group); otherwise one scale per chunk.
template <int Bits, bool G32>
TINYLLM_INT8_TARGET inline __m512 chunk_scales(const float* scales, int group_size, int64_t j) {
  if constexpr (G32) {
    const __m512i lane_group =
        Bits == 8 ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
                  : _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(lane_group, _mm512_maskz_loadu_ps(0x3, scales + j / 32));
  } else {
    return _mm512_set1_ps(scales[j / group_size]);
  }
}

// One chunk of 64 codes of one row against the shared activations xq (with lane scales dx):
// acc + cvt(vpdpbusd(codes, xq)) * dx * scale.
template <int Bits, bool G32>
TINYLLM_INT8_TARGET inline __m512 add_chunk(__m512 acc, const uint8_t* codes, const float* scales,
                                            int group_size, __m512i xq, __m512 dx, int64_t j) {
  const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), load_codes<Bits>(codes, j), xq);
  const __m512 s = chunk_scales<Bits, G32>(scales, group_size, j);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dx, s), acc);
}

// acc plus the bias terms of one row, 16 groups per FMA with the exact group sums: the lanes of the
// row's result.
TINYLLM_INT8_TARGET
inline __m512 add_biases(__m512 acc, const float* biases, const float* group_sums, int64_t groups) {
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 m =
        groups - g >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (groups - g)) - 1u);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, biases + g),
                          _mm512_maskz_loadu_ps(m, group_sums + g), acc);
  }
  return acc;
}

// Outputs (m0 + m, k) for the MT activation rows from m0 and the R weight rows k0, k0 + step, ..
// (row_blocks.hpp), written to y[(m0 + m) * K + k]. Per chunk of 64 columns, each weight row's
// codes and scales are loaded once and used for all MT activation rows, which share each load of
// their 64 int8 values and 16 lane scales across the R weight rows. One accumulator per output:
// the same operations for an output whatever R and MT are. (Fully unrolled loops over R and MT:
// GCC keeps the arrays in registers.)
template <int Bits, bool G32, int R, int MT>
TINYLLM_INT8_TARGET void int8_tile(const QuantizedWeights& w, int64_t k0, int64_t step,
                                   const Int8Activations& a, int64_t m0, float* y, bool prefetch) {
  const int64_t n = w.cols, groups = n / w.group_size, row_bytes = n * Bits / 8;
  const int64_t code_step = step * row_bytes, group_step = step * groups;
  const int gs = w.group_size;
  const uint8_t* c = reinterpret_cast<const uint8_t*>(w.packed.data()) + k0 * row_bytes;
  const float* s = w.scales.data() + k0 * groups;
  const int8_t* xq = a.xq.data() + m0 * n;
  const float* dx = a.lane_scale.data() + m0 * n / 4;
  __m512 acc[R][MT];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) acc[r][m] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < n; j += 64) {
    __m512i codes[R];
    __m512 scales[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      codes[r] = load_codes<Bits>(c + r * code_step, j);
      scales[r] = chunk_scales<Bits, G32>(s + r * group_step, gs, j);
    }
    if (prefetch) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) detail::prefetch_ahead(c + r * code_step + j * Bits / 8);
    }
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) {
      __m512i x = _mm512_loadu_si512(xq + m * n + j);
      detail::in_register(x);
      const __m512 d = _mm512_loadu_ps(dx + m * n / 4 + j / 4);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[r], x);
        acc[r][m] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, scales[r]), acc[r][m]);
      }
    }
  }
  const float* b = w.biases.data() + k0 * groups;
  const float* sums = a.group_sums.data() + m0 * groups;
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) {
      acc[r][m] = add_biases(acc[r][m], b + r * group_step, sums + m * groups, groups);
    }
  }
  detail::store_sums<R, MT>(acc, y + m0 * w.rows + k0, w.rows, step);
}

// Runs int8_tile<Bits, G32> over all rows (row_blocks.hpp).
template <int Bits, bool G32>
void int8_rows(const QuantizedWeights& w, const Int8Activations& a, int64_t m, float* y,
               int threads) {
  const bool prefetch = m >= detail::kPrefetchMinRows;
  detail::for_row_blocks<4>(w.rows, m, threads,
                            [&](auto r, auto mt, int64_t k0, int64_t step, int64_t m0) {
                              int8_tile<Bits, G32, decltype(r)::value, decltype(mt)::value>(
                                  w, k0, step, a, m0, y, prefetch);
                            });
}
#endif

}  // namespace

void int8_small_matmul(const float* a, int64_t m, const QuantizedWeights& w, float* y,
                       int threads) {
  check_quantized_weights(w);
  check_columns(w.cols);
  if (!int8_matvec_supported()) {
    throw InvalidArgument("int8_small_matmul: this CPU has no AVX512-VNNI");
  }
#if defined(__x86_64__)
  const Int8Activations q = quantize_activation_rows(a, m, w.cols, w.bits, w.group_size);
  if (w.bits == 8) {
    (w.group_size == 32 ? int8_rows<8, true> : int8_rows<8, false>)(w, q, m, y, threads);
  } else {
    (w.group_size == 32 ? int8_rows<4, true> : int8_rows<4, false>)(w, q, m, y, threads);
  }
#endif
}

void int8_matvec(const float* x, const QuantizedWeights& w, float* y, int threads) {
  int8_small_matmul(x, 1, w, y, threads);
}

}  // namespace tinyllm::engine
