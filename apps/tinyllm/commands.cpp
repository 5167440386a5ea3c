#include "commands.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>
#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>

#include "engine/model/mlx_checkpoint.hpp"
#include "engine/model/qwen2_engine.hpp"

#include "tinyllm/chat_template.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tokenizer.hpp"

#ifndef TINYLLM_DEFAULT_MODEL_DIR
#error "TINYLLM_DEFAULT_MODEL_DIR must be defined by apps/CMakeLists.txt"
#endif
// 1 when chapter 2.1 comes from the reference tree: chat and generate then use the KV cache unless
// --no-kv-cache is given (apps/CMakeLists.txt).
#ifndef TINYLLM_KV_CACHE_DEFAULT
#define TINYLLM_KV_CACHE_DEFAULT 0
#endif

namespace tinyllm::app {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kDefaultMaxTokens = 256;

std::string quoted(const fs::path& p) {
  return "'" + p.string() + "'";
}

// config.json of the model directory, with a readable error when it is missing (a broken one: the
// parser's FormatError / ConfigError, which name the file).
Qwen2Config load_config(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  if (!fs::is_regular_file(file)) {
    throw FormatError(
        "no config.json in the model directory " + quoted(dir) +
        " (expected a Hugging Face Qwen2 checkpoint: config.json, *.safetensors, tokenizer.json)");
  }
  return load_qwen2_config(file);
}

// The tokenizer is loaded only by the commands that need it, so `logits` works on a checkpoint
// without one.
Tokenizer load_tokenizer(const fs::path& dir) {
  const fs::path file = dir / "tokenizer.json";
  if (!fs::is_regular_file(file)) {
    throw FormatError("no tokenizer.json in the model directory " + quoted(dir) +
                      " (chat, generate and tokenize need one; logits does not)");
  }
  return Tokenizer::from_file(file);
}

Qwen2ModelWeek1 load_model(const fs::path& dir) {
  load_config(
      dir);  // a readable error for a missing or broken config.json before the weights are opened
  return load_qwen2_week1(dir);
}

using Clock = std::chrono::steady_clock;

// --kv-cache / --no-kv-cache, else the build's default.
bool use_kv_cache(const CommandLine& cl) {
  if (cl.has("kv-cache") && cl.has("no-kv-cache")) {
    throw UsageError("--kv-cache and --no-kv-cache contradict each other");
  }
  if (cl.has("kv-cache")) return true;
  if (cl.has("no-kv-cache")) return false;
  return TINYLLM_KV_CACHE_DEFAULT != 0;
}

// --dtype f32|bf16 or --quantize q8|q4 [--group-size G]: the engine (engine/) with those
// weights; none of them: nullopt (chapter 1.6's or 2.1's model). The engine always keeps a KV
// cache.
std::optional<engine::EngineOptions> engine_options(const CommandLine& cl) {
  if (!cl.has("dtype") && !cl.has("quantize")) {
    if (cl.has("group-size")) throw UsageError("--group-size needs --quantize q8|q4");
    return std::nullopt;
  }
  if (cl.has("dtype") && cl.has("quantize")) {
    throw UsageError("--dtype and --quantize contradict each other (--quantize sets the weights)");
  }
  if (cl.has("no-kv-cache")) throw UsageError("--dtype/--quantize always use the KV cache");
  engine::EngineOptions options;
  if (cl.has("dtype")) {
    const std::string& dtype = cl.flags.at("dtype");
    if (dtype != "f32" && dtype != "bf16") {
      throw UsageError("--dtype must be f32 or bf16, got '" + dtype + "'");
    }
    options.weights.format = engine::parse_weight_format(dtype);
    if (cl.has("group-size")) throw UsageError("--group-size needs --quantize q8|q4");
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
  engine::check_weight_spec(
      options.weights);  // InvalidArgument for a bad group size, before loading
  return options;
}

// The engine's options for an MLX checkpoint: its stored weights, so no --dtype/--quantize; the
// engine always keeps a KV cache.
engine::EngineOptions mlx_engine_options(const CommandLine& cl, const fs::path& dir,
                                         const QuantizationConfig& q) {
  for (const std::string flag : {"dtype", "quantize"}) {
    if (cl.has(flag)) throw mlx_contradiction(dir, q, "--" + flag + " " + cl.flags.at(flag));
  }
  if (cl.has("no-kv-cache")) throw mlx_contradiction(dir, q, "--no-kv-cache");
  return {};
}

// Everything one generation needs, shared by `chat` and `generate`. One of three models is
// loaded: Week 1's (full recompute), chapter 2.1's (KV cache) or the engine (--dtype/--quantize,
// and always for an MLX checkpoint, which the f32 models of the chapters cannot hold).
struct Engine {
  fs::path dir;
  Tokenizer tokenizer;
  std::optional<Qwen2ModelWeek1> model;
  std::optional<Qwen2ModelWeek2> cached_model;
  std::optional<engine::Qwen2Engine> fast_model;
  SamplingFlags sampling;
  std::optional<Sampler> sampler;  // only when --temperature > 0; greedy otherwise

  Engine(fs::path model_dir, SamplingFlags flags, const CommandLine& cl)
      : dir(std::move(model_dir)), tokenizer(load_tokenizer(dir)), sampling(flags) {
    std::optional<engine::EngineOptions> fast = engine_options(cl);
    const Qwen2Config on_disk =
        load_config(dir);  // a readable error for a broken config.json first
    if (on_disk.quantization) fast = mlx_engine_options(cl, dir, *on_disk.quantization);
    if (fast) {
      fast_model.emplace(engine::load_qwen2_engine(dir, *fast));
    } else if (use_kv_cache(cl)) {
      cached_model.emplace(load_qwen2_week2(dir));
    } else {
      model.emplace(load_model(dir));
    }
    if (tokenizer.vocab_size() > config().vocab_size) {
      throw ConfigError("tokenizer.json in " + quoted(dir) + " has " +
                        std::to_string(tokenizer.vocab_size()) +
                        " token ids, more than the model's " + std::to_string(config().vocab_size) +
                        " (vocab_size in config.json)");
    }
    if (sampling.temperature > 0.0f) {
      sampler.emplace(SamplerConfig{.temperature = sampling.temperature,
                                    .top_k = sampling.top_k,
                                    .top_p = sampling.top_p,
                                    .seed = sampling.seed});
    }
  }

  const Qwen2Config& config() const {
    if (fast_model) return fast_model->config();
    return cached_model ? cached_model->config() : model->config();
  }

  // Generates a continuation of `prompt` (already templated for chat), streaming it to stdout, and
  // prints the token counts and speed to stderr. Returns the generated text.
  std::string run(const std::string& prompt) {
    const int64_t context = config().max_position_embeddings;
    const auto prompt_tokens = static_cast<int64_t>(tokenizer.encode(prompt).size());
    int64_t max_new = 0;
    if (sampling.max_tokens) {
      max_new =
          *sampling.max_tokens;  // generate_tokens reports a ContextLengthError if it does not fit
    } else {
      if (prompt_tokens >= context) {
        throw ContextLengthError("the prompt has " + std::to_string(prompt_tokens) +
                                 " tokens, but the model's context is " + std::to_string(context) +
                                 " tokens (max_position_embeddings)");
      }
      max_new = std::min(kDefaultMaxTokens, context - prompt_tokens);
    }

    const TokenPicker inner = sampler ? TokenPicker(std::ref(*sampler)) : TokenPicker(greedy_pick);
    const auto start = Clock::now();
    Clock::time_point first = start, last = start;
    int64_t picks = 0;
    const TokenPicker timed = [&](const Tensor& logits) {
      const TokenId id = inner(logits);
      last = Clock::now();
      if (picks++ == 0) first = last;
      return id;
    };
    const GenerationOptions options{.max_new_tokens = max_new, .stop_ids = {}};
    const TextCallback print = [](std::string_view piece) { std::cout << piece << std::flush; };
    const TextGeneration result =
        fast_model
            ? engine::engine_generate_text(*fast_model, tokenizer, prompt, options, timed, print)
        : cached_model
            ? simple_generate_with_kv_cache(*cached_model, tokenizer, prompt, options, timed, print)
            : simple_generate(*model, tokenizer, prompt, options, timed, print);
    std::cout << std::endl;

    const double prefill_s = std::chrono::duration<double>(first - start).count();
    const double decode_s = std::chrono::duration<double>(last - first).count();
    const auto generated = static_cast<int64_t>(result.generation.tokens.size());
    std::string stop;
    if (result.generation.stop_token) {
      stop = "stopped at " + tokenizer.id_to_token(*result.generation.stop_token);
    } else {
      stop = "stopped after " + std::to_string(max_new) + " tokens (--max-tokens)";
    }
    char line[256];
    std::snprintf(
        line, sizeof line, "[%lld prompt tokens, %lld generated; prefill %.2f s; %.1f tokens/s; ",
        static_cast<long long>(result.prompt_tokens), static_cast<long long>(generated), prefill_s,
        picks > 1 && decode_s > 0 ? static_cast<double>(picks - 1) / decode_s : 0.0);
    std::cerr << line << stop << "]" << std::endl;
    return result.text;
  }
};

bool stdin_is_terminal() {
  return isatty(STDIN_FILENO) != 0;
}

}  // namespace

UsageError mlx_contradiction(const fs::path& dir, const QuantizationConfig& q,
                             const std::string& what) {
  return UsageError(what + " contradicts the model: " + quoted(dir) +
                    " is an MLX checkpoint already quantized (" + engine::mlx_quantization_name(q) +
                    ", config.json \"quantization\"), which runs on the engine with its stored "
                    "weights");
}

fs::path resolve_model_dir(const CommandLine& cl) {
  fs::path dir;
  std::string hint;
  if (cl.has("model")) {
    dir = cl.flags.at("model");
    hint = " (from --model)";
  } else if (const char* env = std::getenv("TINYLLM_MODEL_DIR"); env != nullptr && *env != '\0') {
    dir = env;
    hint = " (from $TINYLLM_MODEL_DIR)";
  } else {
    dir = TINYLLM_DEFAULT_MODEL_DIR;
    hint = " (the default model; pass --model DIR or set $TINYLLM_MODEL_DIR)";
  }
  if (dir.empty()) throw FormatError("--model: the model directory is empty");
  if (!fs::exists(dir))
    throw FormatError("model directory " + quoted(dir) + " does not exist" + hint);
  if (!fs::is_directory(dir)) {
    throw FormatError("model directory " + quoted(dir) + " is not a directory" + hint);
  }
  return dir;
}

int run_generate(const CommandLine& cl) {
  if (!cl.has("prompt")) throw UsageError("generate: --prompt TEXT is required");
  const SamplingFlags sampling = parse_sampling_flags(cl);
  Engine engine(resolve_model_dir(cl), sampling, cl);
  engine.run(cl.flags.at("prompt"));
  return 0;
}

int run_chat(const CommandLine& cl) {
  const SamplingFlags sampling = parse_sampling_flags(cl);
  Engine engine(resolve_model_dir(cl), sampling, cl);
  std::vector<ChatMessage> history;
  if (cl.has("system")) history.push_back({"system", cl.flags.at("system")});
  if (cl.has("prompt")) {
    history.push_back({"user", cl.flags.at("prompt")});
    engine.run(apply_chat_template(history, true));
    return 0;
  }
  const bool interactive = stdin_is_terminal();
  if (interactive) {
    std::cerr << "tinyllm chat with " << engine.dir.string()
              << " (one message per line; /reset forgets the conversation, /exit or Ctrl-D leaves)"
              << std::endl;
  }
  const size_t kept = history.size();  // the system prompt survives /reset
  std::string line;
  while (true) {
    if (interactive) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(kept);
      std::cerr << "(conversation reset)" << std::endl;
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    history.push_back({"user", line});
    try {
      const std::string answer = engine.run(apply_chat_template(history, true));
      history.push_back({"assistant", answer});
    } catch (const ContextLengthError& e) {
      history.pop_back();  // the turn did not happen; the user can /reset and go on
      std::cerr << "error: " << e.what() << " (type /reset to start a new conversation)"
                << std::endl;
      if (!interactive) return 2;
    }
  }
  return 0;
}

int run_tokenize(const CommandLine& cl) {
  if (!cl.has("text")) throw UsageError("tokenize: --text TEXT is required");
  const Tokenizer tokenizer = load_tokenizer(resolve_model_dir(cl));
  const TokenIds ids = tokenizer.encode(cl.flags.at("text"));
  std::cout << nlohmann::json(ids).dump() << std::endl;
  return 0;
}

int run_logits(const CommandLine& cl) {
  if (!cl.has("ids")) throw UsageError("logits: --ids 1,2,3 is required");
  if (!cl.has("out")) throw UsageError("logits: --out FILE (.safetensors or .json) is required");
  const TokenIds ids = parse_ids("ids", cl.flags.at("ids"));
  const fs::path out = cl.flags.at("out");
  const std::string ext = out.extension().string();
  if (ext != ".safetensors" && ext != ".json") {
    throw UsageError("--out: '" + out.string() + "' must end in .safetensors or .json");
  }
  const fs::path dir = resolve_model_dir(cl);
  // Week 1's model, or the engine for an MLX checkpoint (all positions' logits either way).
  std::optional<Qwen2ModelWeek1> model;
  std::optional<engine::Qwen2Engine> fast;
  const Qwen2Config config = load_config(dir);
  if (config.quantization) {
    fast.emplace(engine::load_qwen2_engine(dir, mlx_engine_options(cl, dir, *config.quantization)));
  } else {
    model.emplace(load_model(dir));
  }
  for (TokenId id : ids) {
    if (id >= config.vocab_size) {
      throw InvalidArgument("--ids: token id " + std::to_string(id) +
                            " is outside the vocabulary (V = " + std::to_string(config.vocab_size) +
                            ")");
    }
  }
  const auto L = static_cast<int64_t>(ids.size());
  if (L > config.max_position_embeddings) {
    throw ContextLengthError(
        "--ids has " + std::to_string(L) + " tokens, but the model's context is " +
        std::to_string(config.max_position_embeddings) + " tokens (max_position_embeddings)");
  }
  std::vector<KvCache> caches = fast ? fast->create_kv_caches() : std::vector<KvCache>{};
  const Tensor logits =
      fast ? fast->forward({ids}, 0, caches) : model->forward({ids});  // 1 x L x V
  const int64_t V = logits.dim(-1);
  if (ext == ".safetensors") {
    std::vector<int64_t> ids64(ids.begin(), ids.end());
    save_safetensors(
        out,
        {TensorToSave{.name = "logits",
                      .values = logits.reshape({L, V}),
                      .integers = {},
                      .shape = {L, V},
                      .dtype = DType::F32},
         TensorToSave{
             .name = "ids", .values = {}, .integers = ids64, .shape = {L}, .dtype = DType::I64}},
        {{"generator", "tinyllm logits"}, {"model", dir.string()}});
  } else {
    nlohmann::json j;
    j["ids"] = ids;
    j["shape"] = {L, V};
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t l = 0; l < L; ++l) {
      rows.push_back(std::vector<float>(logits.data() + l * V, logits.data() + (l + 1) * V));
    }
    j["logits"] = std::move(rows);
    std::ofstream file(out);
    if (!file) throw FormatError("cannot write " + quoted(out));
    file << j.dump() << "\n";
    if (!file) throw FormatError("cannot write " + quoted(out));
  }
  std::cerr << "wrote logits [" << L << ", " << V << "] to " << out.string() << std::endl;
  return 0;
}

}  // namespace tinyllm::app
