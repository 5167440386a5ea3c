// The engine's front door: one call loads any checkpoint we read into the engine's model.
//
//   Qwen2Model model = load_model("data/models/tiny-qwen2", {.weights = {WeightFormat::Q4}});
//
// Checkpoint kinds: Hugging Face Qwen2 directories as downloaded (config.json, model.safetensors or
// a sharded model.safetensors.index.json, f32/bf16/f16, tied or untied embeddings) and MLX
// quantized ones (config.json "quantization": 4- or 8-bit codes kept as stored). Precisions:
// EngineOptions::weights (f32, bf16, q8, q4 at load time; an MLX checkpoint keeps its own).
// config.json is parsed once, here.
#pragma once

#include <filesystem>

#include "engine/model/qwen2_model.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/safetensors.hpp"

namespace tinyllm::engine {

/// config.json of a model directory. FormatError naming the directory when it is not a directory or
/// has no config.json (with what a checkpoint directory holds); the parser's FormatError /
/// ConfigError for a broken one.
Qwen2Config load_model_config(const std::filesystem::path& dir);

/// The model in `dir` with `options`. Errors: load_model_config's, then Qwen2Model's (FormatError
/// for missing or corrupt weights, DTypeError for integer codes where a float weight belongs,
/// ShapeError, InvalidArgument for options an MLX checkpoint contradicts, NumericalError for
/// non-finite weights: the load-time scan of `check`, on by default below 2 GiB, as llama.cpp's
/// --check-tensors).
Qwen2Model load_model(const std::filesystem::path& dir, const EngineOptions& options = {},
                      CheckTensors check = CheckTensors::Auto);
/// The same with the config already parsed (a front-end that needed it first).
Qwen2Model load_model(const std::filesystem::path& dir, const Qwen2Config& config,
                      const EngineOptions& options, CheckTensors check = CheckTensors::Auto);

}  // namespace tinyllm::engine
