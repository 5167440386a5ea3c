// Chapter 2.3 tests: the fast quantized kernels (Task 1 parallel matvec, Task 2 SIMD matvec, Task 3
// prefill matmul) and the bf16 kernels (Task 4). Expected values: chapter 2.2's PyTorch fixtures
// (tools/fixtures/gen_week2_quant.py) and ch2.3/bf16.safetensors from the same generator; on random
// shapes, chapter 2.2's scalar quantized_matmul. Every test runs every code path this CPU supports
// (supported_kernel_paths(): the portable fallback always, AVX2 and AVX-512 where present) with 1
// and 2 threads. Timing is never asserted (bench/ measures it). Run:
//   ctest --test-dir build/<dir> -L '^ch2\.3$'
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/fast_qmatmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/kernel_path.hpp>
#include <vector>

#include "ch2_2_quantized_matmul_cases.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace {

using tinyllm::Bf16Weights;
using tinyllm::KernelPath;
using tinyllm::QuantizedWeights;
using tinyllm::Tensor;
using tinyllm::testing::as_matrix;
using tinyllm::testing::Fixture;
using tinyllm::testing::load_quant_cases;
using tinyllm::testing::oracle_weights;
using tinyllm::testing::ProductNear;

const std::vector<int> kThreads = {1, 2};

std::string where(KernelPath path, int threads) {
  return "path " + tinyllm::kernel_path_name(path) + ", " + std::to_string(threads) + " thread(s)";
}

Tensor random_tensor(const tinyllm::Shape& shape, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
  return t;
}

// Row i of a matrix as a 1 x N tensor.
Tensor row_of(const Tensor& m, int64_t i) {
  const int64_t n = m.dim(1);
  return Tensor({1, n}, std::vector<float>(m.data() + i * n, m.data() + (i + 1) * n));
}

// ---- Task 1
// -----------------------------------------------------------------------------------------------------

TEST(FastQuantized, Task1_GroupSums) {
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i)
    x[static_cast<size_t>(i)] = static_cast<float>(i % 7);  // small integers: exact
  const std::vector<float> sums = tinyllm::group_sums(x.data(), 128, 32);
  ASSERT_EQ(sums.size(), 4u);
  for (int g = 0; g < 4; ++g) {
    float want = 0;
    for (int j = 32 * g; j < 32 * (g + 1); ++j) want += static_cast<float>(j % 7);
    EXPECT_EQ(sums[static_cast<size_t>(g)], want) << "group " << g;
  }
}

TEST(FastQuantized, Task1_PortableMatvecMatchesTorch) {
  // Decode (M = 1): every row of every fixture case, one at a time, on the portable path with 1 and
  // 2 threads.
  for (const auto& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const QuantizedWeights w = oracle_weights(c);
    const Tensor x = as_matrix(c.x), y = as_matrix(c.y);
    for (int threads : kThreads) {
      SCOPED_TRACE(where(KernelPath::Portable, threads));
      for (int64_t i = 0; i < x.dim(0); ++i) {
        if (c.bias)
          continue;  // y includes the bias: checked through quantized_linear_fast (Task 3)
        Tensor got({1, w.rows});
        tinyllm::quantized_matvec(x.data() + i * x.dim(1), w, got.data(), KernelPath::Portable,
                                  threads);
        EXPECT_TRUE(
            ProductNear(got, row_of(x, i), c.dequant, c.biases, c.group_size, row_of(y, i)));
      }
    }
  }
}

// ---- Task 2
// -----------------------------------------------------------------------------------------------------

TEST(FastQuantized, Task2_SplitEvenOdd) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i);
  const std::vector<float> s = tinyllm::split_even_odd(x.data(), 64);
  ASSERT_EQ(s.size(), 64u);
  for (int c = 0; c < 64; c += 32) {
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(s[static_cast<size_t>(c + i)], static_cast<float>(c + 2 * i));
      EXPECT_EQ(s[static_cast<size_t>(c + 16 + i)], static_cast<float>(c + 2 * i + 1));
    }
  }
}

TEST(FastQuantized, Task2_EveryPathMatvecMatchesTorch) {
  // q4 and q8, G = 32, 64, 128, with the special rows (constant group, ties, x1e3 row): every
  // supported path.
  const auto paths = tinyllm::supported_kernel_paths();
  ASSERT_FALSE(paths.empty());
  for (const auto& c : load_quant_cases()) {
    if (c.bias) continue;
    SCOPED_TRACE(c.describe);
    const QuantizedWeights w = oracle_weights(c);
    const Tensor x = as_matrix(c.x), y = as_matrix(c.y);
    for (KernelPath path : paths) {
      for (int threads : kThreads) {
        SCOPED_TRACE(where(path, threads));
        for (int64_t i = 0; i < x.dim(0); ++i) {
          Tensor got({1, w.rows});
          tinyllm::quantized_matvec(x.data() + i * x.dim(1), w, got.data(), path, threads);
          EXPECT_TRUE(
              ProductNear(got, row_of(x, i), c.dequant, c.biases, c.group_size, row_of(y, i)));
        }
      }
    }
  }
}

