// Chapter 2.1, Task 1: the key-value cache of one attention layer.
//
// You write (book/week2/ch2_1_kv_cache.md):
//   Task 1  KvCache: append (L' new positions), fetch (all S), rewind, reserve (the growth policy)
//   Task 2  the Week 2 model that uses one cache per layer (qwen2_week2.hpp)
//   Task 3  generation that prefills once, then decodes one token at a time
//           (generate_with_kv_cache.hpp)
//
// Without a cache, generating token t recomputes the keys and values of all t earlier tokens in
// every layer. They never change (a token's K and V depend only on the tokens before it), so a
// cache keeps them: each step computes K and V for the L' new tokens only and appends them.
//
// Layout: B x H x S x D (after the head transpose, as grouped attention wants it), stored in a
// buffer of B x H x capacity x D floats. Costs (per layer, per call):
//   append  O(B H L' D): the new rows are copied once into free capacity; when the capacity runs
//           out it doubles (capped at max_seq_len), so over a whole sequence of S positions the
//           re-copies add up to less than 2 S rows: amortised O(1) per position, never quadratic.
//   fetch   O(B H S D): keys and values are returned as two contiguous B x H x S x D tensors (a
//           copy: the S rows of one head are not contiguous with the next head's in the buffer).
//           Attention itself reads all S keys and values of every head anyway, so the copy at
//           most doubles the attention's memory traffic. keys_of / values_of give zero-copy
//           S x D views for kernels that can take them (flash attention, chapter 2.4).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// The cached keys and values of a layer after an update: both B x H x S x D, S = offset().
struct KvFetch {
  Tensor keys;
  Tensor values;
};

class KvCache {
 public:
  /// Provided. An empty cache for B = batch rows of H = num_kv_heads heads of D = head_dim, able to
  /// hold up to max_seq_len positions (the model's context). Nothing is allocated until the first
  /// update. Throws InvalidArgument unless all four are positive.
  KvCache(int64_t batch, int64_t num_kv_heads, int64_t head_dim, int64_t max_seq_len)
      : batch_(batch), num_heads_(num_kv_heads), head_dim_(head_dim), max_seq_len_(max_seq_len) {
    if (batch <= 0 || num_kv_heads <= 0 || head_dim <= 0 || max_seq_len <= 0) {
      throw InvalidArgument("KvCache: B, H, D and max_seq_len must be positive, got " +
                            std::to_string(batch) + ", " + std::to_string(num_kv_heads) + ", " +
                            std::to_string(head_dim) + ", " + std::to_string(max_seq_len));
    }
  }

  /// Provided. Appends L' new positions and returns all S = offset() + L' cached ones:
  ///   new_keys, new_values: B x H x L' x D (L' >= 1)  ->  KvFetch{keys, values}: B x H x S x D
  /// = append(new_keys, new_values), then fetch(). Errors: those of append.
  KvFetch update_and_fetch(const Tensor& new_keys, const Tensor& new_values) {
    append(new_keys, new_values);
    return fetch();
  }

  /// Task 1. Appends L' new positions: new_keys, new_values B x H x L' x D (L' >= 1). Position s
  /// < offset() stays what earlier calls appended (oldest first); the new ones become positions
  /// offset() .. offset() + L' - 1. Grow the buffers with reserve() when they are full, copy the
  /// new rows in, advance the offset. A model that attends through the zero-copy keys_of /
  /// values_of views (the engine, chapter 2.5's kernel) calls only this, never copying S rows.
  /// Errors, checked before anything changes: ShapeError unless both are rank 4 with the cache's
  /// B, H and D and the same L' >= 1; ContextLengthError if S would exceed max_seq_len.
  void append(const Tensor& new_keys, const Tensor& new_values) {
    check_new_rows(new_keys, new_values);
    // SOLUTION BEGIN ch2.1 Task 1
    const int64_t new_len = new_keys.dim(2);
    reserve(offset_ + new_len);
    for (int64_t m = 0; m < batch_ * num_heads_; ++m) {  // m = b * H + h
      const size_t src = static_cast<size_t>(m * new_len * head_dim_);
      const size_t dst = static_cast<size_t>((m * capacity_ + offset_) * head_dim_);
      const size_t count = static_cast<size_t>(new_len * head_dim_);
      std::memcpy(keys_.data() + dst, new_keys.data() + src, count * sizeof(float));
      std::memcpy(values_.data() + dst, new_values.data() + src, count * sizeof(float));
    }
    offset_ += new_len;
    // SOLUTION END
  }

  /// Task 1. All S = offset() cached positions as two contiguous B x H x S x D tensors (a copy of
  /// the S rows of every (b, h): what chapter 1.3's attention takes).
  KvFetch fetch() const {
    // SOLUTION BEGIN ch2.1 Task 1
    KvFetch out{Tensor({batch_, num_heads_, offset_, head_dim_}),
                Tensor({batch_, num_heads_, offset_, head_dim_})};
    for (int64_t m = 0; m < batch_ * num_heads_; ++m) {
      out.keys.matrix(m) = keys_of(m / num_heads_, m % num_heads_);
      out.values.matrix(m) = values_of(m / num_heads_, m % num_heads_);
    }
    return out;
    // SOLUTION END
  }

