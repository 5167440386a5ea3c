// Chapter 3.1, Task 2: the paged KV cache of one layer of one request, and the block table.
//
// A PagedKvCache holds the S = offset() cached positions of one layer as a list of page ids of a
// shared PagePool. Logical position p lives in page page_ids()[p / page_size], slot p % page_size;
// every page but the last is full (page_lens() = [page_size, ..., page_size, tail]).
//
//   positions  0 1 2 3 | 4 5 6 7 | 8        page_size 4, offset 9
//   page_ids   [   5   ,    2    ,  7 ]      any ids: the pool hands out what is free
//   page_lens  [   4   ,    4    ,  1 ]      appending 3 more fills page 7, then takes a new page
//
// A batch of requests is described to a paged attention kernel (chapter 3.2) by a block table:
// row b lists request b's page ids, padded with -1 to max_pages, and context_lens[b] is its
// offset. An idle row is all -1 with context 0.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

class PagedKvCache {
 public:
  /// Provided. An empty cache drawing pages from `pool`, which must outlive it.
  explicit PagedKvCache(PagePool& pool) : pool_(&pool) {}
  /// The cache owns its pages: the destructor releases them (so a finished or failed request
  /// never leaks pages). Copies are forbidden (two owners would free every page twice); a move
  /// hands the pages over and leaves the source empty, so it frees nothing.
  ~PagedKvCache() { release_owned_pages(); }
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;
  PagedKvCache(PagedKvCache&& other) noexcept
      : pool_(other.pool_), page_ids_(std::move(other.page_ids_)), offset_(other.offset_) {
    other.page_ids_.clear();
    other.offset_ = 0;
  }
  PagedKvCache& operator=(PagedKvCache&& other) noexcept {
    if (this != &other) {
      release_owned_pages();
      pool_ = other.pool_;
      page_ids_ = std::move(other.page_ids_);
      offset_ = other.offset_;
      other.page_ids_.clear();
      other.offset_ = 0;
    }
    return *this;
  }

