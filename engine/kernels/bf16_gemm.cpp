#include "engine/kernels/bf16_gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tinyllm/dtype.hpp"
#include "tinyllm/errors.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tinyllm::engine {

bool bf16_gemm_supported() {
  // Asked once: the engine checks it before every product.
  static const bool supported = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
  }();
  return supported;
}

#if defined(__x86_64__)
// 32 values per vcvtne2ps2bf16, the last (n % 32) through masked loads and a masked store: every
// value rounded by the same instruction (it flushes subnormals, which f32_to_bf16 keeps).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void round_to_bf16(const float* x,
                                                                                   int64_t n,
                                                                                   uint16_t* out) {
  for (int64_t j = 0; j < n; j += 32) {
    const int64_t left = std::min<int64_t>(n - j, 32);
    const auto lo = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
    const auto hi = static_cast<__mmask16>(left <= 16 ? 0u : (1u << (left - 16)) - 1u);
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + j + 16),
                                           _mm512_maskz_loadu_ps(lo, x + j));
    const auto all = static_cast<__mmask32>(left == 32 ? 0xFFFFFFFFu : (1u << left) - 1u);
    _mm512_mask_storeu_epi16(out + j, all, (__m512i)v);
  }
}
#else
void round_to_bf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = f32_to_bf16(x[j]);
}
#endif

namespace {

constexpr int64_t kPanel = 32;  // weight rows per packed panel (two zmm of 16 lanes)
constexpr int kRows = 8;        // activation rows per micro-kernel call

#if defined(__x86_64__)
// C rows [m, m + Mr) x columns [k0, k0 + cols) += A rows times the packed panel. a32: A in bf16,
// read as one uint32 per column pair; panel: N/2 pairs x 32 rows x 2 values.
template <int Mr>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void micro_kernel(
    const uint32_t* a32, int64_t half_n, const uint16_t* panel, float* c, int64_t ldc,
    int64_t cols) {
  __m512 acc[Mr][2];
  for (int i = 0; i < Mr; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < half_n; ++p) {
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(panel + p * 2 * kPanel);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(panel + p * 2 * kPanel + 32);
    for (int i = 0; i < Mr; ++i) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(a32[i * half_n + p]));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], w0, x);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], w1, x);
    }
  }
  const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1u);
  const __mmask16 m1 = cols >= 32   ? 0xFFFF
                       : cols <= 16 ? 0
                                    : static_cast<__mmask16>((1u << (cols - 16)) - 1u);
  for (int i = 0; i < Mr; ++i) {
    _mm512_mask_storeu_ps(c + i * ldc, m0, acc[i][0]);
    _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc[i][1]);
  }
}

using MicroKernel = void (*)(const uint32_t*, int64_t, const uint16_t*, float*, int64_t, int64_t);
constexpr MicroKernel kKernels[kRows] = {micro_kernel<1>, micro_kernel<2>, micro_kernel<3>,
                                         micro_kernel<4>, micro_kernel<5>, micro_kernel<6>,
                                         micro_kernel<7>, micro_kernel<8>};
#endif

}  // namespace

Tensor bf16_gemm(const Tensor& a, int64_t k, const WeightRows& rows, int threads) {
  const int64_t M = a.dim(0), N = a.dim(1);
  if (!bf16_gemm_supported() || N % 2 != 0) {
    throw InvalidArgument("bf16_gemm: needs AVX512-BF16 and an even N, got N = " +
                          std::to_string(N));
  }
  Tensor out({M, k});
#if defined(__x86_64__)
  std::vector<uint16_t> a16(static_cast<size_t>(M * N));
  round_to_bf16(a.data(), M * N, a16.data());
  const auto* a32 = reinterpret_cast<const uint32_t*>(a16.data());
  const int64_t panels = (k + kPanel - 1) / kPanel, half_n = N / 2;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> f32(static_cast<size_t>(kPanel * N));
    std::vector<uint16_t> row16(static_cast<size_t>(kPanel * N)), packed(row16.size());
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t k0 = p * kPanel, count = std::min(kPanel, k - k0);
      std::fill(f32.begin(), f32.end(), 0.0f);
      rows(k0, count, f32.data());
      // Row r's pair (n, n+1) is one uint32 of its bf16 row: the packing transposes 32 x N/2 pairs.
      round_to_bf16(f32.data(), kPanel * N, row16.data());
      const auto* src = reinterpret_cast<const uint32_t*>(row16.data());
      auto* dst = reinterpret_cast<uint32_t*>(packed.data());
      for (int64_t r = 0; r < kPanel; ++r) {
        for (int64_t q = 0; q < half_n; ++q) dst[q * kPanel + r] = src[r * half_n + q];
      }
      for (int64_t m = 0; m < M; m += kRows) {
        const int64_t mr = std::min<int64_t>(kRows, M - m);
        kKernels[mr - 1](a32 + m * half_n, half_n, packed.data(), out.data() + m * k + k0, k,
                         count);
      }
    }
  }
#endif
  return out;
}

}  // namespace tinyllm::engine