  /// Task 1. Forgets the newest n positions (speculative decoding rejects drafted tokens this
  /// way): offset() drops by n and the next update overwrites them. The capacity is kept.
  /// rewind(0) does nothing. Throws InvalidArgument if n < 0 or n > offset().
  void rewind(int64_t n) {
    // Nothing needs to be erased: positions >= offset() are free capacity.
    // SOLUTION BEGIN ch2.1 Task 1
    if (n < 0 || n > offset_) {
      throw InvalidArgument("KvCache::rewind: cannot drop " + std::to_string(n) + " of " +
                            std::to_string(offset_) + " cached positions");
    }
    offset_ -= n;
    // SOLUTION END
  }

  /// S: how many positions are cached (the position the next new token will have).
  int64_t offset() const { return offset_; }
  /// How many positions fit before the buffers grow again.
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t max_seq_len() const { return max_seq_len_; }

  /// Zero-copy S x D views of the cached keys / values of batch row b, KV head h (valid until the
  /// next update, which may move the buffers).
  ConstMatrixMap keys_of(int64_t b, int64_t h) const { return view(keys_, b, h); }
  ConstMatrixMap values_of(int64_t b, int64_t h) const { return view(values_, b, h); }

 private:
  /// Provided. The checks of append (see there).
  void check_new_rows(const Tensor& k, const Tensor& v) const {
    if (k.ndim() != 4 || k.shape() != v.shape() || k.dim(0) != batch_ || k.dim(1) != num_heads_ ||
        k.dim(2) < 1 || k.dim(3) != head_dim_) {
      throw ShapeError("KvCache::append: new keys " + shape_to_string(k.shape()) + " and values " +
                       shape_to_string(v.shape()) + " must both be B x H x L' x D = " +
                       shape_to_string({batch_, num_heads_, -1, head_dim_}) + " with L' >= 1");
    }
    if (offset_ + k.dim(2) > max_seq_len_) {
      throw ContextLengthError(
          "KvCache::append: " + std::to_string(offset_) + " cached + " + std::to_string(k.dim(2)) +
          " new positions exceed max_seq_len = " + std::to_string(max_seq_len_));
    }
  }

  /// Task 1. Makes room for at least `needed` positions (needed <= max_seq_len): if the capacity
  /// is smaller, the new capacity is max(needed, 2 * capacity, 16) capped at max_seq_len; the S
  /// cached rows of every (b, h) move to their place in the new B x H x capacity x D buffers.
  void reserve(int64_t needed) {
    // Row s of (b, h) lives at float offset ((b * H + h) * capacity + s) * D of keys_ / values_.
    // SOLUTION BEGIN ch2.1 Task 1
    if (needed <= capacity_) return;
    const int64_t grown =
        std::min(max_seq_len_, std::max({needed, 2 * capacity_, static_cast<int64_t>(16)}));
    const size_t row = static_cast<size_t>(head_dim_);
    std::vector<float> keys(static_cast<size_t>(batch_ * num_heads_ * grown) * row);
    std::vector<float> values(keys.size());
    for (int64_t m = 0; m < batch_ * num_heads_; ++m) {
      const size_t src = static_cast<size_t>(m * capacity_) * row;
      const size_t dst = static_cast<size_t>(m * grown) * row;
      std::copy_n(keys_.begin() + src, offset_ * head_dim_, keys.begin() + dst);
      std::copy_n(values_.begin() + src, offset_ * head_dim_, values.begin() + dst);
    }
    keys_ = std::move(keys);
    values_ = std::move(values);
    capacity_ = grown;
    // SOLUTION END
  }

  ConstMatrixMap view(const std::vector<float>& buffer, int64_t b, int64_t h) const {
    if (b < 0 || b >= batch_ || h < 0 || h >= num_heads_) {
      throw InvalidArgument("KvCache: no batch row " + std::to_string(b) + ", head " +
                            std::to_string(h) + " in a cache of " + std::to_string(batch_) + " x " +
                            std::to_string(num_heads_));
    }
    const float* first =
        offset_ == 0 ? nullptr : buffer.data() + ((b * num_heads_ + h) * capacity_) * head_dim_;
    return ConstMatrixMap(first, offset_, head_dim_);
  }

  int64_t batch_, num_heads_, head_dim_, max_seq_len_;
  int64_t offset_ = 0;                // S, the cached positions
  int64_t capacity_ = 0;              // positions the buffers hold
  std::vector<float> keys_, values_;  // B x H x capacity x D each, row-major
};

}  // namespace tinyllm
