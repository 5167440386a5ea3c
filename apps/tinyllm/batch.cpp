// `tinyllm batch`: N chat prompts through the serving core (engine/serving: LLMEngine over chapter
// 2.7's scheduler, continuous batching with chunked prefill), on the model model_choice.hpp picks
// (the course's Week 2 model, or the engine with --dtype/--quantize or an MLX checkpoint), with a
// live per-slot view and a summary of prefill and decode speed, time to first token and time per
// output token. --check re-runs every request alone (an LLMEngine with one slot and the same
// prefill chunk, on the same model) and fails if any output differs: batching must not change a
// token. (The same chunk, because the engine's fast kernels round a step of more than 48 rows, a
// long prompt's one-shot prefill, differently from the chunks of it; the tests compare chapter
// 2.1's unchunked generation too, on prompts shorter than that.) --paged runs the serving core's
// paged mode (engine/serving/scheduler.hpp: a page pool, preemption, --prefix-cache) on the engine
// and shows the pages in use and the prefix cache's hit rate; --check then re-runs each request
// alone on dense caches. The server is the other front-end over the same LLMEngine.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>

#include "cli.hpp"
#include "commands.hpp"
#include "engine/load_model.hpp"
#include "engine/serving/llm_engine.hpp"
#include "model_choice.hpp"
#include "tinyllm/chat_template.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"

