// Chapter 2.3: fast quantized matmul, the engine's real kernels. Book:
// book/week2/ch2_3_fast_qmatmul.md.
//   Task 1  group_sums, qdot_row_portable, quantized_matvec (parallel over output rows with OpenMP)
//   Task 2  (simd_kernels.hpp) the SIMD row kernels, used here by quantized_matvec
//   Task 3  dequantize_rows, quantized_matmul_fast (prefill: dequantized row blocks times a GEMM)
// Same results as chapter 2.2's scalar quantized_matmul, up to float rounding. Letters: M
// activation rows, K out features (rows of W), N in features, G group size, b bits.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/kernel_path.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/simd_kernels.hpp>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// Task 1. The sum of x over each group: x: N values -> N/G values (the bias half of the factored
/// form scale * sum(x q) + bias * sum(x), shared by every row of W).
inline std::vector<float> group_sums(const float* x, int64_t n, int group_size) {
  // SOLUTION BEGIN ch2.3 Task 1
  std::vector<float> sums(static_cast<size_t>(n / group_size), 0.0f);
  for (int64_t j = 0; j < n; ++j) sums[static_cast<size_t>(j / group_size)] += x[j];
  return sums;
  // SOLUTION END
}

/// Task 1. Row k of W (quantized) dotted with x: N values, in plain C++, with the factored form per
/// group: sum_g scale[k, g] * sum_j(x_j q_kj) + bias[k, g] * sums[g]. Unpack whole words (8 or 4
/// codes each) with shifts and masks rather than calling code_at per element.
inline float qdot_row_portable(const QuantizedWeights& w, int64_t k, const float* x,
                               const float* sums) {
  // SOLUTION BEGIN ch2.3 Task 1
  const int per = codes_per_word(w.bits);
  const uint32_t mask = (1u << w.bits) - 1u;
  const int64_t groups = w.cols / w.group_size, words_per_group = w.group_size / per;
  const uint32_t* word = w.packed.data() + k * (w.cols / per);
  const float* scales = w.scales.data() + k * groups;
  const float* biases = w.biases.data() + k * groups;
  float acc = 0.0f;
  for (int64_t g = 0; g < groups; ++g) {
    float dot = 0.0f;
    for (int64_t i = 0; i < words_per_group; ++i, ++word, x += per) {
      const uint32_t v = *word;
      for (int j = 0; j < per; ++j) dot += x[j] * static_cast<float>((v >> (w.bits * j)) & mask);
    }
    acc += scales[g] * dot + biases[g] * sums[g];
  }
  return acc;
  // SOLUTION END
}

/// Task 1 (Task 2 adds the SIMD paths). y = W x for one activation row (decode, M = 1): x: N
/// values, y: K values. Computes group_sums once, then each output row with the row kernel of
/// `path` (resolve_kernel_path; 4-bit SIMD kernels take split_even_odd(x)), in an OpenMP loop over
/// the K rows with `threads` threads (resolve_threads). Avx512Bf16 runs the Avx512 kernel.
inline void quantized_matvec(const float* x, const QuantizedWeights& w, float* y,
                             KernelPath path = KernelPath::Auto, int threads = 0) {
  check_quantized_weights(w);
  path = resolve_kernel_path(path);
  threads = resolve_threads(threads);
  // SOLUTION BEGIN ch2.3 Task 1
  const std::vector<float> sums = group_sums(x, w.cols, w.group_size);
  std::vector<float> split;
  const float* xs = x;
  if (path != KernelPath::Portable && w.bits == 4) {
    split = split_even_odd(x, w.cols);
    xs = split.data();
  }
  float (*row)(const QuantizedWeights&, int64_t, const float*, const float*) = qdot_row_portable;
  if (path == KernelPath::Avx2) row = qdot_row_avx2;
  if (path == KernelPath::Avx512 || path == KernelPath::Avx512Bf16) row = qdot_row_avx512;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t k = 0; k < w.rows; ++k) y[k] = row(w, k, xs, sums.data());
  // SOLUTION END
}

