// Chapter 2.6, Task 2: one step of the Week 2 model for a whole batch of requests.
//
// Row b of the batch is the request in slot b of every layer's BatchingKvCache, at its own offset
// (how many positions that request has cached). Everything except attention works row by row and
// does not care about offsets: the embedding, the RMSNorms, the projections, the MLP and the head
// run once on all B x L rows, so each weight matrix is read once per step for all B requests. That
// is why batching pays: decode is limited by reading the weights, and B requests share one read.
//
//   ids B x L ─► embedding ─► [ RMSNorm ─► q, k, v for B x L rows ─► RoPE at offsets[b] + l
//                              ─► BatchingKvCache: keys, values B x H x S x D, mask B x 1 x L x S
//                              ─► grouped attention with the mask ─► wo ─► + residual
//                              ─► RMSNorm ─► MLP ─► + residual ] x layers ─► RMSNorm ─► head
//
// The weights and sub-layers are chapter 2.1's (Qwen2ModelWeek2's accessors); nothing is copied.
// BatchedWeek2Model (at the end, provided) makes this step the Week 2 model's forward_sequences,
// the LanguageModel method that the scheduler (Task 3) calls.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tinyllm/ch1_1_attention/attention.hpp>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batching_kv_cache.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// Provided. One BatchingKvCache per layer of `model`, each with max_slots idle slots, H =
/// num_key_value_heads, D = head_dim, max_seq_len = max_position_embeddings.
inline std::vector<BatchingKvCache> create_batching_kv_caches(const LanguageModel& model,
                                                              int64_t max_slots) {
  const Qwen2Config& c = model.config();
  return std::vector<BatchingKvCache>(
      static_cast<size_t>(c.num_hidden_layers),
      BatchingKvCache(max_slots, c.num_key_value_heads, c.head_dim, c.max_position_embeddings));
}

/// Provided. linear(x, weight, bias) for a batch step: x: N.. x in with few rows M (a decode step:
/// M = B), weight: out x in -> N.. x out (in, out: the layer's feature counts, e.g. E and I). For M
/// <= 16 every weight row is read from memory once and multiplied with all M rows while it is in
/// the cache (M dot products), in parallel over the output features; Eigen's general product would
/// first copy (pack) the whole weight matrix, which costs more than reading it at these M. For more
/// rows it is chapter 1.1's linear.
inline Tensor batched_linear(const Tensor& x, const Tensor& weight, const Tensor* bias = nullptr) {
  const int64_t rows = x.ndim() == 0 ? 0 : x.numel() / std::max<int64_t>(x.dim(-1), 1);
  if (rows > 16 || weight.ndim() != 2 || x.ndim() < 1 || weight.dim(1) != x.dim(-1) ||
      (bias != nullptr && bias->shape() != Shape{weight.dim(0)})) {
    return linear(x, weight, bias);  // (its checks throw for bad shapes)
  }
  Shape out_shape = x.shape();
  out_shape.back() = weight.dim(0);
  Tensor out(out_shape);
  const ConstMatrixMap xs = x.rows();
  const ConstMatrixMap w = weight.matrix(0);
  MatrixMap y = out.rows();
  const int64_t features = weight.dim(0);
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < features; ++o) {
    const auto w_row = w.row(o);
    const float b = bias != nullptr ? bias->data()[o] : 0.0f;
    for (int64_t m = 0; m < rows; ++m) y(m, o) = w_row.dot(xs.row(m)) + b;
  }
  return out;
}

/// Provided. Chapter 1.4's SwiGLU MLP with batched_linear: x: N.. x E -> N.. x E,
///   out = w_down (silu(w_gate x) * (w_up x)).
inline Tensor batched_mlp(const Qwen2MLP& mlp, const Tensor& x) {
  Tensor hidden = silu(batched_linear(x, mlp.w_gate()));
  hidden.rows().array() *= batched_linear(x, mlp.w_up()).rows().array();
  return batched_linear(hidden, mlp.w_down());
}

