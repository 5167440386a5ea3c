// Chapter 3.1, Task 1: the page pool, the memory manager of a paged KV cache.
//
// You write (book/week3/ch3_1_paged_kv_cache.md):
//   Task 1  PagePool: allocate (reuse a freed page, else mint a new one), try_allocate, free
//   Task 2  PagedKvCache: one layer of one request as a list of pages (paged_kv_cache.hpp)
//   Task 3  the Week 2 model on paged caches, attending through gather_dense (qwen2_week3.hpp)
//
// Chapter 2.1's KvCache gives every request one buffer per layer that doubles as it grows, and a
// serving engine that reserves max_seq_len positions per request wastes most of its memory on
// positions that never get written. vLLM's PagedAttention cuts the cache into fixed-size pages
// (blocks) of page_size positions, like an operating system cuts memory into pages: a request
// holds a list of page ids, grows by one page at a time, and gives every page back when it ends.
// Every layer of every request draws from one pool, so memory is shared where it is needed.
//
// One page holds the keys and the values of page_size positions of every KV head of one layer:
//   keys(page), values(page): H x page_size x D floats, row-major (head h's rows start at
//   h * page_size * D; position slot s of head h at (h * page_size + s) * D)
// so the page_size keys of one head are one contiguous page_size x D matrix, what a flash
// attention kernel takes (chapter 2.5).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

class PagePool {
 public:
  /// Provided. An empty pool of pages of H = num_kv_heads x page_size x D = head_dim floats (for
  /// keys, and as many for values). max_pages bounds how many page ids may ever be minted (0:
  /// unbounded). Nothing is allocated until the first page. InvalidArgument unless H, D and
  /// page_size are positive and max_pages >= 0.
  PagePool(int64_t num_kv_heads, int64_t head_dim, int64_t page_size, int64_t max_pages = 0)
      : num_kv_heads_(num_kv_heads),
        head_dim_(head_dim),
        page_size_(page_size),
        max_pages_(max_pages) {
    if (num_kv_heads <= 0 || head_dim <= 0 || page_size <= 0 || max_pages < 0) {
      throw InvalidArgument(
          "PagePool: H, D and page_size must be positive and max_pages >= 0, got " +
          std::to_string(num_kv_heads) + ", " + std::to_string(head_dim) + ", " +
          std::to_string(page_size) + ", " + std::to_string(max_pages));
    }
  }
  // Caches hold raw page ids of this pool: it must stay where it is.
  PagePool(const PagePool&) = delete;
  PagePool& operator=(const PagePool&) = delete;

  /// Task 1. A page for the caller, or nullopt when the pool is bounded and full: the most
  /// recently freed page if any (its stale data stays in place: the caller overwrites what it
  /// uses), else a new id num_pages() (mint_page()) unless max_pages ids exist already. The page
  /// is then in use (pages_in_use() grows by one).
  std::optional<int32_t> try_allocate() {
    // SOLUTION BEGIN ch3.1 Task 1
    if (!free_list_.empty()) {
      const int32_t page = free_list_.back();
      free_list_.pop_back();
      in_use_[static_cast<size_t>(page)] = true;
      return page;
    }
    if (max_pages_ > 0 && num_pages() >= max_pages_) return std::nullopt;
    return mint_page();
    // SOLUTION END
  }

  /// Task 1. try_allocate(), or OutOfPages naming the pool's size when it returns nullopt.
  int32_t allocate() {
    // SOLUTION BEGIN ch3.1 Task 1
    const std::optional<int32_t> page = try_allocate();
    if (!page) {
      throw OutOfPages("PagePool::allocate: all " + std::to_string(max_pages_) + " pages of " +
                       std::to_string(page_size_) + " positions are in use");
    }
    return *page;
    // SOLUTION END
  }

  /// Task 1. Gives `page` back: it is no longer in use and the next allocation takes it first
  /// (last in, first out). InvalidArgument for an id that was never minted or is already free
  /// (a double free would hand one page to two caches).
  void free(int32_t page) {
    // SOLUTION BEGIN ch3.1 Task 1
    if (page < 0 || page >= num_pages()) {
      throw InvalidArgument("PagePool::free: page " + std::to_string(page) +
                            " does not exist (the pool has " + std::to_string(num_pages()) +
                            " pages)");
    }
    if (!in_use_[static_cast<size_t>(page)]) {
      throw InvalidArgument("PagePool::free: page " + std::to_string(page) + " is already free");
    }
    in_use_[static_cast<size_t>(page)] = false;
    free_list_.push_back(page);
    // SOLUTION END
  }

  /// Keys and values of a page: H x page_size x D floats each, row-major. The pointers stay valid
  /// for the pool's lifetime (each page is its own allocation, never moved when the pool grows).
  /// A free page may be read (stale data). InvalidArgument for an id never minted.
  float* keys(int32_t page) { return storage(page); }
  const float* keys(int32_t page) const { return storage(page); }
  float* values(int32_t page) { return storage(page) + page_floats(); }
  const float* values(int32_t page) const { return storage(page) + page_floats(); }

  /// Whether `page` is allocated (false for free and unknown ids).
  bool in_use(int32_t page) const {
    return page >= 0 && page < num_pages() && in_use_[static_cast<size_t>(page)];
  }
  /// Pages held by caches now.
  int64_t pages_in_use() const { return num_pages() - free_pages(); }
  /// Minted pages waiting in the free list.
  int64_t free_pages() const { return static_cast<int64_t>(free_list_.size()); }
  /// Page ids ever minted (ids are 0 .. num_pages() - 1).
  int64_t num_pages() const { return static_cast<int64_t>(pages_.size()); }
  int64_t max_pages() const { return max_pages_; }
  int64_t page_size() const { return page_size_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  /// Floats of the keys (or of the values) of one page: H x page_size x D.
  int64_t page_floats() const { return num_kv_heads_ * page_size_ * head_dim_; }

 protected:
  /// Provided. Creates page id num_pages() (zero-filled keys and values), in use, and returns it.
  int32_t mint_page() {
    pages_.push_back(std::make_unique<float[]>(static_cast<size_t>(2 * page_floats())));
    in_use_.push_back(true);
    return static_cast<int32_t>(pages_.size() - 1);
  }

 private:
  float* storage(int32_t page) const {
    if (page < 0 || page >= num_pages()) {
      throw InvalidArgument("PagePool: page " + std::to_string(page) +
                            " does not exist (the pool has " + std::to_string(num_pages()) +
                            " pages)");
    }
    return pages_[static_cast<size_t>(page)].get();
  }

  int64_t num_kv_heads_, head_dim_, page_size_, max_pages_;
  std::vector<std::unique_ptr<float[]>> pages_;  // page id -> its keys, then its values
  std::vector<bool> in_use_;                     // page id -> allocated
  std::vector<int32_t> free_list_;               // freed ids, the most recent last
};

}  // namespace tinyllm