/// Task 3. Rows [k0, k0 + count) of W dequantized into out (count x N floats, row-major), as
/// dequantize does.
inline void dequantize_rows(const QuantizedWeights& w, int64_t k0, int64_t count, float* out) {
  // SOLUTION BEGIN ch2.3 Task 3
  const int per = codes_per_word(w.bits);
  const uint32_t mask = (1u << w.bits) - 1u;
  const int64_t groups = w.cols / w.group_size, words = w.cols / per;
  for (int64_t k = k0; k < k0 + count; ++k) {
    const uint32_t* word = w.packed.data() + k * words;
    for (int64_t i = 0; i < words; ++i) {
      const int64_t g = k * groups + i * per / w.group_size;
      const float scale = w.scales.data()[g], bias = w.biases.data()[g];
      for (int j = 0; j < per; ++j)
        *out++ = static_cast<float>((word[i] >> (w.bits * j)) & mask) * scale + bias;
    }
  }
  // SOLUTION END
}

/// Task 3. y = a W^T: a: M x N, W: K x N (quantized) -> M x K. M = 1 runs quantized_matvec. For M >
/// 1 (prefill), the K rows are cut into blocks (about 128 rows, a multiple of `threads` blocks so
/// that no thread idles); in an OpenMP loop over the blocks each thread dequantizes its block into
/// a scratch matrix once and multiplies it with all M rows of a by an Eigen GEMM (Eigen runs
/// single-threaded inside a parallel region). Throws ShapeError unless a is M x N; InvalidArgument
/// for a path the CPU lacks.
inline Tensor quantized_matmul_fast(const Tensor& a, const QuantizedWeights& w,
                                    KernelPath path = KernelPath::Auto, int threads = 0) {
  check_quantized_weights(w);
  if (a.ndim() != 2 || a.dim(1) != w.cols) {
    throw ShapeError("quantized_matmul_fast: a must be M x N with N = " + std::to_string(w.cols) +
                     ", got " + shape_to_string(a.shape()));
  }
  path = resolve_kernel_path(path);
  threads = resolve_threads(threads);
  // SOLUTION BEGIN ch2.3 Task 3
  const int64_t M = a.dim(0), K = w.rows, N = w.cols;
  Tensor out({M, K});
  if (M == 1) {
    quantized_matvec(a.data(), w, out.data(), path, threads);
    return out;
  }
  const int64_t per_thread = (K + threads * 128 - 1) / (threads * 128);
  const int64_t blocks = threads * per_thread;
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
      dequantize_rows(w, k0, count, scratch.data());
      Y.middleCols(k0, count).noalias() = A * scratch.topRows(count).transpose();
    }
  }
  return out;
  // SOLUTION END
}

/// Provided: quantized_linear (chapter 2.2) on the fast kernels. x: N.. x N, W: K x N, bias: K ->
/// N.. x K.
inline Tensor quantized_linear_fast(const Tensor& x, const QuantizedWeights& w,
                                    const Tensor* bias = nullptr,
                                    KernelPath path = KernelPath::Auto, int threads = 0) {
  if (x.ndim() < 1 || x.dim(-1) != w.cols) {
    throw ShapeError("quantized_linear_fast: x must be N.. x N with N = " + std::to_string(w.cols) +
                     ", got " + shape_to_string(x.shape()));
  }
  if (bias != nullptr) check_shape(*bias, {w.rows}, "quantized_linear_fast: bias");
  Shape out_shape = x.shape();
  out_shape.back() = w.rows;
  Tensor out = quantized_matmul_fast(x.reshape({-1, w.cols}), w, path, threads).reshape(out_shape);
  if (bias != nullptr) out.rows().rowwise() += bias->rows().row(0);
  return out;
}

}  // namespace tinyllm
