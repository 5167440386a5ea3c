// Chapter 3.2, Task 4: continuous batching on paged caches.
//
// Chapter 2.6's ContinuousBatcher, extended (not copied): submission, the step loop, token
// picking and the finish rules (begin_decoding, accept_token) are its own. What changes:
//   admit          a waiting request starts only if the pool can hold it: its pages, and the
//                  pages the running requests may still take, fit into the pool (max_pages);
//                  its prompt is prefilled into fresh paged caches (forward_paged)
//   decode_active  one forward_paged for every active slot; a request that finishes releases
//                  its pages on every layer at once, so the next admission can use them
//
// Admission reserves the worst case of each request, layers x ceil(min(P + max_new_tokens,
// context) / page_size) pages, because nothing here can take pages back from a running request
// (the engine's preemption does). It still beats chapter 2.6's dense caches: a request holds
// only the pages it has written, and the pool's memory is never split into per-slot buffers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch2_6_continuous_batching/batch_request.hpp>
#include <tinyllm/ch2_6_continuous_batching/continuous_batching.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_language_model.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

class PagedContinuousBatcher : public ContinuousBatcher {
 public:
  /// Provided. batch_size slots over `model` (which must outlive the batcher, and whose pool
  /// serves only this batcher). InvalidArgument unless batch_size >= 1.
  PagedContinuousBatcher(const PagedLanguageModel& model, int64_t batch_size)
      : ContinuousBatcher(model, batch_size),
        paged_model_(model),
        paged_(static_cast<size_t>(batch_size)),
        reserved_(static_cast<size_t>(batch_size), 0) {}

  /// Provided. ContinuousBatcher::submit, and OutOfPages if the request needs more pages than the
  /// whole pool has (it could never start).
  int64_t submit(BatchRequest request) {
    const int64_t need = pages_needed(request);
    const int64_t capacity = paged_model_.page_pool().max_pages();
    if (capacity > 0 && need > capacity) {
      throw OutOfPages("PagedContinuousBatcher: the request may need " + std::to_string(need) +
                       " pages, but the pool has only " + std::to_string(capacity));
    }
    return ContinuousBatcher::submit(std::move(request));
  }

  /// Provided. The pages a request may hold at most: every layer caches min(P + max_new_tokens,
  /// context) positions (the last picked token is never fed, so this has one to spare).
  int64_t pages_needed(const BatchRequest& request) const {
    const Qwen2Config& c = paged_model_.config();
    const int64_t positions =
        std::min(static_cast<int64_t>(request.prompt.size()) + request.max_new_tokens,
                 c.max_position_embeddings);
    const int64_t page_size = paged_model_.page_pool().page_size();
    return c.num_hidden_layers * ((positions + page_size - 1) / page_size);
  }

  /// Pages reserved by the requests in the slots.
  int64_t pages_reserved() const {
    int64_t total = 0;
    for (const int64_t r : reserved_) total += r;
    return total;
  }

 protected:
  /// Task 4. While a slot is idle and a request waits: the first waiting request starts only if
  /// pages_reserved() + pages_needed(it) fits into the pool's max_pages (0: always); otherwise
  /// it and the requests behind it wait (oldest first). Starting: fresh caches
  /// (paged_model_.create_paged_caches()), logits = forward_paged({prompt}, {&caches}) (1 x V),
  /// begin_decoding(request, logits as [V]); if it goes on, join_paged(request, caches, slot),
  /// else release its caches.
  void admit() override {
    // SOLUTION BEGIN ch3.2 Task 4
    const int64_t capacity = paged_model_.page_pool().max_pages();
    while (!waiting_.empty()) {
      const std::optional<int64_t> slot = free_slot();
      if (!slot) return;
      const int64_t request = waiting_.front();
      const BatchRequest& r = requests_[static_cast<size_t>(request)];
      const int64_t need = pages_needed(r);
      if (capacity > 0 && pages_reserved() + need > capacity) return;
      waiting_.pop_front();
      std::vector<PagedKvCache> caches = paged_model_.create_paged_caches();
      const Tensor logits = paged_model_.forward_paged({r.prompt}, {&caches});
      if (begin_decoding(request, logits.reshape({logits.dim(1)}))) {
        join_paged(request, std::move(caches), *slot, need);
      } else {
        for (PagedKvCache& cache : caches) cache.release();
      }
    }
    // SOLUTION END
  }

  /// Task 4. One decode step for the active slots: sequence r is the r-th active slot, feeding
  /// its next token with its paged caches; logits = paged_model_.forward_paged(tokens, caches)
  /// (R x V). For every active slot, as chapter 2.6: id = pick_token(request, row [V]);
  /// accept_token(request, id); next_token = id if it goes on, else leave_slot(slot).
  void decode_active() override {
    // SOLUTION BEGIN ch3.2 Task 4
    std::vector<TokenIds> tokens;
    std::vector<std::vector<PagedKvCache>*> caches;
    std::vector<size_t> active;
    for (size_t b = 0; b < slots_.size(); ++b) {
      if (!slots_[b]) continue;
      tokens.push_back({slots_[b]->next_token});
      caches.push_back(&paged_[b]);
      active.push_back(b);
    }
    const Tensor logits = paged_model_.forward_paged(tokens, caches);  // R x V
    const int64_t V = logits.dim(1);
    for (size_t r = 0; r < active.size(); ++r) {
      std::optional<ActiveSlot>& slot = slots_[active[r]];
      const float* row = logits.data() + static_cast<int64_t>(r) * V;
      const TokenId id = pick_token(slot->request, Tensor({V}, std::vector<float>(row, row + V)));
      if (accept_token(slot->request, id)) {
        slot->next_token = id;
      } else {
        leave_slot(static_cast<int64_t>(active[r]));
      }
    }
    // SOLUTION END
  }

  /// Provided. Puts a decoding request with its prefilled paged caches (one per layer) and its
  /// reservation of `pages` into idle `slot`; its next token is its last generated id.
  void join_paged(int64_t request, std::vector<PagedKvCache> caches, int64_t slot, int64_t pages) {
    const auto s = static_cast<size_t>(slot);
    slots_[s] = ActiveSlot{request, outputs_[static_cast<size_t>(request)].tokens.back(), {}};
    paged_[s] = std::move(caches);
    reserved_[s] = pages;
  }

  /// Provided. The request in `slot` is done: its pages go back to the pool on every layer, its
  /// reservation ends and the slot is idle.
  void leave_slot(int64_t slot) {
    const auto s = static_cast<size_t>(slot);
    for (PagedKvCache& cache : paged_[s]) cache.release();
    paged_[s].clear();
    reserved_[s] = 0;
    slots_[s].reset();
  }

  int64_t slot_offset(int64_t slot) const override {
    return paged_[static_cast<size_t>(slot)][0].offset();
  }

  const PagedLanguageModel& paged_model_;
  std::vector<std::vector<PagedKvCache>> paged_;  // slot -> its request's caches, one per layer
  std::vector<int64_t> reserved_;                 // slot -> pages reserved for its request
};

}  // namespace tinyllm
