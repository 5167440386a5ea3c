#include "model_choice.hpp"

#include <utility>

#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batched_model.hpp>
#include <tinyllm/ch3_3_moe/qwen2_moe_model.hpp>

#include "engine/model/mlx_checkpoint.hpp"
#include "tinyllm/safetensors.hpp"

namespace tinyllm::app {
namespace fs = std::filesystem;
namespace {

// The course's Week 2 model, owned, as a LanguageModel with chapter 2.6's batched step.
struct OwnedWeek2 {
  Qwen2ModelWeek2 model;
};
class CourseModel : private OwnedWeek2, public BatchedWeek2Model {
 public:
  explicit CourseModel(Qwen2ModelWeek2 model)
      : OwnedWeek2{std::move(model)}, BatchedWeek2Model(OwnedWeek2::model) {}
};

}  // namespace

UsageError mlx_contradiction(const fs::path& dir, const QuantizationConfig& q,
                             const std::string& what) {
  return UsageError(what + " contradicts the model: '" + dir.string() +
                    "' is an MLX checkpoint already quantized (" +
                    engine::mlx_quantization_name(q) +
                    ", config.json \"quantization\"), which runs on the engine with its stored "
                    "weights");
}

std::optional<engine::EngineOptions> engine_choice(const CommandLine& cl, const fs::path& dir,
                                                   const Qwen2Config& config) {
  if (config.quantization) {
    for (const std::string flag : {"dtype", "quantize", "group-size"}) {
      if (cl.has(flag)) {
        throw mlx_contradiction(dir, *config.quantization, "--" + flag + " " + cl.flags.at(flag));
      }
    }
    return engine::EngineOptions{};
  }
  if (!cl.has("dtype") && !cl.has("quantize")) {
    if (cl.has("group-size")) throw UsageError("--group-size needs --quantize q8|q4");
    return std::nullopt;
  }
  if (cl.has("dtype") && cl.has("quantize")) {
    throw UsageError("--dtype and --quantize contradict each other (--quantize sets the weights)");
  }
  engine::EngineOptions options;
  if (cl.has("dtype")) {
    const std::string& dtype = cl.flags.at("dtype");
    if (dtype != "f32" && dtype != "bf16") {
      throw UsageError("--dtype must be f32 or bf16, got '" + dtype + "'");
    }
    if (cl.has("group-size")) throw UsageError("--group-size needs --quantize q8|q4");
    options.weights.format = engine::parse_weight_format(dtype);
  } else {
    const std::string& bits = cl.flags.at("quantize");
    if (bits != "q8" && bits != "q4") {
      throw UsageError("--quantize must be q8 or q4, got '" + bits + "'");
    }
    options.weights.format = engine::parse_weight_format(bits);
    if (cl.has("group-size")) {
      options.weights.group_size =
          static_cast<int>(parse_int("group-size", cl.flags.at("group-size")));
    }
  }
  engine::check_weight_spec(options.weights);  // a bad group size, before loading
  return options;
}

CheckTensors check_tensors_flag(const CommandLine& cl) {
  if (!cl.has("check-tensors")) return CheckTensors::Auto;
  const std::string& v = cl.flags.at("check-tensors");
  if (v == "auto") return CheckTensors::Auto;
  if (v == "always") return CheckTensors::Always;
  if (v == "never") return CheckTensors::Never;
  throw UsageError("--check-tensors must be auto, always or never, got '" + v + "'");
}

LoadedModel load_chosen_model(const fs::path& dir, const Qwen2Config& config,
                              const std::optional<engine::EngineOptions>& engine_options,
                              CheckTensors check) {
  LoadedModel out;
  if (engine_options) {
    auto model = std::make_unique<engine::Qwen2Model>(
        engine::load_model(dir, config, *engine_options, check));
    out.weights = model->precision();
    out.weight_bytes = model->weight_bytes();
    out.model = std::move(model);
    return out;
  }
  // A Qwen2-MoE checkpoint runs on chapter 3.3's model (the Week 2 model with experts; one
  // sequence at a time in batch steps, as chapter 2.6's batched step has no experts).
  if (config.moe) {
    out.model = std::make_unique<Qwen2MoeModel>(config, Checkpoint::open(dir, check));
  } else {
    out.model =
        std::make_unique<CourseModel>(Qwen2ModelWeek2(config, Checkpoint::open(dir, check)));
  }
  out.weights = "f32 (course model)";
  const int64_t e = config.hidden_size;
  const int64_t kv = config.num_key_value_heads * config.head_dim;
  int64_t params = config.vocab_size * e;  // the head (read once per step)
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    params += e * e * 2 + e * kv * 2;
    if (!config.is_sparse_layer(i)) {
      params += 3 * e * config.intermediate_size;
      continue;
    }
    const MoeConfig& moe = *config.moe;  // the router, k experts and the shared expert
    params += moe.num_experts * e + 3 * e *
                                        (moe.num_experts_per_tok * moe.moe_intermediate_size +
                                         moe.shared_expert_intermediate_size);
  }
  out.weight_bytes = 4 * params;
  return out;
}

}  // namespace tinyllm::app
