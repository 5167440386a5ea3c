// Chapter 3.4, Task 3: prompt-lookup (n-gram) drafting, speculation without a draft model.
//
// Much of what a model writes repeats what it has read: a summary quotes its passage, code edits
// repeat the code, an answer copies a name from the question. Prompt lookup decoding (Saxena
// 2023; llama.cpp's lookup decoding, vLLM's and transformers' n-gram speculation) guesses the
// next tokens by finding the last n tokens earlier in the text and proposing what followed them
// there:
//
//   sequence: ... the river Arden . The mayor ... founded on the river | Arden   (last n = 2: "the
//   river"; the most recent earlier occurrence was followed by "Arden . The" -> propose k = 3)
//
// The guesses cost a search over the sequence (no model at all), and the target verifies them
// exactly as Task 1 verifies a draft model's: greedy output is still exactly the target's. When
// the last n tokens never occurred before, there is no guess and the round is one plain decode
// step (a verification of zero drafts).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_decoding.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_sampling.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_support.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// Task 3. The n-gram lookup. With N = sequence.size(): the last n ids sequence[N - n .. N) are
/// searched for at every earlier start s (s + n <= N - 1, so at least one id follows), most recent
/// (largest s) first; the first match returns the up to k ids that followed it, sequence[s + n ..
/// min(s + n + k, N)) (they may run into the last n ids themselves, as in a repeating pattern).
/// No match, or N <= n: an empty proposal. InvalidArgument for n < 1 or k < 1.
/// Example: {1, 2, 3, 4, 1, 2, 5, 6, 1, 2}, n = 2, k = 3 -> {5, 6, 1} (the match at s = 4).
inline TokenIds prompt_lookup_proposal(const TokenIds& sequence, int64_t n, int64_t k) {
  TINYLLM_TODO("ch3.4", "Task 3");
}

/// Provided. prompt_lookup_proposal as a Drafter: deterministic ids (no probs), nothing to rewind.
class PromptLookupDrafter : public Drafter {
 public:
  /// InvalidArgument for n < 1.
  explicit PromptLookupDrafter(int64_t n) : n_(n) {
    if (n < 1) {
      throw InvalidArgument("prompt lookup: the n-gram size must be >= 1, got " +
                            std::to_string(n));
    }
  }
  Proposal propose(const TokenIds& sequence, int64_t k) override {
    return {prompt_lookup_proposal(sequence, n_, k), {}};
  }
  void accept(int64_t /*kept*/) override {}

 private:
  int64_t n_;
};

/// Provided. Greedy speculative decoding with prompt lookup: exactly chapter 2.1's greedy ids of
/// `target`, with up to k ids per round proposed by an n-gram lookup in prompt + output.
/// Errors: InvalidArgument for n < 1 or k < 1; run_speculative's.
inline SpeculativeGeneration prompt_lookup_generate(const LanguageModel& target,
                                                    const TokenIds& prompt,
                                                    const GenerationOptions& options, int64_t n,
                                                    int64_t k, const TokenCallback& on_token = {},
                                                    const RoundCallback& on_round = {}) {
  PromptLookupDrafter drafter(n);
  return run_speculative(target, drafter, verify_greedy, greedy_pick, prompt, options, k, on_token,
                         on_round);
}

/// Provided. Speculative sampling with prompt lookup: the lookup's ids are deterministic (q
/// one-hot), so Task 2's rule accepts an id x with probability p(x) and otherwise draws from p
/// without x; the output follows chapter 2.1's generation with Sampler(config). Errors:
/// Sampler's InvalidArgument for a bad config, then prompt_lookup_generate's.
inline SpeculativeGeneration prompt_lookup_sample(const LanguageModel& target,
                                                  const TokenIds& prompt,
                                                  const GenerationOptions& options, int64_t n,
                                                  int64_t k, const SamplerConfig& config,
                                                  const TokenCallback& on_token = {}) {
  const Sampler sampler(config);
  Rng rng(config.seed);
  PromptLookupDrafter drafter(n);
  return run_speculative(target, drafter, RejectionSampler(sampler, rng),
                         first_id_sampler(sampler, rng), prompt, options, k, on_token);
}

}  // namespace tinyllm
