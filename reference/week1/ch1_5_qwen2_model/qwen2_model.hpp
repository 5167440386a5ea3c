// Chapter 1.5, Tasks 2 and 3: the Qwen2 decoder block and the whole model, assembled from a
// checkpoint.
//
//   ids B x L -> Embedding -> [Qwen2TransformerBlock] x num_hidden_layers -> RMSNorm
//             -> output head -> logits B x L x V
//
// Each block is pre-norm with two residual connections:
//   h   = x + attention(input_layernorm(x))            (causal mask, RoPE at positions 0..L-1)
//   out = h + mlp(post_attention_layernorm(h))
// The output head is the embedding matrix itself (tie_word_embeddings: true) or a separate
// lm_head.weight. Everything is computed in f32; bf16/f16 weights are converted exactly when they
// are loaded. Book: book/week1/ch1_5_qwen2_model.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_3_gqa/qwen2_attention.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>
#include <tinyllm/ch1_5_qwen2_model/embedding.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// The weights of one decoder layer, in the checkpoint's layout (out_features x in_features):
/// attention as in chapter 1.3; w_gate, w_up: I x E; w_down: E x I; the two norm gains: E.
struct Qwen2BlockWeights {
  Qwen2AttentionWeights attention;
  Tensor w_gate, w_up, w_down, w_input_layernorm, w_post_attention_layernorm;
};

/// One Qwen2 decoder layer. The sub-layers are built (and their weight shapes checked) by the
/// constructor from the config: E = hidden_size, H_q = num_attention_heads, H =
/// num_key_value_heads, I = intermediate_size, the RMSNorm eps = rms_norm_eps, RoPE base =
/// rope_theta over max_position_embeddings positions.
class Qwen2TransformerBlock {
 public:
  /// Throws ShapeError if a weight has the wrong shape for the config.
  Qwen2TransformerBlock(const Qwen2Config& config, Qwen2BlockWeights weights)
      : hidden_size_(config.hidden_size),
        input_layernorm_(config.hidden_size, std::move(weights.w_input_layernorm),
                         config.rms_norm_eps),
        attention_(config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
                   std::move(weights.attention), config.max_position_embeddings, config.rope_theta),
        post_attention_layernorm_(config.hidden_size, std::move(weights.w_post_attention_layernorm),
                                  config.rms_norm_eps),
        mlp_(config.hidden_size, config.intermediate_size, std::move(weights.w_gate),
             std::move(weights.w_up), std::move(weights.w_down)) {}

  /// Task 2. x: B x L x E -> B x L x E, pre-norm with residuals:
  ///   h   = x + attention_.forward(input_layernorm_.forward(x), mask)
  ///   out = h + mlp_.forward(post_attention_layernorm_.forward(h))
  /// The norms see the residual stream, but the residual adds the un-normalised x and h.
  /// mask: AttentionMask::causal() for a decoder (the default); none or additive for tests.
  /// Throws ShapeError unless x is B x L x E.
  Tensor forward(const Tensor& x, const AttentionMask& mask = AttentionMask::causal()) const {
    if (x.ndim() != 3 || x.dim(2) != hidden_size_) {
      throw ShapeError("Qwen2TransformerBlock: x must be B x L x E with E = " +
                       std::to_string(hidden_size_) + ", got shape " + shape_to_string(x.shape()));
    }
    // SOLUTION BEGIN ch1.5 Task 2
    Tensor h = attention_.forward(input_layernorm_.forward(x), mask);
    h.rows() += x.rows();
    Tensor out = mlp_.forward(post_attention_layernorm_.forward(h));
    out.rows() += h.rows();
    return out;
    // SOLUTION END
  }

 private:
  int64_t hidden_size_;
  RMSNorm input_layernorm_;
  Qwen2MultiHeadAttention attention_;
  RMSNorm post_attention_layernorm_;
  Qwen2MLP mlp_;
};

