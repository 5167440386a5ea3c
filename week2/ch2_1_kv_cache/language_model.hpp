// Chapter 2.1 (provided): the one model interface of Week 2 and after.
//
// Everything that *drives* a model with a KV cache — generation (this chapter's Task 3),
// continuous batching (2.6), chunked prefill (2.7), and the engine's serving core — needs only
// four things of it, so it takes this interface instead of a concrete model:
//
//   config()                 sizes, context length, stop ids
//   create_kv_caches(B)      one empty KvCache per layer for B rows
//   forward(ids, offset, c)  logits B x L' x V for L' new ids per row at positions offset..
//   forward_last / forward_sequences   the same, keeping only the last position of each row
//
// Two models implement it: your Qwen2ModelWeek2 (Task 2) and the engine's fast Qwen2 model
// (engine/model/qwen2_engine.hpp: bf16, 8- and 4-bit weights, MLX checkpoints). So the loops you
// write in this week drive the fast engine unchanged.
//
//   forward_sequences: R sequences, each with its OWN caches at its OWN offset, in one step
//
//     seq 0: 7 cached, 1 new   ──┐
//     seq 1: 3 cached, 1 new   ──┼─► one step ─► logits R x V (the last new position of each)
//     seq 2: 0 cached, 5 new   ──┘
//
//   This is what a serving system's scheduler calls every iteration. The default below runs one
//   sequence at a time (correct, not fast). A model that can batch overrides it so that every
//   weight matrix is read once for all R sequences: chapter 2.6's BatchedWeek2Model does it
//   with padding and a mask, the engine with ragged rows and per-sequence attention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;

  /// The model's config.json (V = vocab_size, context = max_position_embeddings, ...).
  virtual const Qwen2Config& config() const = 0;

  /// One empty KvCache per layer for `batch` rows (H = num_key_value_heads, D = head_dim,
  /// max_seq_len = max_position_embeddings).
  virtual std::vector<KvCache> create_kv_caches(int64_t batch = 1) const = 0;

  /// tokens: B rows of L' new ids at positions offset .. offset+L'-1; caches: one per layer, each
  /// holding B x `offset` positions -> logits B x L' x V. Afterwards every cache holds offset + L'.
  virtual Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                         std::vector<KvCache>& caches) const = 0;

  /// forward, keeping only the last new position of each row -> B x V. A model may skip the head
  /// (V x E, the largest matrix) for the other L' - 1 positions; the default computes all of them
  /// and slices.
  virtual Tensor forward_last(const std::vector<TokenIds>& tokens, int64_t offset,
                              std::vector<KvCache>& caches) const {
    const Tensor logits = forward(tokens, offset, caches);  // B x L' x V
    const int64_t B = logits.dim(0), L = logits.dim(1), V = logits.dim(2);
    Tensor last({B, V});
    for (int64_t b = 0; b < B; ++b) last.rows().row(b) = logits.matrix(b).row(L - 1);
    return last;
  }

  /// R independent sequences in one step. tokens[r]: the L_r >= 1 new ids of sequence r; caches[r]:
  /// its caches (one per layer, batch 1) holding S_r positions, so its new ids sit at positions
  /// S_r .. S_r + L_r - 1 -> logits R x V, row r = sequence r's last new position. Afterwards
  /// caches[r] holds S_r + L_r positions. Errors: InvalidArgument for no sequences, a count
  /// mismatch or a null pointer; forward's errors otherwise. The default runs forward_last on one
  /// sequence at a time.
  virtual Tensor forward_sequences(const std::vector<TokenIds>& tokens,
                                   const std::vector<std::vector<KvCache>*>& caches) const {
    check_sequences(tokens, caches);
    const auto R = static_cast<int64_t>(tokens.size());
    Tensor out({R, config().vocab_size});
    for (int64_t r = 0; r < R; ++r) {
      std::vector<KvCache>& own = *caches[static_cast<size_t>(r)];
      out.rows().row(r) =
          forward_last({tokens[static_cast<size_t>(r)]}, own[0].offset(), own).rows().row(0);
    }
    return out;
  }

 protected:
  /// The shared checks of forward_sequences (see there).
  static void check_sequences(const std::vector<TokenIds>& tokens,
                              const std::vector<std::vector<KvCache>*>& caches) {
    if (tokens.empty()) throw InvalidArgument("forward_sequences: no sequences");
    if (tokens.size() != caches.size()) {
      throw InvalidArgument("forward_sequences: " + std::to_string(tokens.size()) +
                            " sequences of tokens but " + std::to_string(caches.size()) +
                            " sets of caches");
    }
    for (size_t r = 0; r < caches.size(); ++r) {
      if (caches[r] == nullptr || caches[r]->empty()) {
        throw InvalidArgument("forward_sequences: sequence " + std::to_string(r) +
                              " has no caches");
      }
    }
  }
};

}  // namespace tinyllm
