// Chapter 3.4, Task 2: lossless speculative sampling (Leviathan et al. 2023, Chen et al. 2023).
//
// With sampling, "accept when the draft agrees" is wrong: the output would follow neither model.
// The rule that makes the output follow the target's distribution p exactly, whatever the draft's
// distribution q, is a rejection sampler. For a drafted id x drawn from q:
//
//   accept x with probability min(1, p(x) / q(x))
//   on rejection, draw instead from the residual r = normalize(max(0, p - q))
//   if all k drafts are accepted, draw a bonus id from the target's next row p_k
//
// Why it is exact: P(emit y) = q(y) min(1, p(y)/q(y)) + P(reject) r(y)
//                            = min(q(y), p(y)) + (1 - sum_x min(q(x), p(x))) r(y) = p(y),
// because P(reject) = sum_x (q(x) - min(q(x), p(x))) = sum_x max(0, p(x) - q(x)), the residual's
// normalizer. A draft is accepted with probability sum_x min(p(x), q(x)) = 1 - TV(p, q).
//
// p and q are the distributions chapter 1.7's Sampler draws from, with ONE SamplerConfig for both:
// logits / temperature -> top-k filter -> softmax -> top-p filter -> renormalise
// (Sampler::distribution). The output then follows exactly what plain sampling of the target with
// that config follows. Temperature 0 makes p and q one-hot: the rule becomes Task 1's greedy rule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_decoding.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_support.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// The fate of one drafted id.
struct DraftDecision {
  TokenId token = 0;  // the drafted id if accepted, else the id drawn from the residual
  bool accepted = false;
};

/// Task 2. The residual distribution normalize(max(0, p - q)) over V ids (computed in double,
/// returned as V floats summing to 1). If p - q has no positive entry (p == q: a rejection then
/// never happens, but rounding may still get here) it returns p. InvalidArgument unless p and q
/// have the same size V >= 1.
inline std::vector<float> residual_distribution(const std::vector<float>& p,
                                                const std::vector<float>& q) {
  TINYLLM_TODO("ch3.4", "Task 2");
}

/// Task 2. The rejection rule for a drafted id x drawn from q: u = rng.uniform() (exactly one
/// draw); accept when u * q[x] < p[x] (probability min(1, p[x] / q[x]); always when p[x] >=
/// q[x]); otherwise token = sample_from(residual_distribution(p, q), rng). p, q: V probabilities
/// (chapter 1.7's Sampler::distribution). InvalidArgument for sizes that differ, x outside [0, V)
/// or q[x] == 0 (x cannot have been drawn from q).
inline DraftDecision accept_or_resample(const std::vector<float>& p, const std::vector<float>& q,
                                        TokenId x, Rng& rng) {
  TINYLLM_TODO("ch3.4", "Task 2");
}

/// The verification rule of speculative sampling, as a VerifyRule for run_speculative. Holds the
/// Sampler that defines p (the SAME config the drafter draws q with) and the generation's Rng;
/// both must outlive it.
class RejectionSampler {
 public:
  RejectionSampler(const Sampler& sampler, Rng& rng) : sampler_(&sampler), rng_(&rng) {}

  /// Task 2. For i = 0 .. k-1: p_i = sampler.distribution(row i of target_logits, 1 x (k + 1) x
  /// V), q_i = proposal.probs[i] (empty probs: one-hot at ids[i], a deterministic drafter);
  /// accept_or_resample(p_i, q_i, ids[i], rng); the first rejection ends the round with a = i and
  /// next = the resampled id. All accepted: next = sample_from(p_k, rng), the bonus. ShapeError
  /// unless the logits have k + 1 rows; InvalidArgument if probs is neither empty nor k long.
  Verification operator()(const Tensor& target_logits, const Proposal& proposal) const {
    TINYLLM_TODO("ch3.4", "Task 2");
  }

 private:
  const Sampler* sampler_;
  Rng* rng_;
};

/// Provided. The picker of the target's first id (from its prefill logits) in speculative
/// sampling: sample_from(sampler.distribution(logits), rng), drawing from the generation's Rng.
inline TokenPicker first_id_sampler(const Sampler& sampler, Rng& rng) {
  return [&sampler, &rng](const Tensor& logits) {
    return sample_from(sampler.distribution(logits.values()), rng);
  };
}

/// Provided. Speculative sampling with a draft model: one Sampler(config) defines p and q, one
/// Rng(config.seed) draws everything (the first id from the target's prefill, the drafts, the
/// acceptance tests, residual and bonus ids), so a seed gives the same ids every run. Its output
/// follows the distribution of chapter 2.1's generation with Sampler(config); with temperature 0
/// it is the greedy output. Errors: Sampler's InvalidArgument for a bad config, then those of
/// speculative_generate.
inline SpeculativeGeneration speculative_sample(const LanguageModel& target,
                                                const LanguageModel& draft, const TokenIds& prompt,
                                                const GenerationOptions& options, int64_t k,
                                                const SamplerConfig& config,
                                                const TokenCallback& on_token = {}) {
  const Sampler sampler(config);
  check_draft_tokens(k);
  check_draft_model(target, draft, static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  Rng rng(config.seed);
  ModelDrafter drafter(draft, &sampler, &rng);
  return run_speculative(target, drafter, RejectionSampler(sampler, rng),
                         first_id_sampler(sampler, rng), prompt, options, k, on_token);
}

}  // namespace tinyllm
