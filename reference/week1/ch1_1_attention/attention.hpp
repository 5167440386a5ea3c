// Chapter 1.1: attention and multi-head attention.
//
// You write (book/week1/ch1_1_attention.md):
//   Task 1  softmax, scaled_dot_product_attention_simple
//   Task 2  linear, SimpleMultiHeadAttention::forward
//
// Shapes use the course letters: N.. leading batch dims, L query length, S key/value length, D head
// dim, E hidden size, H heads, I/O input/output features of a linear layer. The checks that reject
// bad shapes are provided (they are not the exercise); every exercise body starts after them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

// ---------------------------------------------------------------------------------------------------------------
// Provided helpers (not exercises).

/// Throws ShapeError "<what>: expected rank >= <min_rank>, got shape [..]" unless t.ndim() >=
/// min_rank.
inline void require_min_rank(const Tensor& t, int min_rank, const std::string& what) {
  if (t.ndim() < min_rank) {
    throw ShapeError(what + ": expected rank >= " + std::to_string(min_rank) + ", got shape " +
                     shape_to_string(t.shape()));
  }
}

/// True if `from` broadcasts to `to` (NumPy rules): align the shapes at the right; every dimension
/// of `from` is 1 or equal to the matching one of `to`; `from` may have fewer dimensions (missing
/// ones count as 1).
inline bool broadcastable(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  const size_t skip = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i] != 1 && from[i] != to[skip + i]) return false;
  }
  return true;
}

