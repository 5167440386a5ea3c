// Chapter 2.2 tests: quantize/dequantize (Task 1), the scalar quantized matmul (Task 2),
// quantized_linear and an MLX-style checkpoint layer (Task 3). Expected values:
// tools/fixtures/gen_week2_quant.py, an independent PyTorch implementation of the format (quantize
// with torch ops in float32, pack with torch bit ops, products in float64). Run: ctest --test-dir
// build/<dir> -L '^ch2\.2$'
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <vector>

#include "ch2_2_quantized_matmul_cases.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace {

using tinyllm::QuantizedWeights;
using tinyllm::Tensor;
using tinyllm::testing::Fixture;

using tinyllm::testing::as_matrix;
using tinyllm::testing::load_quant_cases;
using tinyllm::testing::oracle_weights;
using tinyllm::testing::ProductNear;
using Case = tinyllm::testing::QuantCase;

// ---- Task 1
// -----------------------------------------------------------------------------------------------------

TEST(Quantize, Task1_MatchesTorchExactly) {
  // q4 and q8 with G = 32, 64, 128 and the special rows (constant group, zero row, half-step ties,
  // x1e3 row). Both sides run the same IEEE float32 operations (max - min, / 15 or / 255,
  // w - bias, / scale, round half to even), so scales, biases and every packed word must be
  // identical: no tolerance.
  const std::vector<Case> cases = load_quant_cases();
  ASSERT_GE(cases.size(), 9u);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.describe);
    const QuantizedWeights q = tinyllm::quantize(c.w, c.group_size, c.bits);
    EXPECT_EQ(q.rows, c.w.dim(0));
    EXPECT_EQ(q.cols, c.w.dim(1));
    EXPECT_EQ(q.group_size, c.group_size);
    EXPECT_EQ(q.bits, c.bits);
    EXPECT_TENSOR_NEAR(q.scales, c.scales, 0.0, 0.0);
    EXPECT_TENSOR_NEAR(q.biases, c.biases, 0.0, 0.0);
    ASSERT_EQ(q.packed.size(), c.packed.size());
    int mismatches = 0;
    for (size_t i = 0; i < c.packed.size(); ++i) {
      if (q.packed[i] != static_cast<uint32_t>(c.packed[i]) && ++mismatches <= 5) {
        ADD_FAILURE() << "packed word " << i << ": got 0x" << std::hex << q.packed[i]
                      << ", expected 0x" << static_cast<uint32_t>(c.packed[i]);
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST(Quantize, Task1_RoundsHalfToEvenAndPacksLowBitsFirst) {
  // One 4-bit group of 32: min 0, max 15 (so scale is exactly 1), then 0.5, 1.5, 2.5, 3.5: ties
  // that round half to even to 0, 2, 2, 4 (std::round would give 1, 2, 3, 4). Element 0 sits in
  // bits 0-3 of word 0.
  std::vector<float> values(32, 7.0f);
  values[0] = 0.0f;
  values[1] = 15.0f;
  values[2] = 0.5f;
  values[3] = 1.5f;
  values[4] = 2.5f;
  values[5] = 3.5f;
  const QuantizedWeights q = tinyllm::quantize(Tensor({1, 32}, values), 32, 4);
  ASSERT_EQ(q.packed.size(), 4u);
  EXPECT_EQ(q.packed[0], 0x774220F0u);  // codes 0, 15, 0, 2, 2, 4, 7, 7 from the lowest nibble up
  EXPECT_EQ(q.packed[1], 0x77777777u);
  EXPECT_FLOAT_EQ(q.scales.data()[0], 1.0f);
  EXPECT_FLOAT_EQ(q.biases.data()[0], 0.0f);
}

TEST(Quantize, Task1_DequantizeMatchesTorch) {
  // Dequantizing the oracle's codes: q * scale + bias in float32 on both sides. The oracle rounds
  // the product and the sum separately; a compiler may fuse them into one FMA (g++ does with
  // -march=native), which moves the result by at most one unit in the last place of |q * scale| +
  // |bias| (up to ~2e-4 on the x1e3 row, where bias and q * scale nearly cancel). So the bound is
  // 2^-23 of that, per element.
  for (const Case& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const Tensor got = tinyllm::dequantize(oracle_weights(c));
    ASSERT_EQ(got.shape(), c.dequant.shape());
    const int64_t N = c.w.dim(1), groups = N / c.group_size;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const float b = c.biases.data()[(i / N) * groups + (i % N) / c.group_size];
      const float e = c.dequant.data()[i];
      const float bound = std::ldexp(std::abs(e - b) + std::abs(b), -23);
      ASSERT_LE(std::abs(got.data()[i] - e), bound)
          << "element " << i << ": got " << got.data()[i] << ", expected " << e;
    }
  }
}

TEST(Quantize, Task1_RoundTripErrorIsAtMostHalfAStep) {
  // |w - dequantize(quantize(w))| <= scale / 2 per group (plus float32 rounding of the values
  // themselves).
  for (const Case& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const QuantizedWeights q = tinyllm::quantize(c.w, c.group_size, c.bits);
    const Tensor back = tinyllm::dequantize(q);
    ASSERT_EQ(back.shape(), c.w.shape());
    const int64_t N = c.w.dim(1), groups = N / c.group_size;
    for (int64_t i = 0; i < c.w.numel(); ++i) {
      const int64_t k = i / N, g = (i % N) / c.group_size;
      const float scale = c.scales.data()[k * groups + g];
      const float bound = 0.5f * scale + 4e-7f * std::abs(c.w.data()[i]) + 1e-30f;
      ASSERT_LE(std::abs(back.data()[i] - c.w.data()[i]), bound) << "element " << i;
    }
  }
}

TEST(Quantize, Task1_RejectsBadArguments) {
  const Tensor w = Tensor::full({2, 64}, 1.0f);
  EXPECT_EQ(tinyllm::quantize(w, 64, 4).packed.size(), 16u);  // valid call first
  EXPECT_THROW(tinyllm::quantize(w, 64, 3), tinyllm::InvalidArgument) << "3 bits";
  EXPECT_THROW(tinyllm::quantize(w, 64, 2), tinyllm::InvalidArgument) << "2 bits";
  EXPECT_THROW(tinyllm::quantize(w, 16, 4), tinyllm::InvalidArgument) << "group of 16";
  EXPECT_THROW(tinyllm::quantize(Tensor::full({2, 96}, 1.0f), 64, 4), tinyllm::ShapeError)
      << "N % G != 0";
  EXPECT_THROW(tinyllm::quantize(Tensor::full({2, 2, 64}, 1.0f), 64, 4), tinyllm::ShapeError)
      << "3-D weight";
  QuantizedWeights bad = tinyllm::quantize(w, 64, 4);
  bad.packed.pop_back();
  EXPECT_THROW(tinyllm::dequantize(bad), tinyllm::ShapeError) << "a word short";
}

// ---- Task 2
// -----------------------------------------------------------------------------------------------------

TEST(QuantizedMatmul, Task2_MatchesTorch) {
  for (const Case& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    if (c.bias) continue;  // the cases with a bias are quantized_linear's (Task 3)
    const Tensor y = tinyllm::quantized_matmul(as_matrix(c.x), oracle_weights(c));
    EXPECT_TRUE(ProductNear(y, as_matrix(c.x), c.dequant, c.biases, c.group_size, as_matrix(c.y)));
  }
}

TEST(QuantizedMatmul, Task2_IdentityPicksDequantizedColumns) {
  // Upstream's "simple" case: a = eye(64)[:5] so y[i, k] = w_hat[k, i] (one term each: exact up to
  // float32).
  for (const Case& c : load_quant_cases()) {
    if (c.describe.find("eye") == std::string::npos) continue;
    const Tensor y = tinyllm::quantized_matmul(c.x, oracle_weights(c));
    ASSERT_EQ(y.shape(), (tinyllm::Shape{5, c.w.dim(0)}));
    for (int64_t i = 0; i < 5; ++i) {
      for (int64_t k = 0; k < c.w.dim(0); ++k) {
        EXPECT_NEAR(y.at({i, k}), c.dequant.at({k, i}), 1e-6) << i << ", " << k;
      }
    }
    return;
  }
  FAIL() << "no eye case in the fixture";
}

TEST(QuantizedMatmul, Task2_RejectsBadShapes) {
  const QuantizedWeights w = tinyllm::quantize(Tensor::full({3, 64}, 0.5f), 32, 8);
  EXPECT_TENSOR_NEAR(tinyllm::quantized_matmul(Tensor::full({2, 64}, 1.0f), w),
                     Tensor::full({2, 3}, 32.0f), 1e-5, 1e-6);
  EXPECT_THROW(tinyllm::quantized_matmul(Tensor::full({2, 32}, 1.0f), w), tinyllm::ShapeError)
      << "a is M x 32";
  EXPECT_THROW(tinyllm::quantized_matmul(Tensor::full({1, 2, 64}, 1.0f), w), tinyllm::ShapeError)
      << "3-D a";
  QuantizedWeights bad = w;
  bad.scales = Tensor::full({3, 1}, 1.0f);
  EXPECT_THROW(tinyllm::quantized_matmul(Tensor::full({2, 64}, 1.0f), bad), tinyllm::ShapeError)
      << "scales 3x1";
}

// ---- Task 3
// -----------------------------------------------------------------------------------------------------

TEST(QuantizedLinear, Task3_MatchesTorchWithLeadingDimsAndBias) {
  // Every case through quantized_linear with its own x shape ((3, N), (2, 3, N), (1, N), ...) and
  // bias.
  for (const Case& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const Tensor y = tinyllm::quantized_linear(c.x, oracle_weights(c), c.bias ? &*c.bias : nullptr);
    ASSERT_EQ(y.shape(), c.y.shape());
    EXPECT_TRUE(ProductNear(as_matrix(y), as_matrix(c.x), c.dequant, c.biases, c.group_size,
                            as_matrix(c.y)));
  }
}

TEST(QuantizedLinear, Task3_QuantizeThenLinearMatchesTorch) {
  // The whole path (our quantize, then our product): equal to the oracle because quantize is exact.
  for (const Case& c : load_quant_cases()) {
    SCOPED_TRACE(c.describe);
    const QuantizedWeights q = tinyllm::quantize(c.w, c.group_size, c.bits);
    const Tensor y = tinyllm::quantized_linear(c.x, q, c.bias ? &*c.bias : nullptr);
    ASSERT_EQ(y.shape(), c.y.shape());
    EXPECT_TRUE(ProductNear(as_matrix(y), as_matrix(c.x), c.dequant, c.biases, c.group_size,
                            as_matrix(c.y)));
  }
}

TEST(QuantizedLinear, Task3_LoadsAnMlxCheckpointLayer) {
  // weight U32 [32, 16] (8 codes per word), scales/biases F16 [32, 2] as MLX stores them for an f16
  // model.
  Fixture f("ch2.2/mlx_layer.safetensors");
  EXPECT_EQ(f.file().info("layer.weight").dtype, tinyllm::DType::U32);
  const std::vector<int64_t> config = f.ints("config");
  const QuantizedWeights w = tinyllm::load_mlx_quantized(
      f.file(), "layer", static_cast<int>(config.at(0)), static_cast<int>(config.at(1)));
  EXPECT_EQ(w.rows, 32);
  EXPECT_EQ(w.cols, 128);
  EXPECT_TENSOR_NEAR(tinyllm::quantized_linear(f.tensor("x"), w), f.tensor("y"), 1e-5, 1e-4);
}

TEST(QuantizedLinear, Task3_RejectsBadShapes) {
  const QuantizedWeights w = tinyllm::quantize(Tensor::full({4, 128}, 2.0f), 128, 4);
  const Tensor bias = Tensor::full({4}, 1.0f);
  EXPECT_TENSOR_NEAR(tinyllm::quantized_linear(Tensor::full({2, 3, 128}, 1.0f), w, &bias),
                     Tensor::full({2, 3, 4}, 257.0f), 1e-4, 1e-6);
  EXPECT_THROW(tinyllm::quantized_linear(Tensor::full({2, 3, 64}, 1.0f), w), tinyllm::ShapeError)
      << "N = 64";
  const Tensor bias5 = Tensor::full({5}, 1.0f);
  EXPECT_THROW(tinyllm::quantized_linear(Tensor::full({3, 128}, 1.0f), w, &bias5),
               tinyllm::ShapeError)
      << "bias of 5";
  QuantizedWeights bad_bits = w;
  bad_bits.bits = 2;
  EXPECT_THROW(tinyllm::quantized_linear(Tensor::full({3, 128}, 1.0f), bad_bits),
               tinyllm::InvalidArgument)
      << "2 bits";
  QuantizedWeights bad_group = w;
  bad_group.group_size = 256;
  EXPECT_THROW(tinyllm::quantized_linear(Tensor::full({3, 128}, 1.0f), bad_group),
               tinyllm::InvalidArgument)
      << "group of 256";
  QuantizedWeights bad_words = w;
  bad_words.packed.resize(bad_words.packed.size() + 1);
  EXPECT_THROW(tinyllm::quantized_linear(Tensor::full({3, 128}, 1.0f), bad_words),
               tinyllm::ShapeError)
      << "an extra word";
}

}  // namespace
