// The engine's decode kernel for bf16 (and f32) weights: y = W x for one activation row, exact in x
// (each bf16 weight is widened to f32 with a shift and multiplied with the f32 activation, as
// chapter 2.3's bf16_dot_row_avx512 does). What differs from chapter 2.3 is the order of the work:
// four rows at a time, a quarter of the matrix apart (rows b, b + K/4, b + K/2, b + 3K/4), so that
// the four rows share every load of x and each of them is one long sequential stream of weights,
// which the hardware prefetcher follows (int8_matvec.cpp explains why adjacent rows are slower).
// Results equal chapter 2.3's up to the order of the f32 sums.
#pragma once

#include <cstdint>

#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>

#include "tinyllm/tensor.hpp"

namespace tinyllm::engine {

/// Whether this CPU runs the kernel (AVX-512 F/BW).
bool dense_matvec_supported();

/// y = W x (K values) for x of N values, with `threads` OpenMP threads. Requires
/// dense_matvec_supported() and w.cols % 32 == 0 (InvalidArgument otherwise).
void bf16_matvec(const float* x, const Bf16Weights& w, float* y, int threads);
/// The same for f32 weights (K x N; ShapeError unless 2-D): exact, like Eigen's product.
void f32_matvec(const float* x, const Tensor& w, float* y, int threads);

}  // namespace tinyllm::engine
