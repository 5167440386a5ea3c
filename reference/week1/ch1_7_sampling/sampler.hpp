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
  // SOLUTION BEGIN ch1.7 Task 1
  if (logits.empty()) throw InvalidArgument("argmax: the logits are empty");
  // max_element returns the first of equal maxima, i.e. the lowest id.
  return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  // SOLUTION END
}

/// Task 1. softmax(logits / temperature) over the V entries, in f32 (compute it in double or
/// subtract the max first: exp(80) overflows a float). Entries equal to -inf (filtered out) get
/// probability exactly 0. Preconditions: temperature > 0, at least one finite logit
/// (InvalidArgument otherwise).
inline std::vector<float> softmax_with_temperature(const std::vector<float>& logits,
                                                   float temperature) {
  // SOLUTION BEGIN ch1.7 Task 1
  if (!(temperature > 0.0f))
    throw InvalidArgument("softmax_with_temperature: temperature must be > 0");
  const float max_logit = logits.empty() ? -std::numeric_limits<float>::infinity()
                                         : *std::max_element(logits.begin(), logits.end());
  if (!std::isfinite(max_logit)) {
    throw InvalidArgument("softmax_with_temperature: no finite logit to sample from");
  }
  std::vector<double> e(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    e[i] = std::exp((static_cast<double>(logits[i]) - max_logit) / temperature);  // exp(-inf) == 0
    sum += e[i];
  }
  std::vector<float> probs(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) probs[i] = static_cast<float>(e[i] / sum);
  return probs;
  // SOLUTION END
}

/// Task 1. Draws one id from `probs` (V non-negative weights; they need not sum to 1): takes u =
/// rng.uniform() once, then walks the ids 0, 1, ..., V-1 accumulating the weights (in double) and
/// returns the first id whose running sum exceeds u * total. An id of weight 0 is never returned.
/// InvalidArgument if the total is not > 0. (Drawing exactly this way keeps runs reproducible: the
/// same seed gives the same ids in every solution.)
inline TokenId sample_from(const std::vector<float>& probs, Rng& rng) {
  // SOLUTION BEGIN ch1.7 Task 1
  double total = 0.0;
  for (float p : probs) total += p;
  if (!(total > 0.0)) throw InvalidArgument("sample_from: the probabilities sum to 0");
  const double target = rng.uniform() * total;
  double running = 0.0;
  TokenId last_nonzero = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    running += probs[i];
    last_nonzero = static_cast<TokenId>(i);
    if (running > target) return last_nonzero;
  }
  // Rounding left target just above the running sum: take the last possible id.
  return last_nonzero;
  // SOLUTION END
}

/// Task 2. Keeps the k largest logits and sets every other entry to -inf. Exactly min(k, V) entries
/// survive: among equal logits at the boundary the lower ids win. k == 0 means "off" (everything
/// survives). Throws InvalidArgument for k < 0.
inline std::vector<float> top_k_filter(const std::vector<float>& logits, int64_t k) {
  // SOLUTION BEGIN ch1.7 Task 2
  if (k < 0) throw InvalidArgument("top_k must be >= 0 (0 disables it), got " + std::to_string(k));
  const size_t V = logits.size();
  if (k == 0 || static_cast<size_t>(k) >= V) return logits;
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), size_t{0});
  // Sort ids by logit, descending; stable, so equal logits stay in increasing id order.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  std::vector<float> out(V, -std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < k; ++r) out[order[r]] = logits[order[r]];
  return out;
  // SOLUTION END
}

