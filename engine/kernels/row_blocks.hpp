// The order of work shared by the engine's streaming kernels (bf16_matvec.cpp for f32/bf16/
// dequantized weights, int8_matvec.cpp for int8 activations, bf16_dot.cpp for bf16 activations):
// y = a W^T for M activation rows (M = 1 for one request's decode step, M = R for R requests
// decoded together), each weight read from memory once per call whatever M is.
//
//   Rows of W: four at a time, a quarter of the matrix apart (rows b, b + Q, b + 2Q, b + 3Q with
//   Q = K / 4, block b), so that each of the four is one long sequential stream of weights as b
//   advances, which the hardware prefetcher follows (four adjacent rows would be four short
//   streams: decode ran at half the speed); OpenMP threads take contiguous ranges of blocks; the
//   K % 4 rows left over follow one at a time.
//   Rows of a: in tiles of at most 4, 6 or 8 rows (M split into near-equal tiles; the kernel picks
//   the limit); a block of four weight rows is multiplied with every tile in turn (the first tile
//   reads the four rows from memory, the others from L1/L2), all four rows at once for tiles of up
//   to 4 rows, two and two for tiles of 5-8, so that the accumulators (at most 16) stay in
//   registers. Tiles of 8 turn each weight into f32 (or unpack its codes) half as often as two
//   tiles of 4, but load each activation vector for two weight rows instead of four: the better
//   trade for the quantized kernels, whose weights cost more to unpack, and the worse for bf16.
//   Limit 6: all four rows at once for every tile (24 accumulators), for the bf16 x bf16 kernel
//   (bf16_dot.cpp), which holds a weight row's 32 values in one register.
//
// Every kernel computes one output (m, k) with the same sequence of f32 operations whatever the
// tile, the block size, M or the thread count: row m of an M-row product is bitwise the product of
// row m alone (a batch of requests gets exactly each request's own decode).
#pragma once

#include <omp.h>

#include <cstdint>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>
#include <type_traits>
#include <utility>

namespace tinyllm::engine::detail {

constexpr int kRowsPerBlock = 4;  // weight rows per pass, a quarter of the matrix apart

// With M >= kPrefetchMinRows activation rows, the kernels are busy multiplying long enough that
// the hardware prefetcher falls behind: they ask for each row's weights kPrefetchBytes ahead
// themselves (measured on gate/up, bf16, one thread: M = 8 1.9 -> 1.65 ms). With fewer rows the
// hardware prefetcher alone is faster (M = 1: 0.70 ms, 0.78 with the software prefetches).
constexpr int64_t kPrefetchMinRows = 3;
constexpr int64_t kPrefetchBytes = 1024;
inline void prefetch_ahead(const void* p) {
  __builtin_prefetch(static_cast<const char*>(p) + kPrefetchBytes);
}

// Keeps v (a vector) in a register: GCC would otherwise fold the load of a vector into each
// instruction that uses it (a weight vector used by MT activation rows, an activation vector by R
// weight rows: R or MT loads instead of one), and loads, not FMAs, became the limit.
template <class V>
inline __attribute__((always_inline)) void in_register(V& v) {
  asm("" : "+v"(v));
}

#if defined(__x86_64__)
// The sums of the 16 lanes of a, b, c and d, as lanes 0-3 of the result: about 3 instructions
// per sum where _mm512_reduce_add_ps takes 8 (with N = 896, a twelfth of a decode product's work
// was the reductions). Each sum is the same tree of additions whichever slot its vector is in:
// lane i + lane i + 8, then the pairs 4, 2 and 1 apart.
TINYLLM_TARGET("avx512f")
inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  // Quarter q holds 4 partial sums of a, b, c, d (q = 0..3).
  const __m512 abcd = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 t = _mm512_add_ps(abcd, _mm512_permute_ps(abcd, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, u));
}