namespace tinyllm::app {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

// Questions the embedded tiny-qwen2 model was trained to answer (tools/models/make_corpus.py).
const std::vector<std::string> kDefaultPrompts = {
    "What is 37 + 58?",
    "What is the capital of France?",
    "What is 23 + 45?",
    "What is the chemical symbol for gold?",
    "What is 91 - 36?",
    "What is the capital of Japan?",
    "What day comes after Monday?",
    "What is 12 * 7?",
    "What is the third planet from the Sun?",
    "What month comes before March?",
    "What is the opposite of hot?",
    "Which city is the capital of Germany?",
    "What is 145 + 230?",
    "What is the next planet after Mars?",
    "What is the capital of Italy?",
    "What is the opposite of big?",
};

int64_t positive_flag(const CommandLine& cl, const std::string& flag, int64_t fallback) {
  if (!cl.has(flag)) return fallback;
  const int64_t value = parse_int(flag, cl.flags.at(flag));
  if (value < 1) throw UsageError("--" + flag + " must be >= 1, got " + cl.flags.at(flag));
  return value;
}

// The user messages: --prompts-file (one per line, blank lines skipped), --prompt (repeatable; the
// parser joins repeats with '\n'), or the built-in list.
std::vector<std::string> read_prompts(const CommandLine& cl) {
  if (cl.has("prompts-file") && cl.has("prompt")) {
    throw UsageError("batch: give --prompts-file or --prompt, not both");
  }
  std::vector<std::string> prompts;
  std::string line;
  if (cl.has("prompts-file")) {
    const std::string& path = cl.flags.at("prompts-file");
    std::ifstream file(path);
    if (!file) throw FormatError("--prompts-file: cannot read '" + path + "'");
    while (std::getline(file, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") != std::string::npos) prompts.push_back(line);
    }
    if (prompts.empty()) throw UsageError("--prompts-file: '" + path + "' has no prompts");
    return prompts;
  }
  if (!cl.has("prompt")) return kDefaultPrompts;
  std::istringstream joined(cl.flags.at("prompt"));
  while (std::getline(joined, line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) {
      throw UsageError("--prompt: a prompt is empty");
    }
    prompts.push_back(line);
  }
  if (prompts.empty()) throw UsageError("--prompt: a prompt is empty");
  return prompts;
}

// One line of text: newlines shown as "\n", at most `width` characters from the end.
std::string tail(const std::string& text, size_t width) {
  std::string flat;
  for (char c : text) flat += c == '\n' ? std::string("\\n") : std::string(1, c);
  return flat.size() <= width ? flat : "..." + flat.substr(flat.size() - width + 3);
}

std::string reason_name(const engine::LLMEngine& engine, int64_t request) {
  const std::optional<engine::Finish> f = engine.finish(request);
  return f ? engine::finish_name(*f) : "running";
}

// "pages 96/1024 in use (24 cached), prefix cache 75% of 480 prompt tokens, 0 preemptions".
std::string paging_line(const engine::LLMEngine& engine) {
  const std::optional<engine::PagingStats> p = engine.paging();
  if (!p) return "";
  char text[160];
  std::snprintf(text, sizeof text,
                "pages %lld/%lld in use (%lld cached), prefix cache %.0f%% of %lld prompt tokens, "
                "%lld preemptions",
                static_cast<long long>(p->pages_in_use), static_cast<long long>(p->pool_pages),
                static_cast<long long>(p->cached_pages), 100.0 * p->hit_rate(),
                static_cast<long long>(p->prefix_query_tokens),
                static_cast<long long>(p->preemptions));
  return text;
}

// The progress view: one line per slot plus one for the prefill, redrawn in place on a terminal;
// elsewhere one plain line per event (a request joins a slot or finishes).
class ProgressView {
 public:
  ProgressView(const engine::LLMEngine& engine, const Tokenizer& tokenizer)
      : engine_(engine), tokenizer_(tokenizer), terminal_(isatty(STDOUT_FILENO) != 0) {}

  void operator()(const BatchProgress& p) {
    track_gaps();
    if (terminal_) {
      redraw(p);
    } else {
      log_events(p);
    }
    last_ = p;
  }

  void finish() {
    if (terminal_ && drawn_ > 0) std::printf("\n");
  }

  /// The longest time between two consecutive tokens of one request (a decode step plus whatever
  /// prefill ran before it: the stall that chunked prefill bounds).
  double max_gap_s() const { return max_gap_s_; }

 private:
  void redraw(const BatchProgress& p) {
    if (drawn_ > 0) std::printf("\x1b[%dA", drawn_);
    drawn_ = 0;
    char head[160];
    std::snprintf(head, sizeof head, "step %lld  %.2f s  %lld waiting  %lld finished",
                  static_cast<long long>(p.step), p.elapsed_s, static_cast<long long>(p.waiting),
                  static_cast<long long>(p.finished));
    line(head);
    if (engine_.paging()) line(paging_line(engine_));
    for (size_t b = 0; b < p.slots.size(); ++b) {
      const BatchProgress::Slot& s = p.slots[b];
      char text[96];
      if (s.request < 0) {
        std::snprintf(text, sizeof text, "slot %zu  idle", b);
        line(text);
        continue;
      }
      std::snprintf(text, sizeof text, "slot %zu  req %2lld  pos %4lld  %3lld tok  ", b,
                    static_cast<long long>(s.request), static_cast<long long>(s.offset),
                    static_cast<long long>(s.generated));
      line(text + tail(tokenizer_.decode(engine_.tokens(s.request)), 60));
    }
    char prefill[96];
    if (p.prefill_request >= 0) {
      std::snprintf(prefill, sizeof prefill, "prefill  req %2lld  %lld / %lld prompt tokens%s",
                    static_cast<long long>(p.prefill_request),
                    static_cast<long long>(p.prefill_done), static_cast<long long>(p.prefill_total),
                    p.prefill_done == p.prefill_total ? ", waiting for a slot" : "");
    } else {
      std::snprintf(prefill, sizeof prefill, "prefill  idle");
    }
    line(prefill);
    std::fflush(stdout);
  }

  void line(const std::string& text) {
    std::printf("\x1b[2K%s\n", text.c_str());
    ++drawn_;
  }

  void log_events(const BatchProgress& p) {
    for (size_t b = 0; b < p.slots.size(); ++b) {
      const int64_t before = b < last_.slots.size() ? last_.slots[b].request : -1;
      const int64_t now = p.slots[b].request;
      if (now >= 0 && now != before) {
        std::printf("[step %lld, %.2f s] request %lld joins slot %zu\n",
                    static_cast<long long>(p.step), p.elapsed_s, static_cast<long long>(now), b);
      }
    }
    const auto n = static_cast<int64_t>(engine_.scheduler().outputs().size());
    reported_.resize(static_cast<size_t>(n), false);
    for (int64_t i = 0; i < n; ++i) {
      if (!engine_.finish(i) || reported_[static_cast<size_t>(i)]) continue;
      reported_[static_cast<size_t>(i)] = true;
      const std::string pages = engine_.paging() ? " (" + paging_line(engine_) + ")" : "";
      std::printf("[step %lld, %.2f s] request %lld finished: %zu tokens, %s%s\n",
                  static_cast<long long>(p.step), p.elapsed_s, static_cast<long long>(i),
                  engine_.tokens(i).size(), reason_name(engine_, i).c_str(), pages.c_str());
    }
    std::fflush(stdout);
  }

  void track_gaps() {
    const std::vector<RequestOutput>& outputs = engine_.scheduler().outputs();
    seen_.resize(outputs.size(), 0);
    last_s_.resize(outputs.size(), 0.0);
    for (size_t i = 0; i < outputs.size(); ++i) {
      const size_t picks = outputs[i].tokens.size() + (outputs[i].stop_token ? 1 : 0);
      if (picks == seen_[i]) continue;
      if (picks >= 2) {
        const double since = seen_[i] == 0 ? outputs[i].first_token_s : last_s_[i];
        max_gap_s_ = std::max(max_gap_s_, outputs[i].last_token_s - since);
      }
      seen_[i] = picks;
      last_s_[i] = outputs[i].last_token_s;
    }
  }

 private:
  const engine::LLMEngine& engine_;
  const Tokenizer& tokenizer_;
  bool terminal_;
  int drawn_ = 0;
  BatchProgress last_;
  std::vector<bool> reported_;
  std::vector<size_t> seen_;  // tokens picked per request at the last snapshot
  std::vector<double> last_s_;
  double max_gap_s_ = 0.0;
};

// The summary: counts, speeds and latencies of the run.
void print_summary(const engine::LLMEngine& engine, const Qwen2Config& config, int64_t batch_size,
                   double wall_s, double max_gap_s) {
  const engine::ServingStats& s = engine.stats();
  const auto requests = static_cast<int64_t>(engine.scheduler().outputs().size());
  int64_t decode_picks = 0, timed = 0;
  double ttft_sum = 0, ttft_max = 0, tpot_sum = 0;
  for (int64_t i = 0; i < requests; ++i) {
    const engine::RequestMetrics& m = engine.metrics(i);
    const RequestOutput& o = engine.scheduler().outputs()[static_cast<size_t>(i)];
    const int64_t picks = m.output_tokens + (o.stop_token ? 1 : 0);  // the stop id is picked too
    if (picks == 0 || !m.ttft()) continue;
    decode_picks += picks - 1;  // the first pick comes from the prefill logits
    ttft_sum += *m.ttft();
    ttft_max = std::max(ttft_max, *m.ttft());
    if (const std::optional<double> tpot = m.tpot(picks)) {
      tpot_sum += *tpot;
      ++timed;
    }
  }
  std::printf("\nsummary: %lld requests, batch size %lld, %lld iterations\n",
              static_cast<long long>(requests), static_cast<long long>(batch_size),
              static_cast<long long>(s.steps));
  std::printf("  prompt tokens     %6lld   prefill %8.1f tok/s  (%.2f s)\n",
              static_cast<long long>(s.prompt_tokens),
              s.prefill_s > 0 ? static_cast<double>(s.prompt_tokens) / s.prefill_s : 0.0,
              s.prefill_s);
  std::printf("  generated tokens  %6lld   decode  %8.1f tok/s  (%.2f s, %lld batched picks)\n",
              static_cast<long long>(s.output_tokens),
              s.decode_s > 0 ? static_cast<double>(decode_picks) / s.decode_s : 0.0, s.decode_s,
              static_cast<long long>(decode_picks));
  std::printf("  time to first token   mean %.3f s, max %.3f s\n",
              ttft_sum / static_cast<double>(std::max<int64_t>(requests, 1)), ttft_max);
  std::printf("  time per output token mean %.1f ms, longest gap between two tokens %.1f ms\n",
              timed > 0 ? 1e3 * tpot_sum / static_cast<double>(timed) : 0.0, 1e3 * max_gap_s);
  std::printf("  wall time %.2f s\n", wall_s);
  if (const std::optional<engine::PagingStats> p = engine.paging()) {
    // Dense per-slot preallocation: every slot holds the whole context on every layer.
    const Qwen2Config& c = config;
    const int64_t dense = c.num_hidden_layers * batch_size *
                          ((c.max_position_embeddings + p->page_size - 1) / p->page_size);
    const double page_mib =
        2.0 * static_cast<double>(c.num_key_value_heads * p->page_size * c.head_dim * 4) /
        (1 << 20);
    std::printf(
        "  paged KV cache    %lld pages of %lld positions, peak %lld in use, %lld held by "
        "requests (%.1f MiB); dense per-slot preallocation %lld pages (%.1f MiB), ratio %.3f\n",
        static_cast<long long>(p->pool_pages), static_cast<long long>(p->page_size),
        static_cast<long long>(p->peak_pages_in_use), static_cast<long long>(p->peak_pages_held),
        page_mib * static_cast<double>(p->peak_pages_held), static_cast<long long>(dense),
        page_mib * static_cast<double>(dense),
        static_cast<double>(p->peak_pages_held) / static_cast<double>(dense));
    std::printf(
        "  prefix cache      hit rate %.1f%% (%lld of %lld prompt tokens), %lld evictions, "
        "%lld preemptions; %lld pages in use at the end (%lld cached)\n",
        100.0 * p->hit_rate(), static_cast<long long>(p->prefix_hit_tokens),
        static_cast<long long>(p->prefix_query_tokens), static_cast<long long>(p->evictions),
        static_cast<long long>(p->preemptions), static_cast<long long>(p->pages_in_use),
        static_cast<long long>(p->cached_pages));
  }
}

// --check: every request alone (one slot, the same prefill chunk) on the same model.
int check_outputs(const LanguageModel& model, const engine::LLMEngine& engine,
                  const std::vector<TokenIds>& prompts, int64_t chunk,
                  const engine::SamplingParams& params) {
  int64_t differ = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::LLMEngine single(model, {1, chunk, 0});
    single.submit(prompts[i], params);
    single.run_to_completion();
    const TokenIds& alone = single.tokens(0);
    const TokenIds& batched = engine.tokens(static_cast<int64_t>(i));
    if (alone == batched) continue;
    ++differ;
    size_t at = 0;
    while (at < batched.size() && at < alone.size() && batched[at] == alone[at]) ++at;
    std::printf(
        "check: request %zu differs from its single-request run at token %zu (%zu vs %zu "
        "tokens)\n",
        i, at, batched.size(), alone.size());
  }
  if (differ > 0) {
    std::printf("check: FAILED, %lld of %zu requests differ\n", static_cast<long long>(differ),
                prompts.size());
    return 1;
  }
  std::printf("check: all %zu requests equal their single-request greedy runs\n", prompts.size());
  return 0;
}

// --paged, --page-size, --kv-pages, --prefix-cache (UsageError: the last three need --paged).
engine::ServingOptions serving_options(const CommandLine& cl, int64_t batch_size, int64_t chunk) {
  engine::ServingOptions o{.batch_size = batch_size, .prefill_chunk = chunk, .kv_budget = 0};
  o.paged = cl.has("paged");
  for (const char* flag : {"page-size", "kv-pages", "prefix-cache"}) {
    if (cl.has(flag) && !o.paged) throw UsageError(std::string("--") + flag + " needs --paged");
  }
  o.page_size = positive_flag(cl, "page-size", o.page_size);
  o.kv_pages = positive_flag(cl, "kv-pages", 0);
  o.prefix_cache = cl.has("prefix-cache");
  return o;
}

}  // namespace

