// Chapter 1.2: rotary positional encoding (RoPE).
//
// You write (book/week1/ch1_2_rope.md):
//   Task 1  the cos/sin tables, the loop over positions, the traditional (adjacent pairs) rotation
//   Task 2  the half-split rotation that Qwen2 uses (pairs i and i + D/2)
//
// x is N x L x H x D: the sequence axis comes before the heads, as right after the q/k projections.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

class RoPE {
 public:
  /// Task 1. dims = D (even), max_seq_len positions p in [0, max_seq_len), and the base (Qwen2:
  /// "rope_theta"). Precomputes, for every position p and frequency index i in [0, D/2):
  ///   inv_freq[i] = base^(-2i / D),   angle[p][i] = p * inv_freq[i]
  /// and stores cos(angle) and sin(angle) in the max_seq_len x D/2 tables cos_ and sin_ (allocated
  /// below). Compute the angle in double: in float, p * inv_freq loses about 1e-7 * p radians.
  /// traditional selects the pairing used by forward (Task 1: adjacent pairs; Task 2: half split).
  /// Throws ShapeError if dims is not a positive even number, InvalidArgument if max_seq_len or
  /// base <= 0.
  RoPE(int64_t dims, int64_t max_seq_len, float base = 10000.0f, bool traditional = false)
      : dims_(dims), max_seq_len_(max_seq_len), traditional_(traditional) {
    if (dims <= 0 || dims % 2 != 0) {
      throw ShapeError("RoPE: dims (the head dim D) must be a positive even number, got " +
                       std::to_string(dims));
    }
    if (max_seq_len <= 0 || !(base > 0.0f)) {
      throw InvalidArgument("RoPE: max_seq_len and base must be positive, got " +
                            std::to_string(max_seq_len) + " and " + std::to_string(base));
    }
    cos_ = Tensor({max_seq_len, dims / 2});
    sin_ = Tensor({max_seq_len, dims / 2});
    // SOLUTION BEGIN ch1.2 Task 1
    MatrixMap cos = cos_.matrix(0), sin = sin_.matrix(0);
    for (int64_t i = 0; i < dims / 2; ++i) {
      const double inv_freq =
          std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / dims);
      for (int64_t p = 0; p < max_seq_len; ++p) {
        const double angle = static_cast<double>(p) * inv_freq;
        cos(p, i) = static_cast<float>(std::cos(angle));
        sin(p, i) = static_cast<float>(std::sin(angle));
      }
    }
    // SOLUTION END
  }

  /// x: N x L x H x D -> N x L x H x D. Token l of every batch row sits at position offset + l
  /// (offset > 0 when earlier tokens were processed before, e.g. with a KV cache). Throws
  /// ShapeError for a wrong rank or D, InvalidArgument if offset < 0 or offset + L > max_seq_len.
  Tensor forward(const Tensor& x, int64_t offset = 0) const {
    if (x.ndim() != 4) {
      throw ShapeError("RoPE: x must be N x L x H x D, got shape " + shape_to_string(x.shape()));
    }
    return forward(x, std::vector<int64_t>(x.dim(0), offset));
  }

  /// x: N x L x H x D, offsets: one per batch row (N values): token l of row n sits at
  /// offsets[n] + l. Needed when rows of a batch are at different points of their sequences
  /// (continuous batching, week 2). Throws ShapeError for a wrong rank, D or number of offsets,
  /// InvalidArgument for a position outside [0, max_seq_len).
  Tensor forward(const Tensor& x, const std::vector<int64_t>& offsets) const {
    if (x.ndim() != 4 || x.dim(3) != dims_) {
      throw ShapeError("RoPE: x must be N x L x H x D with D = " + std::to_string(dims_) +
                       ", got shape " + shape_to_string(x.shape()));
    }
    if (static_cast<int64_t>(offsets.size()) != x.dim(0)) {
      throw ShapeError("RoPE: got " + std::to_string(offsets.size()) + " offsets for a batch of " +
                       std::to_string(x.dim(0)) + " rows");
    }
    for (int64_t offset : offsets) {
      if (offset < 0 || offset + x.dim(1) > max_seq_len_) {
        throw InvalidArgument("RoPE: positions " + std::to_string(offset) + ".." +
                              std::to_string(offset + x.dim(1) - 1) +
                              " are outside [0, max_seq_len = " + std::to_string(max_seq_len_) +
                              ")");
      }
    }
    return rotate(x, offsets);
  }

  int64_t dims() const { return dims_; }
  int64_t max_seq_len() const { return max_seq_len_; }
  bool traditional() const { return traditional_; }

 private:
  /// Task 1. The loop over tokens: for batch row n and token l, the H x D matrix of that token's
  /// heads (x.matrix(n * L + l)) is rotated by position offsets[n] + l with rotate_traditional or
  /// rotate_half_split. Inputs are already validated. Returns a new N x L x H x D tensor.
  Tensor rotate(const Tensor& x, const std::vector<int64_t>& offsets) const {
    // SOLUTION BEGIN ch1.2 Task 1
    Tensor out(x.shape());
    const int64_t n = x.dim(0), l = x.dim(1);
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t t = 0; t < l; ++t) {
        const int64_t token = b * l + t;
        if (traditional_) {
          rotate_traditional(x.matrix(token), out.matrix(token), offsets[b] + t);
        } else {
          rotate_half_split(x.matrix(token), out.matrix(token), offsets[b] + t);
        }
      }
    }
    return out;
    // SOLUTION END
  }

  /// Task 1. Traditional RoPE on one token: x and out are H x D (one row per head), position p.
  /// Each head's vector is split into adjacent pairs (x[2i], x[2i+1]), i in [0, D/2), rotated by
  /// angle[p][i]:
  ///   out[2i]   = x[2i] * cos - x[2i+1] * sin
  ///   out[2i+1] = x[2i] * sin + x[2i+1] * cos
  void rotate_traditional(ConstMatrixMap x, MatrixMap out, int64_t position) const {
    // SOLUTION BEGIN ch1.2 Task 1
    const ConstMatrixMap cos = cos_.matrix(0), sin = sin_.matrix(0);
    for (Eigen::Index h = 0; h < x.rows(); ++h) {
      for (int64_t i = 0; i < dims_ / 2; ++i) {
        const float c = cos(position, i), s = sin(position, i);
        const float a = x(h, 2 * i), b = x(h, 2 * i + 1);
        out(h, 2 * i) = a * c - b * s;
        out(h, 2 * i + 1) = a * s + b * c;
      }
    }
    // SOLUTION END
  }

  /// Task 2. Half-split ("non-traditional", GPT-NeoX, Qwen2) RoPE on one token: x and out are H x
  /// D, position p. The pairs are (x[i], x[i + D/2]), i in [0, D/2), i.e. the first half against
  /// the second half:
  ///   out[i]       = x[i] * cos - x[i + D/2] * sin
  ///   out[i + D/2] = x[i] * sin + x[i + D/2] * cos
  void rotate_half_split(ConstMatrixMap x, MatrixMap out, int64_t position) const {
    // SOLUTION BEGIN ch1.2 Task 2
    const int64_t half = dims_ / 2;
    const ConstMatrixMap cos = cos_.matrix(0), sin = sin_.matrix(0);
    const auto c = cos.row(position).array();
    const auto s = sin.row(position).array();
    const auto x1 = x.leftCols(half).array();
    const auto x2 = x.rightCols(half).array();
    out.leftCols(half).array() = x1.rowwise() * c - x2.rowwise() * s;
    out.rightCols(half).array() = x1.rowwise() * s + x2.rowwise() * c;
    // SOLUTION END
  }

  int64_t dims_;
  int64_t max_seq_len_;
  bool traditional_;
  Tensor cos_;  // max_seq_len x D/2
  Tensor sin_;  // max_seq_len x D/2
};

}  // namespace tinyllm
