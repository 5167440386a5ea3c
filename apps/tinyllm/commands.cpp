#include "commands.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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
#include <tinyllm/ch3_4_speculative_decoding/prompt_lookup.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_decoding.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_sampling.hpp>

#include "engine/load_model.hpp"
#include "model_choice.hpp"

#include "tinyllm/chat_template.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/numerics.hpp"
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

// --draft-model DIR: the draft model, loaded with the same weight flags as the model (engine
// options for its own checkpoint), refused unless it has the model's vocabulary and tokenizer
// (chapter 3.4's check_draft_model and check_same_tokenizer).
LoadedModel load_draft_model(const fs::path& draft_dir, const LanguageModel& target,
                             const Tokenizer& tokenizer, const CommandLine& cl) {
  if (!fs::is_directory(draft_dir)) {
    throw FormatError("draft model directory " + quoted(draft_dir) +
                      " does not exist (from --draft-model)");
  }
  const Qwen2Config draft_config = engine::load_model_config(draft_dir);
  LoadedModel draft = load_chosen_model(
      draft_dir, draft_config, engine_choice(cl, draft_dir, draft_config), check_tensors_flag(cl));
  check_draft_model(target, *draft.model, 0);
  if (!fs::is_regular_file(draft_dir / "tokenizer.json")) {
    throw FormatError("no tokenizer.json in the draft model directory " + quoted(draft_dir) +
                      " (needed to check that it shares the model's tokenizer)");
  }
  check_same_tokenizer(tokenizer, Tokenizer::from_file(draft_dir / "tokenizer.json"));
  return draft;
}

// Everything one generation needs, shared by `chat` and `generate`: the tokenizer and either a
// LanguageModel (chapter 2.1's generation with a KV cache, on the model model_choice.hpp picks;
// with --draft-model or --prompt-lookup chapter 3.4's speculative decoding on it) or, with
// --no-kv-cache, chapter 1.6's model and its full recompute.
struct Session {
  fs::path dir;
  Qwen2Config config;
  Tokenizer tokenizer;
  LoadedModel cached;                        // KV cache: the course model or the engine
  std::optional<Qwen2ModelWeek1> recompute;  // --no-kv-cache
  SamplingFlags sampling;
  std::optional<Sampler> sampler;  // only when --temperature > 0; greedy otherwise
  SpeculativeFlags speculative;
  LoadedModel draft;  // --draft-model

  Session(fs::path model_dir, SamplingFlags flags, const CommandLine& cl)
      : dir(std::move(model_dir)),
        config(engine::load_model_config(dir)),
        tokenizer(load_tokenizer(dir)),
        sampling(flags),
        speculative(parse_speculative_flags(cl)) {
    const std::optional<engine::EngineOptions> fast = engine_choice(cl, dir, config);
    if (fast && cl.has("no-kv-cache")) {
      if (config.quantization) throw mlx_contradiction(dir, *config.quantization, "--no-kv-cache");
      throw UsageError("--dtype/--quantize always use the KV cache");
    }
    if (config.moe && cl.has("no-kv-cache")) {
      throw UsageError("--no-kv-cache runs chapter 1.6's Week 1 model, which has no experts; " +
                       quoted(dir) + " is a Qwen2-MoE model (chapter 3.3 runs it with the cache)");
    }
    if (use_kv_cache(cl) || fast || config.moe || speculative.enabled()) {
      cached = load_chosen_model(dir, config, fast, check_tensors_flag(cl));
    } else {
      recompute.emplace(config, Checkpoint::open(dir, check_tensors_flag(cl)));
    }
    if (tokenizer.vocab_size() > config.vocab_size) {
      throw ConfigError("tokenizer.json in " + quoted(dir) + " has " +
                        std::to_string(tokenizer.vocab_size()) +
                        " token ids, more than the model's " + std::to_string(config.vocab_size) +
                        " (vocab_size in config.json)");
    }
    if (sampling.temperature > 0.0f) {
      sampler.emplace(SamplerConfig{.temperature = sampling.temperature,
                                    .top_k = sampling.top_k,
                                    .top_p = sampling.top_p,
                                    .seed = sampling.seed});
    }
    if (speculative.draft_model) {
      draft = load_draft_model(*speculative.draft_model, *cached.model, tokenizer, cl);
    }
  }

