// Chapter 3.3, Tasks 2 and 3: the sparse MoE block of Qwen2-MoE, first one token at a time, then
// grouped by expert as serving engines run it.
//
//   x N x E ─► router (Task 1) ─► k experts per token ─► each a SwiGLU MLP (chapter 1.4) on that
//          token ─► sum of weight x output ─► + sigmoid(x · w_shared_gate) x shared_expert(x)
//
// Task 2 loops over tokens: token n runs its k experts on its own row. Every expert's weights are
// then read once per token that chose it: for a batch that is up to N x k reads of a small matrix,
// each a matrix-vector product. Task 3 turns the loop around: the N x k (token, expert) pairs are
// sorted by expert, expert e multiplies all of its rows in one product (M_e x E, the rows gathered
// into one matrix), and the results are scattered back to their tokens with their weights. Each
// expert is read once per batch, and the products are matrix-matrix ones (what vLLM's fused_moe,
// MLX's gather_qmm and llama.cpp's mul_mat_id do). Both give the same result up to the order of
// float sums.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch3_3_moe/router.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// Runs expert `expert` on M rows: rows M x E -> M x E. The block passes its Qwen2MLP experts; the
/// engine passes its own (bf16 or quantized) ones.
using ExpertFunction = std::function<Tensor(int64_t expert, const Tensor& rows)>;

/// Task 2. The routed experts, one token at a time: x N x E, routing of the N tokens ->
/// out N x E with out[n] = sum over j < k of routing.weight(n, j) * run_expert(e_j, x[n] as 1 x E),
/// e_j = routing.expert(n, j), accumulated in the order j = 0, 1, .. k-1.
/// Throws ShapeError unless x is N x E with the routing's N.
inline Tensor combine_experts_per_token(const Tensor& x, const Routing& routing,
                                        const ExpertFunction& run_expert) {
  if (x.ndim() != 2 || x.dim(0) != routing.num_tokens) {
    throw ShapeError("combine_experts_per_token: x must be N x E with N = " +
                     std::to_string(routing.num_tokens) + ", got " + shape_to_string(x.shape()));
  }
  TINYLLM_TODO("ch3.3", "Task 2");
}

/// Task 2. The shared expert's share: out N x E += sigmoid(gate_logits[n]) * shared_out[n] for
/// every row n, where shared_out N x E is the shared expert's output and gate_logits N x 1 is
/// x · w_shared_gate (mlp.shared_expert_gate.weight, 1 x E). Every token gets it, scaled by its
/// own gate in (0, 1). Throws ShapeError for other shapes.
inline void add_gated_shared_expert(Tensor& out, const Tensor& shared_out,
                                    const Tensor& gate_logits) {
  if (out.ndim() != 2 || shared_out.shape() != out.shape() ||
      gate_logits.shape() != Shape{out.dim(0), 1}) {
    throw ShapeError(
        "add_gated_shared_expert: out and shared_out must be N x E and gate_logits "
        "N x 1, got " +
        shape_to_string(out.shape()) + ", " + shape_to_string(shared_out.shape()) + ", " +
        shape_to_string(gate_logits.shape()));
  }
  TINYLLM_TODO("ch3.3", "Task 2");
}

/// The (token, expert) pairs sorted by expert. Pair p = n * k + j is token n's j-th choice.
struct ExpertGroups {
  std::vector<int64_t> pairs;    // N x k pair ids: expert 0's, then expert 1's, ...
  std::vector<int64_t> offsets;  // X + 1: expert e's pairs are pairs[offsets[e] .. offsets[e+1])

  /// M_e, how many tokens chose expert e.
  int64_t count(int64_t e) const {
    return offsets[static_cast<size_t>(e) + 1] - offsets[static_cast<size_t>(e)];
  }
};

/// Task 3. Sorts the routing's N x k pairs by expert, stably: within one expert the pairs keep
/// their order (ascending p, so ascending token). A counting sort: count each expert's pairs,
/// prefix sums give offsets, then place every pair. X = num_experts; experts nobody chose get an
/// empty range. Throws InvalidArgument if a routed expert id is outside [0, X).
inline ExpertGroups group_by_expert(const Routing& routing, int64_t num_experts) {
  TINYLLM_TODO("ch3.3", "Task 3");
}

/// Task 3. The routed experts grouped by expert: the result of combine_experts_per_token (up to
/// the order of float sums), computed as
///   groups = group_by_expert(routing, num_experts)
///   for each expert e with M_e > 0:
///     rows = the x rows of its pairs' tokens, gathered into M_e x E (in the groups' order)
///     y = run_expert(e, rows)                        (one product per expert)
///     out[token of pair i] += weight of pair i * y[i]   (scatter: undo the permutation)
/// Throws ShapeError unless x is N x E with the routing's N; group_by_expert's errors otherwise.
inline Tensor combine_experts_grouped(const Tensor& x, const Routing& routing, int64_t num_experts,
                                      const ExpertFunction& run_expert) {
  if (x.ndim() != 2 || x.dim(0) != routing.num_tokens) {
    throw ShapeError("combine_experts_grouped: x must be N x E with N = " +
                     std::to_string(routing.num_tokens) + ", got " + shape_to_string(x.shape()));
  }
  TINYLLM_TODO("ch3.3", "Task 3");
}

