// Chapter 2.6, Task 1: the batching KV cache of one attention layer.
//
// You write (book/week2/ch2_6_continuous_batching.md):
//   Task 1  BatchingKvCache: requests join and leave slots; one update appends every active
//           slot's new rows to its own cache and returns one padded batch plus its mask
//   Task 2  the batched model step (batched_model.hpp)
//   Task 3  the continuous-batching scheduler (continuous_batching.hpp)
//
// A decode step of a batch runs every linear layer once on B rows, but the B requests are at
// different points of their sequences: slot b has S_b cached positions. Attention needs one
// B x H x S x D tensor, so every request is right-aligned in S = max S_b positions (its keys in
// [S - S_b, S), zeros before them) and an additive mask B x 1 x L x S removes what a row must not
// see: the padding, the future (bottom-right causal within its own S_b) and everything of an idle
// slot. After RoPE a key carries its position in its values, so where it sits in the padded
// tensor does not matter, only which keys the mask lets through.
//
//   slot 0: 1 cached + 2 new    keys [ 0, k0, n0, n1]   mask [-inf, 0, 0, -inf]   (query n0)
//                                                            [-inf, 0, 0,    0]   (query n1)
//   slot 1: idle                keys [ 0,  0,  0,  0]   mask all -inf
//   slot 2: 2 cached + 2 new    keys [c0, c1, n0, n1]   mask [0, 0, 0, -inf] / [0, 0, 0, 0]
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// What BatchingKvCache::update_and_fetch returns: keys and values B x H x S x D (each request
/// right-aligned, zeros elsewhere) and the additive mask B x 1 x L x S (0 = attend, -inf = not).
struct BatchKvFetch {
  Tensor keys;
  Tensor values;
  Tensor mask;
};

class BatchingKvCache {
 public:
  /// Provided. max_slots request slots (B), all idle, for requests whose caches have H =
  /// num_kv_heads heads of D = head_dim and hold up to max_seq_len positions. Throws
  /// InvalidArgument unless all four are positive.
  BatchingKvCache(int64_t max_slots, int64_t num_kv_heads, int64_t head_dim, int64_t max_seq_len)
      : slots_(static_cast<size_t>(std::max<int64_t>(max_slots, 0))),
        num_heads_(num_kv_heads),
        head_dim_(head_dim),
        max_seq_len_(max_seq_len) {
    if (max_slots <= 0 || num_kv_heads <= 0 || head_dim <= 0 || max_seq_len <= 0) {
      throw InvalidArgument("BatchingKvCache: slots, H, D and max_seq_len must be positive, got " +
                            std::to_string(max_slots) + ", " + std::to_string(num_kv_heads) + ", " +
                            std::to_string(head_dim) + ", " + std::to_string(max_seq_len));
    }
  }

  /// Task 1. Puts a request's cache (usually prefilled with its prompt) into an idle slot; the
  /// slot takes it over. The cache must hold one batch row (B = 1) with this cache's H, D and
  /// max_seq_len: ShapeError otherwise. InvalidArgument if the slot is outside [0, max_slots) or
  /// already holds a request.
  void add_request(KvCache cache, int64_t slot) { TINYLLM_TODO("ch2.6", "Task 1"); }

  /// Task 1. Ends the request in `slot`: its cache is dropped and the slot is idle again.
  /// InvalidArgument if the slot is outside [0, max_slots) or idle.
  void remove_request(int64_t slot) { TINYLLM_TODO("ch2.6", "Task 1"); }

  /// Task 1. One step of the whole batch: keys, values: B x H x L x D with B = max_slots (the rows
  /// of idle slots are ignored). Every active slot b appends its L rows to its own cache, which
  /// then holds S_b positions; S = max S_b over the active slots (0 when none is active). Returns
  ///   keys, values  B x H x S x D: slot b's S_b positions at [S - S_b, S), zeros elsewhere
  ///   mask          B x 1 x L x S: for active b, mask[b, 0, :, S - S_b:] = causal_mask(L, S_b)
  ///                 (query i sees its own keys j <= i + S_b - L); -inf everywhere else
  /// Errors, checked before any cache changes: ShapeError unless both are B x H x L x D with this
  /// cache's B, H, D and L >= 1; ContextLengthError if a slot would exceed max_seq_len.
  BatchKvFetch update_and_fetch(const Tensor& keys, const Tensor& values) {
    check_new_rows(keys, values);
    TINYLLM_TODO("ch2.6", "Task 1");
  }

