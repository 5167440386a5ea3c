// `tinyllm bench`: prefill and decode speed in the manner of llama.cpp's llama-bench.
//
//   ppN  one forward call of N random token ids on empty KV caches: N / seconds
//   tgN  N forward calls of one random token each, starting from empty caches (offsets 0..N-1):
//        N / seconds
//   tgN xR  (--parallel R > 1) R sequences decoding together, N steps of forward_sequences with one
//        token each (the serving core's batched decode step): R N / seconds, aggregate tokens/s
// Each (test, threads) pair runs once as a warm-up, then --repetitions times; the table shows the
// mean and the sample standard deviation of the per-run tokens/s, as llama-bench does.
// The model comes from model_choice.hpp: without --precision the course's Week 2 model (f32);
// with --precision f32,bf16,q8,q4 each precision loads the engine (engine/) in turn. An MLX
// checkpoint (config.json "quantization") always runs on the engine with its stored weights,
// reported as e.g. "q4 g64 (mlx)". Every call is the LanguageModel's forward_last: ppN computes the
// last position's logits only, as llama-bench's prompt test does.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "bench.hpp"
#include "commands.hpp"
#include "engine/load_model.hpp"
#include "model_choice.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"

namespace tinyllm::app {
namespace fs = std::filesystem;

// "512" or "128,256" -> {512} or {128, 256}; every value >= min_value.
std::vector<int64_t> parse_list(const CommandLine& cl, const std::string& flag,
                                int64_t default_value, int64_t min_value) {
  if (!cl.has(flag)) return {default_value};
  std::vector<int64_t> values;
  const std::string& text = cl.flags.at(flag);
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const int64_t v = parse_int(
        flag, text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (v < min_value) {
      throw UsageError("--" + flag + " values must be >= " + std::to_string(min_value) + ", got " +
                       std::to_string(v));
    }
    values.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return values;
}

// --precision f32,bf16,q8,q4 (--group-size for the quantized ones): the engine in each; absent:
// model_choice's one choice (the course model, or the engine for an MLX checkpoint).
std::vector<std::optional<engine::EngineOptions>> parse_precisions(const CommandLine& cl,
                                                                   const fs::path& dir,
                                                                   const Qwen2Config& config) {
  if (config.quantization && cl.has("precision")) {
    throw mlx_contradiction(dir, *config.quantization, "--precision " + cl.flags.at("precision"));
  }
  if (!cl.has("precision")) {
    if (cl.has("group-size")) throw UsageError("--group-size needs --precision with q8 or q4");
    return {engine_choice(cl, dir, config)};
  }
  const int group = cl.has("group-size")
                        ? static_cast<int>(parse_int("group-size", cl.flags.at("group-size")))
                        : 0;
  std::vector<std::optional<engine::EngineOptions>> specs;
  std::string text = cl.flags.at("precision") + ",";
  for (size_t start = 0, comma; (comma = text.find(',', start)) != std::string::npos;
       start = comma + 1) {
    const engine::WeightFormat format =
        engine::parse_weight_format(text.substr(start, comma - start));
    const bool quantized = engine::default_group_size(format) != 0;
    engine::EngineOptions options;
    options.weights = engine::check_weight_spec({format, quantized ? group : 0});
    specs.push_back(options);
  }
  return specs;
}

namespace {

using Clock = std::chrono::steady_clock;

struct BenchResult {
  std::string test;  // "pp512" / "tg128" / "tg128 x4"
  std::string weights;
  int64_t n_prompt = 0, n_gen = 0, threads = 0, parallel = 1;
  std::vector<double> seconds;

  std::vector<double> tokens_per_second() const {
    std::vector<double> ts;
    for (double s : seconds) ts.push_back(static_cast<double>(n_prompt + n_gen * parallel) / s);
    return ts;
  }
  double mean() const {
    double sum = 0;
    for (double t : tokens_per_second()) sum += t;
    return sum / static_cast<double>(seconds.size());
  }
  double stddev() const {
    if (seconds.size() < 2) return 0.0;
    const double m = mean();
    double sq = 0;
    for (double t : tokens_per_second()) sq += (t - m) * (t - m);
    return std::sqrt(sq / static_cast<double>(seconds.size() - 1));
  }
};

TokenIds random_ids(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  TokenIds ids(static_cast<size_t>(n));
  for (TokenId& id : ids) id = static_cast<TokenId>(pick(rng));
  return ids;
}

// The model under test and how long it took to load.
struct BenchModel {
  LoadedModel loaded;
  double load_s = 0;

  void forward(const TokenIds& ids, std::vector<KvCache>& caches) const {
    loaded.model->forward_last({ids}, caches[0].offset(), caches);
  }
};

BenchModel load_bench_model(const fs::path& dir, const Qwen2Config& config,
                            const std::optional<engine::EngineOptions>& options,
                            CheckTensors check) {
  BenchModel m;
  const auto start = Clock::now();
  m.loaded = load_chosen_model(dir, config, options, check);
  m.load_s = std::chrono::duration<double>(Clock::now() - start).count();
  return m;
}

// One timed run of a test from empty caches.
double run_once(const BenchModel& model, int64_t vocab, int64_t n_prompt, int64_t n_gen,
                std::mt19937_64& rng) {
  std::vector<KvCache> caches = model.loaded.model->create_kv_caches();
  const TokenIds prompt = random_ids(rng, n_prompt, vocab);
  const TokenIds steps = random_ids(rng, n_gen, vocab);
  const auto start = Clock::now();
  if (n_prompt > 0) model.forward(prompt, caches);
  for (int64_t i = 0; i < n_gen; ++i) model.forward({steps[static_cast<size_t>(i)]}, caches);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One timed run of R sequences decoding n_gen tokens together from empty caches.
double run_parallel_once(const BenchModel& model, int64_t vocab, int64_t n_gen, int64_t parallel,
                         std::mt19937_64& rng) {
  std::vector<std::vector<KvCache>> caches(static_cast<size_t>(parallel));
  std::vector<std::vector<KvCache>*> pointers;
  for (std::vector<KvCache>& c : caches) {
    c = model.loaded.model->create_kv_caches();
    pointers.push_back(&c);
  }
  std::vector<TokenIds> steps;
  for (int64_t i = 0; i < n_gen; ++i) {
    const TokenIds ids = random_ids(rng, parallel, vocab);
    for (TokenId id : ids) steps.push_back({id});
  }
  const auto start = Clock::now();
  for (int64_t i = 0; i < n_gen; ++i) {
    const std::vector<TokenIds> step(steps.begin() + i * parallel,
                                     steps.begin() + (i + 1) * parallel);
    model.loaded.model->forward_sequences(step, pointers);
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Every tensor's elements; of an MLX checkpoint, the weights its codes stand for (32/bits per U32
// word), without the scales and biases.
int64_t count_parameters(const fs::path& dir, const Qwen2Config& config) {
  const Checkpoint checkpoint = Checkpoint::open(dir);
  int64_t n = 0;
  for (const std::string& name : checkpoint.names()) {
    const TensorInfo& info = checkpoint.info(name);
    const std::string prefix = name.substr(0, name.rfind('.'));
    const bool stats = name.ends_with(".scales") || name.ends_with(".biases");
    if (config.quantization && stats && checkpoint.contains(prefix + ".weight")) continue;
    int64_t per = 1;
    if (config.quantization && info.dtype == DType::U32) {
      per = 32 / config.quantization->of(prefix).value_or(QuantizationSpec{}).bits;
    }
    n += shape_numel(info.shape) * per;
  }
  return n;
}

}  // namespace

int run_bench(const CommandLine& cl) {
  if (cl.has("draft-model") || cl.has("prompt-lookup")) return run_bench_speculative(cl);
  for (const char* flag : {"draft-tokens", "prompts-file"}) {
    if (cl.has(flag)) {
      throw UsageError(
          std::string("--") + flag +
          " belongs to the speculative mode: add --draft-model DIR or --prompt-lookup N");
    }
  }
  const std::vector<int64_t> prompts = parse_list(cl, "n-prompt", 512, 0);
  const std::vector<int64_t> gens = parse_list(cl, "n-gen", 128, 0);
  const std::vector<int64_t> threads = parse_list(cl, "threads", omp_get_num_procs(), 1);
  const std::vector<int64_t> parallel = parse_list(cl, "parallel", 1, 1);
  const int64_t reps =
      cl.has("repetitions") ? parse_int("repetitions", cl.flags.at("repetitions")) : 5;
  if (reps < 1) throw UsageError("--repetitions must be >= 1");
  const int64_t seed = cl.has("seed") ? parse_int("seed", cl.flags.at("seed")) : 0;
  const fs::path dir = resolve_model_dir(cl);
  const Qwen2Config config = engine::load_model_config(dir);
  const std::vector<std::optional<engine::EngineOptions>> precisions =
      parse_precisions(cl, dir, config);
  const int64_t params = count_parameters(dir, config);
  for (int64_t n : prompts) {
    if (n > config.max_position_embeddings) {
      throw ContextLengthError("-p " + std::to_string(n) + " exceeds the model's context of " +
                               std::to_string(config.max_position_embeddings));
    }
  }
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  std::vector<BenchResult> results;
  std::printf("| model | params | weights | threads | test | t/s |\n");
  std::printf("| --- | ---: | --- | ---: | ---: | ---: |\n");
  for (const std::optional<engine::EngineOptions>& precision : precisions) {
    const BenchModel model = load_bench_model(dir, config, precision, check_tensors_flag(cl));
    const double bytes = static_cast<double>(model.loaded.weight_bytes);
    std::fprintf(stderr,
                 "loaded %s in %.1f s: %.1f M parameters, weights %s (%.0f MB read per token)\n",
                 dir.string().c_str(), model.load_s, static_cast<double>(params) / 1e6,
                 model.loaded.weights.c_str(), bytes / 1e6);
    for (int64_t t : threads) {
      omp_set_num_threads(static_cast<int>(t));
      Eigen::setNbThreads(static_cast<int>(t));
      std::vector<BenchResult> tests;
      for (int64_t n : prompts) {
        if (n > 0)
          tests.push_back({"pp" + std::to_string(n), model.loaded.weights, n, 0, t, 1, {}});
      }
      for (int64_t n : gens) {
        for (int64_t p : parallel) {
          if (n == 0) continue;
          const std::string name =
              "tg" + std::to_string(n) + (p > 1 ? " x" + std::to_string(p) : "");
          tests.push_back({name, model.loaded.weights, 0, n, t, p, {}});
        }
      }
      for (BenchResult& r : tests) {
        const auto once = [&] {
          return r.parallel > 1
                     ? run_parallel_once(model, config.vocab_size, r.n_gen, r.parallel, rng)
                     : run_once(model, config.vocab_size, r.n_prompt, r.n_gen, rng);
        };
        once();  // warm-up
        for (int64_t i = 0; i < reps; ++i) r.seconds.push_back(once());
        std::printf("| %s | %.1f M | %s | %lld | %s | %.2f ± %.2f |\n",
                    dir.filename().string().c_str(), static_cast<double>(params) / 1e6,
                    r.weights.c_str(), static_cast<long long>(t), r.test.c_str(), r.mean(),
                    r.stddev());
        std::fflush(stdout);
        results.push_back(r);
      }
    }
  }

  if (cl.has("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const BenchResult& r : results) {
      std::vector<double> ns;
      for (double s : r.seconds) ns.push_back(s * 1e9);
      out.push_back({{"model_dir", dir.string()},
                     {"n_params", params},
                     {"weights", r.weights},
                     {"n_threads", r.threads},
                     {"test", r.test},
                     {"n_prompt", r.n_prompt},
                     {"n_gen", r.n_gen},
                     {"parallel", r.parallel},
                     {"repetitions", reps},
                     {"samples_ns", ns},
                     {"samples_ts", r.tokens_per_second()},
                     {"avg_ts", r.mean()},
                     {"stddev_ts", r.stddev()}});
    }
    std::ofstream file(cl.flags.at("json"));
    if (!file) throw FormatError("cannot write '" + cl.flags.at("json") + "'");
    file << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace tinyllm::app
