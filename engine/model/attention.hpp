// The engine's attention for one layer of one step (step.hpp): RoPE on q and k, the new keys and
// values appended to each group's cache, then chapter 2.5's attend_kv_range straight on the
// cache's own buffers (keys_of / values_of views: the S cached positions are never copied).
//
//   qkv: M x (H_q + 2 H) D  ->  o: M x H_q D
//
// Work items, all in one parallel loop (a step may mix decoding and prefilling sequences):
//   a row with L_g = 1 (decode): per (row, KV head j), the g = H_q / H query heads sharing j as g
//       rows of one flash state; no mask (the one query sees every cached key)
//   a row with L_g > 1 (prefill): per (row, query head, tile of 32 queries), the bottom-right
//       causal mask (query i sees keys j <= i + S - L_g)
#pragma once

#include <cstdint>

#include <tinyllm/ch1_2_rope/rope.hpp>

#include "engine/model/step.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/tensor.hpp"

namespace tinyllm::engine {

/// Layer `layer` of the step's caches gets the new keys and values; returns o (M x H_q D).
Tensor step_attention(const Qwen2Config& config, const RoPE& rope, const Tensor& qkv,
                      const Step& step, size_t layer, int threads);

}  // namespace tinyllm::engine
