// Chapter 1.3: grouped-query attention (GQA) and causal masks.
//
// You write (book/week1/ch1_3_gqa.md):
//   Task 1  scaled_dot_product_attention_grouped with no mask or an additive mask
//   Task 2  causal_mask (bottom-right aligned) and the causal case of the grouped attention
//   Task 3  the Qwen2 attention block (qwen2_attention.hpp)
//
// H_q query heads share H key/value heads: query head h_q reads KV head h_q / (H_q / H), so
// consecutive query heads form a group. K and V are never copied H_q / H times.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include <tinyllm/ch1_1_attention/attention.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// How attention scores are masked: not at all, causally (computed from L and S), or with an
/// additive tensor broadcastable to N.. x H_q x L x S.
struct AttentionMask {
  enum class Kind { None, Causal, Additive };
  Kind kind = Kind::None;
  Tensor additive;  // only for Kind::Additive

  static AttentionMask none() { return {Kind::None, Tensor()}; }
  static AttentionMask causal() { return {Kind::Causal, Tensor()}; }
  static AttentionMask from(Tensor additive) { return {Kind::Additive, std::move(additive)}; }
};

/// Task 2. The additive causal mask, L x S, bottom-right aligned: the last query row is the last
/// token, so query row i (of L) may see key j (of S) iff j <= i + (S - L). Entry (i, j) is 0 where
/// it may, -inf where not:
///   causal_mask(3, 5) = [[0, 0, 0, -inf, -inf],
///                        [0, 0, 0,    0, -inf],
///                        [0, 0, 0,    0,    0]]
/// This differs from PyTorch's is_causal, which aligns top-left (j <= i).
/// Throws ShapeError if L or S is negative or L > S (a query row would see no key at all).
inline Tensor causal_mask(int64_t L, int64_t S) {
  if (L < 0 || S < 0 || L > S) {
    throw ShapeError("causal_mask: need 0 <= L <= S, got L = " + std::to_string(L) +
                     ", S = " + std::to_string(S));
  }
  TINYLLM_TODO("ch1.3", "Task 2");
}

/// Task 1 (Task 2 adds the causal case). Grouped-query attention:
///   query: N.. x H_q x L x D, key and value: N.. x H x S x D (the same N..), H_q a multiple of H
///   -> out: N.. x H_q x L x D
///   out[.., h_q, :, :] = softmax(Q K^T * scale + M) V
///     with Q = query[.., h_q], K = key[.., h_q / (H_q / H)], V = value[.., same KV head]
/// scale defaults to 1/sqrt(D). mask: none; AttentionMask::causal() (use causal_mask(L, S)); or an
/// additive tensor broadcastable to N.. x H_q x L x S (e.g. L x S, H_q x L x S). A fully masked
/// query row gives zeros (ch1.1's softmax).
/// Throws ShapeError for mismatched ranks, N.., D or S, H_q not a multiple of H, or a mask that
/// does not broadcast (a causal mask with L > S included).
inline Tensor scaled_dot_product_attention_grouped(
    const Tensor& query, const Tensor& key, const Tensor& value,
    std::optional<float> scale = std::nullopt, const AttentionMask& mask = AttentionMask::none()) {
  require_min_rank(query, 3, "grouped attention: query (N.. x H_q x L x D)");
  if (key.ndim() != query.ndim() || value.shape() != key.shape() || key.dim(-1) != query.dim(-1) ||
      !std::equal(query.shape().begin(), query.shape().end() - 3, key.shape().begin())) {
    throw ShapeError("grouped attention: query " + shape_to_string(query.shape()) + ", key " +
                     shape_to_string(key.shape()) + " and value " + shape_to_string(value.shape()) +
                     " must be N.. x H_q x L x D, N.. x H x S x D and N.. x H x S x D");
  }
  const int64_t num_heads = query.dim(-3), num_kv_heads = key.dim(-3);
  if (num_kv_heads == 0 || num_heads % num_kv_heads != 0) {
    throw ShapeError("grouped attention: H_q = " + std::to_string(num_heads) +
                     " query heads is not a multiple of H = " + std::to_string(num_kv_heads) +
                     " key/value heads");
  }
  Shape scores_shape = query.shape();
  scores_shape.back() = key.dim(-2);  // N.. x H_q x L x S
  if (mask.kind == AttentionMask::Kind::Additive &&
      !broadcastable(mask.additive.shape(), scores_shape)) {
    throw ShapeError("grouped attention: mask " + shape_to_string(mask.additive.shape()) +
                     " does not broadcast to the scores " + shape_to_string(scores_shape));
  }
  if (mask.kind == AttentionMask::Kind::Causal) {
    TINYLLM_TODO("ch1.3", "Task 2");
  }
  TINYLLM_TODO("ch1.3", "Task 1");
}

}  // namespace tinyllm
