// Red gate, Week 1: every public learner function of chapters 1.1-1.5 throws its chapter's TODO on the stubs.
#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_2_rope/rope.hpp>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_3_gqa/qwen2_attention.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>
#include <tinyllm/ch1_5_qwen2_model/embedding.hpp>
#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

Tensor ones(const Shape& shape) { return Tensor::full(shape, 1.0f); }

TEST(Week1Stubs, Ch1_1_Attention) {
  const Tensor x = ones({2, 4, 8});
  const Tensor w = ones({8, 8});
  EXPECT_STUB_THROWS_TODO("ch1.1", softmax(x));
  EXPECT_STUB_THROWS_TODO("ch1.1", linear(x, w));
  EXPECT_STUB_THROWS_TODO("ch1.1", scaled_dot_product_attention_simple(x, x, x));
  EXPECT_STUB_THROWS_TODO("ch1.1", SimpleMultiHeadAttention(8, 2, w, w, w, w).forward(x, x, x));
}

TEST(Week1Stubs, Ch1_2_RoPE) {
  const Tensor x = ones({1, 4, 2, 8});
  EXPECT_STUB_THROWS_TODO("ch1.2", RoPE(8, 16, 10000.0f, true).forward(x));
  EXPECT_STUB_THROWS_TODO("ch1.2", RoPE(8, 16, 10000.0f, false).forward(x, 3));
  EXPECT_STUB_THROWS_TODO("ch1.2", RoPE(8, 16).forward(x, std::vector<int64_t>{2}));
}

TEST(Week1Stubs, Ch1_3_GQA) {
  const Tensor q = ones({4, 3, 8});
  const Tensor kv = ones({2, 5, 8});
  EXPECT_STUB_THROWS_TODO("ch1.3", causal_mask(3, 5));
  EXPECT_STUB_THROWS_TODO("ch1.3", scaled_dot_product_attention_grouped(q, kv, kv));
  EXPECT_STUB_THROWS_TODO("ch1.3", scaled_dot_product_attention_grouped(q, kv, kv, 0.5f, AttentionMask::causal()));
  Qwen2AttentionWeights weights{ones({16, 16}), ones({8, 16}), ones({8, 16}), ones({16, 16}),
                                ones({16}),     ones({8}),     ones({8})};
  EXPECT_STUB_THROWS_TODO("ch1.3", Qwen2MultiHeadAttention(16, 4, 2, weights, 64, 10000.0f).forward(ones({1, 3, 16})));
}

TEST(Week1Stubs, Ch1_4_RMSNormAndMLP) {
  const Tensor x = ones({1, 3, 8});
  EXPECT_STUB_THROWS_TODO("ch1.4", RMSNorm(8, ones({8}), 1e-6f).forward(x));
  EXPECT_STUB_THROWS_TODO("ch1.4", silu(x));
  EXPECT_STUB_THROWS_TODO("ch1.4", Qwen2MLP(8, 16, ones({16, 8}), ones({16, 8}), ones({8, 16})).forward(x));
}

TEST(Week1Stubs, Ch1_5_Qwen2Model) {
  const std::vector<TokenIds> tokens = {{1, 2, 3}};
  Embedding embedding(10, 8, ones({10, 8}));
  EXPECT_STUB_THROWS_TODO("ch1.5", embedding.forward(tokens));
  EXPECT_STUB_THROWS_TODO("ch1.5", embedding.as_linear(ones({1, 3, 8})));
  const auto model_dir = testing::data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied";
  EXPECT_STUB_THROWS_TODO("ch1.5", load_qwen2_week1(model_dir).forward(tokens));
}

}  // namespace
}  // namespace tinyllm
