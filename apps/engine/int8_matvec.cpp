#include "int8_matvec.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

bool int8_matvec_supported() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

namespace {

void check_columns(int64_t n) {
  if (n % 64 != 0) {
    throw InvalidArgument("int8_matvec: N = " + std::to_string(n) + " is not a multiple of 64");
  }
}

// Where element e (0..63) of a 64-element chunk sits in kernel order.
int64_t kernel_position(int bits, int64_t e) {
  return bits == 8 ? e : (e % 2) * 32 + e / 2;
}

}  // namespace

Int8Activations quantize_activations(const float* x, int64_t n, int bits, int group_size) {
  check_columns(n);
  Int8Activations a{std::vector<int8_t>(static_cast<size_t>(n)),
                    std::vector<float>(static_cast<size_t>(n / 4)),
                    std::vector<float>(static_cast<size_t>(n / group_size), 0.0f)};
  for (int64_t b = 0; b < n; b += 32) {  // blocks of 32 elements, natural order
    float amax = 0.0f;
    for (int64_t j = b; j < b + 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float dx = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t j = b; j < b + 32; ++j) {
      const int64_t at = j / 64 * 64 + kernel_position(bits, j % 64);
      a.xq[static_cast<size_t>(at)] = static_cast<int8_t>(std::nearbyint(x[j] * inv));
      a.lane_scale[static_cast<size_t>(at / 4)] = dx;  // the 4 elements of a lane share a block
      a.group_sums[static_cast<size_t>(j / group_size)] += x[j];
    }
  }
  return a;
}

namespace {

#if defined(__x86_64__)
// Chunk j (64 codes) of a row as 64 unsigned bytes: 8-bit codes as they are; 4-bit codes unpacked,
// the 32 low nibbles then the 32 high ones (the order quantize_activations stores xq in).
template <int Bits>
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
inline __m512i load_codes(const uint8_t* codes, int64_t j) {
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

// One chunk of 64 codes of a row: cvt(vpdpbusd(codes, xq)) * dx * scale added to acc. With G = 32
// a chunk spans two groups, and each lane picks its group's scale (lane_group); otherwise one
// scale per chunk.
template <int Bits, bool G32>
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
inline __m512 add_chunk(__m512 acc, const uint8_t* codes, const float* scales, int group_size,
                        const Int8Activations& a, int64_t j) {
  __m512 s;
  if constexpr (G32) {
    const __m512i lane_group =
        Bits == 8 ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
                  : _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    s = _mm512_permutexvar_ps(lane_group, _mm512_maskz_loadu_ps(0x3, scales + j / 32));
  } else {
    s = _mm512_set1_ps(scales[j / group_size]);
  }
  const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), load_codes<Bits>(codes, j),
                                        _mm512_loadu_si512(a.xq.data() + j));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                         _mm512_mul_ps(_mm512_loadu_ps(a.lane_scale.data() + j / 4), s), acc);
}

// Row k of W dotted with the activations: the chunks alternate between two accumulators (FMA
// latency), then the bias terms with the exact group sums.
template <int Bits, bool G32>
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
float int8_row(const QuantizedWeights& w, int64_t k, const Int8Activations& a) {
  const int64_t n = w.cols, groups = n / w.group_size;
  const uint8_t* codes = reinterpret_cast<const uint8_t*>(w.packed.data()) + k * (n * Bits / 8);
  const float* scales = w.scales.data() + k * groups;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 128 <= n; j += 128) {
    acc0 = add_chunk<Bits, G32>(acc0, codes, scales, w.group_size, a, j);
    acc1 = add_chunk<Bits, G32>(acc1, codes, scales, w.group_size, a, j + 64);
  }
  if (j < n) acc0 = add_chunk<Bits, G32>(acc0, codes, scales, w.group_size, a, j);
  // The bias terms, 16 groups per FMA, folded in before the one horizontal sum.
  const float* biases = w.biases.data() + k * groups;
  __m512 acc = _mm512_add_ps(acc0, acc1);
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 m =
        groups - g >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (groups - g)) - 1u);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, biases + g),
                          _mm512_maskz_loadu_ps(m, a.group_sums.data() + g), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

using RowKernel = float (*)(const QuantizedWeights&, int64_t, const Int8Activations&);

RowKernel row_kernel(int bits, int group_size) {
  if (bits == 8) return group_size == 32 ? int8_row<8, true> : int8_row<8, false>;
  return group_size == 32 ? int8_row<4, true> : int8_row<4, false>;
}
#endif

}  // namespace

void int8_matvec(const float* x, const QuantizedWeights& w, float* y, int threads) {
  check_quantized_weights(w);
  check_columns(w.cols);
  if (!int8_matvec_supported()) throw InvalidArgument("int8_matvec: this CPU has no AVX512-VNNI");
#if defined(__x86_64__)
  const Int8Activations a = quantize_activations(x, w.cols, w.bits, w.group_size);
  const RowKernel row = row_kernel(w.bits, w.group_size);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t k = 0; k < w.rows; ++k) y[k] = row(w, k, a);
#endif
}

}  // namespace tinyllm::engine
