#include "engine/serving/scheduler.hpp"

#include <algorithm>
#include <string>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

Scheduler::Scheduler(const LanguageModel& model, int64_t batch_size, int64_t prefill_chunk,
                     int64_t kv_budget)
    : ChunkedPrefillBatcher(model, batch_size, prefill_chunk), cache_(model.config(), kv_budget) {}

int64_t Scheduler::submit(const TokenIds& prompt, const SamplingParams& params) {
  std::optional<Sampler> sampler;
  if (params.sampler.temperature != 0.0f) sampler.emplace(params.sampler);  // checks the settings
  const int64_t need =
      cache_.positions_needed(static_cast<int64_t>(prompt.size()), params.max_tokens);
  if (!cache_.fits_at_all(need)) {
    throw ContextLengthError("the request may need " + std::to_string(need) +
                             " cached positions, more than the KV budget of " +
                             std::to_string(cache_.budget_positions()));
  }
  const int64_t id =
      ContinuousBatcher::submit(BatchRequest{prompt, params.max_tokens, params.stop_ids});
  samplers_.push_back(std::move(sampler));
  reserve_.push_back(need);
  if (!waiting_.empty() && waiting_.back() == id) {  // not finished at once (max_tokens 0)
    waiting_.pop_back();
    queue_.push_back(id);
  }
  return id;
}

void Scheduler::admit() {
  // Oldest first; a request that does not fit yet waits, and so do the ones behind it.
  while (!queue_.empty() &&
         cache_.try_reserve(queue_.front(), reserve_[static_cast<size_t>(queue_.front())])) {
    waiting_.push_back(queue_.front());
    queue_.pop_front();
  }
  ChunkedPrefillBatcher::admit();
}

void Scheduler::iterate() {
  step();
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (outputs_[i].finished) cache_.release(static_cast<int64_t>(i));
  }
}

TokenId Scheduler::pick_token(int64_t request, const Tensor& logits) {
  std::optional<Sampler>& sampler = samplers_[static_cast<size_t>(request)];
  return sampler ? (*sampler)(logits) : greedy_pick(logits);
}

bool Scheduler::cancel(int64_t request) {
  if (request < 0 || request >= static_cast<int64_t>(outputs_.size())) return false;
  RequestOutput& out = outputs_[static_cast<size_t>(request)];
  if (out.finished) return false;
  const auto drop = [request](std::deque<int64_t>& q) {
    q.erase(std::remove(q.begin(), q.end(), request), q.end());
  };
  drop(queue_);
  drop(waiting_);
  if (pending_ && pending_->request == request) pending_.reset();
  for (std::optional<ActiveSlot>& slot : slots_) {
    if (slot && slot->request == request) slot.reset();
  }
  out.finished = true;
  cancelled_.insert(request);
  cache_.release(request);
  return true;
}

int64_t Scheduler::queued() const {
  return static_cast<int64_t>(queue_.size() + waiting_.size()) +
         (pending_ && pending_->ready ? 1 : 0);
}

int64_t Scheduler::running() const {
  return active_slots() + (pending_ && !pending_->ready ? 1 : 0);
}

}  // namespace tinyllm::engine
