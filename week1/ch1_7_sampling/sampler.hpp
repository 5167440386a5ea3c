// Chapter 1.7: sampling the next token. Greedy decoding always picks the most likely token;
// sampling draws it from the model's distribution, reshaped by a temperature and truncated by top-k
// and top-p (nucleus) filters.
//
// The order of operations of this course's Sampler (book/week1/ch1_7_sampling.md explains why):
//   temperature == 0:  greedy argmax (ties -> the lowest id); nothing is drawn, the RNG is unused.
//   otherwise:         logits / temperature -> top-k filter -> softmax
//                      -> top-p filter (inclusive rule) -> renormalise -> draw with the seeded RNG.
// Ties are always broken towards the lower token id, so "the k best" and "the nucleus" are unique.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// The seedable random number generator of the sampler (given, not an exercise). std::mt19937_64's
/// output sequence is fixed by the C++ standard, and uniform() converts it with an explicit formula
/// (the top 53 bits times 2^-53) instead of std::uniform_real_distribution, whose algorithm differs
/// between standard libraries. So the same seed draws the same tokens with every compiler.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  /// A double in [0, 1).
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 engine_;
};

/// What a Sampler does. The defaults are greedy decoding.
struct SamplerConfig {
  float temperature = 0.0f;  // 0: greedy; > 0: divide the logits by it (< 1 sharpens, > 1 flattens)
  int64_t top_k = 0;         // 0: off; k >= 1 keeps the k most likely tokens (k >= V keeps all)
  float top_p = 1.0f;        // 1: off; 0 < p < 1 keeps the smallest nucleus of probability >= p
  uint64_t seed = 0;         // seeds the Rng; the same seed and logits give the same tokens
};

/// Task 1. The id of the largest logit; among equal maxima the lowest id (like torch.argmax).
/// logits: the V scores of one position. Throws InvalidArgument if logits is empty.
inline TokenId argmax(const std::vector<float>& logits) {
  TINYLLM_TODO("ch1.7", "Task 1");
}

/// Task 1. softmax(logits / temperature) over the V entries, in f32 (compute it in double or
/// subtract the max first: exp(80) overflows a float). Entries equal to -inf (filtered out) get
/// probability exactly 0. Preconditions: temperature > 0, at least one finite logit
/// (InvalidArgument otherwise).
inline std::vector<float> softmax_with_temperature(const std::vector<float>& logits,
                                                   float temperature) {
  TINYLLM_TODO("ch1.7", "Task 1");
}

/// Task 1. Draws one id from `probs` (V non-negative weights; they need not sum to 1): takes u =
/// rng.uniform() once, then walks the ids 0, 1, ..., V-1 accumulating the weights (in double) and
/// returns the first id whose running sum exceeds u * total. An id of weight 0 is never returned.
/// InvalidArgument if the total is not > 0. (Drawing exactly this way keeps runs reproducible: the
/// same seed gives the same ids in every solution.)
inline TokenId sample_from(const std::vector<float>& probs, Rng& rng) {
  TINYLLM_TODO("ch1.7", "Task 1");
}

/// Task 2. Keeps the k largest logits and sets every other entry to -inf. Exactly min(k, V) entries
/// survive: among equal logits at the boundary the lower ids win. k == 0 means "off" (everything
/// survives). Throws InvalidArgument for k < 0.
inline std::vector<float> top_k_filter(const std::vector<float>& logits, int64_t k) {
  TINYLLM_TODO("ch1.7", "Task 2");
}

/// Task 3. The nucleus (top-p) filter with the INCLUSIVE rule: sort the V probabilities descending
/// (equal probabilities: lower id first), keep the smallest prefix whose cumulative sum (in double)
/// is >= p, zero the rest, and renormalise the kept ones to sum to 1. The most likely token always
/// survives; p == 1 keeps every token. probs: V probabilities summing to 1. Throws InvalidArgument
/// unless 0 < p <= 1. Example: probs {0.5, 0.3, 0.2}, p = 0.8 keeps ids {0, 1} (0.5 + 0.3 reaches
/// 0.8) -> {0.625, 0.375, 0}.
inline std::vector<float> top_p_filter(const std::vector<float>& probs, float p) {
  TINYLLM_TODO("ch1.7", "Task 3");
}

/// A next-token sampler: construct it once per generation, then call it on the logits of each new
/// position. It is stateful (the RNG advances with every draw), so pass it to simple_generate
/// (chapter 1.6) by reference, e.g. `std::ref(sampler)`.
class Sampler {
 public:
  /// Task 1. Validates the configuration and seeds the RNG with config.seed. Throws InvalidArgument
  /// with a message naming the parameter and its value for:
  ///   temperature < 0, NaN or infinite;  top_k < 0;  top_p <= 0, > 1 or NaN.
  explicit Sampler(const SamplerConfig& config) : config_(config), rng_(config.seed) {
    TINYLLM_TODO("ch1.7", "Task 1");
  }

  const SamplerConfig& config() const { return config_; }

  /// Task 1. The distribution the next token is drawn from: V probabilities summing to 1, zero for
  /// filtered ids. temperature == 0: one-hot at argmax(logits). Otherwise: logits / temperature,
  /// top_k_filter (if top_k > 0), softmax, top_p_filter (if top_p < 1), which renormalises. logits:
  /// V raw scores (log-probabilities work too: softmax ignores a constant shift). InvalidArgument
  /// for empty or NaN logits.
  std::vector<float> distribution(const std::vector<float>& logits) const {
    TINYLLM_TODO("ch1.7", "Task 1");
  }

  /// Task 1. Picks the next token from the logits of one position, a [V] tensor (ShapeError for
  /// another rank). temperature == 0: argmax (the RNG is untouched). Otherwise
  /// sample_from(distribution(logits), rng).
  TokenId operator()(const Tensor& logits) {
    // Check the shape; greedy needs no random numbers; otherwise draw from distribution(logits).
    TINYLLM_TODO("ch1.7", "Task 1");
  }

 private:
  SamplerConfig config_;
  Rng rng_;
};

}  // namespace tinyllm
