// The serving core's scheduler: chapter 2.7's ChunkedPrefillBatcher (continuous batching of
// chapter 2.6, with a token budget of prefill per iteration), which it extends rather than copies:
//
//   submit ──► queue ──(CacheManager reserves room)──► chapter 2.6's waiting queue
//          ──► chapter 2.7's admit: prefill chunks ──► a slot ──► chapter 2.6's batched decode
//
// What it adds for serving: each request's own sampling (pick_token), admission by the cache
// manager's budget, and cancel (a request leaves its queue, its prefill or its slot at once; its
// caches go with it and its reservation is released).
//
// Paged mode (PagingOptions; the engine's Qwen2Model only): the caches are blocks of a page pool
// of its own, managed by a BlockManager (block_manager.hpp) with an optional prefix cache, and the
// model runs each step on the block tables (Qwen2Model::forward_pages). Nothing is reserved ahead:
//
//   admit    the next waiting request takes the cached blocks of its prompt's prefix, and starts
//            only if the pool can hold the rest of its prompt now (leaving the pages the decoding
//            requests need for this iteration's step); its chunks then take pages as they go
//   decode   every decoding request gets room for one more position, oldest first; one that
//            cannot get a page preempts the newest request (the prefill first, then the most
//            recently admitted slot, possibly itself): its blocks are freed and it goes back to the
//            front of the queue, to be recomputed (prompt + its tokens so far) when pages free up
//
// A recomputed request continues exactly where it stopped: the prefill of prompt + its tokens gives
// the logits of its next token, which the engine's batch-invariant step makes bitwise those of
// the decode step it replaces (prefill chunks of at most 48 rows: engine/README.md).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch2_7_chunked_prefill/chunked_prefill.hpp>

#include "engine/model/qwen2_model.hpp"
#include "engine/serving/block_manager.hpp"
#include "engine/serving/cache_manager.hpp"
#include "engine/serving/request.hpp"

namespace tinyllm::engine {

/// The scheduler's paged mode.
struct PagingOptions {
  int64_t page_size = 16;     // positions per page
  int64_t pages = 0;          // pool size in pages, one page per layer per block (>= layers)
  bool prefix_cache = false;  // share full blocks of equal prefixes (block_manager.hpp)
};

/// The paged mode's state, for metrics: the pool's pages and the prefix cache's counts.
struct PagingStats {
  int64_t page_size = 0;
  int64_t pool_pages = 0;         // the pool's size
  int64_t pages_in_use = 0;       // held by requests or cached
  int64_t cached_pages = 0;       // of those: cached free blocks (evictable)
  int64_t peak_pages_in_use = 0;  // the most pages in use at once
  int64_t peak_pages_held = 0;    // the most pages held by requests at once (cached ones not)
  int64_t prefix_hit_tokens = 0, prefix_query_tokens = 0;
  int64_t preemptions = 0, evictions = 0;
  /// prefix_hit_tokens / prefix_query_tokens (0 before any admission).
  double hit_rate() const {
    return prefix_query_tokens > 0
               ? static_cast<double>(prefix_hit_tokens) / static_cast<double>(prefix_query_tokens)
               : 0.0;
  }
};

class Scheduler : public ChunkedPrefillBatcher {
 public:
  /// batch_size slots, prefill_chunk prompt tokens per iteration, kv_budget cached positions in
  /// all (CacheManager; dense mode), or paged caches with `paging`. InvalidArgument for values
  /// < 1, for paging on a model other than the engine's Qwen2Model, a page_size < 1 or fewer
  /// pages than layers.
  Scheduler(const LanguageModel& model, int64_t batch_size, int64_t prefill_chunk,
            int64_t kv_budget, std::optional<PagingOptions> paging = std::nullopt);
  ~Scheduler() override;

  /// Queues a request; returns its id (submission order). Errors before anything is queued:
  /// chapter 2.6's submit checks (InvalidArgument, ContextLengthError), the Sampler's
  /// (InvalidArgument), ContextLengthError if it could never fit into the KV budget (dense) or
  /// OutOfPages if its prompt + max_tokens positions could never fit into the pool (paged).
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
  bool paged() const { return paging_ != nullptr; }
  /// The paged mode's pool and prefix-cache counts (nullopt in dense mode).
  std::optional<PagingStats> paging_stats() const;
  /// Paged mode: evicts every cached free block (nothing in dense mode).
  void clear_prefix_cache();

 protected:
  void admit() override;
  void decode_active() override;
  TokenId pick_token(int64_t request, const Tensor& logits) override;
  int64_t slot_offset(int64_t slot) const override;
  void describe_prefill(BatchProgress& progress) const override;

 private:
  struct Paging;
  /// A request holding blocks (prefilling or decoding): its table, its ids (prompt + tokens
  /// picked so far: position p holds ids[p]) and when it was admitted.
  struct PagedRequest {
    BlockTable table;
    TokenIds ids;
    int64_t admitted = 0;
  };
  void admit_paged();
  void decode_paged();
  /// Takes the first waiting request into the prefill if the pool can hold its prompt (after its
  /// cached prefix) and keep `keep` blocks for the decoders. False if it must wait.
  bool start_prefill(int64_t keep);
  /// Runs tokens [positions, positions + n) of a paged request through the model; its logits [V].
  Tensor forward_paged_request(PagedRequest& request, int64_t n);
  /// Back to the front of the queue, its blocks freed, to be recomputed later.
  void preempt(int64_t request);
  /// Frees a request's blocks (if it holds any).
  void release_blocks(int64_t request);
  /// The request admitted last among the prefill and the slots (-1: none).
  int64_t newest_request() const;

  CacheManager cache_;
  std::unique_ptr<Paging> paging_;                // paged mode only
  std::deque<int64_t> queue_;                     // submitted, not yet admitted by the budget
  std::vector<std::optional<Sampler>> samplers_;  // per request; none: greedy
  std::vector<int64_t> reserve_;                  // positions each request reserves
  std::unordered_set<int64_t> cancelled_;
};

}  // namespace tinyllm::engine
