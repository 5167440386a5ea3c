// Chapter 2.3, Task 4: dense bf16 weights (what real checkpoints hold), half the bytes of f32.
// Book: book/week2/ch2_3_fast_qmatmul.md.
//   Task 4  bf16_dot_row_portable, bf16_dot_row_avx512, bf16_dot_row_avx512bf16, bf16_matmul
// A bf16 value is the top 16 bits of an f32, so widening is a shift: f32 bits = bf16 bits << 16
// (exact).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <tinyllm/ch2_3_fast_qmatmul/fast_qmatmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/kernel_path.hpp>
#include <vector>

#include "tinyllm/dtype.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// A K x N weight stored as bf16 bit patterns, row-major.
struct Bf16Weights {
  std::vector<uint16_t> data;
  int64_t rows = 0;  // K
  int64_t cols = 0;  // N
};

/// Provided: rounds a 2-D f32 tensor to bf16 (round to nearest even).
inline Bf16Weights to_bf16(const Tensor& w) {
  if (w.ndim() != 2)
    throw ShapeError("to_bf16: expected a K x N tensor, got " + shape_to_string(w.shape()));
  Bf16Weights out{std::vector<uint16_t>(static_cast<size_t>(w.numel())), w.dim(0), w.dim(1)};
  for (int64_t i = 0; i < w.numel(); ++i)
    out.data[static_cast<size_t>(i)] = f32_to_bf16(w.data()[i]);
  return out;
}

/// Provided: a 2-D BF16 tensor of a safetensors file, bits unchanged (FormatError for another dtype
/// or rank).
inline Bf16Weights load_bf16(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo& info = file.info(name);
  if (info.dtype != DType::BF16 || info.shape.size() != 2) {
    throw FormatError(name + ": expected a 2-D BF16 tensor, got " + dtype_name(info.dtype));
  }
  Bf16Weights out{std::vector<uint16_t>(static_cast<size_t>(info.shape[0] * info.shape[1])),
                  info.shape[0], info.shape[1]};
  std::memcpy(out.data.data(), file.bytes(name).data(), out.data.size() * sizeof(uint16_t));
  return out;
}

/// Provided: one bf16 bit pattern widened to the f32 it stands for (exact).
inline float widen_bf16(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Task 4. Row k of W (bf16) dotted with x: N floats, in plain C++ (widen each weight with a 16-bit
/// shift).
inline float bf16_dot_row_portable(const Bf16Weights& w, int64_t k, const float* x) {
  // SOLUTION BEGIN ch2.3 Task 4
  const uint16_t* row = w.data.data() + k * w.cols;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int64_t j = 0;
  for (; j + 4 <= w.cols; j += 4) {
    for (int i = 0; i < 4; ++i) acc[i] += x[j + i] * widen_bf16(row[j + i]);
  }
  for (; j < w.cols; ++j) acc[0] += x[j] * widen_bf16(row[j]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
  // SOLUTION END
}

/// Task 4. The same with AVX-512 F: widen 16 weights (_mm512_cvtepu16_epi32, shift left by 16,
/// reinterpret as floats) and FMA with x in f32. The last N % 16 columns use a masked load
/// (_mm512_maskz_loadu_epi16/_ps).
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx2,fma")
inline float bf16_dot_row_avx512(const Bf16Weights& w, int64_t k, const float* x) {
  // SOLUTION BEGIN ch2.3 Task 4
#if defined(__x86_64__)
  const uint16_t* row = w.data.data() + k * w.cols;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= w.cols; j += 32) {
    const __m512i v0 =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j)));
    const __m512i v1 =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j + 16)));
    acc0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(x + j),
                           acc0);
    acc1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)),
                           _mm512_loadu_ps(x + j + 16), acc1);
  }
  for (; j < w.cols; j += 16) {
    const __mmask16 m =
        static_cast<__mmask16>(w.cols - j >= 16 ? 0xFFFF : (1u << (w.cols - j)) - 1u);
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + j));
    acc0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)),
                           _mm512_maskz_loadu_ps(m, x + j), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#else
  throw InvalidArgument("bf16_dot_row_avx512: not an x86-64 build");
#endif
  // SOLUTION END
}

