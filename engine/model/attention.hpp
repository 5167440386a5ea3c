// The engine's attention for one layer of one step (step.hpp): RoPE on q and k, the new keys and
// values appended to each group's cache (dense) or written into its pages (paged), then chapter
// 2.4's online softmax for each query row straight on the cache's own buffers (keys_of / values_of
// views, or the pages where they lie in the pool, walked through the sequence's page list: the S
// cached positions are never copied), in the same operations whatever the step around the row
// (batch invariance) and wherever the keys lie (a paged step gives bitwise a dense step's output).
//
//   qkv: M x (H_q + 2 H) D  ->  o: M x H_q D
//
// Work items, all in one parallel loop (a step may mix decoding and prefilling sequences): per
// (sequence row, query head, tile of up to 32 queries), each query at position p seeing keys
// [0, p] of its own cache (bottom-right causal; a decode row is a tile of one query).
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
