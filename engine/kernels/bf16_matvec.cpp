#include "engine/kernels/bf16_matvec.hpp"

#include <omp.h>

#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/fast_qmatmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>
#include <type_traits>
#include <vector>

#include "engine/kernels/row_blocks.hpp"
#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

bool dense_matvec_supported() {
  // Asked once: the engine checks it before every decode product.
  static const bool supported = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
  }();
  return supported;
}

namespace {

#if defined(__x86_64__)
#define TINYLLM_DENSE_TARGET TINYLLM_TARGET("avx512f,avx512bw,avx2,fma")

// Weight sources: 32 weights of one row from column j as two vectors of 16 f32, w0 for the
// activations at kernel positions [j, j + 16) and w1 for [j + 16, j + 32). Kernel order is the
// natural order, or with kSplit every chunk of 32 activations as its 16 even elements then its 16
// odd ones (chapter 2.3's split_even_odd): the order in which bf16 pairs and 4-bit nibbles unpack.
// row(k) gives the source's cursor for row k; its prefetch(j) asks for the weights
// detail::kPrefetchBytes ahead of column j in the row's stream.

// f32 (T = float): loaded. bf16 (T = uint16_t): 32 values are 16 uint32 lanes, element 2i in the
// low half of lane i and 2i + 1 in the high half; the f32 of a bf16 is its bits in the high half,
// so even elements are a shift away and odd ones a mask away.
template <typename T>
struct DenseRows {
  static constexpr bool kSplit = std::is_same_v<T, uint16_t>;
  static constexpr int kMaxTile = 4;
  const T* data;
  int64_t n;
  struct Row {
    const T* p;
    TINYLLM_DENSE_TARGET void load(int64_t j, __m512& w0, __m512& w1) const {
      if constexpr (kSplit) {
        __m512 v = _mm512_loadu_ps(p + j);  // 32 bf16
        detail::in_register(v);
        const __m512i bits = _mm512_castps_si512(v);
        w0 = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
        w1 = _mm512_castsi512_ps(
            _mm512_and_si512(bits, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
      } else {
        w0 = _mm512_loadu_ps(p + j);
        w1 = _mm512_loadu_ps(p + j + 16);
        detail::in_register(w0);
        detail::in_register(w1);
      }
    }
    void prefetch(int64_t j) const {
      detail::prefetch_ahead(p + j);
      if constexpr (!kSplit) detail::prefetch_ahead(p + j + 16);  // 128 bytes of f32
    }
  };
  Row row(int64_t k) const { return {data + k * n}; }
};

// q8/q4 (MLX affine): codes widened to int32, converted, and w = q * scale + bias of their group
// (32 | G, so the 32 weights share one group). 8-bit codes are one byte each in order; 4-bit codes
// two per byte, element 2i in the low nibble: 16 bytes give the even elements (low nibbles) and
// the odd ones (high nibbles).
template <int Bits>
struct DequantRows {
  static constexpr bool kSplit = Bits == 4;
  static constexpr int kMaxTile = 8;
  const uint8_t* codes;
  const float* scales;
  const float* biases;
  int64_t row_bytes, groups;
  int group_shift;  // log2(G)
  struct Row {
    const uint8_t* c;
    const float* s;
    const float* b;
    int group_shift;
    TINYLLM_DENSE_TARGET void load(int64_t j, __m512& w0, __m512& w1) const {
      const __m512 scale = _mm512_set1_ps(s[j >> group_shift]);
      const __m512 bias = _mm512_set1_ps(b[j >> group_shift]);
      __m512i q0, q1;
      if constexpr (Bits == 8) {
        q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + j)));
        q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + j + 16)));
      } else {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + j / 2)));
        q0 = _mm512_and_si512(v, _mm512_set1_epi32(0xF));
        q1 = _mm512_srli_epi32(v, 4);
      }
      w0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q0), scale, bias);
      w1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q1), scale, bias);
    }
    void prefetch(int64_t j) const { detail::prefetch_ahead(c + j * Bits / 8); }
  };
  Row row(int64_t k) const {
    return {codes + k * row_bytes, scales + k * groups, biases + k * groups, group_shift};
  }
};

// Every chunk of 32 values of x (count values, 32 | count) as its 16 even elements then its 16
// odd ones: chapter 2.3's split_even_odd, two permutes per chunk.
TINYLLM_DENSE_TARGET void split_even_odd_rows(const float* x, int64_t count, float* out) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t i = 0; i < count; i += 32) {
    const __m512 lo = _mm512_loadu_ps(x + i), hi = _mm512_loadu_ps(x + i + 16);
    _mm512_storeu_ps(out + i, _mm512_permutex2var_ps(lo, even, hi));
    _mm512_storeu_ps(out + i + 16, _mm512_permutex2var_ps(lo, odd, hi));
  }
}

