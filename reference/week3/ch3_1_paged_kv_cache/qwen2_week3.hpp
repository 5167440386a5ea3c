// Chapter 3.1, Task 3: the Week 2 model on paged caches.
//
// Qwen2ModelWeek3 runs your Week 2 model's weights and sub-layers (chapter 2.1's accessors, the
// batched linear layers of chapter 2.6; nothing is copied) with one PagedKvCache per layer per
// request, for R sequences in one step:
//
//   ids R x L ─► embedding ─► [ RMSNorm ─► q, k, v (R x L rows) ─► RoPE at offsets[r] + l
//                              ─► append k, v to each sequence's PagedKvCache of this layer
//                              ─► attend(q, caches) ─► wo ─► + residual
//                              ─► RMSNorm ─► MLP ─► + residual ] x layers ─► RMSNorm ─► head (last rows)
//
// This chapter's attend() is the compatibility path: gather_dense() copies each sequence's pages
// back into one dense 1 x H x S x D tensor and chapter 1.3's grouped attention runs on it (the
// logits equal Week 2's). Chapter 3.2 overrides attend() with an attention that reads the pages
// in place through a block table.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batched_model.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_language_model.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

class Qwen2ModelWeek3 : public PagedLanguageModel {
 public:
  /// Provided. `model` (which must outlive this object) on paged caches of page_size positions
  /// drawn from one pool of at most max_pages pages (0: unbounded). InvalidArgument for a
  /// page_size < 1 or max_pages < 0 (PagePool's checks). The default, 32 positions, is one
  /// 32-key tile of chapter 2.5's kernel per page: on a CPU, pages of 16 cost a decode step about
  /// a quarter more (bench/paged_attention_bench.cpp, book/week3/ch3_2_paged_attention.md).
  Qwen2ModelWeek3(const Qwen2ModelWeek2& model, int64_t page_size = 32, int64_t max_pages = 0)
      : model_(model),
        pool_(model.config().num_key_value_heads, model.config().head_dim, page_size, max_pages) {}
  ~Qwen2ModelWeek3() override = default;

  /// The dense LanguageModel methods are the Week 2 model's.
  const Qwen2Config& config() const override { return model_.config(); }
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override {
    return model_.create_kv_caches(batch);
  }
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override {
    return model_.forward(tokens, offset, caches);
  }
  PagePool& page_pool() const override { return pool_; }

  /// Task 3. PagedLanguageModel::forward_paged for R sequences of L new ids each (sequences of
  /// different lengths run one at a time, provided), sequence r at offsets[r] = its caches'
  /// offset():
  ///   h = embedding(tokens)                                         R x L x E
  ///   per layer i: a = h + attention_layer(attention, input_layernorm(h), offsets, caches of i)
  ///                h = a + batched_mlp(mlp, post_attention_layernorm(a))
  ///   logits = batched_linear(norm(row L - 1 of every sequence), head)   R x V
  /// (head: the embedding when tie_word_embeddings, else lm_head). Row r equals chapter 2.1's
  /// forward_last for sequence r alone, up to float rounding. Errors: see forward_paged.
  Tensor forward_paged(const std::vector<TokenIds>& tokens,
                       const std::vector<std::vector<PagedKvCache>*>& caches) const override {
    check_paged_sequences(tokens, caches);
    const auto R = static_cast<int64_t>(tokens.size());
    for (const TokenIds& row : tokens) {
      if (row.size() == tokens[0].size()) continue;
      Tensor out({R, config().vocab_size});  // ragged: one sequence at a time
      for (int64_t r = 0; r < R; ++r) {
        const auto i = static_cast<size_t>(r);
        out.rows().row(r) = forward_paged({tokens[i]}, {caches[i]}).rows().row(0);
      }
      return out;
    }
    // SOLUTION BEGIN ch3.1 Task 3
    const auto L = static_cast<int64_t>(tokens[0].size());
    std::vector<int64_t> offsets;
    for (const std::vector<PagedKvCache>* own : caches) offsets.push_back((*own)[0].offset());
    Tensor h = model_.embedding().forward(tokens);  // R x L x E
    for (size_t i = 0; i < model_.layers().size(); ++i) {
      const Qwen2TransformerBlockWeek2& layer = model_.layers()[i];
      std::vector<PagedKvCache*> layer_caches;
      for (std::vector<PagedKvCache>* own : caches) layer_caches.push_back(&(*own)[i]);
      Tensor a = attention_layer(layer.attention(), layer.input_layernorm().forward(h), offsets,
                                 layer_caches);
      a.rows() += h.rows();
      h = batched_mlp(layer.mlp(), layer.post_attention_layernorm().forward(a));
      h.rows() += a.rows();
    }
    const int64_t E = h.dim(2);
    Tensor last({R, E});
    for (int64_t r = 0; r < R; ++r) last.rows().row(r) = h.matrix(r).row(L - 1);
    const Qwen2Config& c = config();
    return batched_linear(model_.norm().forward(last),
                          c.tie_word_embeddings ? model_.embedding().weight() : model_.lm_head());
    // SOLUTION END
  }

