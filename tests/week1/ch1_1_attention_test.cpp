// Chapter 1.1 tests: softmax, scaled dot-product attention, linear, multi-head attention.
// Expected values: tools/fixtures/gen_week1_ops.py (PyTorch, float64; the multi-head attention is
// torch.nn.MultiheadAttention). Run: ctest --preset week1 -L '^ch1\.1$'
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <tinyllm/ch1_1_attention/attention.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"
#include "week1_op_cases.hpp"

namespace {

using tinyllm::Tensor;
using tinyllm::testing::OpCases;

// Inputs are O(1) float32 values; the expected values are float64 results rounded once to float32.
// Every output here is a short chain of dot products (at most 33 terms) and one softmax, whose
// float32 rounding error stays around 1e-6. atol = rtol = 1e-5 keeps a 10x margin and still catches
// real mistakes (a wrong scale, a missing mask, a transposed weight all move outputs by 1e-2 or
// more).
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-5;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs scaled_dot_product_attention_simple on every case of attention_simple.safetensors selected
// by `want` (called with "has a scale or a mask"); returns how many cases ran.
template <typename Want>
int check_simple_attention_cases(Want want) {
  OpCases cases("ch1.1/attention_simple.safetensors");
  int ran = 0;
  for (int i = 0; i < cases.size(); ++i) {
    const bool scaled_or_masked = cases.has(i, "scale") || cases.has(i, "mask");
    if (!want(scaled_or_masked)) continue;
    SCOPED_TRACE(cases.describe(i));
    const std::optional<Tensor> mask = cases.optional_tensor(i, "mask");
    const Tensor out = tinyllm::scaled_dot_product_attention_simple(
        cases.tensor(i, "query"), cases.tensor(i, "key"), cases.tensor(i, "value"),
        cases.optional_scalar(i, "scale"), mask ? &*mask : nullptr);
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
    ++ran;
  }
  return ran;
}

// ---- Task 1
// ------------------------------------------------------------------------------------------------------

TEST(Attention, Task1_SoftmaxMatchesTorch) {
  // Includes a row of values around +-1000, where exp() without subtracting the maximum overflows.
  OpCases cases("ch1.1/softmax.safetensors");
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    EXPECT_TENSOR_NEAR(tinyllm::softmax(cases.tensor(i, "x")), cases.tensor(i, "out"), kAtol,
                       kRtol);
  }
}

TEST(Attention, Task1_SoftmaxFullyMaskedRowIsZero) {
  // The course's convention: a row that is all -inf has no distribution and gives zeros (never
  // NaN).
  const Tensor x({3, 3}, {-kInf, -kInf, -kInf, 0.0f, -kInf, 0.0f, 2.0f, 2.0f, 2.0f});
  const Tensor expected({3, 3}, {0.0f, 0.0f, 0.0f, 0.5f, 0.0f, 0.5f, 1.0f / 3, 1.0f / 3, 1.0f / 3});
  EXPECT_TENSOR_NEAR(tinyllm::softmax(x), expected, 1e-7, 1e-6);
}

TEST(Attention, Task1_SimpleAttentionMatchesTorch) {
  // Batch dims (), (2, 3); default scale 1/sqrt(D); no mask.
  EXPECT_GT(check_simple_attention_cases([](bool scaled_or_masked) { return !scaled_or_masked; }),
            0);
}

TEST(Attention, Task1_SimpleAttentionScaleAndMaskMatchTorch) {
  // Scale 0.5 / 0.8; masks L x S, 1 x L x S, 1 x 1 x S, 3 x 1 x S and the full N.. x L x S; L = 1,
  // L < S, L > S; -inf entries; D = 8 and odd D = 5, 9.
  EXPECT_GT(check_simple_attention_cases([](bool scaled_or_masked) { return scaled_or_masked; }),
            0);
}

TEST(Attention, Task1_SimpleAttentionFullyMaskedRowIsZero) {
  OpCases cases("ch1.1/attention_simple.safetensors");
  const int last = cases.size() - 1;  // the case with query rows (0, 1) and (1, 2) fully masked
  SCOPED_TRACE(cases.describe(last));
  const Tensor mask = cases.tensor(last, "mask");
  const Tensor out = tinyllm::scaled_dot_product_attention_simple(
      cases.tensor(last, "query"), cases.tensor(last, "key"), cases.tensor(last, "value"),
      std::nullopt, &mask);
  EXPECT_TENSOR_NEAR(out, cases.tensor(last, "out"), kAtol, kRtol);
  for (int64_t d = 0; d < out.dim(-1); ++d) {
    EXPECT_EQ(out.at({0, 1, d}), 0.0f) << "d = " << d;
    EXPECT_EQ(out.at({1, 2, d}), 0.0f) << "d = " << d;
  }
}

