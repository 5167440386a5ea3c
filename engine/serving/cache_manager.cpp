#include "engine/serving/cache_manager.hpp"

#include <algorithm>
#include <string>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

CacheManager::CacheManager(const Qwen2Config& config, int64_t budget_positions)
    : context_(config.max_position_embeddings),
      budget_(budget_positions),
      bytes_per_position_(config.num_hidden_layers * 2 * config.num_key_value_heads *
                          config.head_dim * static_cast<int64_t>(sizeof(float))) {
  if (budget_positions < 1) {
    throw InvalidArgument("CacheManager: the KV budget must be >= 1 position, got " +
                          std::to_string(budget_positions));
  }
}

int64_t CacheManager::positions_needed(int64_t prompt, int64_t max_tokens) const {
  return std::min(context_, prompt + max_tokens);
}

bool CacheManager::try_reserve(int64_t request, int64_t positions) {
  if (held_.count(request) != 0) {
    throw InvalidArgument("CacheManager: request " + std::to_string(request) +
                          " already holds a reservation");
  }
  if (reserved_ + positions > budget_) return false;
  held_[request] = positions;
  reserved_ += positions;
  return true;
}

void CacheManager::release(int64_t request) {
  const auto it = held_.find(request);
  if (it == held_.end()) return;
  reserved_ -= it->second;
  held_.erase(it);
}

}  // namespace tinyllm::engine
