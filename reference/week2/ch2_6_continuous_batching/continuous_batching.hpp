// Chapter 2.6, Task 3: continuous batching. A queue of requests shares batch_size slots; every
// iteration
//   1. admit: while a slot is idle and a request waits, prefill its prompt into fresh per-layer
//      caches (chapter 2.1), pick its first token and put its caches into the slot;
//   2. decode: ONE batched_forward step for all slots (one new token per active request);
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
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batch_request.hpp>
#include <tinyllm/ch2_6_continuous_batching/batched_model.hpp>
#include <tinyllm/ch2_6_continuous_batching/batching_kv_cache.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

class ContinuousBatcher {
 public:
  using Clock = std::chrono::steady_clock;

  /// Provided. batch_size slots over `model` (which must outlive the batcher). InvalidArgument
  /// unless batch_size >= 1.
  ContinuousBatcher(const Qwen2ModelWeek2& model, int64_t batch_size)
      : model_(model),
        caches_(batch_size >= 1 ? create_batching_kv_caches(model, batch_size)
                                : std::vector<BatchingKvCache>{}),
        slots_(static_cast<size_t>(std::max<int64_t>(batch_size, 0))) {
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
        s.offset = caches_[0].offset(static_cast<int64_t>(b));
        s.generated = static_cast<int64_t>(outputs_[static_cast<size_t>(s.request)].tokens.size());
      }
      p.slots.push_back(s);
    }
    for (const RequestOutput& o : outputs_) p.finished += o.finished ? 1 : 0;
    describe_prefill(p);
    return p;
  }

 protected:
  /// A request decoding in a slot: the token to feed at the next step.
  struct ActiveSlot {
    int64_t request = 0;
    TokenId next_token = 0;
  };

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
  /// its first token greedily (greedy_pick), records first_token_s = seconds(), and hands the id to
  /// accept_token. Returns accept_token's answer: true if the request goes on decoding (it then
  /// needs a slot), false if it finished with its first token.
  bool begin_decoding(int64_t request, const Tensor& logits) {
    // SOLUTION BEGIN ch2.6 Task 3
    const TokenId id = greedy_pick(logits);
    outputs_[static_cast<size_t>(request)].first_token_s = seconds();
    return accept_token(request, id);
    // SOLUTION END
  }

  /// Task 3. Puts a decoding request into idle `slot`: caches[i] (layer i's prefilled KvCache,
  /// 1 x H x P x D) goes to caches_[i]'s slot (add_request on every layer), and the slot's next
  /// token is the request's last generated id.
  void join(int64_t request, std::vector<KvCache> caches, int64_t slot) {
    // SOLUTION BEGIN ch2.6 Task 3
    for (size_t i = 0; i < caches.size(); ++i) caches_[i].add_request(std::move(caches[i]), slot);
    slots_[static_cast<size_t>(slot)] =
        ActiveSlot{request, outputs_[static_cast<size_t>(request)].tokens.back()};
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

  /// Task 3. One batched decode step: row b feeds slot b's next token at the slot's offset (idle
  /// slots: token 0 at offset 0) through batched_forward; for every active slot, id =
  /// greedy_pick(its row's logits [V]); accept_token(request, id); if the request finished,
  /// remove it from slot b of every layer's cache and mark the slot idle, else next_token = id.
  void decode_active() {
    // SOLUTION BEGIN ch2.6 Task 3
    const int64_t B = batch_size();
    std::vector<TokenIds> tokens(static_cast<size_t>(B), TokenIds{0});
    std::vector<int64_t> offsets(static_cast<size_t>(B), 0);
    for (int64_t b = 0; b < B; ++b) {
      if (!slots_[static_cast<size_t>(b)]) continue;
      tokens[static_cast<size_t>(b)] = {slots_[static_cast<size_t>(b)]->next_token};
      offsets[static_cast<size_t>(b)] = caches_[0].offset(b);
    }
    const Tensor logits = batched_forward(model_, tokens, offsets, caches_);  // B x 1 x V
    const int64_t V = logits.dim(2);
    for (int64_t b = 0; b < B; ++b) {
      std::optional<ActiveSlot>& slot = slots_[static_cast<size_t>(b)];
      if (!slot) continue;
      const TokenId id = greedy_pick(
          Tensor({V}, std::vector<float>(logits.data() + b * V, logits.data() + (b + 1) * V)));
      if (accept_token(slot->request, id)) {
        slot->next_token = id;
        continue;
      }
      for (BatchingKvCache& cache : caches_) cache.remove_request(b);
      slot.reset();
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

  const Qwen2ModelWeek2& model_;
  std::vector<BatchingKvCache> caches_;           // one per layer, batch_size slots each
  std::vector<std::optional<ActiveSlot>> slots_;  // who decodes in slot b
  std::vector<BatchRequest> requests_;            // every submitted request
  std::vector<RequestOutput> outputs_;            // their outputs, same order
  std::deque<int64_t> waiting_;                   // requests not started yet, oldest first
  BatchStats stats_;
  Clock::time_point start_ = Clock::now();
};

}  // namespace tinyllm