TEST(Attention, Task1_SimpleAttentionRejectsBadShapes) {
  const Tensor q = Tensor::full({2, 3, 4}, 0.5f), kv = Tensor::full({2, 5, 4}, 0.25f);
  // A valid call first: every key is the same, so each output row is the (constant) value row.
  EXPECT_TENSOR_NEAR(tinyllm::scaled_dot_product_attention_simple(q, kv, kv),
                     Tensor::full({2, 3, 4}, 0.25f), 1e-7, 1e-6);
  using tinyllm::ShapeError;
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_simple(q, Tensor::full({2, 5, 3}, 0.f), kv),
               ShapeError)
      << "key with another D";
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_simple(q, kv, Tensor::full({2, 6, 4}, 0.f)),
               ShapeError)
      << "value with another S than key";
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_simple(q, Tensor::full({3, 5, 4}, 0.f),
                                                            Tensor::full({3, 5, 4}, 0.f)),
               ShapeError)
      << "different batch dims";
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_simple(Tensor::full({4}, 0.f), kv, kv),
               ShapeError)
      << "rank-1 query";
  const Tensor bad_mask = Tensor::full({3, 4}, 0.0f);  // L x D instead of L x S
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_simple(q, kv, kv, std::nullopt, &bad_mask),
               ShapeError)
      << "mask that does not broadcast to N.. x L x S";
}

// ---- Task 2
// ------------------------------------------------------------------------------------------------------

TEST(Attention, Task2_LinearMatchesTorch) {
  // x (10, 12), (2, 3, 5), rank-1 (6,), (1, 4); with and without bias.
  OpCases cases("ch1.1/linear.safetensors");
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    const std::optional<Tensor> bias = cases.optional_tensor(i, "bias");
    const Tensor out =
        tinyllm::linear(cases.tensor(i, "x"), cases.tensor(i, "weight"), bias ? &*bias : nullptr);
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
  }
}

TEST(Attention, Task2_LinearRejectsBadShapes) {
  const Tensor x = Tensor::full({2, 3}, 1.0f), w = Tensor::full({4, 3}, 0.5f),
               b = Tensor::full({4}, 1.0f);
  EXPECT_TENSOR_NEAR(tinyllm::linear(x, w, &b), Tensor::full({2, 4}, 2.5f), 1e-7, 1e-6);
  using tinyllm::ShapeError;
  EXPECT_THROW(tinyllm::linear(x, Tensor::full({4, 2}, 0.f)), ShapeError)
      << "weight I != x's last dim";
  EXPECT_THROW(tinyllm::linear(x, Tensor::full({3}, 0.f)), ShapeError) << "rank-1 weight";
  const Tensor bad_bias = Tensor::full({3}, 0.f);
  EXPECT_THROW(tinyllm::linear(x, w, &bad_bias), ShapeError) << "bias of I values instead of O";
}

TEST(Attention, Task2_MultiHeadAttentionMatchesTorch) {
  // (N, L, S, E, H): (2, 11, 11, 27, 3) with an L x L mask; (1, 3, 5, 16, 4) cross attention; (3,
  // 1, 1, 8, 1); (2, 4, 6, 12, 2) with an N x H x L x S mask holding -inf.
  OpCases cases("ch1.1/mha.safetensors");
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    const auto config = cases.ints(i, "config");  // [E, H]
    const tinyllm::SimpleMultiHeadAttention mha(config[0], config[1], cases.tensor(i, "wq"),
                                                cases.tensor(i, "wk"), cases.tensor(i, "wv"),
                                                cases.tensor(i, "wo"));
    const std::optional<Tensor> mask = cases.optional_tensor(i, "mask");
    const Tensor out = mha.forward(cases.tensor(i, "query"), cases.tensor(i, "key"),
                                   cases.tensor(i, "value"), mask ? &*mask : nullptr);
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
  }
}

TEST(Attention, Task2_MultiHeadAttentionRejectsBadShapes) {
  const Tensor w = Tensor::full({6, 6}, 0.1f);
  const tinyllm::SimpleMultiHeadAttention mha(6, 2, w, w, w, w);
  const Tensor x = Tensor::full({1, 3, 6}, 1.0f);
  // Valid call: every projection of a constant input is constant, so the output is
  // 6 * 0.1 * (6 * 0.1 * 1).
  EXPECT_TENSOR_NEAR(mha.forward(x, x, x), Tensor::full({1, 3, 6}, 0.36f), 1e-6, 1e-5);
  using tinyllm::ShapeError;
  EXPECT_THROW(tinyllm::SimpleMultiHeadAttention(6, 4, w, w, w, w), ShapeError)
      << "E not a multiple of H";
  EXPECT_THROW(tinyllm::SimpleMultiHeadAttention(6, 2, Tensor::full({6, 5}, 0.f), w, w, w),
               ShapeError)
      << "wq of the wrong shape";
  EXPECT_THROW(mha.forward(Tensor::full({1, 3, 5}, 0.f), x, x), ShapeError)
      << "query with the wrong E";
  EXPECT_THROW(mha.forward(x, Tensor::full({2, 3, 6}, 0.f), Tensor::full({2, 3, 6}, 0.f)),
               ShapeError)
      << "key with another N";
  EXPECT_THROW(mha.forward(Tensor::full({3, 6}, 0.f), x, x), ShapeError) << "rank-2 query";
}

}  // namespace
