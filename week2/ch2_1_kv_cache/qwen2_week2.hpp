// Chapter 2.1, Task 2: the Qwen2 model of Week 2, which takes a position offset and one KvCache per
// layer, so that each call computes only the L' new tokens:
//
//   ids B x L' -> Embedding -> [block(offset, cache_i)] x layers -> RMSNorm -> head -> B x L' x V
//
// Inside each block's attention the new tokens sit at positions offset .. offset+L'-1 (RoPE with
// that offset), their keys and values are appended to the layer's cache, and the L' queries attend
// to all S = offset + L' cached keys with the bottom-right causal mask of L' x S (query i sees keys
// j <= i + S - L'). Prefill is one call with the whole prompt at offset 0; decode is one call per
// token with L' = 1. Everything else (projections, RMSNorm, MLP, embedding, loading) is Week 1's.
// Book: book/week2/ch2_1_kv_cache.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_2_rope/rope.hpp>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_3_gqa/qwen2_attention.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>
#include <tinyllm/ch1_5_qwen2_model/embedding.hpp>
#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// The Qwen2 attention block with a KV cache. Same weights and projections as chapter 1.3's
/// Qwen2MultiHeadAttention (Qwen2AttentionWeights: wq (H_q*D) x E, wk, wv (H*D) x E, wo E x
/// (H_q*D), biases bq, bk, bv).
class Qwen2MultiHeadAttentionWeek2 {
 public:
  /// E = hidden_size, H_q = num_heads, H = num_kv_heads, D = E / H_q; RoPE over [0, max_seq_len).
  /// Throws ShapeError for inconsistent sizes or weight shapes (as in chapter 1.3).
  Qwen2MultiHeadAttentionWeek2(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                               Qwen2AttentionWeights weights, int64_t max_seq_len, float theta)
      : hidden_size_(hidden_size),
        num_heads_(num_heads),
        num_kv_heads_(num_kv_heads),
        head_dim_(checked_head_dim(hidden_size, num_heads, num_kv_heads)),
        w_(std::move(weights)),
        rope_(head_dim_, max_seq_len, theta, /*traditional=*/false) {
    const int64_t q = num_heads * head_dim_, kv = num_kv_heads * head_dim_, e = hidden_size;
    const std::string what = "Qwen2MultiHeadAttentionWeek2: ";
    for (const auto& [t, shape, name] :
         {std::tuple<const Tensor&, Shape, const char*>{w_.wq, {q, e}, "wq"},
          {w_.wk, {kv, e}, "wk"},
          {w_.wv, {kv, e}, "wv"},
          {w_.wo, {e, q}, "wo"},
          {w_.bq, {q}, "bq"},
          {w_.bk, {kv}, "bk"},
          {w_.bv, {kv}, "bv"}}) {
      check_shape(t, shape, what + name);
    }
  }

  /// Task 2. x: B x L' x E, the new tokens at positions offset .. offset+L'-1 -> B x L' x E.
  ///   q = rope(linear(x, wq, bq) as B x L' x H_q x D, offset); k likewise (H heads); v unrotated
  ///   keys, values = cache.update_and_fetch(k, v as B x H x L' x D)      (B x H x S x D)
  ///   o = scaled_dot_product_attention_grouped(q as B x H_q x L' x D, keys, values, 1/sqrt(D),
  ///       AttentionMask::causal())   (bottom-right: query i sees keys j <= i + S - L')
  ///   out = linear(o as B x L' x (H_q*D), wo)
  /// Throws ShapeError unless x is B x L' x E; InvalidArgument if offset != cache.offset() (the
  /// positions would not match the cached keys); the cache's own errors otherwise.
  Tensor forward(const Tensor& x, int64_t offset, KvCache& cache) const {
    if (x.ndim() != 3 || x.dim(2) != hidden_size_) {
      throw ShapeError("Qwen2MultiHeadAttentionWeek2: x must be B x L' x E with E = " +
                       std::to_string(hidden_size_) + ", got shape " + shape_to_string(x.shape()));
    }
    if (offset != cache.offset()) {
      throw InvalidArgument("Qwen2MultiHeadAttentionWeek2: offset " + std::to_string(offset) +
                            " but the cache holds " + std::to_string(cache.offset()) +
                            " positions (the new tokens must follow the cached ones)");
    }
    TINYLLM_TODO("ch2.1", "Task 2");
  }

