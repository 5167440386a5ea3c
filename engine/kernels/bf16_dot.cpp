#include "engine/kernels/bf16_dot.hpp"

#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>
#include <vector>

#include "engine/kernels/bf16_gemm.hpp"
#include "engine/kernels/row_blocks.hpp"
#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

bool bf16_dot_supported() {
  return bf16_gemm_supported();
}

namespace {

// Activation rows per tile: up to 6, each against all four weight rows of a block (24 accumulators,
// four weight vectors and one activation vector in registers), where the dequantizing kernels keep
// two vectors per weight row and stop at 4 (row_blocks.hpp). Measured on the 2-core Zen 4 (gate/up,
// one thread): the same as tiles of 4 where M splits alike, up to 10% faster at M = 16; tiles of 8
// (two and two weight rows) 10-20% slower at M = 8.
constexpr int kMaxTile = 6;

#if defined(__x86_64__)
#define TINYLLM_BF16_DOT_TARGET TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")

// Outputs (m, k) for the MT activation rows x[0..MT) (bf16, N values apart) and the R weight rows
// k0, k0 + step, .. of w (bf16, K x N), written to y[m * ldy + k]. Per 32 columns, each weight row
// is loaded once and each activation row once, then R x MT vdpbf16ps. One accumulator per output:
// the same operations for an output whatever R and MT are. (Fully unrolled loops over R and MT:
// GCC keeps the arrays in registers.)
template <int R, int MT>
TINYLLM_BF16_DOT_TARGET void bf16_dot_tile(const uint16_t* w, int64_t n, int64_t k0, int64_t step,
                                           const uint16_t* x, float* y, int64_t ldy,
                                           bool prefetch) {
  const uint16_t* rows[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = w + (k0 + r * step) * n;
  __m512 acc[R][MT];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) acc[r][m] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < n; j += 32) {
    __m512i wv[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      wv[r] = _mm512_loadu_si512(rows[r] + j);
      detail::in_register(wv[r]);
    }
    if (prefetch) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) detail::prefetch_ahead(rows[r] + j);
    }
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) {
      __m512i xv = _mm512_loadu_si512(x + m * n + j);
      detail::in_register(xv);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        acc[r][m] = _mm512_dpbf16_ps(acc[r][m], (__m512bh)wv[r], (__m512bh)xv);
      }
    }
  }
  detail::store_sums<R, MT>(acc, y + k0, ldy, step);
}
#endif

}  // namespace

void bf16_dot_small_matmul(const float* a, int64_t m, const Bf16Weights& w, float* y, int threads) {
  const int64_t k = w.rows, n = w.cols;
  if (n % 32 != 0) {
    throw InvalidArgument("bf16_dot_small_matmul: N = " + std::to_string(n) +
                          " is not a multiple of 32");
  }
  if (!bf16_dot_supported()) {
    throw InvalidArgument("bf16_dot_small_matmul: this CPU has no AVX512-BF16");
  }
#if defined(__x86_64__)
  std::vector<uint16_t> a16(static_cast<size_t>(m * n));
  round_to_bf16(a, m * n, a16.data());
  const bool prefetch = m >= detail::kPrefetchMinRows;
  const auto f = [&](auto r, auto mt, int64_t k0, int64_t step, int64_t m0) {
    bf16_dot_tile<decltype(r)::value, decltype(mt)::value>(
        w.data.data(), n, k0, step, a16.data() + m0 * n, y + m0 * k, k, prefetch);
  };
  detail::for_row_blocks<kMaxTile>(k, m, threads, f);
#endif
}

}  // namespace tinyllm::engine
