// Chapter 3.2, Task 3: the Week 3 model attending through paged attention.
//
// Chapter 3.1's Qwen2ModelWeek3 runs the Week 2 weights on paged caches, but its attend() gathers
// every sequence's pages into a dense copy first. Qwen2PagedAttentionModel keeps everything else
// (projections, RoPE, appends, MLP, head: the same forward_paged) and replaces only attend():
//
//   chapter 3.1:  caches ─► gather_dense() per sequence ─► grouped attention per sequence
//   chapter 3.2:  caches ─► block table + context lengths ─► ONE paged_attention_parallel call
//                 for all R sequences, reading K and V where they lie in the pool
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <tinyllm/ch2_5_parallel_flash_attention/flash_support.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/qwen2_week3.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_attention.hpp>

#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

class Qwen2PagedAttentionModel : public Qwen2ModelWeek3 {
 public:
  /// Provided. As Qwen2ModelWeek3: `model` (which must outlive this object) on pages of
  /// page_size positions, at most max_pages of them (0: unbounded); `options` are handed to
  /// paged_attention_parallel (tile sizes, splits).
  Qwen2PagedAttentionModel(const Qwen2ModelWeek2& model, int64_t page_size = 32,
                           int64_t max_pages = 0, FlashOptions options = FlashOptions())
      : Qwen2ModelWeek3(model, page_size, max_pages), options_(options) {}

 protected:
  /// Task 3. attend() without a gather: q R x H_q x L x D (rotated), caches[r] holding sequence
  /// r's positions, its L new ones last -> R x H_q x L x D =
  ///   paged_attention_parallel(q, page_pool(), build_paged_metadata(caches), 1/sqrt(D),
  ///                            causal, options_)
  Tensor attend(const Tensor& q, const std::vector<PagedKvCache*>& caches) const override {
    TINYLLM_TODO("ch3.2", "Task 3");
  }

 private:
  FlashOptions options_;
};

}  // namespace tinyllm