  int64_t head_dim() const { return head_dim_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  /// Provided accessors (chapter 2.6's batched step reuses the weights and the RoPE).
  int64_t num_heads() const { return num_heads_; }
  int64_t hidden_size() const { return hidden_size_; }
  const Qwen2AttentionWeights& weights() const { return w_; }
  const RoPE& rope() const { return rope_; }

 private:
  static int64_t checked_head_dim(int64_t e, int64_t h_q, int64_t h) {
    if (e <= 0 || h_q <= 0 || h <= 0 || e % h_q != 0 || h_q % h != 0 || (e / h_q) % 2 != 0) {
      throw ShapeError(
          "Qwen2MultiHeadAttentionWeek2: need E % H_q == 0, H_q % H == 0 and an even "
          "D = E / H_q; got E = " +
          std::to_string(e) + ", H_q = " + std::to_string(h_q) + ", H = " + std::to_string(h));
    }
    return e / h_q;
  }

  int64_t hidden_size_;
  int64_t num_heads_;
  int64_t num_kv_heads_;
  int64_t head_dim_;
  Qwen2AttentionWeights w_;
  RoPE rope_;
};

/// Provided. A position-wise feed-forward layer other than the dense MLP, x: N.. x E -> N.. x E,
/// every row on its own: what chapter 3.3's mixture of experts is.
class FeedForward {
 public:
  virtual ~FeedForward() = default;
  virtual Tensor forward(const Tensor& x) const = 0;
};

/// Provided. The MLP slot of a decoder layer: chapter 1.4's dense Qwen2MLP (every layer of a
/// Qwen2 model), or another FeedForward (the layers with experts of chapter 3.3's Qwen2-MoE).
/// forward() runs whichever it holds, so the block's forward is the same for both.
class MlpSlot {
 public:
  explicit MlpSlot(Qwen2MLP dense) : dense_(std::move(dense)) {}
  explicit MlpSlot(std::shared_ptr<const FeedForward> other) : other_(std::move(other)) {}
  /// x: N.. x E -> N.. x E.
  Tensor forward(const Tensor& x) const { return dense_ ? dense_->forward(x) : other_->forward(x); }
  /// The dense MLP, or nullptr when the slot holds another FeedForward.
  const Qwen2MLP* dense() const { return dense_ ? &*dense_ : nullptr; }
  /// The other FeedForward, or nullptr when the slot holds the dense MLP.
  const FeedForward* other() const { return other_.get(); }

 private:
  std::optional<Qwen2MLP> dense_;
  std::shared_ptr<const FeedForward> other_;
};

/// One Qwen2 decoder layer with a KV cache: chapter 1.5's block with the Week 2 attention.
class Qwen2TransformerBlockWeek2 {
 public:
  /// The sub-layers from the config, as Qwen2TransformerBlock (chapter 1.5); the MLP slot holds
  /// `mlp` when given (chapter 3.3's experts; weights.w_gate/w_up/w_down are then unused), else the
  /// dense Qwen2MLP of weights (I = intermediate_size). Throws ShapeError if a weight has the wrong
  /// shape.
  Qwen2TransformerBlockWeek2(const Qwen2Config& config, Qwen2BlockWeights weights,
                             std::shared_ptr<const FeedForward> mlp = nullptr)
      : hidden_size_(config.hidden_size),
        input_layernorm_(config.hidden_size, std::move(weights.w_input_layernorm),
                         config.rms_norm_eps),
        attention_(config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
                   std::move(weights.attention), config.max_position_embeddings, config.rope_theta),
        post_attention_layernorm_(config.hidden_size, std::move(weights.w_post_attention_layernorm),
                                  config.rms_norm_eps),
        mlp_(mlp ? MlpSlot(std::move(mlp))
                 : MlpSlot(Qwen2MLP(config.hidden_size, config.intermediate_size,
                                    std::move(weights.w_gate), std::move(weights.w_up),
                                    std::move(weights.w_down)))) {}

