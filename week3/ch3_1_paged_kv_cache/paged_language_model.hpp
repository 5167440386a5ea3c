// Chapter 3.1 (provided): the model interface of Week 3, chapter 2.1's LanguageModel plus paged
// caches. What a paged scheduler (chapter 3.2) needs of a model, and nothing more:
//
//   page_pool()              the one pool every layer of every request draws its pages from
//   create_paged_caches()    one empty PagedKvCache per layer over that pool
//   forward_paged(ids, c)    R sequences with their own paged caches in one step -> logits R x V
//
// Your Qwen2ModelWeek3 (qwen2_week3.hpp) implements it; the engine's Qwen2 model can too. The
// dense LanguageModel methods (create_kv_caches, forward, ...) stay, so every Week 2 loop still
// runs on a Week 3 model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

class PagedLanguageModel : public LanguageModel {
 public:
  /// The pool of this model's paged caches (H = num_key_value_heads, D = head_dim). Mutable
  /// through a const model: the pool is the model's cache memory, not its weights.
  virtual PagePool& page_pool() const = 0;

  /// One empty PagedKvCache per layer over page_pool(). The caches must not outlive the model.
  virtual std::vector<PagedKvCache> create_paged_caches() const {
    std::vector<PagedKvCache> caches;
    for (int64_t i = 0; i < config().num_hidden_layers; ++i) caches.emplace_back(page_pool());
    return caches;
  }

  /// R sequences in one step, as LanguageModel::forward_sequences with paged caches:
  /// tokens[r] are the L_r >= 1 new ids of sequence r, *caches[r] its caches (one per layer,
  /// each holding S_r positions), so its new ids sit at positions S_r .. S_r + L_r - 1 -> logits
  /// R x V, row r = sequence r's last new position. Afterwards every cache of sequence r holds
  /// S_r + L_r positions. Errors: those of check_paged_sequences; OutOfPages when the pool runs
  /// out (the caches of the layers done so far keep the new positions: rewind them or release).
  virtual Tensor forward_paged(const std::vector<TokenIds>& tokens,
                               const std::vector<std::vector<PagedKvCache>*>& caches) const = 0;

 protected:
  /// The checks every forward_paged makes before any cache changes: InvalidArgument for no
  /// sequences, a count mismatch, a null pointer, a sequence without one cache per layer, caches
  /// of one sequence at different offsets or over another pool, an id outside [0, V);
  /// ShapeError for an empty row; ContextLengthError if S_r + L_r exceeds the context.
  void check_paged_sequences(const std::vector<TokenIds>& tokens,
                             const std::vector<std::vector<PagedKvCache>*>& caches) const {
    const std::string what = "forward_paged: ";
    if (tokens.empty()) throw InvalidArgument(what + "no sequences");
    if (tokens.size() != caches.size()) {
      throw InvalidArgument(what + std::to_string(tokens.size()) + " sequences of tokens but " +
                            std::to_string(caches.size()) + " sets of caches");
    }
    const Qwen2Config& c = config();
    for (size_t r = 0; r < tokens.size(); ++r) {
      const std::string seq = what + "sequence " + std::to_string(r);
      if (tokens[r].empty()) throw ShapeError(seq + " has no new tokens");
      for (const TokenId id : tokens[r]) {
        if (id < 0 || id >= c.vocab_size) {
          throw InvalidArgument(seq + ": token id " + std::to_string(id) + " is outside [0, " +
                                std::to_string(c.vocab_size) + ")");
        }
      }
      if (caches[r] == nullptr || caches[r]->size() != static_cast<size_t>(c.num_hidden_layers)) {
        throw InvalidArgument(seq + " needs one cache per layer (" +
                              std::to_string(c.num_hidden_layers) + ")");
      }
      const int64_t offset = (*caches[r])[0].offset();
      for (const PagedKvCache& cache : *caches[r]) {
        if (&cache.pool() != &page_pool() || cache.offset() != offset) {
          throw InvalidArgument(seq + ": its caches must all draw from this model's pool and " +
                                "hold the same number of positions");
        }
      }
      const auto total = offset + static_cast<int64_t>(tokens[r].size());
      if (total > c.max_position_embeddings) {
        throw ContextLengthError(seq + ": " + std::to_string(offset) + " cached + " +
                                 std::to_string(tokens[r].size()) +
                                 " new tokens do not fit into the context of " +
                                 std::to_string(c.max_position_embeddings));
      }
    }
  }
};

}  // namespace tinyllm