  /// Task 2. Appends L' new positions: new_keys, new_values 1 x H x L' x D (L' >= 1) become
  /// positions offset() .. offset() + L' - 1. First the free slots of the last page are filled,
  /// then new pages are taken from the pool, each filled up to page_size, so the cache holds
  /// ceil(S / page_size) pages. A decode step (L' = 1) takes a page only when the last one is
  /// full. Errors, before anything changes: ShapeError unless both are 1 x H x L' x D with the
  /// pool's H and D; OutOfPages if the pool cannot give every page needed (the pages taken for
  /// this call go back first).
  void append(const Tensor& new_keys, const Tensor& new_values) {
    check_new_rows(new_keys, new_values);
    // SOLUTION BEGIN ch3.1 Task 2
    const int64_t L = new_keys.dim(2), P = pool_->page_size(), H = pool_->num_kv_heads();
    const int64_t D = pool_->head_dim();
    const int64_t needed = (offset_ + L + P - 1) / P - static_cast<int64_t>(page_ids_.size());
    std::vector<int32_t> taken;
    for (int64_t i = 0; i < needed; ++i) {
      const std::optional<int32_t> page = pool_->try_allocate();
      if (!page) {
        for (int32_t id : taken) pool_->free(id);
        throw OutOfPages("PagedKvCache::append: " + std::to_string(L) + " new positions need " +
                         std::to_string(needed) + " new pages, but the pool (" +
                         std::to_string(pool_->max_pages()) + " pages) has only " +
                         std::to_string(i) + " left");
      }
      taken.push_back(*page);
    }
    page_ids_.insert(page_ids_.end(), taken.begin(), taken.end());
    for (int64_t l = 0; l < L;) {  // one run of positions inside one page at a time
      const int64_t pos = offset_ + l, slot = pos % P;
      const int32_t page = page_ids_[static_cast<size_t>(pos / P)];
      const int64_t run = std::min(P - slot, L - l);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t src = (h * L + l) * D, dst = (h * P + slot) * D;
        const auto bytes = static_cast<size_t>(run * D) * sizeof(float);
        std::memcpy(pool_->keys(page) + dst, new_keys.data() + src, bytes);
        std::memcpy(pool_->values(page) + dst, new_values.data() + src, bytes);
      }
      l += run;
    }
    offset_ += L;
    // SOLUTION END
  }

  /// Task 2. All S = offset() cached positions as two contiguous 1 x H x S x D tensors, in
  /// logical order (the valid prefix of every page, page after page): what chapter 2.1's
  /// KvCache::fetch returns for the same appends.
  KvFetch gather_dense() const {
    // SOLUTION BEGIN ch3.1 Task 2
    const int64_t P = pool_->page_size(), H = pool_->num_kv_heads(), D = pool_->head_dim();
    KvFetch out{Tensor({1, H, offset_, D}), Tensor({1, H, offset_, D})};
    for (int64_t i = 0; i < static_cast<int64_t>(page_ids_.size()); ++i) {
      const int32_t page = page_ids_[static_cast<size_t>(i)];
      const int64_t len = std::min(P, offset_ - i * P);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t src = h * P * D, dst = (h * offset_ + i * P) * D;
        const auto bytes = static_cast<size_t>(len * D) * sizeof(float);
        std::memcpy(out.keys.data() + dst, pool_->keys(page) + src, bytes);
        std::memcpy(out.values.data() + dst, pool_->values(page) + src, bytes);
      }
    }
    return out;
    // SOLUTION END
  }

  /// Provided. append, then gather_dense: the path on which chapter 2.1's attention still works.
  KvFetch update_and_fetch(const Tensor& new_keys, const Tensor& new_values) {
    append(new_keys, new_values);
    return gather_dense();
  }

  /// Task 2. Forgets the newest n positions (speculative decoding's rejected drafts): offset()
  /// drops by n and every page that no longer holds a position goes back to the pool (the last
  /// kept page keeps its stale tail, which the next append overwrites). rewind(offset()) leaves
  /// no page. InvalidArgument unless 0 <= n <= offset().
  void rewind(int64_t n) {
    // SOLUTION BEGIN ch3.1 Task 2
    if (n < 0 || n > offset_) {
      throw InvalidArgument("PagedKvCache::rewind: cannot drop " + std::to_string(n) + " of " +
                            std::to_string(offset_) + " cached positions");
    }
    offset_ -= n;
    const int64_t P = pool_->page_size();
    const auto keep = static_cast<size_t>((offset_ + P - 1) / P);
    while (page_ids_.size() > keep) {
      pool_->free(page_ids_.back());
      page_ids_.pop_back();
    }
    // SOLUTION END
  }

  /// Task 2. Gives every page back to the pool (each exactly once) and empties the cache:
  /// offset() = 0, no pages. Safe to call again (and on a moved-from cache): nothing to free.
  void release() {
    // SOLUTION BEGIN ch3.1 Task 2
    for (int32_t page : page_ids_) pool_->free(page);
    page_ids_.clear();
    offset_ = 0;
    // SOLUTION END
  }

  /// Provided. Row b of a block table: page_ids() padded with -1 to max_pages entries.
  /// InvalidArgument if the cache holds more than max_pages pages.
  std::vector<int32_t> block_table(int64_t max_pages) const {
    if (num_pages() > max_pages) {
      throw InvalidArgument("PagedKvCache::block_table: the cache holds " +
                            std::to_string(num_pages()) +
                            " pages, more than max_pages = " + std::to_string(max_pages));
    }
    std::vector<int32_t> row(page_ids_);
    row.resize(static_cast<size_t>(max_pages), -1);
    return row;
  }

  /// Provided. How many positions each page holds: page_size for all but the last.
  std::vector<int64_t> page_lens() const {
    std::vector<int64_t> lens;
    for (int64_t i = 0; i < num_pages(); ++i) {
      lens.push_back(std::min(pool_->page_size(), offset_ - i * pool_->page_size()));
    }
    return lens;
  }

  /// S: the cached positions (the position of the next new token).
  int64_t offset() const { return offset_; }
  const std::vector<int32_t>& page_ids() const { return page_ids_; }
  int64_t num_pages() const { return static_cast<int64_t>(page_ids_.size()); }
  PagePool& pool() const { return *pool_; }

 private:
  /// Provided. release() where nothing may throw (destructor, move assignment). An unwritten
  /// release() (the pristine stub) is skipped, so a failing test does not abort the program;
  /// any other error there (a double free: a bug) terminates, as an exception from a destructor
  /// does.
  void release_owned_pages() noexcept {
    try {
      release();
    } catch (const NotImplemented&) {
    }
  }

  /// Provided. The checks of append (see there).
  void check_new_rows(const Tensor& k, const Tensor& v) const {
    if (k.ndim() != 4 || k.shape() != v.shape() || k.dim(0) != 1 ||
        k.dim(1) != pool_->num_kv_heads() || k.dim(2) < 1 || k.dim(3) != pool_->head_dim()) {
      throw ShapeError(
          "PagedKvCache::append: new keys " + shape_to_string(k.shape()) + " and values " +
          shape_to_string(v.shape()) + " must both be 1 x H x L' x D = " +
          shape_to_string({1, pool_->num_kv_heads(), -1, pool_->head_dim()}) + " with L' >= 1");
    }
  }

  PagePool* pool_;
  std::vector<int32_t> page_ids_;  // logical page i -> its id in the pool
  int64_t offset_ = 0;
};