/// Task 3. The nucleus (top-p) filter with the INCLUSIVE rule: sort the V probabilities descending
/// (equal probabilities: lower id first), keep the smallest prefix whose cumulative sum (in double)
/// is >= p, zero the rest, and renormalise the kept ones to sum to 1. The most likely token always
/// survives; p == 1 keeps every token. probs: V probabilities summing to 1. Throws InvalidArgument
/// unless 0 < p <= 1. Example: probs {0.5, 0.3, 0.2}, p = 0.8 keeps ids {0, 1} (0.5 + 0.3 reaches
/// 0.8) -> {0.625, 0.375, 0}.
inline std::vector<float> top_p_filter(const std::vector<float>& probs, float p) {
  // SOLUTION BEGIN ch1.7 Task 3
  if (!(p > 0.0f && p <= 1.0f)) {
    throw InvalidArgument("top_p must be in (0, 1] (1 disables it), got " + std::to_string(p));
  }
  const size_t V = probs.size();
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return probs[a] > probs[b]; });
  std::vector<float> out(V, 0.0f);
  double cumulative = 0.0;
  for (size_t r = 0; r < V; ++r) {
    out[order[r]] = probs[order[r]];
    cumulative += probs[order[r]];
    if (p < 1.0f && cumulative >= static_cast<double>(p)) break;  // p == 1: keep everything
  }
  double kept = 0.0;
  for (float q : out) kept += q;
  if (kept > 0.0) {
    for (float& q : out) q = static_cast<float>(q / kept);
  }
  return out;
  // SOLUTION END
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
    // SOLUTION BEGIN ch1.7 Task 1
    if (!(std::isfinite(config.temperature) && config.temperature >= 0.0f)) {
      throw InvalidArgument("temperature must be a finite number >= 0 (0 means greedy), got " +
                            std::to_string(config.temperature));
    }
    if (config.top_k < 0) {
      throw InvalidArgument("top_k must be >= 0 (0 disables it), got " +
                            std::to_string(config.top_k));
    }
    if (!(config.top_p > 0.0f && config.top_p <= 1.0f)) {
      throw InvalidArgument("top_p must be in (0, 1] (1 disables it), got " +
                            std::to_string(config.top_p));
    }
    // SOLUTION END
  }

  const SamplerConfig& config() const { return config_; }

  /// Task 1. The distribution the next token is drawn from: V probabilities summing to 1, zero for
  /// filtered ids. temperature == 0: one-hot at argmax(logits). Otherwise: logits / temperature,
  /// top_k_filter (if top_k > 0), softmax, top_p_filter (if top_p < 1), which renormalises. logits:
  /// V raw scores (log-probabilities work too: softmax ignores a constant shift). InvalidArgument
  /// for empty or NaN logits.
  std::vector<float> distribution(const std::vector<float>& logits) const {
    // SOLUTION BEGIN ch1.7 Task 1
    if (logits.empty()) throw InvalidArgument("Sampler: the logits are empty");
    for (float x : logits) {
      if (std::isnan(x)) throw InvalidArgument("Sampler: the logits contain NaN");
    }
    if (config_.temperature == 0.0f) {
      std::vector<float> one_hot(logits.size(), 0.0f);
      one_hot[argmax(logits)] = 1.0f;
      return one_hot;
    }
    std::vector<float> scaled(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) scaled[i] = logits[i] / config_.temperature;
    if (config_.top_k > 0) scaled = top_k_filter(scaled, config_.top_k);
    std::vector<float> probs = softmax_with_temperature(scaled, 1.0f);
    if (config_.top_p < 1.0f) probs = top_p_filter(probs, config_.top_p);
    return probs;
    // SOLUTION END
  }

  /// Task 1. Picks the next token from the logits of one position, a [V] tensor (ShapeError for
  /// another rank). temperature == 0: argmax (the RNG is untouched). Otherwise
  /// sample_from(distribution(logits), rng).
  TokenId operator()(const Tensor& logits) {
    // Check the shape; greedy needs no random numbers; otherwise draw from distribution(logits).
    // SOLUTION BEGIN ch1.7 Task 1
    if (logits.ndim() != 1) {
      throw ShapeError("Sampler: expected the logits of one position, shape [V], got " +
                       shape_to_string(logits.shape()));
    }
    const std::vector<float>& values = logits.values();
    if (config_.temperature == 0.0f) {
      for (float x : values) {
        if (std::isnan(x)) throw InvalidArgument("Sampler: the logits contain NaN");
      }
      return argmax(values);
    }
    return sample_from(distribution(values), rng_);
    // SOLUTION END
  }

 private:
  SamplerConfig config_;
  Rng rng_;
};

}  // namespace tinyllm
