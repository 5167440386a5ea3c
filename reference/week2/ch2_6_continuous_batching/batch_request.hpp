// Chapter 2.6: what goes into and comes out of the continuous-batching scheduler
// (continuous_batching.hpp): requests, their outputs and timings, and progress snapshots.
//
// The two latencies a serving system reports, per request (all requests of a run arrive at time 0):
//   TTFT  time to first token: from arrival to the pick of its first token. It includes the time
//         the request waited for a slot and its prefill.
//   TPOT  time per output token: (last pick - first pick) / (picks - 1), the mean time between
//         two of its tokens while it decodes. Larger batches raise throughput (tokens/s over all
//         requests) and TPOT together; a long prefill between two decode steps shows up as one
//         long gap (chapter 2.7 bounds it).
// Throughput splits the same way: prefill tokens/s (prompt tokens over the time spent admitting)
// and decode tokens/s (tokens picked in batched steps over the time spent in them).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "tinyllm/token.hpp"

namespace tinyllm {

/// One generation request: greedy decoding of up to max_new_tokens after the prompt, ending early
/// at any of stop_ids (not appended) or when the context is full.
struct BatchRequest {
  TokenIds prompt;
  int64_t max_new_tokens = 64;
  TokenIds stop_ids;
};

enum class FinishReason { StopToken, MaxTokens, ContextFull };

/// What became of a request. Times are seconds since the scheduler's first step (every request
/// submitted before run() arrives at time 0).
struct RequestOutput {
  TokenIds tokens;  // without the prompt and without the stop token
  FinishReason finish_reason = FinishReason::MaxTokens;
  std::optional<TokenId> stop_token;
  int64_t prompt_tokens = 0;
  bool finished = false;
  double first_token_s = 0.0;  // time to first token (TTFT): when its first token was picked
  double last_token_s = 0.0;   // when its last token (or its stop id) was picked
};

/// A snapshot after each iteration, for progress views. request = -1 marks an idle slot.
struct BatchProgress {
  struct Slot {
    int64_t request = -1;
    int64_t offset = 0;  // positions cached for it
    int64_t generated = 0;
  };
  int64_t step = 0;
  double elapsed_s = 0.0;
  std::vector<Slot> slots;
  int64_t waiting = 0;   // requests not started yet
  int64_t finished = 0;  // requests done
  // Chapter 2.7's request being prefilled in chunks (-1: none), with its progress.
  int64_t prefill_request = -1;
  int64_t prefill_done = 0, prefill_total = 0;
};
using ProgressCallback = std::function<void(const BatchProgress&)>;

/// Where the scheduler spent its time: prefill (admit) and decode (batched steps).
struct BatchStats {
  int64_t steps = 0;
  double prefill_s = 0.0, decode_s = 0.0;
};

}  // namespace tinyllm
