// Chapter 2.6, Task 3: continuous batching. A queue of requests shares batch_size slots; every
// iteration
//   1. admit: while a slot is idle and a request waits, prefill its prompt into fresh per-layer
//      caches (chapter 2.1), pick its first token and put its caches into the slot;
//   2. decode: ONE model step for all active slots (one new token each): the LanguageModel's
//      forward_sequences, which BatchedWeek2Model runs as one batched_forward (Task 2) and the
//      engine as one pass of its kernels over R rows;
//   3. retire: a request that picked a stop id, reached max_new_tokens or filled the context
//      leaves its slot, which the next iteration gives to a waiting request.
// Requests join and leave between steps, so the batch stays full while there is work (static
// batching would wait for the slowest request of a batch before starting the next batch).
// Picture: book/figures/continuous_batching_slots.svg. Every request's tokens equal its
// single-request greedy run (generate_tokens_with_kv_cache).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch2_6_continuous_batching/batch_request.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

class ContinuousBatcher {
 public:
  using Clock = std::chrono::steady_clock;

  /// Provided. batch_size slots over `model` (which must outlive the batcher): any LanguageModel,
  /// e.g. BatchedWeek2Model(your Week 2 model) or the engine's model. InvalidArgument unless
  /// batch_size >= 1.
  ContinuousBatcher(const LanguageModel& model, int64_t batch_size)
      : model_(model), slots_(static_cast<size_t>(std::max<int64_t>(batch_size, 0))) {
    if (batch_size < 1) {
      throw InvalidArgument("ContinuousBatcher: batch_size must be >= 1, got " +
                            std::to_string(batch_size));
    }
  }
  virtual ~ContinuousBatcher() = default;
  ContinuousBatcher(const ContinuousBatcher&) = delete;
  ContinuousBatcher& operator=(const ContinuousBatcher&) = delete;

  /// Provided. Queues a request and returns its index (submission order). InvalidArgument for an
  /// empty prompt, max_new_tokens < 0 or an id outside the vocabulary; ContextLengthError if the
  /// prompt leaves no room for a new token in the context (P >= context with max_new_tokens > 0,
  /// or P > context). A request with max_new_tokens = 0 finishes at once.
  int64_t submit(BatchRequest request) {
    if (request.prompt.empty()) throw InvalidArgument("ContinuousBatcher: empty prompt");
    if (request.max_new_tokens < 0) {
      throw InvalidArgument("ContinuousBatcher: max_new_tokens must be >= 0");
    }
    check_token_batch({request.prompt}, model_.config().vocab_size, "ContinuousBatcher::submit");
    const auto length = static_cast<int64_t>(request.prompt.size());
    if (length + std::min<int64_t>(request.max_new_tokens, 1) > context()) {
      throw ContextLengthError("ContinuousBatcher: the prompt has " + std::to_string(length) +
                               " tokens, but the model's context is " + std::to_string(context()) +
                               " tokens (no room for a new token)");
    }
    const auto index = static_cast<int64_t>(requests_.size());
    outputs_.emplace_back().prompt_tokens = length;
    requests_.push_back(std::move(request));
    if (requests_.back().max_new_tokens == 0) {
      outputs_.back().finished = true;
    } else {
      waiting_.push_back(index);
    }
    return index;
  }

  /// Provided. One iteration: admit() (timed as prefill), then decode_active() if a slot is active
  /// (timed as decode).
  void step() {
    if (stats_.steps == 0) start_ = Clock::now();
    const auto t0 = Clock::now();
    admit();
    const auto t1 = Clock::now();
    if (active_slots() > 0) decode_active();
    stats_.prefill_s += std::chrono::duration<double>(t1 - t0).count();
    stats_.decode_s += std::chrono::duration<double>(Clock::now() - t1).count();
    ++stats_.steps;
  }

  /// Provided. Iterates until every submitted request is finished, reporting after each step;
  /// returns the outputs in submission order.
  std::vector<RequestOutput> run(const ProgressCallback& on_progress = {}) {
    while (!done()) {
      step();
      if (on_progress) on_progress(progress());
    }
    return outputs_;
  }

