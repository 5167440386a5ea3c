// Chapter 3.3, Task 4: the Qwen2-MoE model (Hugging Face's Qwen2MoeForCausalLM) and its
// checkpoint.
//
// Qwen2-MoE is Qwen2 with some MLPs replaced: layer i has experts (a Qwen2MoeBlock) when
// config.is_sparse_layer(i), i.e. (i + 1) is a multiple of decoder_sparse_step and i is not in
// mlp_only_layers; every other layer keeps a dense MLP of intermediate_size. Attention, norms,
// embedding, head, KV cache and the LanguageModel interface are Week 2's, so this model IS a
// Qwen2ModelWeek2 whose sparse layers hold a Qwen2MoeBlock in their MLP slot: the forward, the
// caches and generation are inherited, not copied.
//
//   ids ─► embedding ─► [ RMSNorm ─► attention (KV cache) ─► + ─► RMSNorm ─► MLP slot ─► + ] x layers
//                                                                 dense Qwen2MLP or Qwen2MoeBlock
//       ─► RMSNorm ─► head ─► logits
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch3_3_moe/moe_block.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// Task 4. Loads the experts of sparse layer `layer` as Hugging Face writes them (one tensor per
/// expert, as in Qwen1.5-MoE). With P = "model.layers.<layer>.mlp.", E = hidden_size, X =
/// num_experts, I_x = moe_intermediate_size, I_s = shared_expert_intermediate_size:
///   P gate.weight                                 X x E    (the router)
///   P experts.<e>.{gate,up}_proj.weight           I_x x E  for e = 0 .. X-1
///   P experts.<e>.down_proj.weight                E x I_x
///   P shared_expert.{gate,up}_proj.weight         I_s x E  (only when I_s > 0)
///   P shared_expert.down_proj.weight              E x I_s
///   P shared_expert_gate.weight                   1 x E
/// Each with checkpoint.load(name, shape): a missing tensor is a FormatError naming it, another
/// shape a ShapeError naming it. Throws ConfigError if the config has no MoE part.
inline Qwen2MoeWeights load_qwen2_moe_weights(const Checkpoint& checkpoint,
                                              const Qwen2Config& config, int64_t layer) {
  if (!config.moe) {
    throw ConfigError("load_qwen2_moe_weights: the config has no experts (not a qwen2_moe config)");
  }
  TINYLLM_TODO("ch3.3", "Task 4");
}

/// Task 4. The MLP slot of every layer: for a sparse layer (config.is_sparse_layer(i)) a
/// Qwen2MoeBlock(hidden_size, *config.moe, load_qwen2_moe_weights(checkpoint, config, i)); for a
/// dense layer nullptr (the slot keeps chapter 1.5's dense MLP). Returns num_hidden_layers entries.
/// Errors: those of load_qwen2_moe_weights and Qwen2MoeBlock.
inline std::vector<std::shared_ptr<const FeedForward>> load_moe_layers(const Checkpoint& checkpoint,
                                                                       const Qwen2Config& config) {
  TINYLLM_TODO("ch3.3", "Task 4");
}

/// The Qwen2-MoE model: chapter 2.1's Qwen2ModelWeek2 with experts in its sparse layers. A dense
/// Qwen2 config runs too (every layer dense: the Week 2 model).
class Qwen2MoeModel : public Qwen2ModelWeek2 {
 public:
  /// Provided. The dense parts with chapter 1.5's load_qwen2_model_weights (which skips the MLP of
  /// sparse layers), the experts with load_moe_layers. ConfigError for a config the Qwen2 classes
  /// cannot run (check_supported_config, experts allowed); the loaders' FormatError / ShapeError.
  Qwen2MoeModel(const Qwen2Config& config, const Checkpoint& checkpoint)
      : Qwen2MoeModel(load_parts(config, checkpoint)) {}

 private:
  struct Parts {
    const Qwen2Config& config;
    Qwen2ModelWeights weights;
    std::vector<std::shared_ptr<const FeedForward>> mlps;
  };
  static Parts load_parts(const Qwen2Config& config, const Checkpoint& checkpoint) {
    check_supported_config(config, "Qwen2MoeModel", /*experts_supported=*/true);
    return Parts{config, load_qwen2_model_weights(checkpoint, config),
                 load_moe_layers(checkpoint, config)};
  }
  explicit Qwen2MoeModel(Parts parts)
      : Qwen2ModelWeek2(parts.config, std::move(parts.weights), std::move(parts.mlps)) {}
};

/// Provided. Loads a Hugging Face Qwen2-MoE (or Qwen2) model directory (as load_qwen2_week2).
inline Qwen2MoeModel load_qwen2_moe(const std::filesystem::path& model_dir) {
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const Qwen2Config config = load_qwen2_config(model_dir / "config.json");
  return Qwen2MoeModel(config, checkpoint);
}

}  // namespace tinyllm