/// A copy of `t` broadcast to `shape` (see broadcastable), e.g. an L x S mask repeated for every
/// N.. x H. Throws ShapeError naming `what` if the shapes are incompatible.
inline Tensor broadcast_to(const Tensor& t, const Shape& shape, const std::string& what) {
  if (!broadcastable(t.shape(), shape)) {
    throw ShapeError(what + ": shape " + shape_to_string(t.shape()) + " cannot be broadcast to " +
                     shape_to_string(shape));
  }
  if (t.shape() == shape) return t;
  const size_t n = shape.size(), skip = n - t.shape().size();
  std::vector<int64_t> stride(n, 0);  // stride of each output axis in `t` (0 where broadcast)
  for (int64_t i = static_cast<int64_t>(n) - 1, s = 1; i >= static_cast<int64_t>(skip); --i) {
    const int64_t dim = t.shape()[i - skip];
    stride[i] = dim == 1 ? 0 : s;
    s *= dim;
  }
  Tensor out(shape);
  std::vector<int64_t> index(n, 0);
  for (int64_t flat = 0; flat < out.numel(); ++flat) {
    int64_t src = 0;
    for (size_t i = 0; i < n; ++i) src += index[i] * stride[i];
    out.data()[flat] = t.data()[src];
    for (int64_t i = static_cast<int64_t>(n) - 1; i >= 0; --i) {
      if (++index[i] < shape[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Task 1

/// Task 1. Softmax over the last axis of x (any rank >= 1), computed stably:
///   out[.., j] = exp(x[.., j] - m) / sum_k exp(x[.., k] - m),   m = max_k x[.., k]
/// Subtracting the row maximum keeps exp() from overflowing (x = 1000 would give inf / inf = NaN).
/// A row that is entirely -inf (every key masked out) has no distribution: its output is all zeros,
/// not NaN. Returns a tensor of x's shape.
inline Tensor softmax(const Tensor& x) {
  require_min_rank(x, 1, "softmax");
  // SOLUTION BEGIN ch1.1 Task 1
  Tensor out = x;
  MatrixMap rows = out.rows();
  for (Eigen::Index r = 0; r < rows.rows(); ++r) {
    auto row = rows.row(r);
    const float max = row.maxCoeff();
    if (max == -std::numeric_limits<float>::infinity()) {
      row.setZero();  // fully masked row: defined as zeros
      continue;
    }
    row = (row.array() - max).exp();
    row /= row.sum();
  }
  return out;
  // SOLUTION END
}

/// Task 1. Scaled dot-product attention, one (L x D) problem per leading index:
///   out = softmax(Q K^T * scale + M) V
/// query: N.. x L x D, key: N.. x S x D, value: N.. x S x D (the same N..) -> N.. x L x D.
/// scale defaults to 1/sqrt(D). mask (optional) is additive (0 keeps a score, -inf removes it, any
/// float shifts it) and broadcastable to N.. x L x S, e.g. L x S or 1 x L x S. A query row whose
/// keys are all masked out gets an all-zero output row (see softmax). Throws ShapeError for
/// mismatched ranks, leading dims, S or D, or a mask that does not broadcast.
inline Tensor scaled_dot_product_attention_simple(const Tensor& query, const Tensor& key,
                                                  const Tensor& value,
                                                  std::optional<float> scale = std::nullopt,
                                                  const Tensor* mask = nullptr) {
  require_min_rank(query, 2, "attention: query (N.. x L x D)");
  if (key.ndim() != query.ndim() || value.shape() != key.shape() || key.dim(-1) != query.dim(-1) ||
      !std::equal(query.shape().begin(), query.shape().end() - 2, key.shape().begin())) {
    throw ShapeError("attention: query " + shape_to_string(query.shape()) + ", key " +
                     shape_to_string(key.shape()) + " and value " + shape_to_string(value.shape()) +
                     " must be N.. x L x D, N.. x S x D and N.. x S x D");
  }
  Shape scores_shape = query.shape();
  scores_shape.back() = key.dim(-2);  // N.. x L x S
  if (mask != nullptr && !broadcastable(mask->shape(), scores_shape)) {
    throw ShapeError("attention: mask " + shape_to_string(mask->shape()) +
                     " does not broadcast to the scores " + shape_to_string(scores_shape));
  }
  // SOLUTION BEGIN ch1.1 Task 1
  const float s = scale.value_or(1.0f / std::sqrt(static_cast<float>(query.dim(-1))));
  Tensor scores(scores_shape);
  for (int64_t i = 0; i < query.num_matrices(); ++i) {
    scores.matrix(i).noalias() = s * (query.matrix(i) * key.matrix(i).transpose());
  }
  if (mask != nullptr) {
    const Tensor m = broadcast_to(*mask, scores_shape, "attention mask");
    scores.rows() += m.rows();
  }
  const Tensor probs = softmax(scores);
  Tensor out(query.shape());
  for (int64_t i = 0; i < query.num_matrices(); ++i) {
    out.matrix(i).noalias() = probs.matrix(i) * value.matrix(i);
  }
  return out;
  // SOLUTION END
}

// ---------------------------------------------------------------------------------------------------------------
// Task 2

/// Task 2. A linear layer y = x W^T + b, with PyTorch's weight layout (out_features x in_features).
/// x: N.. x I (any rank >= 1), weight: O x I, bias (optional): O -> N.. x O.
/// Throws ShapeError if x's last dim is not I or the bias is not a vector of O values.
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor* bias = nullptr) {
  require_min_rank(x, 1, "linear: x (N.. x I)");
  if (weight.ndim() != 2 || weight.dim(1) != x.dim(-1)) {
    throw ShapeError("linear: weight " + shape_to_string(weight.shape()) +
                     " must be O x I with I = " + std::to_string(x.dim(-1)) +
                     " (the last dim of x " + shape_to_string(x.shape()) + ")");
  }
  if (bias != nullptr) check_shape(*bias, {weight.dim(0)}, "linear: bias");
  // SOLUTION BEGIN ch1.1 Task 2
  Shape out_shape = x.shape();
  out_shape.back() = weight.dim(0);
  Tensor out(out_shape);
  MatrixMap y = out.rows();
  y.noalias() = x.rows() * weight.matrix(0).transpose();
  if (bias != nullptr) y.rowwise() += bias->rows().row(0);
  return out;
  // SOLUTION END
}

/// Multi-head attention without biases (the original Transformer's, as in
/// torch.nn.MultiheadAttention).
class SimpleMultiHeadAttention {
 public:
  /// E = hidden_size, H = num_heads, D = E / H. wq, wk, wv: (H*D) x E; wo: E x (H*D).
  /// Throws ShapeError if E is not a multiple of H or a weight has the wrong shape.
  SimpleMultiHeadAttention(int64_t hidden_size, int64_t num_heads, Tensor wq, Tensor wk, Tensor wv,
                           Tensor wo)
      : hidden_size_(hidden_size),
        num_heads_(num_heads),
        head_dim_(num_heads > 0 ? hidden_size / num_heads : 0),
        wq_(std::move(wq)),
        wk_(std::move(wk)),
        wv_(std::move(wv)),
        wo_(std::move(wo)) {
    if (hidden_size <= 0 || num_heads <= 0 || hidden_size % num_heads != 0) {
      throw ShapeError("SimpleMultiHeadAttention: hidden_size " + std::to_string(hidden_size) +
                       " must be a positive multiple of num_heads " + std::to_string(num_heads));
    }
    check_shape(wq_, {hidden_size, hidden_size}, "SimpleMultiHeadAttention: wq");
    check_shape(wk_, {hidden_size, hidden_size}, "SimpleMultiHeadAttention: wk");
    check_shape(wv_, {hidden_size, hidden_size}, "SimpleMultiHeadAttention: wv");
    check_shape(wo_, {hidden_size, hidden_size}, "SimpleMultiHeadAttention: wo");
  }

  /// Task 2. query: N x L x E, key and value: N x S x E -> N x L x E.
  /// Project with wq/wk/wv, split E into H heads of D (N x L x H x D), move heads before the
  /// sequence (N x H x L x D), attend with scale 1/sqrt(D) and the optional additive mask
  /// (broadcastable to N x H x L x S), move the heads back, merge them (N x L x E) and project with
  /// wo. Throws ShapeError unless query, key and value are rank 3 with the same N, key and value
  /// share S, and all end in E.
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const Tensor* mask = nullptr) const {
    if (query.ndim() != 3 || key.ndim() != 3 || key.shape() != value.shape() ||
        key.dim(0) != query.dim(0) || query.dim(2) != hidden_size_ || key.dim(2) != hidden_size_) {
      throw ShapeError(
          "SimpleMultiHeadAttention: query " + shape_to_string(query.shape()) + ", key " +
          shape_to_string(key.shape()) + " and value " + shape_to_string(value.shape()) +
          " must be N x L x E, N x S x E and N x S x E with E = " + std::to_string(hidden_size_));
    }
    // SOLUTION BEGIN ch1.1 Task 2
    const int64_t n = query.dim(0), l = query.dim(1), s = key.dim(1);
    const Tensor q = linear(query, wq_).reshape({n, l, num_heads_, head_dim_}).transpose(1, 2);
    const Tensor k = linear(key, wk_).reshape({n, s, num_heads_, head_dim_}).transpose(1, 2);
    const Tensor v = linear(value, wv_).reshape({n, s, num_heads_, head_dim_}).transpose(1, 2);
    const Tensor heads =
        scaled_dot_product_attention_simple(q, k, v, std::nullopt, mask);  // N x H x L x D
    return linear(heads.transpose(1, 2).reshape({n, l, hidden_size_}), wo_);
    // SOLUTION END
  }

 private:
  int64_t hidden_size_;
  int64_t num_heads_;
  int64_t head_dim_;
  Tensor wq_, wk_, wv_, wo_;
};

}  // namespace tinyllm