// Outputs (m, k) for the MT activation rows x[0..MT) (N values apart, kernel order) and the R
// weight rows k0, k0 + step, .., written to y[m * ldy + k]. One accumulator per output (two FMAs
// per 32 columns into it, then the sum of its lanes): the same operations for an output whatever R
// and MT are. (Fully unrolled loops over R and MT: GCC keeps the arrays in registers.)
template <int R, int MT, class Rows>
TINYLLM_DENSE_TARGET void dense_tile(const Rows& w, int64_t n, int64_t k0, int64_t step,
                                     const float* x, float* y, int64_t ldy, bool prefetch) {
  typename Rows::Row rows[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = w.row(k0 + r * step);
  __m512 acc[R][MT];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) acc[r][m] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < n; j += 32) {
    __m512 w0[R], w1[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) rows[r].load(j, w0[r], w1[r]);
    if (prefetch) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) rows[r].prefetch(j);
    }
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) {
      __m512 x0 = _mm512_loadu_ps(x + m * n + j), x1 = _mm512_loadu_ps(x + m * n + j + 16);
      detail::in_register(x0);
      detail::in_register(x1);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        acc[r][m] = _mm512_fmadd_ps(w0[r], x0, acc[r][m]);
        acc[r][m] = _mm512_fmadd_ps(w1[r], x1, acc[r][m]);
      }
    }
  }
  detail::store_sums<R, MT>(acc, y + k0, ldy, step);
}

// y = a W^T for M rows of a (M x n) and K x n weights given by `w` (row_blocks.hpp's order).
template <class Rows>
void dense_small_matmul(const char* name, const float* a, int64_t m, const Rows& w, int64_t k,
                        int64_t n, float* y, int threads) {
  if (n % 32 != 0) {
    throw InvalidArgument(std::string(name) + ": N = " + std::to_string(n) +
                          " is not a multiple of 32");
  }
  if (!dense_matvec_supported()) {
    throw InvalidArgument(std::string(name) + ": this CPU has no AVX-512");
  }
  std::vector<float> split;
  if constexpr (Rows::kSplit) {
    split.resize(static_cast<size_t>(m * n));
    split_even_odd_rows(a, m * n, split.data());
    a = split.data();
  }
  const bool prefetch = m >= detail::kPrefetchMinRows;
  detail::for_row_blocks<Rows::kMaxTile>(
      k, m, threads, [&](auto r, auto mt, int64_t k0, int64_t step, int64_t m0) {
        dense_tile<decltype(r)::value, decltype(mt)::value>(w, n, k0, step, a + m0 * n, y + m0 * k,
                                                            k, prefetch);
      });
}
#else
// Where the kernels cannot run.
[[noreturn]] void unsupported(const char* name) {
  throw InvalidArgument(std::string(name) + ": this CPU has no AVX-512");
}
#endif

}  // namespace

void bf16_small_matmul(const float* a, int64_t m, const Bf16Weights& w, float* y, int threads) {
#if defined(__x86_64__)
  dense_small_matmul("bf16_small_matmul", a, m, DenseRows<uint16_t>{w.data.data(), w.cols}, w.rows,
                     w.cols, y, threads);
#else
  unsupported("bf16_small_matmul");
#endif
}

void f32_small_matmul(const float* a, int64_t m, const Tensor& w, float* y, int threads) {
  if (w.ndim() != 2) {
    throw ShapeError("f32_small_matmul: W must be 2-D, got " + shape_to_string(w.shape()));
  }
#if defined(__x86_64__)
  dense_small_matmul("f32_small_matmul", a, m, DenseRows<float>{w.data(), w.dim(1)}, w.dim(0),
                     w.dim(1), y, threads);
#else
  unsupported("f32_small_matmul");
#endif
}

void dequant_small_matmul(const float* a, int64_t m, const QuantizedWeights& w, float* y,
                          int threads) {
  check_quantized_weights(w);
#if defined(__x86_64__)
  const auto* codes = reinterpret_cast<const uint8_t*>(w.packed.data());
  const int64_t row_bytes = w.cols * w.bits / 8, groups = w.cols / w.group_size;
  const int shift = w.group_size == 32 ? 5 : w.group_size == 64 ? 6 : 7;
  if (w.bits == 8) {
    dense_small_matmul(
        "dequant_small_matmul", a, m,
        DequantRows<8>{codes, w.scales.data(), w.biases.data(), row_bytes, groups, shift}, w.rows,
        w.cols, y, threads);
  } else {
    dense_small_matmul(
        "dequant_small_matmul", a, m,
        DequantRows<4>{codes, w.scales.data(), w.biases.data(), row_bytes, groups, shift}, w.rows,
        w.cols, y, threads);
  }
#else
  unsupported("dequant_small_matmul");
#endif
}

void bf16_matvec(const float* x, const Bf16Weights& w, float* y, int threads) {
  bf16_small_matmul(x, 1, w, y, threads);
}

void f32_matvec(const float* x, const Tensor& w, float* y, int threads) {
  f32_small_matmul(x, 1, w, y, threads);
}

}  // namespace tinyllm::engine