  const Qwen2ModelWeek2& week2_model() const { return model_; }

 protected:
  /// Task 3. The attention of one layer for R sequences: x R x L x E, sequence r at positions
  /// offsets[r] .. offsets[r] + L - 1 -> R x L x E. As chapter 2.6's batched_attention:
  ///   q = rope(batched_linear(x, wq, bq) as R x L x H_q x D, offsets); k likewise (H heads);
  ///   v unrotated; caches[r]->append(row r of k and v as 1 x H x L x D)
  ///   o = attend(q as R x H_q x L x D, caches)                         R x H_q x L x D
  ///   out = batched_linear(o as R x L x (H_q*D), wo)
  Tensor attention_layer(const Qwen2MultiHeadAttentionWeek2& attention, const Tensor& x,
                         const std::vector<int64_t>& offsets,
                         const std::vector<PagedKvCache*>& caches) const {
    // SOLUTION BEGIN ch3.1 Task 3
    const int64_t R = x.dim(0), L = x.dim(1), h_q = attention.num_heads(),
                  h = attention.num_kv_heads(), d = attention.head_dim();
    const Qwen2AttentionWeights& w = attention.weights();
    const Tensor q =
        attention.rope().forward(batched_linear(x, w.wq, &w.bq).reshape({R, L, h_q, d}), offsets);
    const Tensor k = attention.rope()
                         .forward(batched_linear(x, w.wk, &w.bk).reshape({R, L, h, d}), offsets)
                         .transpose(1, 2);  // R x H x L x D
    const Tensor v = batched_linear(x, w.wv, &w.bv).reshape({R, L, h, d}).transpose(1, 2);
    const int64_t n = h * L * d;  // floats of one sequence's new keys
    for (int64_t r = 0; r < R; ++r) {
      const auto first = static_cast<std::ptrdiff_t>(r * n);
      caches[static_cast<size_t>(r)]->append(
          Tensor({1, h, L, d}, std::vector<float>(k.data() + first, k.data() + first + n)),
          Tensor({1, h, L, d}, std::vector<float>(v.data() + first, v.data() + first + n)));
    }
    const Tensor o = attend(q.transpose(1, 2), caches).transpose(1, 2);  // R x L x H_q x D
    return batched_linear(o.reshape({R, L, h_q * d}), w.wo);
    // SOLUTION END
  }

  /// Task 3. The attention core: q R x H_q x L x D (rotated), caches[r] already holding sequence
  /// r's S_r positions, its L new ones last -> R x H_q x L x D. Here: for every sequence,
  /// caches[r]->gather_dense() (1 x H x S_r x D) and chapter 1.3's grouped attention of its
  /// 1 x H_q x L x D queries with scale 1/sqrt(D) and the bottom-right causal mask. Chapter 3.2
  /// overrides it.
  virtual Tensor attend(const Tensor& q, const std::vector<PagedKvCache*>& caches) const {
    // SOLUTION BEGIN ch3.1 Task 3
    const int64_t R = q.dim(0), n = q.numel() / R;
    const float scale = 1.0f / std::sqrt(static_cast<float>(q.dim(3)));
    Tensor out(q.shape());
    for (int64_t r = 0; r < R; ++r) {
      const Tensor q_r({1, q.dim(1), q.dim(2), q.dim(3)},
                       std::vector<float>(q.data() + r * n, q.data() + (r + 1) * n));
      const KvFetch kv = caches[static_cast<size_t>(r)]->gather_dense();
      const Tensor o = scaled_dot_product_attention_grouped(q_r, kv.keys, kv.values, scale,
                                                            AttentionMask::causal());
      std::copy_n(o.data(), n, out.data() + r * n);
    }
    return out;
    // SOLUTION END
  }

 private:
  const Qwen2ModelWeek2& model_;
  mutable PagePool pool_;
};

}  // namespace tinyllm
