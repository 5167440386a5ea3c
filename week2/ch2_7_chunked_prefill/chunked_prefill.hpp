// Chapter 2.7: chunked prefill.
//
// You write (book/week2/ch2_7_chunked_prefill.md):
//   Task 1  prefill one request's prompt in chunks of at most `chunk` tokens
//   Task 2  a scheduler that spends a token budget per iteration on the next prefill chunk, then
//           runs chapter 2.6's batched decode step
//
// In chapter 2.6 a new request's whole prompt is prefilled before the next decode step: a 500-
// token prompt stalls every decoding request for a full prefill, so their time per output token
// jumps. Chunked prefill bounds that stall: each iteration prefills at most `chunk` prompt tokens
// (the token budget), then every active request decodes one token as usual.
//
//   iteration:  1         2          3                    4
//   prefill:    r4[0:32]  r4[32:64]  r4[64:70] r5[0:26]   r5[26:40] ...     (<= 32 tokens each)
//   decode:     r0..r3    r0..r3     r1..r3 and r4        r1..r4
//   (r0 finishes in step 2; in step 3 r4's last chunk completes, r4 takes r0's slot, and the rest
//   of the budget starts r5)
//
// A chunk at offset o is just chapter 2.1's model call on tokens [o, o + n) with caches holding o
// positions: its keys attend causally to everything before them, so the last chunk's logits equal
// one-shot prefill's.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch2_6_continuous_batching/continuous_batching.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// Task 1. Feeds the next n = min(max_tokens, P - o) prompt tokens [o, o + n) to the model, where o
/// = caches[0].offset() is how much of the prompt the caches hold, and returns the logits [V] of
/// the last fed position (decode_step of chapter 2.1). caches: one KvCache per layer, each 1 x H x
/// o x D before and 1 x H x (o + n) x D after. InvalidArgument if max_tokens < 1, caches is empty
/// or the caches already hold the whole prompt (o >= P).
inline Tensor prefill_next_chunk(const LanguageModel& model, const TokenIds& prompt,
                                 std::vector<KvCache>& caches, int64_t max_tokens) {
  TINYLLM_TODO("ch2.7", "Task 1");
}

/// Task 1. Prefills the whole prompt into empty caches in chunks of at most `chunk` tokens
/// (prefill_next_chunk until the caches hold all P tokens) and returns the logits [V] of the last
/// prompt position: equal to decode_step(model, prompt, caches) in one call, up to float rounding.
/// caches: one KvCache per layer, each 1 x H x 0 x D before and 1 x H x P x D after.
/// InvalidArgument if chunk < 1, the prompt is empty, caches is empty or not empty of positions.
inline Tensor prefill_chunked(const LanguageModel& model, const TokenIds& prompt,
                              std::vector<KvCache>& caches, int64_t chunk) {
  TINYLLM_TODO("ch2.7", "Task 1");
}

/// Chapter 2.6's scheduler with chunked prefill: admit() prefills at most `prefill_chunk` prompt
/// tokens per iteration, then the inherited step() runs the batched decode step.
class ChunkedPrefillBatcher : public ContinuousBatcher {
 public:
  /// Provided. InvalidArgument unless batch_size >= 1 and prefill_chunk >= 1.
  ChunkedPrefillBatcher(const LanguageModel& model, int64_t batch_size, int64_t prefill_chunk)
      : ContinuousBatcher(model, batch_size), chunk_(prefill_chunk) {
    if (prefill_chunk < 1) {
      throw InvalidArgument("ChunkedPrefillBatcher: prefill_chunk must be >= 1, got " +
                            std::to_string(prefill_chunk));
    }
  }

  int64_t prefill_chunk() const { return chunk_; }

 protected:
  /// The one request between the waiting queue and a slot: prefilling into its own caches, or
  /// (ready) prefilled with its first token picked, waiting for an idle slot.
  struct Prefill {
    int64_t request = 0;
    std::vector<KvCache> caches;
    bool ready = false;
  };

  /// Task 2. Spends a budget of chunk_ prompt tokens, repeating:
  ///   1. if the pending request is ready: join it into a free slot and clear it; if no slot
  ///      is free, stop (it waits; the budget is not spent on later requests meanwhile);
  ///   2. stop if the budget is spent; if nothing is pending, take the first waiting request
  ///      (fresh caches from model_.create_kv_caches()), or stop if none waits;
  ///   3. prefill_next_chunk(..., budget left) and subtract the tokens fed; once its prompt
  ///      is complete, begin_decoding(request, logits): ready if it goes on, cleared if it
  ///      finished at once.
  /// So one iteration may finish one prompt and start the next within the same budget.
  void admit() override { TINYLLM_TODO("ch2.7", "Task 2"); }

  bool prefilling() const override { return pending_.has_value(); }

  void describe_prefill(BatchProgress& progress) const override {
    if (!pending_) return;
    progress.prefill_request = pending_->request;
    progress.prefill_done = pending_->caches[0].offset();
    progress.prefill_total =
        static_cast<int64_t>(requests_[static_cast<size_t>(pending_->request)].prompt.size());
  }

  int64_t chunk_;
  std::optional<Prefill> pending_;
};

}  // namespace tinyllm