/// The three matrices of one SwiGLU expert (chapter 1.4's Qwen2MLP): w_gate, w_up I x E; w_down
/// E x I.
struct MlpWeights {
  Tensor w_gate, w_up, w_down;
};

/// The weights of one sparse layer, in the checkpoint's layout (P = "model.layers.<i>.mlp."):
struct Qwen2MoeWeights {
  Tensor router;                     // X x E, P gate.weight
  std::vector<MlpWeights> experts;   // X experts of I_x = moe_intermediate_size
  std::optional<MlpWeights> shared;  // I_s = shared_expert_intermediate_size (absent when 0)
  Tensor shared_gate;                // 1 x E, P shared_expert_gate.weight (shared expert only)
};

/// The sparse MoE block of one Qwen2-MoE layer (Hugging Face's Qwen2MoeSparseMoeBlock). It fills
/// chapter 2.1's MLP slot (a FeedForward), so the Week 2 decoder layer runs it unchanged.
class Qwen2MoeBlock : public FeedForward {
 public:
  /// Provided. E = hidden_size; X, k, I_x, I_s, norm_topk_prob from `moe`. Each expert (and the
  /// shared one, present iff I_s > 0) becomes a chapter 1.4 Qwen2MLP. Throws ShapeError if a
  /// weight has the wrong shape or the number of experts is not X (or a shared expert is given
  /// or missing against I_s).
  Qwen2MoeBlock(int64_t hidden_size, const MoeConfig& moe, Qwen2MoeWeights weights)
      : hidden_size_(hidden_size),
        top_k_(moe.num_experts_per_tok),
        norm_topk_prob_(moe.norm_topk_prob),
        router_(std::move(weights.router)),
        shared_gate_(std::move(weights.shared_gate)) {
    check_shape(router_, {moe.num_experts, hidden_size}, "Qwen2MoeBlock: router");
    if (static_cast<int64_t>(weights.experts.size()) != moe.num_experts) {
      throw ShapeError("Qwen2MoeBlock: " + std::to_string(weights.experts.size()) +
                       " experts given, the config has " + std::to_string(moe.num_experts));
    }
    for (MlpWeights& w : weights.experts) {
      experts_.emplace_back(hidden_size, moe.moe_intermediate_size, std::move(w.w_gate),
                            std::move(w.w_up), std::move(w.w_down));
    }
    if (weights.shared.has_value() != (moe.shared_expert_intermediate_size > 0)) {
      throw ShapeError(
          "Qwen2MoeBlock: a shared expert must be given iff "
          "shared_expert_intermediate_size > 0 (it is " +
          std::to_string(moe.shared_expert_intermediate_size) + ")");
    }
    if (weights.shared) {
      shared_.emplace(hidden_size, moe.shared_expert_intermediate_size,
                      std::move(weights.shared->w_gate), std::move(weights.shared->w_up),
                      std::move(weights.shared->w_down));
      check_shape(shared_gate_, {1, hidden_size}, "Qwen2MoeBlock: shared_gate");
    }
  }

  /// Provided. The routing of x's rows: route_tokens(x as N x E, router, k, norm_topk_prob).
  Routing route(const Tensor& x) const {
    return route_tokens(x.reshape({-1, hidden_size_}), router_, top_k_, norm_topk_prob_);
  }

  /// Task 2. x: N.. x E -> N.. x E, one token at a time (rows = x as N x E):
  ///   out = combine_experts_per_token(rows, route(rows), expert e = experts_[e].forward)
  ///   with a shared expert: add_gated_shared_expert(out, shared_->forward(rows),
  ///                                                 linear(rows, shared_gate_))
  /// Throws ShapeError if x's last dim is not E.
  Tensor forward_per_token(const Tensor& x) const {
    check_input(x, "Qwen2MoeBlock::forward_per_token");
    TINYLLM_TODO("ch3.3", "Task 2");
  }

  /// Task 3. The same, grouped by expert (what the model runs): combine_experts_grouped instead of
  /// combine_experts_per_token, then the shared expert as in Task 2.
  Tensor forward(const Tensor& x) const override {
    check_input(x, "Qwen2MoeBlock::forward");
    TINYLLM_TODO("ch3.3", "Task 3");
  }

  int64_t num_experts() const { return static_cast<int64_t>(experts_.size()); }
  int64_t top_k() const { return top_k_; }
  const std::vector<Qwen2MLP>& experts() const { return experts_; }
  const std::optional<Qwen2MLP>& shared_expert() const { return shared_; }

 private:
  void check_input(const Tensor& x, const std::string& what) const {
    if (x.ndim() < 1 || x.dim(-1) != hidden_size_) {
      throw ShapeError(what + ": x must be N.. x E with E = " + std::to_string(hidden_size_) +
                       ", got shape " + shape_to_string(x.shape()));
    }
  }
  ExpertFunction run_expert() const {
    return [this](int64_t e, const Tensor& rows) {
      return experts_[static_cast<size_t>(e)].forward(rows);
    };
  }
  void add_shared_expert(const Tensor& rows, Tensor& out) const {
    if (shared_) add_gated_shared_expert(out, shared_->forward(rows), linear(rows, shared_gate_));
  }

  int64_t hidden_size_;
  int64_t top_k_;
  bool norm_topk_prob_;
  Tensor router_;  // X x E
  std::vector<Qwen2MLP> experts_;
  std::optional<Qwen2MLP> shared_;
  Tensor shared_gate_;  // 1 x E
};

}  // namespace tinyllm
