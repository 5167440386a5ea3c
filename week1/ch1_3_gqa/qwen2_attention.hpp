// Chapter 1.3, Task 3: the attention block of a Qwen2 decoder layer.
//
// x (B x L x E) -> q, k, v projections (with biases) -> half-split RoPE on q and k -> grouped-query
// attention in f32 -> merge heads -> output projection (no bias). Book: book/week1/ch1_3_gqa.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_2_rope/rope.hpp>
#include <tinyllm/ch1_3_gqa/gqa.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// The weights of one Qwen2 attention block, in the checkpoint's layout (out_features x
/// in_features): wq: (H_q*D) x E, bq: H_q*D; wk, wv: (H*D) x E, bk, bv: H*D; wo: E x (H_q*D), no
/// output bias.
struct Qwen2AttentionWeights {
  Tensor wq, wk, wv, wo, bq, bk, bv;
};

class Qwen2MultiHeadAttention {
 public:
  /// E = hidden_size, H_q = num_heads, H = num_kv_heads, D = E / H_q. The RoPE (half-split, base
  /// theta) covers positions [0, max_seq_len). Throws ShapeError if E is not a multiple of H_q, H_q
  /// not a multiple of H, D is odd, or a weight or bias has the wrong shape.
  Qwen2MultiHeadAttention(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                          Qwen2AttentionWeights weights, int64_t max_seq_len = 32768,
                          float theta = 1000000.0f)
      : hidden_size_(hidden_size),
        num_heads_(num_heads),
        num_kv_heads_(num_kv_heads),
        head_dim_(checked_head_dim(hidden_size, num_heads, num_kv_heads)),
        w_(std::move(weights)),
        rope_(head_dim_, max_seq_len, theta, /*traditional=*/false) {
    const int64_t q_dim = num_heads * head_dim_, kv_dim = num_kv_heads * head_dim_;
    check_shape(w_.wq, {q_dim, hidden_size}, "Qwen2MultiHeadAttention: wq");
    check_shape(w_.wk, {kv_dim, hidden_size}, "Qwen2MultiHeadAttention: wk");
    check_shape(w_.wv, {kv_dim, hidden_size}, "Qwen2MultiHeadAttention: wv");
    check_shape(w_.wo, {hidden_size, q_dim}, "Qwen2MultiHeadAttention: wo");
    check_shape(w_.bq, {q_dim}, "Qwen2MultiHeadAttention: bq");
    check_shape(w_.bk, {kv_dim}, "Qwen2MultiHeadAttention: bk");
    check_shape(w_.bv, {kv_dim}, "Qwen2MultiHeadAttention: bv");
  }

  /// Task 3. x: B x L x E -> B x L x E. The tokens of x sit at positions 0..L-1.
  ///   q    = linear(x, wq, bq) as B x L x H_q x D
  ///   k, v = linear(x, wk, bk), linear(x, wv, bv) as B x L x H x D
  ///   q, k = rope(q), rope(k)          (half-split, offset 0; v is not rotated)
  ///   o    = scaled_dot_product_attention_grouped(q, k, v, 1/sqrt(D), mask)
  ///          with q, k, v transposed to B x H_q x L x D and B x H x L x D
  ///   out  = linear(o as B x L x (H_q*D), wo)   (no bias)
  /// mask: none, AttentionMask::causal() (what a decoder uses), or additive, broadcastable to
  /// B x H_q x L x L.
  /// Throws ShapeError unless x is B x L x E; InvalidArgument (from RoPE) if L > max_seq_len.
  Tensor forward(const Tensor& x, const AttentionMask& mask = AttentionMask::none()) const {
    if (x.ndim() != 3 || x.dim(2) != hidden_size_) {
      throw ShapeError("Qwen2MultiHeadAttention: x must be B x L x E with E = " +
                       std::to_string(hidden_size_) + ", got shape " + shape_to_string(x.shape()));
    }
    TINYLLM_TODO("ch1.3", "Task 3");
  }

  int64_t head_dim() const { return head_dim_; }

 private:
  static int64_t checked_head_dim(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads) {
    if (hidden_size <= 0 || num_heads <= 0 || num_kv_heads <= 0 || hidden_size % num_heads != 0 ||
        num_heads % num_kv_heads != 0 || (hidden_size / num_heads) % 2 != 0) {
      throw ShapeError(
          "Qwen2MultiHeadAttention: need E % H_q == 0, H_q % H == 0 and an even D = E / H_q; got E "
          "= " +
          std::to_string(hidden_size) + ", H_q = " + std::to_string(num_heads) +
          ", H = " + std::to_string(num_kv_heads));
    }
    return hidden_size / num_heads;
  }

  int64_t hidden_size_;
  int64_t num_heads_;
  int64_t num_kv_heads_;
  int64_t head_dim_;
  Qwen2AttentionWeights w_;
  RoPE rope_;
};

}  // namespace tinyllm