  /// Provided. Whether nothing is left to do: no waiting, prefilling or active request.
  bool done() const { return waiting_.empty() && !prefilling() && active_slots() == 0; }
  int64_t batch_size() const { return static_cast<int64_t>(slots_.size()); }
  int64_t active_slots() const {
    int64_t n = 0;
    for (const std::optional<ActiveSlot>& s : slots_) n += s ? 1 : 0;
    return n;
  }
  const std::vector<RequestOutput>& outputs() const { return outputs_; }
  const std::vector<BatchRequest>& requests() const { return requests_; }
  const BatchStats& stats() const { return stats_; }

  /// Provided. The state after the last step (see BatchProgress).
  BatchProgress progress() const {
    BatchProgress p;
    p.step = stats_.steps;
    p.elapsed_s = seconds();
    p.waiting = static_cast<int64_t>(waiting_.size());
    for (size_t b = 0; b < slots_.size(); ++b) {
      BatchProgress::Slot s;
      if (slots_[b]) {
        s.request = slots_[b]->request;
        s.offset = slot_offset(static_cast<int64_t>(b));
        s.generated = static_cast<int64_t>(outputs_[static_cast<size_t>(s.request)].tokens.size());
      }
      p.slots.push_back(s);
    }
    for (const RequestOutput& o : outputs_) p.finished += o.finished ? 1 : 0;
    describe_prefill(p);
    return p;
  }

 protected:
  /// A request decoding in a slot: the token to feed at the next step and its caches (one KvCache
  /// per layer, batch 1, holding its prompt and the tokens fed so far).
  struct ActiveSlot {
    int64_t request = 0;
    TokenId next_token = 0;
    std::vector<KvCache> caches;
  };

  /// Provided. How a request's first token and every later one are picked from its logits [V]:
  /// greedily here; a serving engine overrides it to sample with each request's settings.
  virtual TokenId pick_token(int64_t /*request*/, const Tensor& logits) {
    return greedy_pick(logits);
  }

  /// Task 3. Chapter 2.6's admission: while a slot is idle and a request waits, take the first
  /// waiting request, prefill its whole prompt into fresh caches (model_.create_kv_caches() and
  /// chapter 2.1's decode_step, which returns the last position's logits [V]), then
  /// begin_decoding(request, logits) and, if it goes on, join(request, caches, slot).
  virtual void admit() {
    // SOLUTION BEGIN ch2.6 Task 3
    while (!waiting_.empty()) {
      const std::optional<int64_t> slot = free_slot();
      if (!slot) return;
      const int64_t request = waiting_.front();
      waiting_.pop_front();
      std::vector<KvCache> caches = model_.create_kv_caches();
      const Tensor logits =
          decode_step(model_, requests_[static_cast<size_t>(request)].prompt, caches);
      if (begin_decoding(request, logits)) join(request, std::move(caches), *slot);
    }
    // SOLUTION END
  }

  /// Chapter 2.7 overrides these two to report and account for a request prefilling in chunks.
  virtual bool prefilling() const { return false; }
  virtual void describe_prefill(BatchProgress& /*progress*/) const {}

  /// Task 3. The prompt of `request` is prefilled and logits [V] are its last position's: picks
  /// its first token (pick_token(request, logits)), records first_token_s = seconds(), and hands
  /// the id to accept_token. Returns accept_token's answer: true if the request goes on decoding
  /// (it then needs a slot), false if it finished with its first token.
  bool begin_decoding(int64_t request, const Tensor& logits) {
    // SOLUTION BEGIN ch2.6 Task 3
    const TokenId id = pick_token(request, logits);
    outputs_[static_cast<size_t>(request)].first_token_s = seconds();
    return accept_token(request, id);
    // SOLUTION END
  }

  /// Task 3. Puts a decoding request into idle `slot`: the slot takes over its caches (one
  /// prefilled KvCache per layer, 1 x H x P x D), and its next token is the request's last
  /// generated id.
  void join(int64_t request, std::vector<KvCache> caches, int64_t slot) {
    // SOLUTION BEGIN ch2.6 Task 3
    slots_[static_cast<size_t>(slot)] = ActiveSlot{
        request, outputs_[static_cast<size_t>(request)].tokens.back(), std::move(caches)};
    // SOLUTION END
  }

