// Chapter 3.2: paged attention, the attention that reads a paged KV cache in place.
//
// You write (book/week3/ch3_2_paged_attention.md):
//   Task 1  paged_attention: online softmax over the pages of the block table, scalar
//   Task 2  paged_attention_parallel: the same on OpenMP threads with chapter 2.5's vectorized
//           tile loop, packed GQA decode rows and split pages (as 2.4 -> 2.5)
//   Task 3  the Week 3 model attending through it (paged_model.hpp)
//   Task 4  the continuous-batching scheduler on paged caches (paged_batching.hpp)
//
// Chapter 3.1's attend() copied every request's pages into a dense tensor before each attention:
// a second copy of the whole cache per layer per step. Paged attention walks the block table
// instead. For batch row b, query head h_q (KV head h = h_q / (H_q / H)) and query row l:
//
//   for logical page i = 0, 1, ... while i * page_size < context_lens[b]:
//     page = block_table[b][i]; its keys of head h: page_size x D at pool.keys(page) + h P D
//     slots s < min(page_size, context - i * page_size) are keys at positions i * page_size + s
//     a causal row l sees positions <= l + context - L (bottom-right, as chapter 2.1)
//     one tile of flash attention (chapter 2.4): scores, running max m, sum l, accumulator O
//   out = O / l, or zeros when the row saw no key (context 0, an idle row, a causal row before
//   the first key): never NaN.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/flash_support.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// Provided. The checks of both paged attentions, before anything is read: ShapeError unless
/// queries are B x H_q x L x D with the pool's D, H_q a multiple of the pool's H, and the metadata
/// has B rows (block table B x max_pages, context_lens B); InvalidArgument for a context length
/// outside [0, max_pages * page_size], a metadata page_size that is not the pool's, or a block
/// table entry that a row's context needs (its first ceil(context / page_size)) and that is not a
/// page of the pool (-1 included).
inline void check_paged_attention_args(const Tensor& queries, const PagePool& pool,
                                       const PagedKvMetadata& meta) {
  const std::string what = "paged attention: ";
  if (queries.ndim() != 4 || queries.dim(3) != pool.head_dim() ||
      queries.dim(1) % pool.num_kv_heads() != 0) {
    throw ShapeError(what + "queries " + shape_to_string(queries.shape()) +
                     " must be B x H_q x L x D with D = " + std::to_string(pool.head_dim()) +
                     " and H_q a multiple of H = " + std::to_string(pool.num_kv_heads()));
  }
  const int64_t B = queries.dim(0), P = pool.page_size();
  if (meta.batch != B || static_cast<int64_t>(meta.context_lens.size()) != B ||
      static_cast<int64_t>(meta.block_table.size()) != B * meta.max_pages) {
    throw ShapeError(what + "the metadata must describe the B = " + std::to_string(B) +
                     " rows of the queries (block table B x max_pages, context_lens B)");
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t context = meta.context_lens[static_cast<size_t>(b)];
    if (context == 0) continue;
    if (meta.page_size != P || context < 0 || context > meta.max_pages * P) {
      throw InvalidArgument(
          what + "row " + std::to_string(b) + " has context " + std::to_string(context) +
          " in a block table of " + std::to_string(meta.max_pages) + " pages of " +
          std::to_string(meta.page_size) + " (the pool's pages hold " + std::to_string(P) + ")");
    }
    for (int64_t i = 0; i * P < context; ++i) {
      const int32_t page = meta.page(b, i);
      if (page < 0 || page >= pool.num_pages()) {
        throw InvalidArgument(what + "row " + std::to_string(b) + " needs logical page " +
                              std::to_string(i) + ", but its block table holds " +
                              std::to_string(page) + ", not a page of the pool");
      }
    }
  }
}

/// Task 1. Attention of queries (B x H_q x L x D) to the keys and values that the block table
/// finds in `pool` -> B x H_q x L x D, computed page by page without gathering them:
///   row (b, h_q, l) against KV head h = h_q / (H_q / H), positions 0 .. context_lens[b] - 1
///   (causal: only positions <= l + context_lens[b] - L). For each page of the row (one tile):
///   scores of its valid slots * scale, m_new = max(m, their max), l = exp(m - m_new) l + sum
///   exp(s - m_new), O = exp(m - m_new) O + sum exp(s - m_new) v; out = O / l.
/// A row that sees no key (context 0, causal rows before the first key) is zeros, never NaN.
/// scale defaults to 1/sqrt(D). Errors: see check_paged_attention_args.
inline Tensor paged_attention(const Tensor& queries, const PagePool& pool,
                              const PagedKvMetadata& meta,
                              std::optional<float> scale = std::nullopt, bool causal = true) {
  check_paged_attention_args(queries, pool, meta);
  TINYLLM_TODO("ch3.2", "Task 1");
}

/// Task 2. paged_attention on OpenMP threads, with chapter 2.5's vectorized tile loop: the same
/// result up to float rounding, independent of the thread count. Work items:
///   decode (L = 1): one item per (b, h) packs the H_q / H query heads of KV head h as the rows of
///     one FlashState (their single rows are adjacent in memory), so each page is read once per
///     step for the whole group; every row sees every position (no mask);
///   else: one item per (b, h_q, tile of options.block_rows query rows), causal as a HeadMask
///     whose offset is relative to each page: context - L - i * page_size.
/// Each item's pages are cut into choose_kv_splits(items, longest context, options) ranges of
/// whole pages (chapter 2.5); every (item, range) runs attend_kv_range on each of its pages
/// (keys [0, valid) of that page's head) into its own FlashState, in one `omp parallel for
/// collapse(2)`; then every item merges its states into out (merge_states, chapter 2.5).
/// Errors: see check_paged_attention_args.
inline Tensor paged_attention_parallel(const Tensor& queries, const PagePool& pool,
                                       const PagedKvMetadata& meta,
                                       std::optional<float> scale = std::nullopt,
                                       bool causal = true,
                                       const FlashOptions& options = FlashOptions()) {
  check_paged_attention_args(queries, pool, meta);
  TINYLLM_TODO("ch3.2", "Task 2");
}

}  // namespace tinyllm
