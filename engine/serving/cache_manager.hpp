// The serving core's KV-cache manager (nano-vllm's BlockManager, for dense per-request caches):
// it decides whether a request may start, given how many cached positions every running request
// may grow to, and accounts for the memory in use. A request reserves prompt + max_tokens
// positions (capped at the context) when it is admitted and gives them back when it finishes or is
// cancelled, so admission never over-commits the budget. The scheduler's paged mode replaces the
// reservation by pages allocated as the sequence grows (block_manager.hpp).
#pragma once

#include <cstdint>
#include <unordered_map>

#include "tinyllm/config.hpp"

namespace tinyllm::engine {

class CacheManager {
 public:
  /// budget_positions: cached positions (over all requests) the caches may hold; bytes per
  /// position = layers x 2 (K and V) x H x D x 4. InvalidArgument unless budget_positions >= 1.
  CacheManager(const Qwen2Config& config, int64_t budget_positions);

  /// Positions a request of `prompt` + `max_tokens` may need: capped at the context.
  int64_t positions_needed(int64_t prompt, int64_t max_tokens) const;
  /// Reserves for `request` if the budget allows; false (nothing changes) otherwise.
  /// InvalidArgument if the request already holds a reservation.
  bool try_reserve(int64_t request, int64_t positions);
  /// Whether `positions` could ever fit (into an empty budget).
  bool fits_at_all(int64_t positions) const { return positions <= budget_; }
  /// Gives a request's reservation back (nothing if it holds none).
  void release(int64_t request);

  int64_t budget_positions() const { return budget_; }
  int64_t reserved_positions() const { return reserved_; }
  int64_t bytes_per_position() const { return bytes_per_position_; }

 private:
  int64_t context_;
  int64_t budget_;
  int64_t bytes_per_position_;
  int64_t reserved_ = 0;
  std::unordered_map<int64_t, int64_t> held_;  // request -> positions
};

}  // namespace tinyllm::engine