/// Task 3. Loads the weights of decoder layer `layer` from a Hugging Face checkpoint. With
/// P = "model.layers.<layer>.":
///   P self_attn.{q,k,v}_proj.weight           (H_q*D) x E, (H*D) x E, (H*D) x E
///   P self_attn.{q,k,v}_proj.bias             H_q*D, H*D, H*D
///   P self_attn.o_proj.weight                 E x (H_q*D)
///   P mlp.{gate,up}_proj.weight               I x E
///   P mlp.down_proj.weight                    E x I
///   P {input,post_attention}_layernorm.weight E
/// Load each with checkpoint.load(name, expected_shape): a missing tensor is a FormatError naming
/// it, a tensor of another shape a ShapeError naming it and both shapes. A layer with experts
/// (config.is_sparse_layer(layer): only in a Qwen2-MoE config, which the models of Weeks 1 and 2
/// reject) has no dense mlp.*_proj: leave w_gate, w_up, w_down empty there (chapter 3.3 loads
/// its experts).
inline Qwen2BlockWeights load_qwen2_block_weights(const Checkpoint& checkpoint,
                                                  const Qwen2Config& config, int64_t layer) {
  // SOLUTION BEGIN ch1.5 Task 3
  const int64_t E = config.hidden_size, I = config.intermediate_size;
  const int64_t D = config.head_dim, q_dim = config.num_attention_heads * D,
                kv_dim = config.num_key_value_heads * D;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  Qwen2BlockWeights w;
  w.attention.wq = checkpoint.load(p + "self_attn.q_proj.weight", {q_dim, E});
  w.attention.wk = checkpoint.load(p + "self_attn.k_proj.weight", {kv_dim, E});
  w.attention.wv = checkpoint.load(p + "self_attn.v_proj.weight", {kv_dim, E});
  w.attention.wo = checkpoint.load(p + "self_attn.o_proj.weight", {E, q_dim});
  w.attention.bq = checkpoint.load(p + "self_attn.q_proj.bias", {q_dim});
  w.attention.bk = checkpoint.load(p + "self_attn.k_proj.bias", {kv_dim});
  w.attention.bv = checkpoint.load(p + "self_attn.v_proj.bias", {kv_dim});
  if (!config.is_sparse_layer(layer)) {
    w.w_gate = checkpoint.load(p + "mlp.gate_proj.weight", {I, E});
    w.w_up = checkpoint.load(p + "mlp.up_proj.weight", {I, E});
    w.w_down = checkpoint.load(p + "mlp.down_proj.weight", {E, I});
  }
  w.w_input_layernorm = checkpoint.load(p + "input_layernorm.weight", {E});
  w.w_post_attention_layernorm = checkpoint.load(p + "post_attention_layernorm.weight", {E});
  return w;
  // SOLUTION END
}

/// All of a checkpoint's weights, in the shapes the model's classes take. Week 2's model is built
/// from the same struct.
struct Qwen2ModelWeights {
  Tensor embed_tokens;                    // V x E, model.embed_tokens.weight
  std::vector<Qwen2BlockWeights> layers;  // one per layer, load_qwen2_block_weights
  Tensor norm;                            // E, model.norm.weight (the final RMSNorm)
  Tensor lm_head;                         // V x E, lm_head.weight; left empty when tied
};

/// Provided. Throws ConfigError (naming `model_name`) for a config the Qwen2 classes cannot run:
/// no layers, no heads, head_dim * H_q != E, a Qwen2-MoE config unless `experts_supported`
/// (chapter 3.3's model and the engine run those) or a scaled RoPE (chapter 3.7).
inline void check_supported_config(const Qwen2Config& config, const std::string& model_name,
                                   bool experts_supported = false) {
  if (config.moe && !experts_supported) {
    throw ConfigError(model_name + ": this is a Qwen2-MoE config (" +
                      std::to_string(config.moe->num_experts) +
                      " experts); the dense Qwen2 model cannot run it (chapter 3.3 adds the MoE "
                      "model)");
  }
  if (config.rope_scaling) {
    throw ConfigError(model_name + ": rope_scaling \"" +
                      RopeScaling::type_name(config.rope_scaling->type) +
                      "\" is not supported until chapter 3.7 (only plain RoPE is)");
  }
  if (config.num_hidden_layers < 1 || config.num_attention_heads < 1 ||
      config.head_dim * config.num_attention_heads != config.hidden_size) {
    throw ConfigError(model_name +
                      ": unsupported config (need num_hidden_layers >= 1 and head_dim * "
                      "num_attention_heads == hidden_size), got " +
                      std::to_string(config.num_hidden_layers) + " layers, head_dim " +
                      std::to_string(config.head_dim) + ", " +
                      std::to_string(config.num_attention_heads) + " heads, hidden_size " +
                      std::to_string(config.hidden_size));
  }
}