int run_batch(const CommandLine& cl) {
  const int64_t batch_size = positive_flag(cl, "batch-size", 4);
  const int64_t chunk = positive_flag(cl, "prefill-chunk", 32);
  const int64_t max_tokens = positive_flag(cl, "max-tokens", 64);
  const std::vector<std::string> questions = read_prompts(cl);
  const fs::path dir = resolve_model_dir(cl);
  if (!fs::is_regular_file(dir / "tokenizer.json")) {
    throw FormatError("no tokenizer.json in the model directory '" + dir.string() +
                      "' (batch needs one)");
  }
  const Tokenizer tokenizer = Tokenizer::from_file(dir / "tokenizer.json");
  const Qwen2Config config = engine::load_model_config(dir);
  const engine::ServingOptions serving = serving_options(cl, batch_size, chunk);
  std::optional<engine::EngineOptions> choice = engine_choice(cl, dir, config);
  if (serving.paged && !choice) choice = engine::EngineOptions{};  // paged caches: the engine
  const LoadedModel loaded = load_chosen_model(dir, config, choice, check_tensors_flag(cl));
  const TokenIds stop_ids = default_stop_ids(config, &tokenizer);

  engine::LLMEngine engine(*loaded.model, serving);
  const engine::SamplingParams params{{}, max_tokens, stop_ids};  // greedy
  std::vector<TokenIds> prompts;
  for (const std::string& q : questions) {
    std::vector<ChatMessage> messages;
    if (cl.has("system")) messages.push_back({"system", cl.flags.at("system")});
    messages.push_back({"user", q});
    prompts.push_back(tokenizer.encode(apply_chat_template(messages, true)));
    engine.submit(prompts.back(), params);
  }
  std::printf(
      "%zu requests, batch size %lld, prefill chunk %lld, up to %lld new tokens each, "
      "weights %s\n",
      questions.size(), static_cast<long long>(batch_size), static_cast<long long>(chunk),
      static_cast<long long>(max_tokens), loaded.weights.c_str());
  if (serving.paged) {
    std::printf("paged KV cache: pages of %lld positions, a pool of %lld pages, prefix cache %s\n",
                static_cast<long long>(serving.page_size),
                static_cast<long long>(engine.paging()->pool_pages),
                serving.prefix_cache ? "on" : "off");
  }
  ProgressView view(engine, tokenizer);
  const auto start = Clock::now();
  while (engine.has_work()) {
    engine.step();
    view(engine.progress());
  }
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  view.finish();

  std::printf("\n");
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto id = static_cast<int64_t>(i);
    std::printf("[%zu] %s\n     -> %s  (%zu tokens, %s)\n", i, questions[i].c_str(),
                tail(tokenizer.decode(engine.tokens(id)), 200).c_str(), engine.tokens(id).size(),
                reason_name(engine, id).c_str());
  }
  print_summary(engine, config, batch_size, wall_s, view.max_gap_s());
  return cl.has("check") ? check_outputs(*loaded.model, engine, prompts, chunk, params) : 0;
}

}  // namespace tinyllm::app
