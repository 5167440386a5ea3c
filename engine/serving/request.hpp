// What goes into the serving core and what comes out of it, per request (nano-vllm's Sequence and
// SamplingParams, in the course's vocabulary). The front-ends (`tinyllm-ref batch`, the HTTP
// server) fill a SamplingParams from their flags or JSON, submit token ids, and read RequestEvents
// as the engine steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <tinyllm/ch1_7_sampling/sampler.hpp>

#include "tinyllm/token.hpp"

namespace tinyllm::engine {

/// How a request's tokens are chosen and when it ends. temperature 0 is greedy (then top_k, top_p
/// and seed do not matter); otherwise chapter 1.7's Sampler with these settings.
struct SamplingParams {
  SamplerConfig sampler;     // temperature, top_k, top_p, seed
  int64_t max_tokens = 256;  // new tokens at most (the context may end it earlier)
  TokenIds stop_ids;         // any of these ends the request (not part of its output)
};

enum class Finish { Stop, Length, ContextFull, Cancelled };
/// "stop", "length", "context_full", "cancelled".
std::string finish_name(Finish finish);

/// One thing that happened to a request during a step: it got a token (token set), finished
/// (finish set; the stop id, if that is why, is in stop_token and not an output token), or both.
struct RequestEvent {
  int64_t request = 0;
  std::optional<TokenId> token;
  std::optional<Finish> finish;
  std::optional<TokenId> stop_token;
};

/// Per-request timings, in seconds on the engine's clock.
struct RequestMetrics {
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double arrival_s = 0.0;               // submit()
  std::optional<double> first_token_s;  // its first pick (TTFT = first_token_s - arrival_s)
  std::optional<double> finish_s;
  double last_token_s = 0.0;

  /// Time to first token, or nothing before it.
  std::optional<double> ttft() const {
    if (!first_token_s) return std::nullopt;
    return *first_token_s - arrival_s;
  }
  /// Mean time per output token after the first (TPOT), or nothing with fewer than two picks.
  std::optional<double> tpot(int64_t picks) const {
    if (!first_token_s || picks < 2) return std::nullopt;
    return (last_token_s - *first_token_s) / static_cast<double>(picks - 1);
  }
};

}  // namespace tinyllm::engine