  /// Task 3. Applies a picked id to `request`, in chapter 2.1's order: a stop id finishes it
  /// (StopToken, stop_token = id, not appended); otherwise the id is appended and the request
  /// finishes with MaxTokens once it has max_new_tokens tokens, else with ContextFull once prompt +
  /// tokens fill the context (as generate_tokens_with_kv_cache with max_new_tokens capped at
  /// context - P). A finished request gets finished = true. Records last_token_s = seconds().
  /// Returns true if the request goes on.
  bool accept_token(int64_t request, TokenId id) {
    // SOLUTION BEGIN ch2.6 Task 3
    const BatchRequest& r = requests_[static_cast<size_t>(request)];
    RequestOutput& out = outputs_[static_cast<size_t>(request)];
    out.last_token_s = seconds();
    if (std::find(r.stop_ids.begin(), r.stop_ids.end(), id) != r.stop_ids.end()) {
      out.finish_reason = FinishReason::StopToken;
      out.stop_token = id;
    } else {
      out.tokens.push_back(id);
      const auto n = static_cast<int64_t>(out.tokens.size());
      if (n >= r.max_new_tokens) {
        out.finish_reason = FinishReason::MaxTokens;
      } else if (out.prompt_tokens + n >= context()) {
        out.finish_reason = FinishReason::ContextFull;
      } else {
        return true;
      }
    }
    out.finished = true;
    return false;
    // SOLUTION END
  }

  /// Provided. Positions cached for the request in active `slot` (for progress()); chapter 3.2's
  /// paged scheduler keeps its caches elsewhere and overrides it.
  virtual int64_t slot_offset(int64_t slot) const {
    return slots_[static_cast<size_t>(slot)]->caches[0].offset();
  }

  /// Task 3. One decode step for the R active slots together: sequence r is the r-th active slot,
  /// feeding its next token with its own caches; logits = model_.forward_sequences(tokens,
  /// caches) (R x V, one row per active slot, in slot order). For every active slot: id =
  /// pick_token(request, its row [V]); accept_token(request, id); if the request finished the slot
  /// becomes idle (its caches go with it), else next_token = id. (Virtual: chapter 3.2's paged
  /// scheduler runs its step on paged caches.)
  virtual void decode_active() {
    // SOLUTION BEGIN ch2.6 Task 3
    std::vector<TokenIds> tokens;
    std::vector<std::vector<KvCache>*> caches;
    std::vector<size_t> active;  // slot of sequence r
    for (size_t b = 0; b < slots_.size(); ++b) {
      if (!slots_[b]) continue;
      tokens.push_back({slots_[b]->next_token});
      caches.push_back(&slots_[b]->caches);
      active.push_back(b);
    }
    const Tensor logits = model_.forward_sequences(tokens, caches);  // R x V
    const int64_t V = logits.dim(1);
    for (size_t r = 0; r < active.size(); ++r) {
      std::optional<ActiveSlot>& slot = slots_[active[r]];
      const auto row = static_cast<int64_t>(r);
      const TokenId id = pick_token(
          slot->request,
          Tensor({V}, std::vector<float>(logits.data() + row * V, logits.data() + (row + 1) * V)));
      if (accept_token(slot->request, id)) {
        slot->next_token = id;
      } else {
        slot.reset();
      }
    }
    // SOLUTION END
  }

  /// Provided. The first idle slot, if any.
  std::optional<int64_t> free_slot() const {
    for (size_t b = 0; b < slots_.size(); ++b) {
      if (!slots_[b]) return static_cast<int64_t>(b);
    }
    return std::nullopt;
  }
  /// Provided. Seconds since the first step.
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  int64_t context() const { return model_.config().max_position_embeddings; }

  const LanguageModel& model_;
  std::vector<std::optional<ActiveSlot>> slots_;  // who decodes in slot b, with its caches
  std::vector<BatchRequest> requests_;            // every submitted request
  std::vector<RequestOutput> outputs_;            // their outputs, same order
  std::deque<int64_t> waiting_;                   // requests not started yet, oldest first
  BatchStats stats_;
  Clock::time_point start_ = Clock::now();
};

}  // namespace tinyllm
