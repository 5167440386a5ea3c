// `tinyllm bench --draft-model DIR | --prompt-lookup N`: chapter 3.4's speculative decoding
// against the model alone, on real chat prompts (acceptance depends on the text, so random ids
// would say nothing).
//
// For every (precision, threads): each prompt of --prompts-file is answered greedily (up to -n
// tokens, stopping at the model's stop ids) by chapter 2.1's generate_tokens_with_kv_cache (the
// baseline), then by speculative_generate / prompt_lookup_generate for each k of --draft-tokens.
// One warm-up pass over all prompts, then --repetitions timed passes. Decode time is the time
// from a request's first id to its last (the prefill, which speculation does not change for the
// target, is left out; the draft's own prefill happens after the first id and is counted), summed
// over the prompts; decode tokens/s = (ids - 1 per prompt) / decode time. Speedup = the k row's
// mean tokens/s over the baseline's. Every speculative answer must equal the baseline's
// (chapter 3.4's guarantee); a difference is reported and the command exits with 1.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch3_4_speculative_decoding/prompt_lookup.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_decoding.hpp>

#include <Eigen/Core>

#include "bench.hpp"
#include "commands.hpp"
#include "engine/load_model.hpp"
#include "model_choice.hpp"
#include "tinyllm/chat_template.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"

namespace tinyllm::app {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

// The chat prompts: JSONL records {"messages": [{"role", "content"}, ...]} (as
// data/models/eval/heldout.jsonl) or one user message per line; blank lines skipped.
std::vector<std::string> read_chat_prompts(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw UsageError("--prompts-file: cannot read '" + file.string() + "'");
  std::vector<std::string> prompts;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::vector<ChatMessage> messages;
    if (line.front() == '{') {
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
      if (record.is_discarded() || !record.contains("messages")) {
        throw FormatError("--prompts-file: line " + std::to_string(number) + " of '" +
                          file.string() + "' is not a JSON record with \"messages\"");
      }
      for (const auto& m : record["messages"]) {
        messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
      }
    } else {
      messages.push_back({"user", line});
    }
    prompts.push_back(apply_chat_template(messages, true));
  }
  if (prompts.empty()) throw UsageError("--prompts-file: '" + file.string() + "' has no prompts");
  return prompts;
}

// One generation of one prompt, reporting each id as it is emitted.
using Generator = std::function<Generation(const TokenIds& prompt, const TokenCallback& on_id)>;

struct Pass {
  double decode_s = 0, total_s = 0;
  int64_t decode_ids = 0;
  std::vector<TokenIds> answers;
  double tokens_per_second() const { return decode_s > 0 ? decode_ids / decode_s : 0.0; }
};

Pass run_pass(const std::vector<TokenIds>& prompts, const Generator& generate) {
  Pass pass;
  for (const TokenIds& prompt : prompts) {
    Clock::time_point first, last;
    int64_t ids = 0;
    const auto start = Clock::now();
    const Generation g = generate(prompt, [&](TokenId) {
      last = Clock::now();
      if (ids++ == 0) first = last;
    });
    pass.total_s += std::chrono::duration<double>(Clock::now() - start).count();
    if (ids > 1) {
      pass.decode_s += std::chrono::duration<double>(last - first).count();
      pass.decode_ids += ids - 1;
    }
    pass.answers.push_back(g.tokens);
  }
  return pass;
}

struct Row {
  std::string drafter, weights;
  int64_t threads = 0, k = 0;  // k = 0: the model alone
  std::vector<double> tokens_per_second;
  SpeculativeStats stats;
  double mean() const {
    double sum = 0;
    for (double t : tokens_per_second) sum += t;
    return sum / static_cast<double>(tokens_per_second.size());
  }
  double stddev() const {
    if (tokens_per_second.size() < 2) return 0.0;
    double sq = 0;
    for (double t : tokens_per_second) sq += (t - mean()) * (t - mean());
    return std::sqrt(sq / static_cast<double>(tokens_per_second.size() - 1));
  }
};