/// What a paged attention kernel needs to find the keys of a batch of B requests in the pool:
///   block_table   B x max_pages page ids, row-major, padded with -1
///   context_lens  B: positions cached for row b (0 for an idle row)
struct PagedKvMetadata {
  int64_t batch = 0;
  int64_t max_pages = 0;
  int64_t page_size = 0;
  std::vector<int32_t> block_table;
  std::vector<int32_t> context_lens;

  /// The id of logical page i of row b (-1: none).
  int32_t page(int64_t b, int64_t i) const {
    return block_table[static_cast<size_t>(b * max_pages + i)];
  }
};

/// Task 2. The metadata of a batch: rows[b] is request b's cache of one layer, or nullptr for an
/// idle row (block table row all -1, context 0). max_pages: the block table's width, 0 for the
/// most pages any row holds. Row b = rows[b]->block_table(max_pages), context_lens[b] = its
/// offset(), page_size the pool's. InvalidArgument if rows is empty, if the caches do not all
/// draw from one pool, or if a row holds more than max_pages pages (max_pages > 0).
inline PagedKvMetadata build_paged_metadata(const std::vector<const PagedKvCache*>& rows,
                                            int64_t max_pages = 0) {
  // SOLUTION BEGIN ch3.1 Task 2
  if (rows.empty()) throw InvalidArgument("build_paged_metadata: no rows");
  const PagePool* pool = nullptr;
  int64_t widest = 0;
  for (const PagedKvCache* cache : rows) {
    if (cache == nullptr) continue;
    if (pool != nullptr && &cache->pool() != pool) {
      throw InvalidArgument("build_paged_metadata: the caches draw from different page pools");
    }
    pool = &cache->pool();
    widest = std::max(widest, cache->num_pages());
  }
  PagedKvMetadata meta;
  meta.batch = static_cast<int64_t>(rows.size());
  meta.max_pages = max_pages > 0 ? max_pages : widest;
  meta.page_size = pool != nullptr ? pool->page_size() : 0;
  for (const PagedKvCache* cache : rows) {
    const std::vector<int32_t> row =
        cache != nullptr ? cache->block_table(meta.max_pages)
                         : std::vector<int32_t>(static_cast<size_t>(meta.max_pages), -1);
    meta.block_table.insert(meta.block_table.end(), row.begin(), row.end());
    meta.context_lens.push_back(cache != nullptr ? static_cast<int32_t>(cache->offset()) : 0);
  }
  return meta;
  // SOLUTION END
}

}  // namespace tinyllm