/// Task 2. The attention of one layer for the batch. x: B x L x E, row b at positions offsets[b]
/// .. offsets[b] + L - 1 -> B x L x E:
///   q = rope(batched_linear(x, wq, bq) as B x L x H_q x D, offsets)   (per-row offsets)
///   k likewise (H heads), v unrotated
///   keys, values, mask = cache.update_and_fetch(k, v as B x H x L x D)
///   o = scaled_dot_product_attention_grouped(q as B x H_q x L x D, keys, values, 1/sqrt(D),
///       AttentionMask::from(mask))       (the B x 1 x L x S mask broadcasts over the heads)
///   (rows of idle slots have an all -inf mask: chapter 1.1's softmax turns them into zeros, so
///   they stay finite without special handling)
///   out = batched_linear(o as B x L x (H_q*D), wo)
/// Inputs are checked by batched_forward.
inline Tensor batched_attention(const Qwen2MultiHeadAttentionWeek2& attention, const Tensor& x,
                                const std::vector<int64_t>& offsets, BatchingKvCache& cache) {
  TINYLLM_TODO("ch2.6", "Task 2");
}

/// Task 2. One decoder layer for the batch, x: B x L x E -> B x L x E, as chapter 2.1's block:
///   h   = x + batched_attention(block.attention(), block.input_layernorm().forward(x), ...)
///   out = h + batched_mlp(block.mlp(), block.post_attention_layernorm().forward(h))
inline Tensor batched_block(const Qwen2TransformerBlockWeek2& block, const Tensor& x,
                            const std::vector<int64_t>& offsets, BatchingKvCache& cache) {
  TINYLLM_TODO("ch2.6", "Task 2");
}

/// Provided. The checks of batched_forward: ShapeError for an empty or ragged batch or B !=
/// max_slots; InvalidArgument for an id outside [0, V), the wrong number of caches or offsets, no
/// active slot, or an active slot whose offset is not its cache's; ContextLengthError if a row's
/// offset + L exceeds max_position_embeddings.
inline void check_batched_forward_args(const Qwen2ModelWeek2& model,
                                       const std::vector<TokenIds>& tokens,
                                       const std::vector<int64_t>& offsets,
                                       const std::vector<BatchingKvCache>& caches) {
  const std::string what = "batched_forward: ";
  check_token_batch(tokens, model.config().vocab_size, "batched_forward");
  if (caches.size() != model.layers().size()) {
    throw InvalidArgument(what + "got " + std::to_string(caches.size()) + " caches for " +
                          std::to_string(model.layers().size()) + " layers");
  }
  const auto rows = static_cast<int64_t>(tokens.size());
  if (rows != caches[0].max_slots()) {
    throw ShapeError(what + std::to_string(rows) + " rows of tokens, but the caches have " +
                     std::to_string(caches[0].max_slots()) + " slots (idle slots need a row too)");
  }
  if (offsets.size() != tokens.size()) {
    throw InvalidArgument(what + std::to_string(offsets.size()) + " offsets for " +
                          std::to_string(rows) + " rows");
  }
  const auto length = static_cast<int64_t>(tokens[0].size());
  bool any_active = false;
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t offset = offsets[static_cast<size_t>(b)];
    if (offset < 0 || offset + length > model.config().max_position_embeddings) {
      throw ContextLengthError(what + "row " + std::to_string(b) + " at offset " +
                               std::to_string(offset) + " with " + std::to_string(length) +
                               " new tokens does not fit into the context of " +
                               std::to_string(model.config().max_position_embeddings));
    }
    if (!caches[0].is_active(b)) continue;
    any_active = true;
    if (offset != caches[0].offset(b)) {
      throw InvalidArgument(what + "row " + std::to_string(b) + " has offset " +
                            std::to_string(offset) + " but its slot caches " +
                            std::to_string(caches[0].offset(b)) + " positions");
    }
  }
  if (!any_active) throw InvalidArgument(what + "no slot holds a request");
}

