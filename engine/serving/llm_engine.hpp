// The serving core's front door (nano-vllm's LLMEngine): requests go in with submit, come out as
// events from step (or through a stream callback), and can be cancelled at any time. It owns the
// scheduler and keeps the per-request metrics; it holds no scheduling logic itself.
//
//   LLMEngine engine(model, {.batch_size = 4});
//   const int64_t id = engine.submit(prompt_ids, params, [](const RequestEvent& e) { ... });
//   while (engine.has_work()) engine.step();       // or: engine.run_to_completion()
//
// One thread drives it (the front-end's engine thread); it is not safe to call from several
// threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/language_model.hpp>

#include "engine/serving/request.hpp"
#include "engine/serving/scheduler.hpp"

namespace tinyllm::engine {

struct ServingOptions {
  int64_t batch_size = 4;      // requests decoding together
  int64_t prefill_chunk = 64;  // prompt tokens prefilled per iteration (chapter 2.7)
  int64_t kv_budget = 0;       // cached positions in all; 0: batch_size x the context (never binds)
  // Paged caches (the engine's Qwen2Model only; scheduler.hpp): a pool of kv_pages pages of
  // page_size positions (0: layers x ceil(kv_budget / page_size), as much as the dense budget),
  // with the prefix cache if prefix_cache (which needs paged).
  bool paged = false;
  int64_t page_size = 16;
  int64_t kv_pages = 0;
  bool prefix_cache = false;
};

/// Totals over the engine's life, for reports and metrics.
struct ServingStats {
  int64_t steps = 0;
  int64_t prompt_tokens = 0, output_tokens = 0;
  int64_t finished = 0, cancelled = 0;
  double prefill_s = 0.0, decode_s = 0.0;  // time in prefill chunks and in batched decode steps
};

using EventCallback = std::function<void(const RequestEvent&)>;

class LLMEngine {
 public:
  /// `model` must outlive the engine. InvalidArgument for options < 1 (kv_budget, kv_pages < 0),
  /// prefix_cache without paged, and the Scheduler's paged-mode errors.
  LLMEngine(const LanguageModel& model, ServingOptions options = {});

  /// Queues a request and returns its id; on_event (optional) gets its events as step() produces
  /// them. Errors (nothing is queued): InvalidArgument, ContextLengthError, OutOfPages (see
  /// Scheduler).
  int64_t submit(const TokenIds& prompt, const SamplingParams& params, EventCallback on_event = {});
  /// One iteration of the scheduler; returns every request's events of it, in id order.
  std::vector<RequestEvent> step();
  /// Ends a request now (its slot and cache are freed); it gets a Cancelled event. False if it
  /// had already finished or is unknown.
  bool cancel(int64_t request);
  bool has_work() const { return !scheduler_.idle(); }
  /// step() until no work is left.
  void run_to_completion();

  /// The tokens a request has produced so far (without its stop id).
  const TokenIds& tokens(int64_t request) const;
  std::optional<Finish> finish(int64_t request) const;
  const RequestMetrics& metrics(int64_t request) const;
  const ServingStats& stats() const { return stats_; }
  int64_t running() const { return scheduler_.running(); }
  int64_t waiting() const { return scheduler_.queued(); }
  /// The slots and the request being prefilled after the last step (chapter 2.6's view).
  BatchProgress progress() const { return scheduler_.progress(); }
  const Scheduler& scheduler() const { return scheduler_; }
  /// Paged mode: pages in use, the prefix cache's hits, preemptions (nullopt in dense mode).
  std::optional<PagingStats> paging() const { return scheduler_.paging_stats(); }
  /// Paged mode: evicts every cached free block, so that only pages of running requests stay in
  /// use.
  void clear_prefix_cache() { scheduler_.clear_prefix_cache(); }
  /// Seconds since the engine was made.
  double now() const;

 private:
  void emit(const RequestEvent& event);
  Finish finish_of(int64_t request) const;

  const LanguageModel& model_;
  Scheduler scheduler_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::vector<RequestMetrics> metrics_;
  std::vector<size_t> seen_;  // output tokens already reported per request
  std::vector<bool> reported_finish_;
  std::unordered_map<int64_t, EventCallback> callbacks_;
  ServingStats stats_;
};

}  // namespace tinyllm::engine
