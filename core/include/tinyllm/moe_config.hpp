// The part of a Hugging Face Qwen2-MoE config.json (model_type "qwen2_moe", Qwen2MoeForCausalLM)
// that the engine uses: everything a dense Qwen2 config has, plus the experts. Chapter 3.3 runs the
// model; the core reads the config so that the MoE checkpoint loads like the dense ones.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tinyllm/config.hpp"

namespace tinyllm {

struct Qwen2MoeConfig {
  /// Attention, norms, embeddings, RoPE and context as in Qwen2. base.intermediate_size is the MLP
  /// width of dense layers (those in mlp_only_layers), unused when every layer is sparse.
  Qwen2Config base;
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

/// Parses and validates a Qwen2-MoE config.json (ConfigError for missing or inconsistent fields,
/// e.g. num_experts_per_tok > num_experts, or a config of another model type; FormatError for
/// invalid JSON). load_qwen2_moe_config also reads generation_config.json's eos ids, as
/// load_qwen2_config does.
Qwen2MoeConfig load_qwen2_moe_config(const std::filesystem::path& config_json);
Qwen2MoeConfig parse_qwen2_moe_config(const std::string& json_text,
                                      const std::string& source_name = "config.json");

}  // namespace tinyllm
