// Which model a command runs, decided in one place from the flags and the checkpoint:
//
//   --dtype f32|bf16, --quantize q8|q4   the engine (engine/load_model.hpp) with those weights
//   an MLX checkpoint                    the engine with its stored weights (no flag needed)
//   neither                              the course's Week 2 model: chapter 2.1's Qwen2ModelWeek2
//                                        with chapter 2.6's batched step (BatchedWeek2Model), in
//                                        the tree this build was configured with (your code in
//                                        `tinyllm`, the reference in `tinyllm-ref`); for a
//                                        Qwen2-MoE checkpoint chapter 3.3's Qwen2MoeModel
//
// Every one of them is a LanguageModel, so the commands run chapter 2.1's generation, chapter
// 2.7's scheduler and the serving core on whichever was chosen. (Chapter 1.6's full recompute,
// --no-kv-cache, is a different algorithm rather than a different model; chat and generate keep it
// apart.)
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <tinyllm/ch2_1_kv_cache/language_model.hpp>

#include "cli.hpp"
#include "engine/load_model.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/safetensors.hpp"

namespace tinyllm::app {

struct LoadedModel {
  std::unique_ptr<LanguageModel> model;
  std::string weights;       // "f32 (course model)", "bf16", "q4 g64 (head q8)", "q4 g64 (mlx)"
  int64_t weight_bytes = 0;  // what one decode step reads
};

/// The engine's options from --dtype / --quantize / --group-size, or nullopt for the course model.
/// An MLX checkpoint always gets the engine; a weight flag then contradicts it (UsageError). Also
/// UsageError for contradicting or malformed flags, before anything is loaded.
std::optional<engine::EngineOptions> engine_choice(const CommandLine& cl,
                                                   const std::filesystem::path& dir,
                                                   const Qwen2Config& config);

/// Loads the chosen model (config.json already parsed: it is not read again).
/// check: the load-time scan for NaN and infinity (--check-tensors; Checkpoint::open).
LoadedModel load_chosen_model(const std::filesystem::path& dir, const Qwen2Config& config,
                              const std::optional<engine::EngineOptions>& engine_options,
                              CheckTensors check);

/// --check-tensors auto|always|never (default auto: on below 2 GiB of weights).
CheckTensors check_tensors_flag(const CommandLine& cl);

/// The UsageError for `what` (e.g. "--quantize q8") asked of an MLX checkpoint, whose weights are
/// already quantized (config.json "quantization"): it runs on the engine with its stored weights.
UsageError mlx_contradiction(const std::filesystem::path& dir, const QuantizationConfig& q,
                             const std::string& what);

}  // namespace tinyllm::app