/// Task 4. The same with the AVX512-BF16 dot product _mm512_dpbf16_ps, which multiplies 32 bf16
/// pairs into 16 f32 lanes per instruction. It needs x in bf16 too: pass x split in two, x_hi =
/// bf16(x) and x_lo = bf16(x - x_hi) (N values each, as bf16 bits), and accumulate both products,
/// so that x keeps ~16 bits of precision.
TINYLLM_TARGET("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")
inline float bf16_dot_row_avx512bf16(const Bf16Weights& w, int64_t k, const uint16_t* x_hi,
                                     const uint16_t* x_lo) {
  // SOLUTION BEGIN ch2.3 Task 4
#if defined(__x86_64__)
  const uint16_t* row = w.data.data() + k * w.cols;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (int64_t j = 0; j < w.cols; j += 32) {
    const __mmask32 m = w.cols - j >= 32 ? 0xFFFFFFFFu : (1u << (w.cols - j)) - 1u;
    const __m512bh wv = (__m512bh)(_mm512_maskz_loadu_epi16(m, row + j));
    acc0 = _mm512_dpbf16_ps(acc0, wv, (__m512bh)(_mm512_maskz_loadu_epi16(m, x_hi + j)));
    acc1 = _mm512_dpbf16_ps(acc1, wv, (__m512bh)(_mm512_maskz_loadu_epi16(m, x_lo + j)));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#else
  throw InvalidArgument("bf16_dot_row_avx512bf16: not an x86-64 build");
#endif
  // SOLUTION END
}

/// Task 4. y = a W^T for bf16 weights: a: M x N, W: K x N -> M x K, like quantized_matmul_fast: for
/// M = 1 an OpenMP loop over the K rows with the row kernel of `path` (Avx2 runs the portable
/// kernel; Avx512Bf16 splits x into x_hi/x_lo once), for M > 1 blocks of rows widened to f32 times
/// an Eigen GEMM. Auto prefers Avx512 (widen and FMA, exact in x) over Avx512Bf16: on Zen 4 the
/// BF16 dot product with a split x measured slower (two vdpbf16ps per 32 weights).
/// Throws ShapeError unless a is M x N; InvalidArgument for a path the CPU lacks.
inline Tensor bf16_matmul(const Tensor& a, const Bf16Weights& w, KernelPath path = KernelPath::Auto,
                          int threads = 0) {
  if (a.ndim() != 2 || a.dim(1) != w.cols ||
      static_cast<int64_t>(w.data.size()) != w.rows * w.cols) {
    throw ShapeError("bf16_matmul: a must be M x N with N = " + std::to_string(w.cols) + ", got " +
                     shape_to_string(a.shape()));
  }
  if (path == KernelPath::Auto && kernel_path_supported(KernelPath::Avx512))
    path = KernelPath::Avx512;
  path = resolve_kernel_path(path);
  threads = resolve_threads(threads);
  // SOLUTION BEGIN ch2.3 Task 4
  const int64_t M = a.dim(0), K = w.rows, N = w.cols;
  Tensor out({M, K});
  float* y = out.data();
  if (M == 1) {
    const float* x = a.data();
    if (path == KernelPath::Avx512Bf16) {
      std::vector<uint16_t> hi(static_cast<size_t>(N)), lo(static_cast<size_t>(N));
      for (int64_t j = 0; j < N; ++j) {
        hi[static_cast<size_t>(j)] = f32_to_bf16(x[j]);
        lo[static_cast<size_t>(j)] = f32_to_bf16(x[j] - bf16_to_f32(hi[static_cast<size_t>(j)]));
      }
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t k = 0; k < K; ++k) y[k] = bf16_dot_row_avx512bf16(w, k, hi.data(), lo.data());
    } else {
      float (*row)(const Bf16Weights&, int64_t, const float*) =
          path == KernelPath::Avx512 ? bf16_dot_row_avx512 : bf16_dot_row_portable;
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t k = 0; k < K; ++k) y[k] = row(w, k, x);
    }
    return out;
  }
  const int64_t blocks = threads * ((K + threads * 128 - 1) / (threads * 128));
  const int64_t block = (K + blocks - 1) / blocks;
  const ConstMatrixMap A = a.rows();
  MatrixMap Y = out.rows();
#pragma omp parallel num_threads(threads)
  {
    omp_set_num_threads(1);  // this thread's nested regions: keeps Eigen's GEMM single-threaded
    Matrix scratch(block, N);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = b * block, count = std::min(block, K - k0);
      if (count <= 0) continue;
      for (int64_t i = 0; i < count * N; ++i)
        scratch.data()[i] = widen_bf16(w.data[static_cast<size_t>(k0 * N + i)]);
      Y.middleCols(k0, count).noalias() = A * scratch.topRows(count).transpose();
    }
  }
  return out;
  // SOLUTION END
}

}  // namespace tinyllm
