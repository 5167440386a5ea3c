// Chapter 1.3 tests: grouped-query attention (Task 1), causal masks (Task 2), the Qwen2 attention
// block (Task 3). Expected values: tools/fixtures/gen_week1_ops.py (PyTorch, float64: K/V repeated
// with repeat_interleave; the Qwen2 block mirrors transformers' Qwen2Attention). Run: ctest
// --preset week1 -L '^ch1\.3$'
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_3_gqa/qwen2_attention.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"
#include "week1_op_cases.hpp"

namespace {

using tinyllm::AttentionMask;
using tinyllm::Tensor;
using tinyllm::testing::OpCases;

// Inputs are O(1) float32 values, expected values float64 rounded once to float32. The outputs are
// short chains of dot products (at most 64 terms), RoPE and one softmax: float32 rounding stays
// around 1e-6. atol = rtol = 1e-5 keeps a 10x margin; a wrong KV head, scale, mask alignment or
// RoPE form moves outputs by 1e-2 or more.
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-5;
constexpr float kInf = std::numeric_limits<float>::infinity();

AttentionMask mask_of(const OpCases& cases, int i) {
  if (cases.has(i, "causal")) return AttentionMask::causal();
  if (cases.has(i, "mask")) return AttentionMask::from(cases.tensor(i, "mask"));
  return AttentionMask::none();
}

void check_grouped_cases(const std::string& file) {
  OpCases cases(file);
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    const Tensor out = tinyllm::scaled_dot_product_attention_grouped(
        cases.tensor(i, "query"), cases.tensor(i, "key"), cases.tensor(i, "value"),
        cases.optional_scalar(i, "scale"), mask_of(cases, i));
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
  }
}

// Runs the Qwen2 attention cases whose mask is of the given kind; returns how many ran.
int check_qwen2_cases(AttentionMask::Kind kind) {
  OpCases cases("ch1.3/qwen2_attention.safetensors");
  int ran = 0;
  for (int i = 0; i < cases.size(); ++i) {
    const AttentionMask mask = mask_of(cases, i);
    if (mask.kind != kind) continue;
    SCOPED_TRACE(cases.describe(i));
    const auto config = cases.ints(i, "config");  // [E, H_q, H, max_seq_len (0 = default)]
    tinyllm::Qwen2AttentionWeights w{
        cases.tensor(i, "wq"), cases.tensor(i, "wk"), cases.tensor(i, "wv"), cases.tensor(i, "wo"),
        cases.tensor(i, "bq"), cases.tensor(i, "bk"), cases.tensor(i, "bv")};
    const Tensor x = cases.tensor(i, "x");
    Tensor out;
    if (config[3] == 0) {  // the constructor's defaults: max_seq_len 32768, theta 1e6
      const tinyllm::Qwen2MultiHeadAttention attention(config[0], config[1], config[2],
                                                       std::move(w));
      out = attention.forward(x, mask);
    } else {
      const tinyllm::Qwen2MultiHeadAttention attention(
          config[0], config[1], config[2], std::move(w), config[3], cases.scalar(i, "theta"));
      out = attention.forward(x, mask);
    }
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
    ++ran;
  }
  return ran;
}

// ---- Task 1
// ------------------------------------------------------------------------------------------------------

TEST(GQA, Task1_GroupedAttentionMatchesTorch) {
  // H_q / H = 3, 1, 2 and 7 (multi-query); batch dims (), (2,), (2, 3), (2, 10);
  // L = 1, L < S and L > S; odd D = 5, 9; scale 0.8;
  // masks H_q x L x S, L x S, 1 x H_q x 1 x S and the full N.. x H_q x L x S.
  check_grouped_cases("ch1.3/gqa.safetensors");
}

