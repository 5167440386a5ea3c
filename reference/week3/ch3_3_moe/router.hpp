// Chapter 3.3, Task 1: the router of a mixture-of-experts layer.
//
// You write (book/week3/ch3_3_moe.md):
//   Task 1  the router: softmax over the experts, then the top k (this file)
//   Task 2  the MoE block, one token at a time, with the shared expert (moe_block.hpp)
//   Task 3  the grouped computation real engines use: rows sorted by expert (moe_block.hpp)
//   Task 4  the Qwen2-MoE model and its checkpoint (qwen2_moe_model.hpp)
//
// A sparse layer replaces the one big MLP with X small ones ("experts") and a router: a linear
// layer W_router (X x E, the checkpoint's mlp.gate.weight) scores every expert for every token,
// and each token runs only its k best experts. Qwen2-MoE (like Mixtral and Qwen1.5-MoE) routes as
// Hugging Face's Qwen2MoeSparseMoeBlock does:
//
//   logits  = x W_router^T                  N x X
//   probs   = softmax(logits) over X        N x X   (f32)
//   ids     = the k largest probs per row   N x k   (largest first)
//   weights = those probs                   N x k   (norm_topk_prob: divided by their sum)
//
// Softmax comes before the top-k, so without renormalisation a token's k weights sum to less
// than 1 (the share of the probability mass its experts won); Mixtral instead takes the top-k of
// the logits and softmaxes those, which equals the renormalised variant.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include <tinyllm/ch1_1_attention/attention.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// Which k experts each of N tokens runs, and with which weights.
struct Routing {
  int64_t num_tokens = 0;        // N
  int64_t top_k = 0;             // k
  std::vector<int64_t> experts;  // N x k, row-major: token n's experts, largest weight first
  Tensor weights;                // N x k, the weight of each of those experts

  /// The j-th expert (0 <= j < k) of token n.
  int64_t expert(int64_t n, int64_t j) const { return experts[static_cast<size_t>(n * top_k + j)]; }
  /// Its weight.
  float weight(int64_t n, int64_t j) const { return weights.data()[n * top_k + j]; }
};

/// Task 1. Routing from the router's logits: logits N x X (X = number of experts) -> Routing with
/// k = top_k: per row, probs = softmax(logits row) (chapter 1.1's softmax), the k largest probs in
/// descending order with their expert ids; equal probs go to the lower expert id first (ties are
/// broken by the index, so the routing is deterministic; torch.topk leaves that order
/// unspecified). weights = those k probs, divided by their sum when norm_topk_prob (so they sum
/// to 1), else kept as they are.
/// Throws ShapeError unless logits is N x X with N >= 1; InvalidArgument unless 1 <= top_k <= X.
inline Routing top_k_routing(const Tensor& logits, int64_t top_k, bool norm_topk_prob) {
  if (logits.ndim() != 2 || logits.dim(0) < 1 || logits.dim(1) < 1) {
    throw ShapeError("top_k_routing: logits must be N x X (N tokens, X experts), got shape " +
                     shape_to_string(logits.shape()));
  }
  if (top_k < 1 || top_k > logits.dim(1)) {
    throw InvalidArgument("top_k_routing: top_k must be in [1, " + std::to_string(logits.dim(1)) +
                          "] (the number of experts), got " + std::to_string(top_k));
  }
  // SOLUTION BEGIN ch3.3 Task 1
  const int64_t n_tokens = logits.dim(0), n_experts = logits.dim(1);
  const Tensor probs = softmax(logits);
  Routing r{n_tokens, top_k, std::vector<int64_t>(static_cast<size_t>(n_tokens * top_k)),
            Tensor({n_tokens, top_k})};
  std::vector<int64_t> order(static_cast<size_t>(n_experts));
  for (int64_t n = 0; n < n_tokens; ++n) {
    const float* p = probs.data() + n * n_experts;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                      [p](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float sum = 0.0f;
    for (int64_t j = 0; j < top_k; ++j) sum += p[order[static_cast<size_t>(j)]];
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t e = order[static_cast<size_t>(j)];
      r.experts[static_cast<size_t>(n * top_k + j)] = e;
      r.weights.data()[n * top_k + j] = norm_topk_prob ? p[e] / sum : p[e];
    }
  }
  return r;
  // SOLUTION END
}

/// Task 1. The router of a sparse layer: x N x E, w_router X x E ->
/// top_k_routing(linear(x, w_router), top_k, norm_topk_prob).
/// Throws ShapeError unless x is N x E and w_router X x E; the errors of top_k_routing otherwise.
inline Routing route_tokens(const Tensor& x, const Tensor& w_router, int64_t top_k,
                            bool norm_topk_prob) {
  if (x.ndim() != 2 || w_router.ndim() != 2 || w_router.dim(1) != x.dim(1)) {
    throw ShapeError("route_tokens: x must be N x E and w_router X x E, got " +
                     shape_to_string(x.shape()) + " and " + shape_to_string(w_router.shape()));
  }
  // SOLUTION BEGIN ch3.3 Task 1
  return top_k_routing(linear(x, w_router), top_k, norm_topk_prob);
  // SOLUTION END
}

}  // namespace tinyllm
