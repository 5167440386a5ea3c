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

struct Qwen2Config {
  int64_t vocab_size = 0;         // V
  int64_t hidden_size = 0;        // E
  int64_t intermediate_size = 0;  // I
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
};

/// Parses and validates config.json (ConfigError for missing or inconsistent fields, an
/// architecture other than Qwen2, e.g. hidden_size not divisible by num_attention_heads, or a
/// quantization other than MLX's affine 4/8 bits in groups of 32/64/128; FormatError for invalid
/// JSON).
Qwen2Config load_qwen2_config(const std::filesystem::path& config_json);
Qwen2Config parse_qwen2_config(const std::string& json_text,
                               const std::string& source_name = "config.json");

}  // namespace tinyllm
