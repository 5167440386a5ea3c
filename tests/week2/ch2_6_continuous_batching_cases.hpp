// Shared by the tests of chapters 2.6 and 2.7: the models they run, random prompts, and the
// single-request greedy run (chapter 2.1) that every batched or chunked request must reproduce.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batch_request.hpp>

#include "model_fixtures.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::testing {

/// Chapter 1.5's random checkpoint (V 512, context 128, E 64, 2 layers): cheap enough for sweeps.
inline std::filesystem::path batching_fixture_model() {
  return data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied";
}
/// The embedded trained model (V 4096, context 512, E 256, 8 layers).
inline std::filesystem::path tiny_qwen2_model() {
  return data_dir() / "models" / "tiny-qwen2";
}

/// The request alone: chapter 2.1's greedy generation with max_new_tokens capped at what fits
/// into the context (the scheduler's ContextFull rule).
inline Generation single_run(const Qwen2ModelWeek2& model, const BatchRequest& r) {
  const int64_t room =
      model.config().max_position_embeddings - static_cast<int64_t>(r.prompt.size());
  return generate_tokens_with_kv_cache(
      model, r.prompt,
      GenerationOptions{.max_new_tokens = std::min(r.max_new_tokens, room),
                        .stop_ids = r.stop_ids});
}

}  // namespace tinyllm::testing