  /// Provided. Ends the request in `slot` like remove_request, but hands its cache back instead of
  /// dropping it (BatchedWeek2Model lends caches to slots for one step). InvalidArgument if the
  /// slot is outside [0, max_slots) or idle.
  KvCache take_request(int64_t slot) {
    check_slot(slot, "take_request");
    std::optional<KvCache>& cache = slots_[static_cast<size_t>(slot)];
    if (!cache) {
      throw InvalidArgument("BatchingKvCache::take_request: slot " + std::to_string(slot) +
                            " is idle");
    }
    KvCache out = std::move(*cache);
    cache.reset();
    return out;
  }

  int64_t max_slots() const { return static_cast<int64_t>(slots_.size()); }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t max_seq_len() const { return max_seq_len_; }
  /// Whether a request occupies `slot` (InvalidArgument outside [0, max_slots)).
  bool is_active(int64_t slot) const {
    check_slot(slot, "is_active");
    return slots_[static_cast<size_t>(slot)].has_value();
  }
  /// S_b: the positions cached for the request in `slot` (InvalidArgument if idle or outside).
  int64_t offset(int64_t slot) const { return request_cache(slot).offset(); }
  /// The cache of the request in `slot` (InvalidArgument if idle or outside).
  const KvCache& request_cache(int64_t slot) const {
    check_slot(slot, "request_cache");
    if (!slots_[static_cast<size_t>(slot)]) {
      throw InvalidArgument("BatchingKvCache: slot " + std::to_string(slot) + " is idle");
    }
    return *slots_[static_cast<size_t>(slot)];
  }

 private:
  void check_slot(int64_t slot, const std::string& what) const {
    if (slot < 0 || slot >= max_slots()) {
      throw InvalidArgument("BatchingKvCache::" + what + ": slot " + std::to_string(slot) +
                            " is outside [0, " + std::to_string(max_slots()) + ")");
    }
  }

  /// Provided. The checks of update_and_fetch (see there).
  void check_new_rows(const Tensor& k, const Tensor& v) const {
    if (k.ndim() != 4 || k.shape() != v.shape() || k.dim(0) != max_slots() ||
        k.dim(1) != num_heads_ || k.dim(2) < 1 || k.dim(3) != head_dim_) {
      throw ShapeError("BatchingKvCache::update_and_fetch: keys " + shape_to_string(k.shape()) +
                       " and values " + shape_to_string(v.shape()) +
                       " must both be B x H x L x D = " +
                       shape_to_string({max_slots(), num_heads_, -1, head_dim_}) + " with L >= 1");
    }
    for (int64_t b = 0; b < max_slots(); ++b) {
      const std::optional<KvCache>& cache = slots_[static_cast<size_t>(b)];
      if (cache && cache->offset() + k.dim(2) > max_seq_len_) {
        throw ContextLengthError("BatchingKvCache::update_and_fetch: slot " + std::to_string(b) +
                                 " holds " + std::to_string(cache->offset()) + " positions; " +
                                 std::to_string(k.dim(2)) +
                                 " more exceed max_seq_len = " + std::to_string(max_seq_len_));
      }
    }
  }

  /// Provided. Row b of a B x H x L x D tensor as a 1 x H x L x D tensor (a copy).
  static Tensor batch_row(const Tensor& t, int64_t b) {
    const int64_t n = t.numel() / t.dim(0);
    return Tensor({1, t.dim(1), t.dim(2), t.dim(3)},
                  std::vector<float>(t.data() + b * n, t.data() + (b + 1) * n));
  }

  std::vector<std::optional<KvCache>> slots_;  // slot b: the request's cache, or idle
  int64_t num_heads_, head_dim_, max_seq_len_;
};

}  // namespace tinyllm