TEST(GQA, Task1_FullyMaskedRowIsZero) {
  OpCases cases("ch1.3/gqa.safetensors");
  const int last = cases.size() - 1;  // query row (1, 5, 2) is fully masked
  SCOPED_TRACE(cases.describe(last));
  const Tensor out = tinyllm::scaled_dot_product_attention_grouped(
      cases.tensor(last, "query"), cases.tensor(last, "key"), cases.tensor(last, "value"),
      std::nullopt, AttentionMask::from(cases.tensor(last, "mask")));
  ASSERT_EQ(out.ndim(), 4);
  for (int64_t d = 0; d < out.dim(-1); ++d) EXPECT_EQ(out.at({1, 5, 2, d}), 0.0f) << "d = " << d;
}

TEST(GQA, Task1_RejectsBadShapes) {
  const Tensor q = Tensor::full({2, 4, 3, 5}, 0.5f), kv = Tensor::full({2, 2, 6, 5}, 0.25f);
  // Valid call: identical keys give uniform weights, so every output row is the constant value row.
  EXPECT_TENSOR_NEAR(tinyllm::scaled_dot_product_attention_grouped(q, kv, kv),
                     Tensor::full({2, 4, 3, 5}, 0.25f), 1e-7, 1e-6);
  using tinyllm::ShapeError;
  const Tensor kv3 = Tensor::full({2, 3, 6, 5}, 0.f);
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_grouped(q, kv3, kv3), ShapeError)
      << "H_q = 4, H = 3";
  const Tensor kv_d4 = Tensor::full({2, 2, 6, 4}, 0.f);
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_grouped(q, kv_d4, kv_d4), ShapeError)
      << "D differs";
  EXPECT_THROW(
      tinyllm::scaled_dot_product_attention_grouped(q, kv, Tensor::full({2, 2, 7, 5}, 0.f)),
      ShapeError)
      << "value S differs from key S";
  const Tensor kv_n3 = Tensor::full({3, 2, 6, 5}, 0.f);
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_grouped(q, kv_n3, kv_n3), ShapeError)
      << "N differs";
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_grouped(
                   q, kv, kv, std::nullopt, AttentionMask::from(Tensor::full({2, 3, 6}, 0.f))),
               ShapeError)
      << "a 2 x 3 x 6 mask does not broadcast to 2 x 4 x 3 x 6";
}

// ---- Task 2
// ------------------------------------------------------------------------------------------------------

TEST(GQA, Task2_CausalMaskSquare) {
  const Tensor expected({3, 3}, {0, -kInf, -kInf,  //
                                 0, 0, -kInf,      //
                                 0, 0, 0});
  const Tensor mask = tinyllm::causal_mask(3, 3);
  ASSERT_EQ(mask.shape(), expected.shape());
  EXPECT_EQ(mask.values(), expected.values());
}

TEST(GQA, Task2_CausalMaskBottomRightAligned) {
  // L = 3 new queries at the end of S = 5 keys: row i sees keys j <= i + 2 (PyTorch's is_causal
  // would give j <= i).
  const Tensor expected({3, 5}, {0, 0, 0, -kInf, -kInf,  //
                                 0, 0, 0, 0, -kInf,      //
                                 0, 0, 0, 0, 0});
  const Tensor mask = tinyllm::causal_mask(3, 5);
  ASSERT_EQ(mask.shape(), expected.shape());
  EXPECT_EQ(mask.values(), expected.values());
  // One query (decoding one token) sees every key.
  EXPECT_EQ(tinyllm::causal_mask(1, 4).values(), Tensor::full({1, 4}, 0.0f).values());
}

TEST(GQA, Task2_CausalMaskRejectsMoreQueriesThanKeys) {
  EXPECT_EQ(tinyllm::causal_mask(2, 2).shape(), (tinyllm::Shape{2, 2}));
  EXPECT_THROW(tinyllm::causal_mask(4, 3), tinyllm::ShapeError)
      << "L > S: the first query would see no key";
  EXPECT_THROW(tinyllm::causal_mask(-1, 3), tinyllm::ShapeError);
  const Tensor q = Tensor::full({1, 2, 4, 3}, 0.5f), kv = Tensor::full({1, 1, 3, 3}, 0.5f);
  EXPECT_THROW(tinyllm::scaled_dot_product_attention_grouped(q, kv, kv, std::nullopt,
                                                             AttentionMask::causal()),
               tinyllm::ShapeError);
}