  /// Task 2. x: B x L' x E -> B x L' x E, pre-norm with residuals as in chapter 1.5:
  ///   h   = x + attention_.forward(input_layernorm_.forward(x), offset, cache)
  ///   out = h + mlp_.forward(post_attention_layernorm_.forward(h))
  /// Throws ShapeError unless x is B x L' x E; errors of the attention otherwise.
  Tensor forward(const Tensor& x, int64_t offset, KvCache& cache) const {
    if (x.ndim() != 3 || x.dim(2) != hidden_size_) {
      throw ShapeError("Qwen2TransformerBlockWeek2: x must be B x L' x E with E = " +
                       std::to_string(hidden_size_) + ", got shape " + shape_to_string(x.shape()));
    }
    TINYLLM_TODO("ch2.1", "Task 2");
  }

  /// Provided accessors to the sub-layers (chapter 2.6's batched step reuses them).
  const RMSNorm& input_layernorm() const { return input_layernorm_; }
  const Qwen2MultiHeadAttentionWeek2& attention() const { return attention_; }
  const RMSNorm& post_attention_layernorm() const { return post_attention_layernorm_; }
  /// The dense MLP; InvalidArgument for a layer whose slot holds something else (chapter 3.3's
  /// experts, which chapter 2.6's batched step does not run).
  const Qwen2MLP& mlp() const {
    if (mlp_.dense() == nullptr) {
      throw InvalidArgument(
          "Qwen2TransformerBlockWeek2::mlp: this layer's MLP slot holds experts (chapter 3.3), "
          "not a dense Qwen2MLP");
    }
    return *mlp_.dense();
  }
  const MlpSlot& mlp_slot() const { return mlp_; }

 private:
  int64_t hidden_size_;
  RMSNorm input_layernorm_;
  Qwen2MultiHeadAttentionWeek2 attention_;
  RMSNorm post_attention_layernorm_;
  MlpSlot mlp_;
};

/// The whole Qwen2 model of Week 2: logits for L' new tokens given the caches of the earlier ones.
/// It is a LanguageModel (language_model.hpp), so this week's generation and batching loops, which
/// take that interface, run it and the engine's fast model alike.
class Qwen2ModelWeek2 : public LanguageModel {
 public:
  /// Provided. Builds the model from chapter 1.5's load_qwen2_model_weights, as Qwen2ModelWeek1
  /// does (the same tensor names and errors), with Week 2 blocks.
  Qwen2ModelWeek2(const Qwen2Config& config, const Checkpoint& checkpoint)
      : Qwen2ModelWeek2(config, load_qwen2_model_weights(checkpoint, checked(config)), {}) {}

  /// Task 2. tokens: B rows of L' new ids at positions offset .. offset+L'-1; caches: one per
  /// layer (create_kv_caches), each holding exactly `offset` positions -> logits B x L' x V:
  ///   h = embedding_.forward(tokens); h = layers_[i].forward(h, offset, caches[i]) for every i;
  ///   h = norm_.forward(h); logits = tied ? embedding_.as_linear(h) : linear(h, lm_head_)
  /// Afterwards every cache holds offset + L' positions. Provided checks: ShapeError (empty or
  /// ragged batch, batch size not the caches'), InvalidArgument (id outside [0, V), wrong number
  /// of caches, offset < 0), ContextLengthError (offset + L' > max_position_embeddings).
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override {
    check_forward_args(tokens, offset, caches);
    TINYLLM_TODO("ch2.1", "Task 2");
  }