// Writes the lane sums of the R x MT accumulators acc[r][m] to y[m * ldy + r * step], four at a
// time (reduce4).
template <int R, int MT>
TINYLLM_TARGET("avx512f")
inline void store_sums(const __m512 (&acc)[R][MT], float* y, int64_t ldy, int64_t step) {
  constexpr int kCount = R * MT;
#pragma GCC unroll 16
  for (int g = 0; g < kCount; g += 4) {
    __m512 v[4];
#pragma GCC unroll 16
    for (int l = 0; l < 4; ++l) {
      v[l] = g + l < kCount ? acc[(g + l) / MT][(g + l) % MT] : _mm512_setzero_ps();
    }
    alignas(16) float sums[4];
    _mm_store_ps(sums, reduce4(v[0], v[1], v[2], v[3]));
#pragma GCC unroll 16
    for (int l = 0; l < 4; ++l) {
      if (g + l < kCount) y[(g + l) % MT * ldy + (g + l) / MT * step] = sums[l];
    }
  }
}
#endif

template <int V>
using Const = std::integral_constant<int, V>;

// tile(Const<R>, Const<MT>, k0, step, m0) computes outputs (m0 .. m0 + MT - 1) x (k0, k0 + step,
// .., k0 + (R-1) step) with R x MT accumulators in registers: R = 4 for MT <= 4, R = 2 for
// 5 <= MT <= 8 (at most 16 accumulators; R = 4 for every MT with MaxTile 6: at most 24), R = 1 for
// the rows left over.

// Calls f(Const<mt>{}) for 1 <= mt <= Max.
template <int Max, class F, int... I>
void with_tile(int64_t mt, const F& f, std::integer_sequence<int, I...> = {}) {
  if constexpr (sizeof...(I) == 0) {
    with_tile<Max>(mt, f, std::make_integer_sequence<int, Max>{});
  } else {
    ((mt == I + 1 ? (f(Const<I + 1>{}), true) : false) || ...);
  }
}

// Activation rows [m0, m0 + MT) against the block of four weight rows k0, k0 + step, ..: the four
// at once for MT <= 4 (and for every tile of MaxTile = 6), two and two above.
template <int MT, int MaxTile, class Tile>
void block_tile(const Tile& tile, int64_t k0, int64_t step, int64_t m0) {
  if constexpr (MT <= 4 || MaxTile == 6) {
    tile(Const<4>{}, Const<MT>{}, k0, step, m0);
  } else {
    tile(Const<2>{}, Const<MT>{}, k0, step, m0);
    tile(Const<2>{}, Const<MT>{}, k0 + 2 * step, step, m0);
  }
}

// Runs `tile` over all K rows of W (in blocks of four a quarter apart, then the rows left over) and
// all M rows of a (in near-equal tiles of at most MaxTile = 4, 6 or 8), with `threads` OpenMP
// threads over the blocks.
template <int MaxTile, class Tile>
void for_row_blocks(int64_t k, int64_t m, int threads, const Tile& tile) {
  static_assert(MaxTile == 4 || MaxTile == 6 || MaxTile == 8);
  const int64_t quarter = k / kRowsPerBlock, tiles = (m + MaxTile - 1) / MaxTile;
  // f(m0, Const<mt>{}) for each tile [m0, m0 + mt) of the activation rows.
  const auto each_tile = [&](const auto& f) {
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t m0 = t * m / tiles;
      with_tile<MaxTile>((t + 1) * m / tiles - m0, [&](auto mt) { f(m0, mt); });
    }
  };
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < quarter; ++b) {
    each_tile([&](int64_t m0, auto mt) {
      block_tile<decltype(mt)::value, MaxTile>(tile, b, quarter, m0);
    });
  }
  for (int64_t row = quarter * kRowsPerBlock; row < k; ++row) {
    each_tile([&](int64_t m0, auto mt) { tile(Const<1>{}, mt, row, 0, m0); });
  }
}

}  // namespace tinyllm::engine::detail