TEST(GQA, Task2_GroupedAttentionCausalMatchesTorch) {
  // mask = causal with L < S (bottom-right alignment matters), L = S, L = 1; H_q / H = 3, 2, 7, 1.
  check_grouped_cases("ch1.3/gqa_causal.safetensors");
}

// ---- Task 3
// ------------------------------------------------------------------------------------------------------

TEST(Qwen2Attention, Task3_NoMaskMatchesTorch) {
  // B=1, L=4, E=32, H_q=4, H=2 (D=8), theta 1e4.
  EXPECT_GT(check_qwen2_cases(AttentionMask::Kind::None), 0);
}

TEST(Qwen2Attention, Task3_CausalMatchesTorch) {
  // H_q / H = 2, 7 and 1; L = 1 with the default max_seq_len and theta; theta 1e4 and 1e6; B = 1
  // and 2.
  EXPECT_GT(check_qwen2_cases(AttentionMask::Kind::Causal), 0);
}

TEST(Qwen2Attention, Task3_AdditiveMaskMatchesTorch) {
  // B=2, L=3, E=24, H_q=H=2 (D=12), a B x H_q x L x L mask holding -inf.
  EXPECT_GT(check_qwen2_cases(AttentionMask::Kind::Additive), 0);
}

TEST(Qwen2Attention, Task3_RejectsBadShapes) {
  // E=8, H_q=2, H=1, D=4.
  const auto weights = [] {
    return tinyllm::Qwen2AttentionWeights{Tensor::full({8, 8}, 0.1f), Tensor::full({4, 8}, 0.1f),
                                          Tensor::full({4, 8}, 0.1f), Tensor::full({8, 8}, 0.1f),
                                          Tensor::full({8}, 0.0f),    Tensor::full({4}, 0.0f),
                                          Tensor::full({4}, 0.0f)};
  };
  const tinyllm::Qwen2MultiHeadAttention attention(8, 2, 1, weights(), 4, 10000.0f);
  // Valid call: a constant input gives constant q, k, v (RoPE rotates q and k alike and every key
  // is equal, so the weights stay uniform); v = 8 * 0.1 = 0.8 per element, the output
  // 8 * 0.1 * 0.8 = 0.64.
  EXPECT_TENSOR_NEAR(attention.forward(Tensor::full({1, 3, 8}, 1.0f), AttentionMask::causal()),
                     Tensor::full({1, 3, 8}, 0.64f), 1e-6, 1e-5);
  using tinyllm::ShapeError;
  EXPECT_THROW(tinyllm::Qwen2MultiHeadAttention(8, 3, 1, weights()), ShapeError)
      << "E = 8 not a multiple of 3";
  EXPECT_THROW(tinyllm::Qwen2MultiHeadAttention(8, 2, 3, weights()), ShapeError)
      << "H_q = 2 not a multiple of 3";
  EXPECT_THROW(tinyllm::Qwen2MultiHeadAttention(8, 2, 2, weights()), ShapeError)
      << "wk is 4 x 8, not (H*D) x E";
  EXPECT_THROW(attention.forward(Tensor::full({1, 3, 6}, 0.f)), ShapeError) << "x with E = 6";
  EXPECT_THROW(attention.forward(Tensor::full({3, 8}, 0.f)), ShapeError) << "rank-2 x";
  EXPECT_THROW(attention.forward(Tensor::full({1, 5, 8}, 0.f)), tinyllm::InvalidArgument)
      << "L = 5 > max_seq_len = 4";
}

}  // namespace
