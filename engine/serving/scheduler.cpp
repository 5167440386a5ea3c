#include "engine/serving/scheduler.hpp"

#include <algorithm>
#include <string>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

// The paged mode's state: the engine's model, the pool (before the manager: it outlives it), the
// block manager and the requests holding blocks.
struct Scheduler::Paging {
  const Qwen2Model& model;
  PagePool pool;
  BlockManager blocks;
  std::unordered_map<int64_t, PagedRequest> requests;
  int64_t admissions = 0;
  int64_t preemptions = 0;

  Paging(const Qwen2Model& m, const PagingOptions& o)
      : model(m),
        pool(m.config().num_key_value_heads, m.config().head_dim, o.page_size, o.pages),
        blocks(pool, m.config().num_hidden_layers, o.prefix_cache) {}
};

namespace {

const Qwen2Model& engine_model(const LanguageModel& model) {
  const auto* engine = dynamic_cast<const Qwen2Model*>(&model);
  if (engine == nullptr) {
    throw InvalidArgument(
        "Scheduler: paged caches run on the engine's model (engine::Qwen2Model, load_model), "
        "which steps on block tables; this model is another LanguageModel");
  }
  return *engine;
}

}  // namespace

Scheduler::Scheduler(const LanguageModel& model, int64_t batch_size, int64_t prefill_chunk,
                     int64_t kv_budget, std::optional<PagingOptions> paging)
    : ChunkedPrefillBatcher(model, batch_size, prefill_chunk), cache_(model.config(), kv_budget) {
  if (!paging) return;
  const int64_t layers = model.config().num_hidden_layers;
  if (paging->page_size < 1 || paging->pages < layers) {
    throw InvalidArgument(
        "Scheduler: paged caches need page_size >= 1 and at least one page per "
        "layer (" +
        std::to_string(layers) + "), got page_size " + std::to_string(paging->page_size) + " and " +
        std::to_string(paging->pages) + " pages");
  }
  paging_ = std::make_unique<Paging>(engine_model(model), *paging);
}

Scheduler::~Scheduler() = default;

int64_t Scheduler::submit(const TokenIds& prompt, const SamplingParams& params) {
  std::optional<Sampler> sampler;
  if (params.sampler.temperature != 0.0f) sampler.emplace(params.sampler);  // checks the settings
  const int64_t need =
      cache_.positions_needed(static_cast<int64_t>(prompt.size()), params.max_tokens);
  if (paging_) {
    const BlockManager& blocks = paging_->blocks;
    if (blocks.blocks_for(need) > blocks.capacity_blocks()) {
      throw OutOfPages(
          "the request may need " + std::to_string(need) + " cached positions, " +
          std::to_string(blocks.blocks_for(need) * paging_->model.config().num_hidden_layers) +
          " pages, more than the pool's " + std::to_string(paging_->pool.max_pages()));
    }
  } else if (!cache_.fits_at_all(need)) {
    throw ContextLengthError("the request may need " + std::to_string(need) +
                             " cached positions, more than the KV budget of " +
                             std::to_string(cache_.budget_positions()));
  }
  const int64_t id =
      ContinuousBatcher::submit(BatchRequest{prompt, params.max_tokens, params.stop_ids});
  samplers_.push_back(std::move(sampler));
  reserve_.push_back(need);
  if (!paging_ && !waiting_.empty() && waiting_.back() == id) {  // not finished at once
    waiting_.pop_back();
    queue_.push_back(id);
  }
  return id;
}

