// Chapter 2.4: flash attention (FlashAttention-2 forward), scalar.
//
// You write (book/week2/ch2_4_flash_attention.md):
//   Task 1  flash_attention_tile: one tile of query rows against every KV tile, online softmax
//   Task 2  tile_visibility and add_tile_mask: causal tile skipping and additive masks
//   Task 3  flash_attention: GQA, batch dims, one call per query tile
//
// The result equals ch1.3's scaled_dot_product_attention_grouped, but the L x S score matrix is
// never built: Br query rows meet Bc keys at a time, and a running max m, a running sum l and a
// rescaled accumulator O per query row carry the softmax from one KV tile to the next. Shapes use
// the course letters: N.. batch dims, H_q query heads, H KV heads, L queries, S keys, D head dim,
// Br x Bc tiles.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_3_gqa/gqa.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

// ---------------------------------------------------------------------------------------------------------------
// Provided: how one (L x S) attention problem is masked, without materialising a mask.

/// The mask of one head's L x S problem. Causal: query row r may see key c iff c <= r +
/// causal_offset (causal_offset = S - L, bottom-right aligned as in ch1.3). Additive: element (r,
/// c) is additive[r * row_stride + c * col_stride], a view into the caller's broadcastable tensor
/// (a stride is 0 along a broadcast axis), so an L x S mask shared by every head is never copied.
struct HeadMask {
  AttentionMask::Kind kind = AttentionMask::Kind::None;
  int64_t causal_offset = 0;
  const float* additive = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 0;

  float at(int64_t r, int64_t c) const { return additive[r * row_stride + c * col_stride]; }
};

/// Where the HeadMask of each of the N.. x H_q problems lies in an AttentionMask broadcastable to
/// scores_shape (N.. x H_q x L x S). Throws ShapeError if the additive tensor does not broadcast,
/// or for a causal mask with L > S (a query row would see no key).
class MaskLayout {
 public:
  MaskLayout(const AttentionMask& mask, const Shape& scores_shape) : mask_(&mask) {
    const int n = static_cast<int>(scores_shape.size());
    const int64_t L = scores_shape[n - 2], S = scores_shape[n - 1];
    if (mask.kind == AttentionMask::Kind::Causal && L > S) {
      throw ShapeError("flash attention: a causal mask needs L <= S, got L = " + std::to_string(L) +
                       ", S = " + std::to_string(S));
    }
    causal_offset_ = S - L;
    if (mask.kind != AttentionMask::Kind::Additive) return;
    const Shape& m = mask.additive.shape();
    if (!broadcastable(m, scores_shape)) {
      throw ShapeError("flash attention: mask " + shape_to_string(m) +
                       " does not broadcast to the scores " + shape_to_string(scores_shape));
    }
    stride_.assign(n, 0);  // stride of each scores axis inside the mask (0 where broadcast)
    const int skip = n - static_cast<int>(m.size());
    int64_t s = 1;
    for (int i = n - 1; i >= skip; --i) {
      stride_[i] = m[i - skip] == 1 ? 0 : s;
      s *= m[i - skip];
    }
    lead_shape_.assign(scores_shape.begin(), scores_shape.end() - 2);
  }

  /// The mask of problem i (row-major index over N.. x H_q).
  HeadMask head(int64_t i) const {
    HeadMask h{mask_->kind, causal_offset_, nullptr, 0, 0};
    if (mask_->kind != AttentionMask::Kind::Additive) return h;
    int64_t offset = 0;
    for (int a = static_cast<int>(lead_shape_.size()) - 1; a >= 0; --a) {
      offset += (i % lead_shape_[a]) * stride_[a];
      i /= lead_shape_[a];
    }
    const size_t n = stride_.size();
    h.additive = mask_->additive.data() + offset;
    h.row_stride = stride_[n - 2];
    h.col_stride = stride_[n - 1];
    return h;
  }

 private:
  const AttentionMask* mask_;
  int64_t causal_offset_ = 0;
  std::vector<int64_t> stride_;
  Shape lead_shape_;
};

/// What a tile of scores needs from the mask: nothing (every score visible), masking, or nothing at
/// all because every score is masked (the tile is skipped: no Q K^T, no exp, no P V).
enum class TileVisibility { Visible, Partial, Skipped };

// ---------------------------------------------------------------------------------------------------------------
// Task 2

/// Task 2. Classifies the tile of query rows [row0, row0 + rows) x keys [col0, col0 + cols).
/// None: Visible. Additive: Partial (the mask must be added). Causal (row r sees c <= r + offset):
/// Skipped if even the tile's last row sees none of its keys (col0 > row0 + rows - 1 + offset),
/// Visible if even its first row sees all of them (col0 + cols - 1 <= row0 + offset), else Partial.
inline TileVisibility tile_visibility(const HeadMask& mask, int64_t row0, int64_t rows,
                                      int64_t col0, int64_t cols) {
  TINYLLM_TODO("ch2.4", "Task 2");
}