// Seconds of one forward call of L' random ids at offset 64 (the caches rewound after each call),
// the mean of `calls` calls after one warm-up: the per-call costs of the cost model.
double call_seconds(const LanguageModel& model, int64_t new_ids, int64_t calls) {
  std::vector<KvCache> caches = model.create_kv_caches();
  TokenIds prefix(64), step(static_cast<size_t>(new_ids));
  for (size_t i = 0; i < prefix.size(); ++i) prefix[i] = static_cast<TokenId>((i * 37 + 11) % 997);
  for (size_t i = 0; i < step.size(); ++i) step[i] = static_cast<TokenId>((i * 53 + 7) % 991);
  model.forward({prefix}, 0, caches);
  model.forward({step}, 64, caches);
  rewind_caches(caches, new_ids);
  const auto start = Clock::now();
  for (int64_t i = 0; i < calls; ++i) {
    // A decode step keeps the last position only; a verification needs every row's logits.
    if (new_ids == 1) {
      model.forward_last({step}, 64, caches);
    } else {
      model.forward({step}, 64, caches);
    }
    rewind_caches(caches, new_ids);
  }
  return std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(calls);
}

}  // namespace

int run_bench_speculative(const CommandLine& cl) {
  if (!cl.has("prompts-file")) {
    throw UsageError("bench: the speculative mode needs --prompts-file FILE (chat prompts)");
  }
  for (const char* flag : {"n-prompt", "parallel"}) {
    if (cl.has(flag)) {
      throw UsageError(std::string("--") + flag + " does not apply to the speculative mode");
    }
  }
  if (cl.has("draft-model") && cl.has("prompt-lookup")) {
    throw UsageError("--draft-model and --prompt-lookup contradict each other (pick one drafter)");
  }
  const std::vector<int64_t> ks =
      cl.has("draft-tokens") ? parse_list(cl, "draft-tokens", 4, 1) : std::vector<int64_t>{2, 4, 6};
  const int64_t max_new = parse_list(cl, "n-gen", 128, 1).front();
  const std::vector<int64_t> threads = parse_list(cl, "threads", omp_get_num_procs(), 1);
  const int64_t reps = parse_list(cl, "repetitions", 3, 1).front();
  const int64_t lookup_n =
      cl.has("prompt-lookup") ? parse_list(cl, "prompt-lookup", 2, 1).front() : 0;

  const fs::path dir = resolve_model_dir(cl);
  const Qwen2Config config = engine::load_model_config(dir);
  const Tokenizer tokenizer = Tokenizer::from_model_dir(dir);
  std::vector<TokenIds> prompts;
  for (const std::string& p : read_chat_prompts(cl.flags.at("prompts-file"))) {
    prompts.push_back(tokenizer.encode(p));
    if (static_cast<int64_t>(prompts.back().size()) + max_new > config.max_position_embeddings) {
      throw ContextLengthError("a prompt of " + std::to_string(prompts.back().size()) +
                               " tokens and -n " + std::to_string(max_new) +
                               " exceed the model's context of " +
                               std::to_string(config.max_position_embeddings));
    }
  }
  const GenerationOptions options{.max_new_tokens = max_new,
                                  .stop_ids = default_stop_ids(config, &tokenizer)};

  std::vector<Row> rows;
  bool all_equal = true;
  std::printf(
      "| model | drafter | weights | threads | k | acceptance | accepted/round | decode t/s "
      "| speedup |\n");
  std::printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const std::optional<engine::EngineOptions>& precision : parse_precisions(cl, dir, config)) {
    const LoadedModel target = load_chosen_model(dir, config, precision, check_tensors_flag(cl));
    LoadedModel draft;
    std::string drafter = "prompt lookup n=" + std::to_string(lookup_n);
    if (cl.has("draft-model")) {
      const fs::path draft_dir = cl.flags.at("draft-model");
      const Qwen2Config draft_config = engine::load_model_config(draft_dir);
      draft = load_chosen_model(draft_dir, draft_config,
                                precision ? precision : engine_choice(cl, draft_dir, draft_config),
                                check_tensors_flag(cl));
      check_draft_model(*target.model, *draft.model, 0);
      check_same_tokenizer(tokenizer, Tokenizer::from_model_dir(draft_dir));
      drafter = draft_dir.filename().string();
    }
    std::fprintf(stderr, "%zu prompts, up to %lld new tokens each; weights %s; drafter %s\n",
                 prompts.size(), static_cast<long long>(max_new), target.weights.c_str(),
                 drafter.c_str());
    for (int64_t t : threads) {
      omp_set_num_threads(static_cast<int>(t));
      Eigen::setNbThreads(static_cast<int>(t));
      const LanguageModel& model = *target.model;
      Row base{"none", target.weights, t, 0, {}, {}};
      const Generator alone = [&](const TokenIds& p, const TokenCallback& on_id) {
        return generate_tokens_with_kv_cache(model, p, options, greedy_pick, on_id);
      };
      run_pass(prompts, alone);  // warm-up
      std::vector<TokenIds> expected;
      for (int64_t r = 0; r < reps; ++r) {
        Pass pass = run_pass(prompts, alone);
        base.tokens_per_second.push_back(pass.tokens_per_second());
        expected = std::move(pass.answers);
      }
      const double base_mean = base.mean();
      // The cost model (book/week3/ch3_4_speculative_decoding.md): speedup = E / (k c + T(k+1) / T)
      // with E = (1 - a^(k+1)) / (1 - a), a the acceptance rate, c = draft step / target step.
      const double target_step = call_seconds(model, 1, 200);
      const double draft_step = draft.model ? call_seconds(*draft.model, 1, 200) : 0.0;
      std::fprintf(
          stderr, "costs (threads %lld): target decode step %.3f ms, draft step %.3f ms (c = %.2f)",
          static_cast<long long>(t), 1e3 * target_step, 1e3 * draft_step, draft_step / target_step);
      for (int64_t k : ks) {
        std::fprintf(stderr, ", T(%lld)/T = %.2f", static_cast<long long>(k + 1),
                     call_seconds(model, k + 1, 200) / target_step);
      }
      std::fprintf(stderr, "\n");
      std::printf("| %s | none | %s | %lld | - | - | - | %.1f ± %.1f | 1.00 |\n",
                  dir.filename().string().c_str(), base.weights.c_str(), static_cast<long long>(t),
                  base.mean(), base.stddev());
      std::fflush(stdout);
      rows.push_back(base);
      for (int64_t k : ks) {
        Row row{drafter, target.weights, t, k, {}, {}};
        const Generator speculative = [&](const TokenIds& p, const TokenCallback& on_id) {
          const SpeculativeGeneration g =
              draft.model ? speculative_generate(model, *draft.model, p, options, k, on_id)
                          : prompt_lookup_generate(model, p, options, lookup_n, k, on_id);
          row.stats.rounds += g.stats.rounds;
          row.stats.proposed += g.stats.proposed;
          row.stats.accepted += g.stats.accepted;
          return g.generation;
        };
        run_pass(prompts, speculative);  // warm-up
        row.stats = {};
        for (int64_t r = 0; r < reps; ++r) {
          const Pass pass = run_pass(prompts, speculative);
          row.tokens_per_second.push_back(pass.tokens_per_second());
          for (size_t i = 0; i < prompts.size(); ++i) {
            if (pass.answers[i] != expected[i]) {
              all_equal = false;
              std::fprintf(stderr,
                           "check: prompt %zu differs from the model's own answer (k = %lld)\n", i,
                           static_cast<long long>(k));
            }
          }
        }
        std::printf("| %s | %s | %s | %lld | %lld | %.1f%% | %.2f | %.1f ± %.1f | %.2f |\n",
                    dir.filename().string().c_str(), drafter.c_str(), row.weights.c_str(),
                    static_cast<long long>(t), static_cast<long long>(k),
                    100.0 * row.stats.acceptance_rate(), row.stats.mean_accepted_per_round(),
                    row.mean(), row.stddev(), base_mean > 0 ? row.mean() / base_mean : 0.0);
        std::fflush(stdout);
        rows.push_back(row);
      }
    }
  }
  if (cl.has("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows) {
      out.push_back({{"model_dir", dir.string()},
                     {"drafter", r.drafter},
                     {"weights", r.weights},
                     {"n_threads", r.threads},
                     {"draft_tokens", r.k},
                     {"prompts", prompts.size()},
                     {"max_new_tokens", max_new},
                     {"rounds", r.stats.rounds},
                     {"proposed", r.stats.proposed},
                     {"accepted", r.stats.accepted},
                     {"acceptance_rate", r.stats.acceptance_rate()},
                     {"decode_ts", r.tokens_per_second},
                     {"avg_decode_ts", r.mean()},
                     {"stddev_decode_ts", r.stddev()}});
    }
    std::ofstream file(cl.flags.at("json"));
    if (!file) throw FormatError("cannot write '" + cl.flags.at("json") + "'");
    file << out.dump(2) << "\n";
  }
  if (!all_equal) {
    std::printf("check: FAILED, a speculative answer differs from the model's own\n");
    return 1;
  }
  std::printf("check: every speculative answer equals the model's own greedy answer\n");
  return 0;
}

}  // namespace tinyllm::app