TEST(FastQuantized, Task2_AutoPathMatvecMatchesScalarOnRandomShapes) {
  // Odd K (1, 37, 129), N from 128 to 640, every bits/group combination: the default path (Auto,
  // OpenMP's default thread count) against chapter 2.2's scalar quantized_matmul, with 2.2's
  // dequantize giving the error bound.
  std::mt19937 rng(7);
  for (int bits : {4, 8}) {
    for (int group : {32, 64, 128}) {
      for (int64_t K : {1, 37, 129}) {
        const int64_t N = group * (1 + static_cast<int64_t>(rng() % 5));
        SCOPED_TRACE("q" + std::to_string(bits) + " g" + std::to_string(group) +
                     " K=" + std::to_string(K) + " N=" + std::to_string(N));
        const QuantizedWeights w = tinyllm::quantize(random_tensor({K, N}, rng), group, bits);
        const Tensor x = random_tensor({1, N}, rng);
        Tensor got({1, K});
        tinyllm::quantized_matvec(x.data(), w, got.data());
        EXPECT_TRUE(ProductNear(got, x, tinyllm::dequantize(w), w.biases, group,
                                tinyllm::quantized_matmul(x, w), 16.0));
      }
    }
  }
}

// ---- Task 3
// -----------------------------------------------------------------------------------------------------

TEST(FastQuantized, Task3_DequantizeRowsMatchesTorch) {
  for (const auto& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const QuantizedWeights w = oracle_weights(c);
    const int64_t k0 = 1, count = w.rows - 2, N = w.cols;
    std::vector<float> got(static_cast<size_t>(count * N));
    tinyllm::dequantize_rows(w, k0, count, got.data());
    const int64_t groups = N / c.group_size;
    for (int64_t i = 0; i < count * N; ++i) {
      const int64_t e_index = k0 * N + i;
      const float e = c.dequant.data()[e_index];
      const float b = c.biases.data()[(e_index / N) * groups + (e_index % N) / c.group_size];
      // as in chapter 2.2: one unit in the last place of |q scale| + |bias| (a fused multiply-add)
      ASSERT_LE(std::abs(got[static_cast<size_t>(i)] - e),
                std::ldexp(std::abs(e - b) + std::abs(b), -23))
          << "element " << i;
    }
  }
}

TEST(FastQuantized, Task3_PrefillMatchesTorch) {
  // M = 3..6 rows at once (the GEMM path), every case, path and thread count; bias through
  // quantized_linear_fast.
  for (const auto& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const QuantizedWeights w = oracle_weights(c);
    for (KernelPath path : tinyllm::supported_kernel_paths()) {
      for (int threads : kThreads) {
        SCOPED_TRACE(where(path, threads));
        const Tensor y =
            tinyllm::quantized_linear_fast(c.x, w, c.bias ? &*c.bias : nullptr, path, threads);
        ASSERT_EQ(y.shape(), c.y.shape());
        EXPECT_TRUE(ProductNear(as_matrix(y), as_matrix(c.x), c.dequant, c.biases, c.group_size,
                                as_matrix(c.y)));
      }
    }
  }
}

TEST(FastQuantized, Task3_OddShapesMatchScalar) {
  // M in {1, 2, 7, 33}, K in {1, 37, 300} (300 rows span several row blocks), threads 1, 2 and 3
  // (more blocks than rows for K = 1): against chapter 2.2's scalar product.
  std::mt19937 rng(11);
  for (int bits : {4, 8}) {
    const int group = bits == 4 ? 64 : 32;
    for (int64_t K : {1, 37, 300}) {
      const int64_t N = 192;
      const QuantizedWeights w = tinyllm::quantize(random_tensor({K, N}, rng), group, bits);
      const Tensor dq = tinyllm::dequantize(w);
      for (int64_t M : {1, 2, 7, 33}) {
        const Tensor a = random_tensor({M, N}, rng);
        const Tensor want = tinyllm::quantized_matmul(a, w);
        for (int threads : {1, 2, 3}) {
          SCOPED_TRACE("q" + std::to_string(bits) + " K=" + std::to_string(K) +
                       " M=" + std::to_string(M) + " " + where(KernelPath::Auto, threads));
          EXPECT_TRUE(ProductNear(tinyllm::quantized_matmul_fast(a, w, KernelPath::Auto, threads),
                                  a, dq, w.biases, group, want, 16.0));
        }
      }
    }
  }
}

