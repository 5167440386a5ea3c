#include "engine/kernels/int8_matvec.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>

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

// The scale of each of the 16 int32 lanes of chunk j of one row: with G = 32 a chunk spans two
// groups, and each lane picks its group's scale (lane_group); otherwise one scale per chunk.
template <int Bits, bool G32>
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
inline __m512 chunk_scales(const float* scales, int group_size, int64_t j) {
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
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
inline __m512 add_chunk(__m512 acc, const uint8_t* codes, const float* scales, int group_size,
                        __m512i xq, __m512 dx, int64_t j) {
  const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), load_codes<Bits>(codes, j), xq);
  const __m512 s = chunk_scales<Bits, G32>(scales, group_size, j);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dx, s), acc);
}

// The bias terms of one row, 16 groups per FMA with the exact group sums, then the horizontal
// sum: the row's result.
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
inline float finish_row(__m512 acc, const float* biases, const float* group_sums, int64_t groups) {
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 m =
        groups - g >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (groups - g)) - 1u);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, biases + g),
                          _mm512_maskz_loadu_ps(m, group_sums + g), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// Rows k0, k0 + step, .., k0 + (R-1) step (R = 1 or 4) of W dotted with the activations, written
// to y[k0], y[k0 + step], ... The R rows share each load of the activations (64 int8 values and
// their 16 lane scales per chunk), and their R accumulators are independent FMA chains. The rows
// are a quarter of the matrix apart (step = K / 4), not adjacent: each of the R rows then reads
// one long sequential stream as k0 advances, which the hardware prefetcher follows; four adjacent
// rows (896 bytes each) would be four short streams, and decode ran at half the speed. (Named
// accumulators, not an array: GCC keeps an array of __m512 on the stack.)
template <int Bits, bool G32, int R>
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
void int8_rows(const QuantizedWeights& w, int64_t k0, int64_t step, const Int8Activations& a,
               float* y) {
  static_assert(R == 1 || R == 4);
  const int64_t n = w.cols, groups = n / w.group_size, row_bytes = n * Bits / 8;
  const int64_t code_step = step * row_bytes, group_step = step * groups;
  const int gs = w.group_size;
  const uint8_t* c = reinterpret_cast<const uint8_t*>(w.packed.data()) + k0 * row_bytes;
  const float* s = w.scales.data() + k0 * groups;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int64_t j = 0; j < n; j += 64) {
    const __m512i xq = _mm512_loadu_si512(a.xq.data() + j);
    const __m512 dx = _mm512_loadu_ps(a.lane_scale.data() + j / 4);
    acc0 = add_chunk<Bits, G32>(acc0, c, s, gs, xq, dx, j);
    if constexpr (R == 4) {
      acc1 = add_chunk<Bits, G32>(acc1, c + code_step, s + group_step, gs, xq, dx, j);
      acc2 = add_chunk<Bits, G32>(acc2, c + 2 * code_step, s + 2 * group_step, gs, xq, dx, j);
      acc3 = add_chunk<Bits, G32>(acc3, c + 3 * code_step, s + 3 * group_step, gs, xq, dx, j);
    }
  }
  const float* b = w.biases.data() + k0 * groups;
  const float* sums = a.group_sums.data();
  y[k0] = finish_row(acc0, b, sums, groups);
  if constexpr (R == 4) {
    y[k0 + step] = finish_row(acc1, b + group_step, sums, groups);
    y[k0 + 2 * step] = finish_row(acc2, b + 2 * group_step, sums, groups);
    y[k0 + 3 * step] = finish_row(acc3, b + 3 * group_step, sums, groups);
  }
}

constexpr int64_t kRowsPerBlock = 4;

using RowsKernel = void (*)(const QuantizedWeights&, int64_t, int64_t, const Int8Activations&,
                            float*);

// The kernel for blocks of R rows (R = kRowsPerBlock, or 1 for the rows left over).
template <int R>
RowsKernel rows_kernel(int bits, int group_size) {
  if (bits == 8) return group_size == 32 ? int8_rows<8, true, R> : int8_rows<8, false, R>;
  return group_size == 32 ? int8_rows<4, true, R> : int8_rows<4, false, R>;
}
#endif

}  // namespace

void int8_matvec(const float* x, const QuantizedWeights& w, float* y, int threads) {
  check_quantized_weights(w);
  check_columns(w.cols);
  if (!int8_matvec_supported()) throw InvalidArgument("int8_matvec: this CPU has no AVX512-VNNI");
#if defined(__x86_64__)
  const Int8Activations a = quantize_activations(x, w.cols, w.bits, w.group_size);
  const RowsKernel block = rows_kernel<kRowsPerBlock>(w.bits, w.group_size);
  const RowsKernel single = rows_kernel<1>(w.bits, w.group_size);
  // Block b: rows b, b + Q, b + 2Q, b + 3Q with Q = K / 4; then the K % 4 rows left over.
  const int64_t quarter = w.rows / kRowsPerBlock;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < quarter; ++b) block(w, b, quarter, a, y);
  for (int64_t k = quarter * kRowsPerBlock; k < w.rows; ++k) single(w, k, 0, a, y);
#endif
}

}  // namespace tinyllm::engine