void Scheduler::admit() {
  if (paging_) {
    admit_paged();
    return;
  }
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
  release_blocks(request);
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

void Scheduler::decode_active() {
  if (paging_) {
    decode_paged();
  } else {
    ChunkedPrefillBatcher::decode_active();
  }
}

int64_t Scheduler::slot_offset(int64_t slot) const {
  if (!paging_) return ChunkedPrefillBatcher::slot_offset(slot);
  return paging_->requests.at(slots_[static_cast<size_t>(slot)]->request).table.positions;
}

void Scheduler::describe_prefill(BatchProgress& progress) const {
  if (!paging_) {
    ChunkedPrefillBatcher::describe_prefill(progress);
    return;
  }
  if (!pending_) return;
  const PagedRequest& r = paging_->requests.at(pending_->request);
  progress.prefill_request = pending_->request;
  progress.prefill_done = r.table.positions;
  progress.prefill_total = static_cast<int64_t>(r.ids.size());
}

Tensor Scheduler::forward_paged_request(PagedRequest& request, int64_t n) {
  BlockTable& table = request.table;
  const auto begin = request.ids.begin() + table.positions;
  const PagedSequence sequence{table.positions, paging_->blocks.page_table(table)};
  Tensor logits =
      paging_->model.forward_pages(paging_->pool, {TokenIds(begin, begin + n)}, {sequence});
  paging_->blocks.written(table, request.ids, table.positions + n);
  return logits.reshape({logits.dim(1)});
}

bool Scheduler::start_prefill(int64_t keep) {
  const int64_t request = waiting_.front();
  const TokenIds& prompt = requests_[static_cast<size_t>(request)].prompt;
  const TokenIds& picked = outputs_[static_cast<size_t>(request)].tokens;  // a preempted one's
  PagedRequest r;
  r.ids = prompt;
  r.ids.insert(r.ids.end(), picked.begin(), picked.end());
  BlockManager& blocks = paging_->blocks;
  const auto total = static_cast<int64_t>(r.ids.size());
  // Its last position is always computed: its logits pick the next token.
  const int64_t hits = blocks.match_prefix(r.table, r.ids, total - 1);
  const int64_t missing = blocks.blocks_for(total) - static_cast<int64_t>(r.table.blocks.size());
  if (blocks.available_blocks() - keep < missing) {
    blocks.release(r.table);
    return false;
  }
  blocks.count_lookup(total, hits);
  r.admitted = paging_->admissions++;
  paging_->requests.emplace(request, std::move(r));
  pending_ = Prefill{request, {}, false};
  waiting_.pop_front();
  return true;
}

void Scheduler::admit_paged() {
  BlockManager& blocks = paging_->blocks;
  // Pages the decoding requests take in this iteration's step: a prefill must leave them.
  int64_t keep = 0;
  for (const std::optional<ActiveSlot>& slot : slots_) {
    if (!slot) continue;
    const BlockTable& t = paging_->requests.at(slot->request).table;
    keep += std::max<int64_t>(
        blocks.blocks_for(t.positions + 1) - static_cast<int64_t>(t.blocks.size()), 0);
  }
  int64_t budget = chunk_;
  while (true) {
    if (pending_ && pending_->ready) {
      const std::optional<int64_t> slot = free_slot();
      if (!slot) return;
      join(pending_->request, {}, *slot);
      pending_.reset();
    }
    if (budget == 0) return;
    if (!pending_ && (waiting_.empty() || !start_prefill(keep))) return;
    const int64_t request = pending_->request;
    PagedRequest& r = paging_->requests.at(request);
    const auto total = static_cast<int64_t>(r.ids.size());
    const int64_t end = blocks.room_for(r.table, std::min(total, r.table.positions + budget), keep);
    if (end <= r.table.positions) return;  // no pages now: the decoders finish or preempt it
    blocks.grow(r.table, end, keep);
    const int64_t n = end - r.table.positions;
    const Tensor logits = forward_paged_request(r, n);
    budget -= n;
    if (r.table.positions < total) continue;
    // Prefilled: a new request picks its first token, a recomputed one its next.
    const bool resumed =
        total > static_cast<int64_t>(requests_[static_cast<size_t>(request)].prompt.size());
    const bool goes_on = resumed ? accept_token(request, pick_token(request, logits))
                                 : begin_decoding(request, logits);
    if (goes_on) {
      r.ids.push_back(outputs_[static_cast<size_t>(request)].tokens.back());
      pending_->ready = true;
    } else {
      release_blocks(request);
      pending_.reset();
    }
  }
}

void Scheduler::decode_paged() {
  BlockManager& blocks = paging_->blocks;
  // Room for one more position per decoding request, oldest first; a request that cannot get a
  // page preempts the newest one (possibly itself).
  std::vector<size_t> order;
  for (size_t b = 0; b < slots_.size(); ++b) {
    if (slots_[b]) order.push_back(b);
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return paging_->requests.at(slots_[a]->request).admitted <
           paging_->requests.at(slots_[b]->request).admitted;
  });
  for (const size_t b : order) {
    if (!slots_[b]) continue;  // preempted by an older request
    const int64_t request = slots_[b]->request;
    BlockTable& table = paging_->requests.at(request).table;
    while (!blocks.grow(table, table.positions + 1)) {
      const int64_t victim = newest_request();
      preempt(victim);
      if (victim == request) break;
    }
  }
  std::vector<TokenIds> tokens;
  std::vector<PagedSequence> sequences;
  std::vector<size_t> active;
  for (size_t b = 0; b < slots_.size(); ++b) {
    if (!slots_[b]) continue;
    const BlockTable& table = paging_->requests.at(slots_[b]->request).table;
    tokens.push_back({slots_[b]->next_token});
    sequences.push_back(PagedSequence{table.positions, blocks.page_table(table)});
    active.push_back(b);
  }
  if (active.empty()) return;
  const Tensor logits = paging_->model.forward_pages(paging_->pool, tokens, sequences);
  const int64_t V = logits.dim(1);
  for (size_t i = 0; i < active.size(); ++i) {
    std::optional<ActiveSlot>& slot = slots_[active[i]];
    PagedRequest& r = paging_->requests.at(slot->request);
    blocks.written(r.table, r.ids, r.table.positions + 1);
    const float* row = logits.data() + static_cast<int64_t>(i) * V;
    const TokenId id = pick_token(slot->request, Tensor({V}, std::vector<float>(row, row + V)));
    if (accept_token(slot->request, id)) {
      slot->next_token = id;
      r.ids.push_back(id);
    } else {
      release_blocks(slot->request);
      slot.reset();
    }
  }
}

