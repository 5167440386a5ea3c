#include "engine/load_model.hpp"

#include <string>

#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"

namespace tinyllm::engine {
namespace fs = std::filesystem;

Qwen2Config load_model_config(const fs::path& dir) {
  const std::string where = "'" + dir.string() + "'";
  if (!fs::is_directory(dir)) throw FormatError("model directory " + where + " is not a directory");
  const fs::path file = dir / "config.json";
  if (!fs::is_regular_file(file)) {
    throw FormatError(
        "no config.json in the model directory " + where +
        " (expected a Hugging Face Qwen2 checkpoint: config.json, *.safetensors, tokenizer.json)");
  }
  return load_qwen2_config(file);
}

Qwen2Model load_model(const fs::path& dir, const EngineOptions& options, CheckTensors check) {
  return load_model(dir, load_model_config(dir), options, check);
}

Qwen2Model load_model(const fs::path& dir, const Qwen2Config& config, const EngineOptions& options,
                      CheckTensors check) {
  return Qwen2Model(config, Checkpoint::open(dir, check), options);
}

}  // namespace tinyllm::engine