/// Task 3. Every weight of the model, each loaded with checkpoint.load(name, expected_shape):
///   embed_tokens <- model.embed_tokens.weight (V x E)
///   layers       <- load_qwen2_block_weights for layers 0 .. num_hidden_layers-1
///   norm         <- model.norm.weight (E)
///   lm_head      <- lm_head.weight (V x E) only if !tie_word_embeddings; left empty when tied
///                   (the output head is then the embedding, and a tied checkpoint has no lm_head)
/// Errors as in load_qwen2_block_weights (FormatError / ShapeError naming the tensor).
inline Qwen2ModelWeights load_qwen2_model_weights(const Checkpoint& checkpoint,
                                                  const Qwen2Config& config) {
  // SOLUTION BEGIN ch1.5 Task 3
  const int64_t V = config.vocab_size, E = config.hidden_size;
  Qwen2ModelWeights w;
  w.embed_tokens = checkpoint.load("model.embed_tokens.weight", {V, E});
  w.layers.reserve(static_cast<size_t>(config.num_hidden_layers));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    w.layers.push_back(load_qwen2_block_weights(checkpoint, config, i));
  }
  w.norm = checkpoint.load("model.norm.weight", {E});
  if (!config.tie_word_embeddings) w.lm_head = checkpoint.load("lm_head.weight", {V, E});
  return w;
  // SOLUTION END
}

/// The whole Qwen2 model of Week 1: no KV cache, every call recomputes all L positions.
class Qwen2ModelWeek1 {
 public:
  /// Task 3. Builds the model from `config` and load_qwen2_model_weights(checkpoint, config):
  ///   embedding_ from embed_tokens,
  ///   one Qwen2TransformerBlock per entry of layers,
  ///   norm_ (eps = rms_norm_eps) from norm,
  ///   lm_head_ from lm_head (empty when tied).
  /// The provided check rejects configs the model cannot run (ConfigError).
  Qwen2ModelWeek1(const Qwen2Config& config, const Checkpoint& checkpoint) : config_(config) {
    check_supported_config(config_, "Qwen2ModelWeek1");
    // SOLUTION BEGIN ch1.5 Task 3
    Qwen2ModelWeights w = load_qwen2_model_weights(checkpoint, config_);
    embedding_.emplace(config_.vocab_size, config_.hidden_size, std::move(w.embed_tokens));
    for (Qwen2BlockWeights& block : w.layers) layers_.emplace_back(config_, std::move(block));
    norm_.emplace(config_.hidden_size, std::move(w.norm), config_.rms_norm_eps);
    lm_head_ = std::move(w.lm_head);
    // SOLUTION END
  }

  /// Task 3. tokens: B rows of L ids -> logits B x L x V (f32), position l of each row attending
  /// to 0..l:
  ///   h = embedding_.forward(tokens)
  ///   h = layer.forward(h, causal)      for every layer
  ///   h = norm_.forward(h)
  ///   logits = tied ? embedding_.as_linear(h) : linear(h, lm_head_)
  /// Throws ShapeError (empty or ragged batch), InvalidArgument (id outside [0, V)),
  /// ContextLengthError (L > max_position_embeddings); these checks are provided.
  Tensor forward(const std::vector<TokenIds>& tokens) const {
    check_token_batch(tokens, config_.vocab_size, "Qwen2ModelWeek1::forward");
    const int64_t length = static_cast<int64_t>(tokens[0].size());
    if (config_.max_position_embeddings > 0 && length > config_.max_position_embeddings) {
      throw ContextLengthError("Qwen2ModelWeek1::forward: " + std::to_string(length) +
                               " tokens do not fit into the context of " +
                               std::to_string(config_.max_position_embeddings) +
                               " (max_position_embeddings)");
    }
    // SOLUTION BEGIN ch1.5 Task 3
    Tensor h = embedding_->forward(tokens);  // B x L x E
    for (const Qwen2TransformerBlock& layer : layers_)
      h = layer.forward(h, AttentionMask::causal());
    h = norm_->forward(h);
    return config_.tie_word_embeddings ? embedding_->as_linear(h) : linear(h, lm_head_);
    // SOLUTION END
  }

  const Qwen2Config& config() const { return config_; }

 private:
  Qwen2Config config_;
  std::optional<Embedding> embedding_;  // set by the constructor (emplace)
  std::vector<Qwen2TransformerBlock> layers_;
  std::optional<RMSNorm> norm_;  // the final norm, model.norm.weight
  Tensor lm_head_;               // V x E, only for untied checkpoints
};

/// Provided. Loads a Hugging Face Qwen2 model directory: config.json plus model.safetensors or the
/// shards listed in model.safetensors.index.json. FormatError for a missing directory or file,
/// ConfigError for a bad config.
inline Qwen2ModelWeek1 load_qwen2_week1(const std::filesystem::path& model_dir) {
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const Qwen2Config config = load_qwen2_config(model_dir / "config.json");
  return Qwen2ModelWeek1(config, checkpoint);
}

}  // namespace tinyllm