/// Task 2. Logits for a batch of requests: tokens B rows of L new ids (B = max_slots; a row of an
/// idle slot holds any valid ids, e.g. 0, at offset 0), offsets[b] = positions cached for slot b,
/// caches: one BatchingKvCache per layer (create_batching_kv_caches) -> logits B x L x V:
///   h = model.embedding().forward(tokens); h = batched_block(layer i, h, offsets, caches[i]);
///   h = model.norm().forward(h); logits = batched_linear(h, tied ? model.embedding().weight() :
///   model.lm_head())
/// Each active row's logits equal chapter 2.1's single-request logits (up to float rounding);
/// idle rows are finite and meaningless. Afterwards every active slot holds L more positions.
/// Errors: see check_batched_forward_args (checked before anything changes).
inline Tensor batched_forward(const Qwen2ModelWeek2& model, const std::vector<TokenIds>& tokens,
                              const std::vector<int64_t>& offsets,
                              std::vector<BatchingKvCache>& caches) {
  check_batched_forward_args(model, tokens, offsets, caches);
  TINYLLM_TODO("ch2.6", "Task 2");
}

/// Provided. Your Week 2 model with this chapter's batched step, as a LanguageModel for the
/// scheduler. config, create_kv_caches, forward and forward_last are the model's own;
/// forward_sequences lends the R sequences' caches to one BatchingKvCache per layer (slot r =
/// sequence r), runs ONE batched_forward, and hands every cache back, so each weight matrix is read
/// once for all R sequences. Sequences with different numbers of new tokens (a batched step takes
/// B x L) run one at a time, as the interface's default does.
class BatchedWeek2Model : public LanguageModel {
 public:
  /// `model` must outlive this object.
  explicit BatchedWeek2Model(const Qwen2ModelWeek2& model) : model_(model) {}

  const Qwen2Config& config() const override { return model_.config(); }
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override {
    return model_.create_kv_caches(batch);
  }
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override {
    return model_.forward(tokens, offset, caches);
  }

  Tensor forward_sequences(const std::vector<TokenIds>& tokens,
                           const std::vector<std::vector<KvCache>*>& caches) const override {
    check_sequences(tokens, caches);
    for (const TokenIds& row : tokens) {
      if (row.size() != tokens[0].size()) return LanguageModel::forward_sequences(tokens, caches);
    }
    const auto R = static_cast<int64_t>(tokens.size());
    const auto L = static_cast<int64_t>(tokens[0].size());
    std::vector<BatchingKvCache> batch = create_batching_kv_caches(model_, R);
    std::vector<int64_t> offsets;
    Tensor logits;
    try {
      for (int64_t r = 0; r < R; ++r) {
        std::vector<KvCache>& own = *caches[static_cast<size_t>(r)];
        if (own.size() != batch.size()) {
          throw InvalidArgument("BatchedWeek2Model: sequence " + std::to_string(r) + " has " +
                                std::to_string(own.size()) + " caches for " +
                                std::to_string(batch.size()) + " layers");
        }
        offsets.push_back(own[0].offset());
        for (size_t i = 0; i < batch.size(); ++i) batch[i].add_request(std::move(own[i]), r);
      }
      logits = batched_forward(model_, tokens, offsets, batch);  // R x L x V
    } catch (...) {
      give_back(batch, caches);
      throw;
    }
    give_back(batch, caches);
    const int64_t V = logits.dim(2);
    Tensor last({R, V});
    for (int64_t r = 0; r < R; ++r) last.rows().row(r) = logits.matrix(r).row(L - 1);
    return last;
  }

 private:
  /// Every cache lent to a slot goes back to its sequence.
  static void give_back(std::vector<BatchingKvCache>& batch,
                        const std::vector<std::vector<KvCache>*>& caches) {
    for (size_t i = 0; i < batch.size(); ++i) {
      for (int64_t r = 0; r < batch[i].max_slots(); ++r) {
        if (batch[i].is_active(r)) (*caches[static_cast<size_t>(r)])[i] = batch[i].take_request(r);
      }
    }
  }

  const Qwen2ModelWeek2& model_;
};

}  // namespace tinyllm
