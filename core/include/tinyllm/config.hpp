// The part of a Hugging Face Qwen2 config.json that the engine uses.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tinyllm {

/// One layer's quantization in an MLX checkpoint: b-bit codes in groups of G values of a row,
/// w = q * scale + bias (chapter 2.2's affine format).
struct QuantizationSpec {
  int group_size = 64;
  int bits = 4;
  bool operator==(const QuantizationSpec&) const = default;
};

/// config.json's "quantization" (mlx-lm; newer versions write the same object as
/// "quantization_config"): {"group_size": 64, "bits": 4} for every linear layer and the embedding,
/// plus per-layer overrides keyed by module path: "model.embed_tokens": {"group_size": 64, "bits":
/// 8}, or "lm_head": false (that layer is stored unquantized).
struct QuantizationConfig {
  QuantizationSpec defaults;
  std::map<std::string, std::optional<QuantizationSpec>> layers;  // nullopt: not quantized
  /// The spec of the layer at `path` ("model.layers.0.self_attn.q_proj"); nullopt: unquantized.
  std::optional<QuantizationSpec> of(const std::string& path) const;
};

/// The experts of a Qwen2-MoE model (config.json with model_type "qwen2_moe",
/// Qwen2MoeForCausalLM). Chapter 3.3 runs the model; the core reads the config so that the MoE
/// checkpoint loads like the dense ones.
struct MoeConfig {
  int64_t num_experts = 0;                      // routed experts per sparse layer
  int64_t num_experts_per_tok = 0;              // k of the top-k routing
  int64_t moe_intermediate_size = 0;            // each routed expert's SwiGLU width
  int64_t shared_expert_intermediate_size = 0;  // the shared expert's width (0: none)
  bool norm_topk_prob = false;                  // renormalise the k routing weights to sum 1
  int64_t decoder_sparse_step = 1;              // every n-th layer is sparse ...
  std::vector<int64_t> mlp_only_layers;         // ... except these, which keep a dense MLP

  /// Whether layer `layer` (0-based) has experts, as transformers decides it: not listed in
  /// mlp_only_layers and (layer + 1) divisible by decoder_sparse_step.
  bool is_sparse_layer(int64_t layer) const;
};

/// A scaled RoPE for contexts longer than the model was trained on: config.json's "rope_scaling"
/// ({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}), or, as
/// transformers 5 writes it, "rope_parameters" with a rope_type other than "default". Parsed and
/// stored only: chapter 3.7 computes with it, and until then the models reject a config that has
/// one (check_supported_config).
struct RopeScaling {
  enum class Type {
    Linear,   // positions divided by `factor` (position interpolation)
    Dynamic,  // NTK-aware: the base grows with the sequence length beyond the original context
    Yarn,     // YaRN: per-frequency interpolation between beta_fast and beta_slow, plus an
              // attention temperature
  };
  Type type = Type::Linear;
  float factor = 1.0f;  // >= 1: how many times the original context
  /// The context the model was trained with (yarn and dynamic; absent: max_position_embeddings).
  std::optional<int64_t> original_max_position_embeddings;
  // YaRN only (transformers' defaults).
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  std::optional<float> attention_factor;  // absent: 0.1 * ln(factor) + 1

  /// "linear", "dynamic" or "yarn", as config.json spells it.
  static const char* type_name(Type type);
};

struct Qwen2Config {
  int64_t vocab_size = 0;         // V
  int64_t hidden_size = 0;        // E
  int64_t intermediate_size = 0;  // I (for Qwen2-MoE: the MLP width of the dense layers)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;      // H_q
  int64_t num_key_value_heads = 0;      // H
  int64_t head_dim = 0;                 // D = E / H_q unless config.json says otherwise
  int64_t max_position_embeddings = 0;  // the context length
  float rms_norm_eps = 1e-6f;
  float rope_theta = 1000000.0f;
  bool tie_word_embeddings = false;
  std::string torch_dtype;             // "bfloat16", "float32", ... (informational)
  std::vector<int64_t> eos_token_ids;  // from config.json / generation_config.json when present
  std::optional<QuantizationConfig> quantization;  // MLX quantized checkpoints only
  std::optional<MoeConfig> moe;                    // Qwen2-MoE ("qwen2_moe") configs only
  std::optional<RopeScaling> rope_scaling;         // scaled RoPE; absent: plain RoPE

  /// Whether layer `layer` (0-based) has experts: false for a dense model, else
  /// moe->is_sparse_layer(layer).
  bool is_sparse_layer(int64_t layer) const { return moe && moe->is_sparse_layer(layer); }
};

/// Parses and validates config.json of a Qwen2 ("qwen2", Qwen2ForCausalLM) or Qwen2-MoE
/// ("qwen2_moe", Qwen2MoeForCausalLM; then `moe` is set) model. ConfigError for missing or
/// inconsistent fields, another architecture, e.g. hidden_size not divisible by
/// num_attention_heads, num_experts_per_tok > num_experts, a quantization other than MLX's affine
/// 4/8 bits in groups of 32/64/128, or a rope_scaling type other than linear, dynamic and yarn;
/// FormatError for invalid JSON. load_qwen2_config also appends the eos ids of a
/// generation_config.json beside config.json; it takes the file or its directory.
Qwen2Config load_qwen2_config(const std::filesystem::path& config_json);
Qwen2Config parse_qwen2_config(const std::string& json_text,
                               const std::string& source_name = "config.json");

}  // namespace tinyllm
