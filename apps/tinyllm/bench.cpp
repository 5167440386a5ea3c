// `tinyllm bench`: prefill and decode speed in the manner of llama.cpp's llama-bench.
//
//   ppN  one forward call of N random token ids on empty KV caches: N / seconds
//   tgN  N forward calls of one random token each, starting from empty caches (offsets 0..N-1):
//        N / seconds
// Each (test, threads) pair runs once as a warm-up, then --repetitions times; the table shows the
// mean and the sample standard deviation of the per-run tokens/s, as llama-bench does.
// Without --precision the model is chapter 2.1's (f32, all logits); with --precision f32,bf16,q8,q4
// each precision loads the engine (engine/) in turn, whose ppN computes the last position's
// logits only, as llama-bench's prompt test does. An MLX checkpoint (config.json "quantization")
// always runs on the engine with its stored weights, reported as e.g. "q4 g64 (mlx)".
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

#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>

#include "commands.hpp"
#include "engine/model/mlx_checkpoint.hpp"
#include "engine/model/qwen2_engine.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"

namespace tinyllm::app {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

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

struct BenchResult {
  std::string test;  // "pp512" / "tg128"
  std::string weights;
  int64_t n_prompt = 0, n_gen = 0, threads = 0;
  std::vector<double> seconds;

  std::vector<double> tokens_per_second() const {
    std::vector<double> ts;
    for (double s : seconds) ts.push_back(static_cast<double>(n_prompt + n_gen) / s);
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

// The model under test: chapter 2.1's or the engine, and what its weights are.
struct BenchModel {
  std::optional<Qwen2ModelWeek2> week2;
  std::optional<engine::Qwen2Engine> fast;
  std::string weights;  // "f32", "bf16", "q8 g32", "q4 g64 (head q8)"
  double load_s = 0;

  std::vector<KvCache> caches() const {
    return fast ? fast->create_kv_caches() : week2->create_kv_caches();
  }
  void forward(const TokenIds& ids, std::vector<KvCache>& caches) const {
    if (fast) {
      fast->forward({ids}, caches[0].offset(), caches, /*last_only=*/true);
    } else {
      week2->forward({ids}, caches[0].offset(), caches);
    }
  }
};

BenchModel load_bench_model(const fs::path& dir, const Qwen2Config& config,
                            std::optional<engine::WeightSpec> spec) {
  BenchModel m;
  const auto start = Clock::now();
  if (config.quantization) {  // an MLX checkpoint: the engine with its stored weights
    m.fast.emplace(engine::load_qwen2_engine(dir, {}));
    m.weights = engine::mlx_quantization_name(*config.quantization);
  } else if (!spec) {
    m.week2.emplace(load_qwen2_week2(dir));
    m.weights = "f32";
  } else {
    m.fast.emplace(engine::load_qwen2_engine(
        dir, engine::EngineOptions{.weights = *spec, .head_format = {}, .threads = 0}));
    const engine::WeightSpec& w = m.fast->options().weights;
    m.weights = engine::weight_format_name(w.format);
    if (w.group_size != 0) m.weights += " g" + std::to_string(w.group_size);
    if (w.format == engine::WeightFormat::Q4) m.weights += " (head q8)";
  }
  m.load_s = std::chrono::duration<double>(Clock::now() - start).count();
  return m;
}

// --precision f32,bf16,q8,q4 (--group-size for the quantized ones); absent: {nullopt}.
std::vector<std::optional<engine::WeightSpec>> parse_precisions(const CommandLine& cl) {
  if (!cl.has("precision")) {
    if (cl.has("group-size")) throw UsageError("--group-size needs --precision with q8 or q4");
    return {std::nullopt};
  }
  const int group = cl.has("group-size")
                        ? static_cast<int>(parse_int("group-size", cl.flags.at("group-size")))
                        : 0;
  std::vector<std::optional<engine::WeightSpec>> specs;
  std::string text = cl.flags.at("precision") + ",";
  for (size_t start = 0, comma; (comma = text.find(',', start)) != std::string::npos;
       start = comma + 1) {
    const engine::WeightFormat format =
        engine::parse_weight_format(text.substr(start, comma - start));
    const bool quantized = engine::default_group_size(format) != 0;
    specs.push_back(engine::check_weight_spec({format, quantized ? group : 0}));
  }
  return specs;
}

// One timed run of a test from empty caches.
double run_once(const BenchModel& model, int64_t vocab, int64_t n_prompt, int64_t n_gen,
                std::mt19937_64& rng) {
  std::vector<KvCache> caches = model.caches();
  const TokenIds prompt = random_ids(rng, n_prompt, vocab);
  const TokenIds steps = random_ids(rng, n_gen, vocab);
  const auto start = Clock::now();
  if (n_prompt > 0) model.forward(prompt, caches);
  for (int64_t i = 0; i < n_gen; ++i) model.forward({steps[static_cast<size_t>(i)]}, caches);
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
  const std::vector<int64_t> prompts = parse_list(cl, "n-prompt", 512, 0);
  const std::vector<int64_t> gens = parse_list(cl, "n-gen", 128, 0);
  const std::vector<int64_t> threads = parse_list(cl, "threads", omp_get_num_procs(), 1);
  const int64_t reps =
      cl.has("repetitions") ? parse_int("repetitions", cl.flags.at("repetitions")) : 5;
  if (reps < 1) throw UsageError("--repetitions must be >= 1");
  const int64_t seed = cl.has("seed") ? parse_int("seed", cl.flags.at("seed")) : 0;
  const std::vector<std::optional<engine::WeightSpec>> precisions = parse_precisions(cl);
  const fs::path dir = resolve_model_dir(cl);
  const Qwen2Config config = load_qwen2_config(dir / "config.json");
  if (config.quantization && cl.has("precision")) {
    throw mlx_contradiction(dir, *config.quantization, "--precision " + cl.flags.at("precision"));
  }
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
  for (const std::optional<engine::WeightSpec>& precision : precisions) {
    const BenchModel model = load_bench_model(dir, config, precision);
    const double bytes = model.fast ? static_cast<double>(model.fast->weight_bytes())
                                    : static_cast<double>(params) * 4;
    std::fprintf(stderr,
                 "loaded %s in %.1f s: %.1f M parameters, weights %s (%.0f MB read per token)\n",
                 dir.string().c_str(), model.load_s, static_cast<double>(params) / 1e6,
                 model.weights.c_str(), bytes / 1e6);
    for (int64_t t : threads) {
      omp_set_num_threads(static_cast<int>(t));
      Eigen::setNbThreads(static_cast<int>(t));
      std::vector<BenchResult> tests;
      for (int64_t n : prompts) {
        if (n > 0) tests.push_back({"pp" + std::to_string(n), model.weights, n, 0, t, {}});
      }
      for (int64_t n : gens) {
        if (n > 0) tests.push_back({"tg" + std::to_string(n), model.weights, 0, n, t, {}});
      }
      for (BenchResult& r : tests) {
        run_once(model, config.vocab_size, r.n_prompt, r.n_gen, rng);  // warm-up
        for (int64_t i = 0; i < reps; ++i)
          r.seconds.push_back(run_once(model, config.vocab_size, r.n_prompt, r.n_gen, rng));
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