TEST(FastQuantized, Task3_RejectsBadShapes) {
  const QuantizedWeights w = tinyllm::quantize(Tensor::full({3, 64}, 0.5f), 32, 4);
  EXPECT_TENSOR_NEAR(tinyllm::quantized_matmul_fast(Tensor::full({2, 64}, 1.0f), w),
                     Tensor::full({2, 3}, 32.0f), 1e-5, 1e-6);
  EXPECT_THROW(tinyllm::quantized_matmul_fast(Tensor::full({2, 32}, 1.0f), w), tinyllm::ShapeError)
      << "N = 32";
  EXPECT_THROW(tinyllm::quantized_matmul_fast(Tensor::full({64}, 1.0f), w), tinyllm::ShapeError)
      << "1-D a";
  EXPECT_THROW(tinyllm::quantized_linear_fast(Tensor::full({2, 2, 32}, 1.0f), w),
               tinyllm::ShapeError)
      << "N = 32";
}

// ---- Task 4
// -----------------------------------------------------------------------------------------------------

// Float32 accumulation error of x . w: a few units of 2^-24 times sum |x_j w_j| (slack 8). The
// AVX512-BF16 path also rounds x to x_hi + x_lo (two bf16 values, 16 significant bits:
// error <= 2^-17 |x|).
::testing::AssertionResult Bf16Near(const Tensor& y, const Tensor& x, const Bf16Weights& w,
                                    const Tensor& expected, KernelPath path) {
  if (y.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << tinyllm::shape_to_string(y.shape());
  const double rel =
      8.0 * std::ldexp(1.0, -24) + (path == KernelPath::Avx512Bf16 ? std::ldexp(1.0, -16) : 0.0);
  for (int64_t i = 0; i < x.dim(0); ++i) {
    for (int64_t k = 0; k < w.rows; ++k) {
      double magnitude = 0.0;
      for (int64_t j = 0; j < w.cols; ++j) {
        magnitude += std::abs(x.data()[i * w.cols + j] *
                              tinyllm::widen_bf16(w.data[static_cast<size_t>(k * w.cols + j)]));
      }
      const double got = y.data()[i * w.rows + k], want = expected.data()[i * w.rows + k];
      if (!(std::abs(got - want) <= 1e-6 + rel * magnitude)) {
        return ::testing::AssertionFailure()
               << "[" << i << ", " << k << "]: got " << got << ", expected " << want << ", bound "
               << 1e-6 + rel * magnitude;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(Bf16Matmul, Task4_EveryPathMatchesTorch) {
  // M = 1 (decode kernels) and M = 3, 5 (prefill), N = 64, 96, 200 (a tail of 8 after 16-wide
  // chunks), 1000.
  Fixture f("ch2.3/bf16.safetensors");
  const int n = std::stoi(f.meta("num_cases"));
  ASSERT_GE(n, 4);
  for (int i = 0; i < n; ++i) {
    const std::string p = "case" + std::to_string(i) + ".";
    SCOPED_TRACE(f.meta("case" + std::to_string(i)));
    const Bf16Weights w = tinyllm::load_bf16(f.file(), p + "w");
    const Tensor x = f.tensor(p + "x"), y = f.tensor(p + "y");
    for (KernelPath path : tinyllm::supported_kernel_paths()) {
      for (int threads : kThreads) {
        SCOPED_TRACE(where(path, threads));
        EXPECT_TRUE(Bf16Near(tinyllm::bf16_matmul(x, w, path, threads), x, w, y, path));
        for (int64_t r = 0; r < x.dim(0); ++r) {  // each row alone: the matrix-vector kernels
          EXPECT_TRUE(Bf16Near(tinyllm::bf16_matmul(row_of(x, r), w, path, threads), row_of(x, r),
                               w, row_of(y, r), path));
        }
      }
    }
  }
}

TEST(Bf16Matmul, Task4_RejectsBadShapes) {
  const Bf16Weights w = tinyllm::to_bf16(Tensor::full({3, 20}, 0.5f));
  EXPECT_TENSOR_NEAR(tinyllm::bf16_matmul(Tensor::full({1, 20}, 1.0f), w),
                     Tensor::full({1, 3}, 10.0f), 1e-6, 1e-6);
  EXPECT_THROW(tinyllm::bf16_matmul(Tensor::full({1, 21}, 1.0f), w), tinyllm::ShapeError)
      << "N = 21";
  EXPECT_THROW(tinyllm::bf16_matmul(Tensor::full({20}, 1.0f), w), tinyllm::ShapeError) << "1-D a";
}

}  // namespace