int64_t Scheduler::newest_request() const {
  int64_t newest = -1, when = -1;
  const auto consider = [&](int64_t request) {
    const int64_t admitted = paging_->requests.at(request).admitted;
    if (admitted > when) {
      when = admitted;
      newest = request;
    }
  };
  if (pending_) consider(pending_->request);
  for (const std::optional<ActiveSlot>& slot : slots_) {
    if (slot) consider(slot->request);
  }
  return newest;
}

void Scheduler::preempt(int64_t request) {
  if (pending_ && pending_->request == request) pending_.reset();
  for (std::optional<ActiveSlot>& slot : slots_) {
    if (slot && slot->request == request) slot.reset();
  }
  release_blocks(request);
  waiting_.push_front(request);
  ++paging_->preemptions;
}

void Scheduler::release_blocks(int64_t request) {
  if (!paging_) return;
  const auto it = paging_->requests.find(request);
  if (it == paging_->requests.end()) return;
  paging_->blocks.release(it->second.table);
  paging_->requests.erase(it);
}

std::optional<PagingStats> Scheduler::paging_stats() const {
  if (!paging_) return std::nullopt;
  const BlockManager& blocks = paging_->blocks;
  PagingStats s;
  s.page_size = paging_->pool.page_size();
  s.pool_pages = paging_->pool.max_pages();
  s.pages_in_use = blocks.pages_in_use();
  s.cached_pages = blocks.cached_pages();
  s.peak_pages_in_use = blocks.stats().peak_pages_in_use;
  s.peak_pages_held = blocks.stats().peak_pages_held;
  s.prefix_hit_tokens = blocks.stats().hit_tokens;
  s.prefix_query_tokens = blocks.stats().query_tokens;
  s.preemptions = paging_->preemptions;
  s.evictions = blocks.stats().evictions;
  return s;
}

void Scheduler::clear_prefix_cache() {
  if (paging_) paging_->blocks.clear_cache();
}

}  // namespace tinyllm::engine
