// Chapter 1.5, Task 1: the token embedding, and the same matrix used backwards as the output head.
//
// You write (book/week1/ch1_5_qwen2_model.md):
//   Task 1  Embedding::forward (a row lookup) and Embedding::as_linear (the tied output head)
//   Task 2  Qwen2TransformerBlock (qwen2_model.hpp)
//   Task 3  Qwen2ModelWeek1 (qwen2_model.hpp)
//
// The embedding matrix W is V x E: row t is the vector of token id t. Looking tokens up maps B x L
// ids to B x L x E vectors; multiplying hidden states by W^T maps N.. x E back to N.. x V scores,
// one per token of the vocabulary. Small Qwen2 models use one matrix for both ("tied embeddings")
// and store no lm_head.weight. The checks that reject bad inputs are provided (they are not the
// exercise).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_1_attention/attention.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// Provided. Checks a batch of token sequences before a lookup: at least one row, every row of the
/// same length L >= 1 (ShapeError otherwise: the batch must be a B x L rectangle), and every id in
/// [0, vocab_size) (InvalidArgument naming the id, its row and position otherwise). `what` prefixes
/// the messages.
inline void check_token_batch(const std::vector<TokenIds>& tokens, int64_t vocab_size,
                              const std::string& what) {
  if (tokens.empty() || tokens[0].empty()) {
    throw ShapeError(what + ": expected B >= 1 rows of L >= 1 token ids, got " +
                     std::to_string(tokens.size()) + " rows" +
                     (tokens.empty() ? "" : " of length 0"));
  }
  const size_t length = tokens[0].size();
  for (size_t b = 0; b < tokens.size(); ++b) {
    if (tokens[b].size() != length) {
      throw ShapeError(what + ": ragged batch: row 0 has " + std::to_string(length) +
                       " token ids, row " + std::to_string(b) + " has " +
                       std::to_string(tokens[b].size()) +
                       " (every row must have the same length L)");
    }
    for (size_t l = 0; l < length; ++l) {
      const TokenId id = tokens[b][l];
      if (id < 0 || id >= vocab_size) {
        throw InvalidArgument(what + ": token id " + std::to_string(id) + " at row " +
                              std::to_string(b) + ", position " + std::to_string(l) +
                              " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
      }
    }
  }
}

class Embedding {
 public:
  /// V = vocab_size, E = embedding_dim, weight: V x E (model.embed_tokens.weight). Throws
  /// ShapeError if the weight has another shape.
  Embedding(int64_t vocab_size, int64_t embedding_dim, Tensor weight)
      : vocab_size_(vocab_size), embedding_dim_(embedding_dim), weight_(std::move(weight)) {
    check_shape(weight_, {vocab_size, embedding_dim}, "Embedding: weight (V x E)");
  }

  /// Task 1. The lookup: tokens is B rows of L ids each -> B x L x E, where out[b, l, :] =
  /// weight[tokens[b][l], :]. The values are copied exactly (no arithmetic), so they equal the
  /// checkpoint's rows bit for bit. Throws ShapeError for an empty or ragged batch and
  /// InvalidArgument for an id outside [0, V) (check_token_batch does both).
  Tensor forward(const std::vector<TokenIds>& tokens) const {
    check_token_batch(tokens, vocab_size_, "Embedding::forward");
    TINYLLM_TODO("ch1.5", "Task 1");
  }

  /// Task 1. The tied output head: x: N.. x E -> N.. x V, out[.., t] = dot(x[.., :], weight[t, :]),
  /// i.e. linear(x, weight) without a bias. A hidden state scores high for the tokens whose
  /// embedding points the same way. Throws ShapeError if x's last dim is not E.
  Tensor as_linear(const Tensor& x) const {
    if (x.ndim() < 1 || x.dim(-1) != embedding_dim_) {
      throw ShapeError(
          "Embedding::as_linear: x must be N.. x E with E = " + std::to_string(embedding_dim_) +
          ", got shape " + shape_to_string(x.shape()));
    }
    TINYLLM_TODO("ch1.5", "Task 1");
  }

  int64_t vocab_size() const { return vocab_size_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  /// The V x E matrix.
  const Tensor& weight() const { return weight_; }

 private:
  int64_t vocab_size_;
  int64_t embedding_dim_;
  Tensor weight_;
};

}  // namespace tinyllm
