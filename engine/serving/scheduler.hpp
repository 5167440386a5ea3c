// The serving core's scheduler: chapter 2.7's ChunkedPrefillBatcher (continuous batching of
// chapter 2.6, with a token budget of prefill per iteration), which it extends rather than copies:
//
//   submit ──► queue ──(CacheManager reserves room)──► chapter 2.6's waiting queue
//          ──► chapter 2.7's admit: prefill chunks ──► a slot ──► chapter 2.6's batched decode
//
// What it adds for serving: each request's own sampling (pick_token), admission by the cache
// manager's budget, and cancel (a request leaves its queue, its prefill or its slot at once; its
// caches go with it and its reservation is released).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_set>
#include <vector>

#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch2_7_chunked_prefill/chunked_prefill.hpp>

#include "engine/serving/cache_manager.hpp"
#include "engine/serving/request.hpp"

namespace tinyllm::engine {

class Scheduler : public ChunkedPrefillBatcher {
 public:
  /// batch_size slots, prefill_chunk prompt tokens per iteration, kv_budget cached positions in
  /// all (CacheManager). InvalidArgument for values < 1.
  Scheduler(const LanguageModel& model, int64_t batch_size, int64_t prefill_chunk,
            int64_t kv_budget);

  /// Queues a request; returns its id (submission order). Errors before anything is queued:
  /// chapter 2.6's submit checks (InvalidArgument, ContextLengthError), the Sampler's
  /// (InvalidArgument), ContextLengthError if it could never fit into the KV budget.
  int64_t submit(const TokenIds& prompt, const SamplingParams& params);
  /// One iteration: admission, a prefill chunk, one batched decode step; then reservations of
  /// finished requests are released.
  void iterate();
  /// Ends a request wherever it is. False if it had already finished (or is unknown).
  bool cancel(int64_t request);
  bool idle() const { return queue_.empty() && done(); }
  bool cancelled(int64_t request) const { return cancelled_.count(request) != 0; }

  int64_t queued() const;   // waiting for admission or a slot
  int64_t running() const;  // prefilling or decoding
  const CacheManager& cache_manager() const { return cache_; }

 protected:
  void admit() override;
  TokenId pick_token(int64_t request, const Tensor& logits) override;

 private:
  CacheManager cache_;
  std::deque<int64_t> queue_;                     // submitted, not yet admitted by the budget
  std::vector<std::optional<Sampler>> samplers_;  // per request; none: greedy
  std::vector<int64_t> reserve_;                  // positions each request reserves
  std::unordered_set<int64_t> cancelled_;
};

}  // namespace tinyllm::engine