  // Chapter 3.4: simple_generate_with_kv_cache's text generation (encode, default stop ids, one
  // streaming decoder), with the ids from speculative decoding: a draft model or prompt lookup,
  // greedy or sampled. on_id sees every id before its text.
  TextGeneration generate_speculatively(const std::string& prompt, GenerationOptions options,
                                        const TokenCallback& on_id, const TextCallback& on_text,
                                        SpeculativeStats& stats) const {
    const TokenIds ids = tokenizer.encode(prompt);
    options.stop_ids = default_stop_ids(config, &tokenizer);
    TextGeneration result;
    result.prompt_tokens = static_cast<int64_t>(ids.size());
    StreamingDecoder decoder(tokenizer);
    const auto emit = [&](const std::string& piece) {
      if (piece.empty()) return;
      result.text += piece;
      on_text(piece);
    };
    const TokenCallback each = [&](TokenId id) {
      on_id(id);
      emit(decoder.push(id));
    };
    const LanguageModel& target = *cached.model;
    const int64_t k = speculative.draft_tokens, n = speculative.prompt_lookup;
    SpeculativeGeneration out;
    if (draft.model) {
      out = sampler
                ? speculative_sample(target, *draft.model, ids, options, k, sampler->config(), each)
                : speculative_generate(target, *draft.model, ids, options, k, each);
    } else {
      out = sampler ? prompt_lookup_sample(target, ids, options, n, k, sampler->config(), each)
                    : prompt_lookup_generate(target, ids, options, n, k, each);
    }
    emit(decoder.finish());
    result.generation = out.generation;
    stats = out.stats;
    return result;
  }

  // Generates a continuation of `prompt` (already templated for chat), streaming it to stdout, and
  // prints the token counts and speed to stderr. Returns the generated text.
  std::string run(const std::string& prompt) {
    const int64_t context = config.max_position_embeddings;
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
      // The logits of pick n come from position P + n - 1: a NaN there stops generation.
      check_finite_logits(logits, prompt_tokens + picks - 1, "generate");
      const TokenId id = inner(logits);
      last = Clock::now();
      if (picks++ == 0) first = last;
      return id;
    };
    const GenerationOptions options{.max_new_tokens = max_new, .stop_ids = {}};
    const TextCallback print = [](std::string_view piece) { std::cout << piece << std::flush; };
    TextGeneration result;
    std::optional<SpeculativeStats> stats;
    if (speculative.enabled()) {
      // The ids come in runs per round; time them as they are emitted.
      const TokenCallback timed_id = [&](TokenId) {
        last = Clock::now();
        if (picks++ == 0) first = last;
      };
      stats.emplace();
      result = generate_speculatively(prompt, options, timed_id, print, *stats);
    } else {
      result = recompute ? simple_generate(*recompute, tokenizer, prompt, options, timed, print)
                         : simple_generate_with_kv_cache(*cached.model, tokenizer, prompt, options,
                                                         timed, print);
    }
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
    if (stats) {
      const std::string drafter =
          draft.model ? "draft " + speculative.draft_model.value()
                      : "prompt lookup n = " + std::to_string(speculative.prompt_lookup);
      char spec_line[512];
      std::snprintf(spec_line, sizeof spec_line,
                    "[speculative decoding (%s, k = %lld): %lld rounds, %lld drafted, %lld "
                    "accepted: acceptance rate %.1f%%, %.2f accepted per round]",
                    drafter.c_str(), static_cast<long long>(speculative.draft_tokens),
                    static_cast<long long>(stats->rounds), static_cast<long long>(stats->proposed),
                    static_cast<long long>(stats->accepted), 100.0 * stats->acceptance_rate(),
                    stats->mean_accepted_per_round());
      std::cerr << spec_line << std::endl;
    }
    return result.text;
  }
};

bool stdin_is_terminal() {
  return isatty(STDIN_FILENO) != 0;
}

}  // namespace

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
  Session engine(resolve_model_dir(cl), sampling, cl);
  engine.run(cl.flags.at("prompt"));
  return 0;
}

int run_chat(const CommandLine& cl) {
  const SamplingFlags sampling = parse_sampling_flags(cl);
  Session engine(resolve_model_dir(cl), sampling, cl);
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
  const Qwen2Config config = engine::load_model_config(dir);
  // Chapter 1.5's model (chapter 3.3's for a Qwen2-MoE checkpoint), or the engine (--dtype /
  // --quantize, an MLX checkpoint) with its exact kernels unless --fast: logits exist to be
  // compared with Hugging Face's.
  std::optional<engine::EngineOptions> fast = engine_choice(cl, dir, config);
  if (cl.has("fast") && !fast) throw UsageError("--fast needs the engine (--dtype or --quantize)");
  if (fast) fast->kernels = cl.has("fast") ? engine::Kernels::Fast : engine::Kernels::Exact;
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
  Tensor logits;             // 1 x L x V
  if (fast || config.moe) {  // a Qwen2-MoE model without --dtype: chapter 3.3's model
    const LoadedModel loaded = load_chosen_model(dir, config, fast, check_tensors_flag(cl));
    std::vector<KvCache> caches = loaded.model->create_kv_caches();
    logits = loaded.model->forward({ids}, 0, caches);
  } else {
    logits = Qwen2ModelWeek1(config, Checkpoint::open(dir, check_tensors_flag(cl))).forward({ids});
  }
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
