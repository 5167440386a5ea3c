// Red gate, Week 1: every public learner function of chapters 1.1-1.7 throws its chapter's TODO on
// the stubs.
#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_2_rope/rope.hpp>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_3_gqa/qwen2_attention.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>
#include <tinyllm/ch1_5_qwen2_model/embedding.hpp>
#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>
#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

Tensor ones(const Shape& shape) {
  return Tensor::full(shape, 1.0f);
}

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
  EXPECT_STUB_THROWS_TODO(
      "ch1.3", scaled_dot_product_attention_grouped(q, kv, kv, 0.5f, AttentionMask::causal()));
  Qwen2AttentionWeights weights{ones({16, 16}), ones({8, 16}), ones({8, 16}), ones({16, 16}),
                                ones({16}),     ones({8}),     ones({8})};
  // Its constructor builds a RoPE (ch1.2) first.
  EXPECT_STUB_THROWS_WEEK_TODO(
      "ch1.", Qwen2MultiHeadAttention(16, 4, 2, weights, 64, 10000.0f).forward(ones({1, 3, 16})));
}

TEST(Week1Stubs, Ch1_4_RMSNormAndMLP) {
  const Tensor x = ones({1, 3, 8});
  EXPECT_STUB_THROWS_TODO("ch1.4", RMSNorm(8, ones({8}), 1e-6f).forward(x));
  EXPECT_STUB_THROWS_TODO("ch1.4", silu(x));
  EXPECT_STUB_THROWS_TODO("ch1.4",
                          Qwen2MLP(8, 16, ones({16, 8}), ones({16, 8}), ones({8, 16})).forward(x));
}

TEST(Week1Stubs, Ch1_5_Qwen2Model) {
  const std::vector<TokenIds> tokens = {{1, 2, 3}};
  Embedding embedding(10, 8, ones({10, 8}));
  EXPECT_STUB_THROWS_TODO("ch1.5", embedding.forward(tokens));
  EXPECT_STUB_THROWS_TODO("ch1.5", embedding.as_linear(ones({1, 3, 8})));
  const auto model_dir = testing::data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied";
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const Qwen2Config config = load_qwen2_config(model_dir / "config.json");
  EXPECT_STUB_THROWS_TODO("ch1.5", load_qwen2_block_weights(checkpoint, config, 0));
  EXPECT_STUB_THROWS_TODO("ch1.5", load_qwen2_model_weights(checkpoint, config));
  EXPECT_STUB_THROWS_TODO("ch1.5", load_qwen2_week1(model_dir).forward(tokens));
  const int64_t E = config.hidden_size, I = config.intermediate_size, D = config.head_dim;
  const int64_t q_dim = config.num_attention_heads * D, kv_dim = config.num_key_value_heads * D;
  Qwen2BlockWeights block{{ones({q_dim, E}), ones({kv_dim, E}), ones({kv_dim, E}), ones({E, q_dim}),
                           ones({q_dim}), ones({kv_dim}), ones({kv_dim})},
                          ones({I, E}),
                          ones({I, E}),
                          ones({E, I}),
                          ones({E}),
                          ones({E})};
  // Its constructor builds the attention block (ch1.2/ch1.3) first.
  EXPECT_STUB_THROWS_WEEK_TODO("ch1.",
                               Qwen2TransformerBlock(config, block).forward(ones({1, 3, E})));
}

// The generation loop needs a model, which the 1.5 stubs cannot build; greedy_pick needs none.
TEST(Week1Stubs, Ch1_6_Generate) {
  EXPECT_STUB_THROWS_TODO("ch1.6", greedy_pick(Tensor({4}, {0.1f, 0.7f, 0.2f, 0.0f})));
}

TEST(Week1Stubs, Ch1_7_Sampling) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 0.5f};
  Rng rng(7);
  EXPECT_STUB_THROWS_TODO("ch1.7", argmax(logits));
  EXPECT_STUB_THROWS_TODO("ch1.7", softmax_with_temperature(logits, 0.8f));
  EXPECT_STUB_THROWS_TODO("ch1.7", sample_from({0.25f, 0.25f, 0.25f, 0.25f}, rng));
  EXPECT_STUB_THROWS_TODO("ch1.7", top_k_filter(logits, 2));
  EXPECT_STUB_THROWS_TODO("ch1.7", top_p_filter({0.1f, 0.6f, 0.1f, 0.2f}, 0.9f));
  EXPECT_STUB_THROWS_TODO("ch1.7", Sampler(SamplerConfig{0.7f, 2, 0.9f, 1}));
}

}  // namespace
}  // namespace tinyllm
