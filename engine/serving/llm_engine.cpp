#include "engine/serving/llm_engine.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {
namespace {

int64_t budget_of(const LanguageModel& model, const ServingOptions& o) {
  if (o.kv_budget < 0) {
    throw InvalidArgument("LLMEngine: kv_budget must be >= 0 (0: batch_size x context), got " +
                          std::to_string(o.kv_budget));
  }
  if (o.kv_budget > 0) return o.kv_budget;
  return std::max<int64_t>(o.batch_size, 1) * model.config().max_position_embeddings;
}

std::optional<PagingOptions> paging_of(const LanguageModel& model, const ServingOptions& o) {
  if (o.prefix_cache && !o.paged) {
    throw InvalidArgument("LLMEngine: the prefix cache shares pages: it needs paged = true");
  }
  if (!o.paged) return std::nullopt;
  if (o.kv_pages < 0 || o.page_size < 1) {
    throw InvalidArgument(
        "LLMEngine: page_size must be >= 1 and kv_pages >= 0 (0: the dense "
        "budget's worth), got " +
        std::to_string(o.page_size) + " and " + std::to_string(o.kv_pages));
  }
  int64_t pages = o.kv_pages;
  if (pages == 0) {
    const int64_t positions = budget_of(model, o);
    pages = model.config().num_hidden_layers * ((positions + o.page_size - 1) / o.page_size);
  }
  return PagingOptions{o.page_size, pages, o.prefix_cache};
}

}  // namespace

std::string finish_name(Finish finish) {
  switch (finish) {
    case Finish::Stop:
      return "stop";
    case Finish::Length:
      return "length";
    case Finish::ContextFull:
      return "context_full";
    case Finish::Cancelled:
      return "cancelled";
  }
  return "?";
}

LLMEngine::LLMEngine(const LanguageModel& model, ServingOptions options)
    : model_(model),
      scheduler_(model, options.batch_size, options.prefill_chunk, budget_of(model, options),
                 paging_of(model, options)) {}

double LLMEngine::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

int64_t LLMEngine::submit(const TokenIds& prompt, const SamplingParams& params,
                          EventCallback on_event) {
  const int64_t id = scheduler_.submit(prompt, params);
  RequestMetrics m;
  m.prompt_tokens = static_cast<int64_t>(prompt.size());
  m.arrival_s = now();
  metrics_.push_back(m);
  seen_.push_back(0);
  reported_finish_.push_back(false);
  stats_.prompt_tokens += m.prompt_tokens;
  if (scheduler_.outputs()[static_cast<size_t>(id)].finished) {  // max_tokens 0: done at once
    reported_finish_.back() = true;
    metrics_.back().finish_s = m.arrival_s;
    ++stats_.finished;
    if (on_event) on_event(RequestEvent{id, std::nullopt, Finish::Length, std::nullopt});
    return id;
  }
  if (on_event) callbacks_[id] = std::move(on_event);
  return id;
}

Finish LLMEngine::finish_of(int64_t request) const {
  if (scheduler_.cancelled(request)) return Finish::Cancelled;
  switch (scheduler_.outputs()[static_cast<size_t>(request)].finish_reason) {
    case FinishReason::StopToken:
      return Finish::Stop;
    case FinishReason::MaxTokens:
      return Finish::Length;
    case FinishReason::ContextFull:
      return Finish::ContextFull;
  }
  return Finish::Length;
}

std::vector<RequestEvent> LLMEngine::step() {
  const BatchStats before = scheduler_.stats();
  scheduler_.iterate();
  const BatchStats& after = scheduler_.stats();
  stats_.steps += 1;
  stats_.prefill_s += after.prefill_s - before.prefill_s;
  stats_.decode_s += after.decode_s - before.decode_s;

  std::vector<RequestEvent> events;
  const double t = now();
  const std::vector<RequestOutput>& outputs = scheduler_.outputs();
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (reported_finish_[i]) continue;
    const RequestOutput& o = outputs[i];
    RequestMetrics& m = metrics_[i];
    const auto id = static_cast<int64_t>(i);
    const size_t first_new = events.size();
    for (; seen_[i] < o.tokens.size(); ++seen_[i]) {
      events.push_back(RequestEvent{id, o.tokens[seen_[i]], std::nullopt, std::nullopt});
      ++m.output_tokens;
      ++stats_.output_tokens;
    }
    const bool picked = events.size() > first_new || (o.finished && o.stop_token);
    if (picked) {
      if (!m.first_token_s) m.first_token_s = t;
      m.last_token_s = t;
    }
    if (!o.finished) continue;
    // The finish rides on the request's last token event of this step, or comes on its own.
    if (events.size() == first_new) events.push_back(RequestEvent{id, {}, {}, {}});
    events.back().finish = finish_of(id);
    events.back().stop_token = o.stop_token;
    reported_finish_[i] = true;
    m.finish_s = t;
    ++stats_.finished;
  }
  for (const RequestEvent& e : events) emit(e);
  return events;
}

bool LLMEngine::cancel(int64_t request) {
  if (!scheduler_.cancel(request)) return false;
  const auto i = static_cast<size_t>(request);
  reported_finish_[i] = true;
  metrics_[i].finish_s = now();
  ++stats_.cancelled;
  emit(RequestEvent{request, std::nullopt, Finish::Cancelled, std::nullopt});
  return true;
}

void LLMEngine::run_to_completion() {
  while (has_work()) step();
}

void LLMEngine::emit(const RequestEvent& event) {
  const auto it = callbacks_.find(event.request);
  if (it == callbacks_.end()) return;
  const EventCallback callback = it->second;  // a callback may cancel, which erases nothing here
  if (event.finish) callbacks_.erase(it);
  callback(event);
}

const TokenIds& LLMEngine::tokens(int64_t request) const {
  if (request < 0 || request >= static_cast<int64_t>(metrics_.size())) {
    throw InvalidArgument("LLMEngine: no request " + std::to_string(request));
  }
  return scheduler_.outputs()[static_cast<size_t>(request)].tokens;
}

std::optional<Finish> LLMEngine::finish(int64_t request) const {
  tokens(request);  // checks the id
  if (!scheduler_.outputs()[static_cast<size_t>(request)].finished) return std::nullopt;
  return finish_of(request);
}

const RequestMetrics& LLMEngine::metrics(int64_t request) const {
  tokens(request);  // checks the id
  return metrics_[static_cast<size_t>(request)];
}

}  // namespace tinyllm::engine