/// Task 2. Masks a rows x cols tile of scores whose first element is (row0, col0) of the L x S
/// problem: adds mask.at(r, c) (Additive) or sets the scores a causal row may not see to -inf.
inline void add_tile_mask(Eigen::Ref<Matrix> scores, const HeadMask& mask, int64_t row0,
                          int64_t col0) {
  TINYLLM_TODO("ch2.4", "Task 2");
}

// ---------------------------------------------------------------------------------------------------------------
// Task 1

/// Task 1. FlashAttention-2 for one query tile: q_tile (rows x D, rows <= Br) are rows
/// [row0, row0 + rows) of one head's queries, key and value (S x D) that head's KV. For each KV
/// tile j of block_cols keys (the last one may be shorter): S_j = q_tile K_j^T * scale (masked when
/// the mask says so, skipped when tile_visibility says Skipped), m_new = max(m, rowmax S_j), P =
/// exp(S_j - m_new), l = exp(m - m_new) l + rowsum P, O = exp(m - m_new) O + P V_j. Finally
/// out_tile = O / l. m starts at -inf, l and O at 0; a row that has seen only -inf scores keeps
/// them (exp(-inf - -inf) would be NaN), and a row with l = 0 at the end (fully masked) outputs
/// zeros. With mask.kind == None the mask functions (Task 2) are never called.
inline void flash_attention_tile(Eigen::Ref<const Matrix> q_tile, Eigen::Ref<const Matrix> key,
                                 Eigen::Ref<const Matrix> value, float scale, const HeadMask& mask,
                                 int64_t row0, int block_cols, Eigen::Ref<Matrix> out_tile) {
  TINYLLM_TODO("ch2.4", "Task 1");
}

// ---------------------------------------------------------------------------------------------------------------
// Task 3

/// Provided. Throws unless query (N.. x H_q x L x D), key and value (N.. x H x S x D) fit together,
/// H_q is a multiple of H and the tiles are at least 1 x 1 (InvalidArgument). Returns N.. x H_q x L
/// x S.
inline Shape check_flash_attention_args(const Tensor& query, const Tensor& key, const Tensor& value,
                                        int block_rows, int block_cols) {
  require_min_rank(query, 3, "flash attention: query (N.. x H_q x L x D)");
  if (key.ndim() != query.ndim() || value.shape() != key.shape() || key.dim(-1) != query.dim(-1) ||
      !std::equal(query.shape().begin(), query.shape().end() - 3, key.shape().begin())) {
    throw ShapeError("flash attention: query " + shape_to_string(query.shape()) + ", key " +
                     shape_to_string(key.shape()) + " and value " + shape_to_string(value.shape()) +
                     " must be N.. x H_q x L x D, N.. x H x S x D and N.. x H x S x D");
  }
  if (key.dim(-3) == 0 || query.dim(-3) % key.dim(-3) != 0) {
    throw ShapeError("flash attention: H_q = " + std::to_string(query.dim(-3)) +
                     " query heads is not a multiple of H = " + std::to_string(key.dim(-3)) +
                     " key/value heads");
  }
  if (block_rows < 1 || block_cols < 1) {
    throw InvalidArgument("flash attention: tiles must be at least 1 x 1, got " +
                          std::to_string(block_rows) + " x " + std::to_string(block_cols));
  }
  Shape scores_shape = query.shape();
  scores_shape.back() = key.dim(-2);
  return scores_shape;
}

/// Task 3. Flash attention with grouped-query heads, the drop-in replacement of ch1.3's
/// scaled_dot_product_attention_grouped (same arguments, same result up to float rounding):
///   query: N.. x H_q x L x D, key and value: N.. x H x S x D -> N.. x H_q x L x D.
/// Problem i of N.. x H_q (batch b = i / H_q, head h_q = i % H_q) reads KV problem
/// b * H + h_q / (H_q / H) in place (no copy); its queries are cut into tiles of block_rows rows,
/// each handed to flash_attention_tile with its HeadMask (MaskLayout::head(i)). scale defaults to
/// 1/sqrt(D); mask as in ch1.3 (none, causal bottom-right, additive broadcastable).
inline Tensor flash_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                              std::optional<float> scale = std::nullopt,
                              const AttentionMask& mask = AttentionMask::none(),
                              int block_rows = 32, int block_cols = 32) {
  const Shape scores_shape = check_flash_attention_args(query, key, value, block_rows, block_cols);
  const MaskLayout layout(mask, scores_shape);
  TINYLLM_TODO("ch2.4", "Task 3");
}

}  // namespace tinyllm