  /// Task 2. One empty KvCache per layer for `batch` rows: H = num_key_value_heads, D = head_dim,
  /// max_seq_len = max_position_embeddings.
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override {
    TINYLLM_TODO("ch2.1", "Task 2");
  }

  const Qwen2Config& config() const override { return config_; }

  /// Provided accessors to the parts (chapter 2.6 runs them on a batch of requests): the embedding
  /// (V x E, also the head when tie_word_embeddings), the decoder layers, the final RMSNorm and the
  /// untied head (V x E; empty when tied).
  const Embedding& embedding() const { return *embedding_; }
  const std::vector<Qwen2TransformerBlockWeek2>& layers() const { return layers_; }
  const RMSNorm& norm() const { return *norm_; }
  const Tensor& lm_head() const { return lm_head_; }

 protected:
  /// Provided, for a model that puts something else into some layers' MLP slots (chapter 3.3's
  /// Qwen2MoeModel): the model of `weights`, layer i's slot holding mlps[i] where that is given
  /// and non-null (the dense MLP of weights.layers[i] otherwise). The caller checks the config.
  Qwen2ModelWeek2(const Qwen2Config& config, Qwen2ModelWeights weights,
                  std::vector<std::shared_ptr<const FeedForward>> mlps)
      : config_(config) {
    mlps.resize(weights.layers.size());
    embedding_.emplace(config_.vocab_size, config_.hidden_size, std::move(weights.embed_tokens));
    for (size_t i = 0; i < weights.layers.size(); ++i) {
      layers_.emplace_back(config_, std::move(weights.layers[i]), std::move(mlps[i]));
    }
    norm_.emplace(config_.hidden_size, std::move(weights.norm), config_.rms_norm_eps);
    lm_head_ = std::move(weights.lm_head);
  }

 private:
  static const Qwen2Config& checked(const Qwen2Config& config) {
    check_supported_config(config, "Qwen2ModelWeek2");
    return config;
  }

  void check_forward_args(const std::vector<TokenIds>& tokens, int64_t offset,
                          const std::vector<KvCache>& caches) const {
    check_token_batch(tokens, config_.vocab_size, "Qwen2ModelWeek2::forward");
    const auto length = static_cast<int64_t>(tokens[0].size());
    if (caches.size() != layers_.size()) {
      throw InvalidArgument("Qwen2ModelWeek2::forward: got " + std::to_string(caches.size()) +
                            " caches for " + std::to_string(layers_.size()) + " layers");
    }
    for (const KvCache& cache : caches) {
      if (cache.batch() != static_cast<int64_t>(tokens.size())) {
        throw ShapeError("Qwen2ModelWeek2::forward: " + std::to_string(tokens.size()) +
                         " rows of tokens, but the caches hold " + std::to_string(cache.batch()));
      }
    }
    if (offset < 0) throw InvalidArgument("Qwen2ModelWeek2::forward: negative offset");
    if (offset + length > config_.max_position_embeddings) {
      throw ContextLengthError(
          "Qwen2ModelWeek2::forward: " + std::to_string(offset) + " cached + " +
          std::to_string(length) + " new tokens do not fit into the context of " +
          std::to_string(config_.max_position_embeddings) + " (max_position_embeddings)");
    }
  }

  Qwen2Config config_;
  std::optional<Embedding> embedding_;
  std::vector<Qwen2TransformerBlockWeek2> layers_;
  std::optional<RMSNorm> norm_;
  Tensor lm_head_;  // V x E, only for untied checkpoints
};

/// Provided. Loads a Hugging Face Qwen2 model directory (as load_qwen2_week1).
inline Qwen2ModelWeek2 load_qwen2_week2(const std::filesystem::path& model_dir) {
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const Qwen2Config config = load_qwen2_config(model_dir / "config.json");
  return Qwen2ModelWeek2(config, checkpoint);
}

}  // namespace tinyllm
