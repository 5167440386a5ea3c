#include "engine/kernels/bf16_matvec.hpp"

#include <omp.h>

#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>

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
// 16 weights as f32: bf16 ones widened (zero-extend to 32 bits, shift into the high half), f32
// ones loaded.
TINYLLM_TARGET("avx512f,avx512bw,avx2,fma")
inline __m512 widen16(const uint16_t* p) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}
TINYLLM_TARGET("avx512f,avx512bw,avx2,fma")
inline __m512 widen16(const float* p) {
  return _mm512_loadu_ps(p);
}

// Rows k0, k0 + step, .., k0 + (R-1) step (R = 1 or 4) of W (K x n, bf16 or f32) dotted with x,
// written to y. Two accumulators per row (32 weights per step), named variables so that GCC keeps
// them in registers.
template <int R, typename T>
TINYLLM_TARGET("avx512f,avx512bw,avx2,fma")
void dense_rows(const T* data, int64_t n, int64_t k0, int64_t step, const float* x, float* y) {
  static_assert(R == 1 || R == 4);
  const int64_t s = step * n;
  const T* r0 = data + k0 * n;
  __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
  for (int64_t j = 0; j < n; j += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + j), x1 = _mm512_loadu_ps(x + j + 16);
    a0 = _mm512_fmadd_ps(widen16(r0 + j), x0, a0);
    b0 = _mm512_fmadd_ps(widen16(r0 + j + 16), x1, b0);
    if constexpr (R == 4) {
      a1 = _mm512_fmadd_ps(widen16(r0 + s + j), x0, a1);
      b1 = _mm512_fmadd_ps(widen16(r0 + s + j + 16), x1, b1);
      a2 = _mm512_fmadd_ps(widen16(r0 + 2 * s + j), x0, a2);
      b2 = _mm512_fmadd_ps(widen16(r0 + 2 * s + j + 16), x1, b2);
      a3 = _mm512_fmadd_ps(widen16(r0 + 3 * s + j), x0, a3);
      b3 = _mm512_fmadd_ps(widen16(r0 + 3 * s + j + 16), x1, b3);
    }
  }
  y[k0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));
  if constexpr (R == 4) {
    y[k0 + step] = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));
    y[k0 + 2 * step] = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));
    y[k0 + 3 * step] = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));
  }
}
#endif

// y = W x for K x n weights of type T, in blocks b of the rows b, b + Q, b + 2Q, b + 3Q with
// Q = K / 4; then the K % 4 rows left over.
template <typename T>
void dense_matvec(const char* name, const float* x, const T* data, int64_t rows, int64_t n,
                  float* y, int threads) {
  if (n % 32 != 0) {
    throw InvalidArgument(std::string(name) + ": N = " + std::to_string(n) +
                          " is not a multiple of 32");
  }
  if (!dense_matvec_supported()) {
    throw InvalidArgument(std::string(name) + ": this CPU has no AVX-512");
  }
#if defined(__x86_64__)
  const int64_t quarter = rows / 4;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < quarter; ++b) dense_rows<4>(data, n, b, quarter, x, y);
  for (int64_t k = quarter * 4; k < rows; ++k) dense_rows<1>(data, n, k, 0, x, y);
#endif
}

}  // namespace

void bf16_matvec(const float* x, const Bf16Weights& w, float* y, int threads) {
  dense_matvec("bf16_matvec", x, w.data.data(), w.rows, w.cols, y, threads);
}

void f32_matvec(const float* x, const Tensor& w, float* y, int threads) {
  if (w.ndim() != 2)
    throw ShapeError("f32_matvec: W must be 2-D, got " + shape_to_string(w.shape()));
  dense_matvec("f32_matvec", x, w.data(), w.dim(0), w.dim(1), y, threads);
}

}  // namespace tinyllm::engine
