// Chapter 3.4, Task 1: speculative decoding, the loop and its greedy rule.
//
// A decode step of a small model is bound by reading its weights, not by arithmetic: running the
// target on k + 1 positions costs little more than running it on one. So a cheap drafter guesses
// k tokens, and the target checks all of them in ONE forward call:
//
//   sequence so far: ... last            (the target's caches hold every position but `last`)
//   drafter: d1 .. dk                    a small draft model, one token per call (this task), or
//                                        an n-gram lookup in the text so far (Task 3)
//   target:  [last, d1, ..., dk] at offset N - 1           one call, L' = k + 1 -> k + 1 rows
//            row i is the target's distribution of the token after d_i (row 0: after `last`)
//   verify:  accept a of the drafts, and get one more token from the target itself: the
//            correction of the first rejected draft, or a bonus token when all k are accepted
//            (greedy, this task: the longest prefix with d(i+1) == argmax row i)
//   rewind:  the target's caches back to N + a positions, the drafter's to at most N + a
//
// Every emitted token is the target's own choice given the tokens before it, so greedy output is
// exactly chapter 2.1's, whatever the drafter proposes; a good drafter only makes it faster.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_support.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm {

/// Proposes up to k tokens to follow a sequence: a draft model (ModelDrafter, below) or a lookup
/// in the text so far (Task 3's PromptLookupDrafter).
class Drafter {
 public:
  virtual ~Drafter() = default;
  /// Up to k >= 1 ids to follow `sequence` (all N ids so far, prompt included); fewer or none
  /// when it has no guess. Fills Proposal::probs when it draws them from a distribution.
  virtual Proposal propose(const TokenIds& sequence, int64_t k) = 0;
  /// The first `kept` ids of the sequence are final (the target accepted them): forget anything
  /// computed for later positions.
  virtual void accept(int64_t kept) = 0;
};

/// Judges one round: the target's logits of [last, d1..dk] (1 x (k + 1) x V) and the proposal
/// -> how many drafts are accepted and the target's next token. verify_greedy (this task) or
/// Task 2's RejectionSampler.
using VerifyRule = std::function<Verification(const Tensor& target_logits, const Proposal&)>;

/// A draft model as a Drafter, with its own caches (one per layer, batch 1).
class ModelDrafter : public Drafter {
 public:
  /// Provided. Without a sampler the proposals are greedy (greedy_pick; Proposal::probs stays
  /// empty: deterministic). With one, each proposal is drawn from q = sampler->distribution(the
  /// draft's logits) with sample_from(q, *rng), and q goes to Proposal::probs (Task 2). The model,
  /// sampler and rng must outlive the drafter. InvalidArgument for a sampler without an rng.
  explicit ModelDrafter(const LanguageModel& draft, const Sampler* sampler = nullptr,
                        Rng* rng = nullptr)
      : draft_(&draft), sampler_(sampler), rng_(rng), caches_(draft.create_kv_caches()) {
    if (sampler != nullptr && rng == nullptr) {
      throw InvalidArgument("ModelDrafter: a sampler needs an Rng to draw with");
    }
  }

  /// Task 1. Feeds the draft every id of `sequence` its caches do not hold yet (all of it on the
  /// first call: the draft's prefill; afterwards `last`, or two ids after a round that accepted
  /// every proposal), then its own proposals one at a time (chapter 2.1's decode_step), k calls
  /// in all: the caches hold N + k - 1 positions afterwards (N = sequence.size()). Errors: the
  /// model's.
  Proposal propose(const TokenIds& sequence, int64_t k) override {
    TINYLLM_TODO("ch3.4", "Task 1");
  }

  /// Task 1. Rewinds the caches to at most `kept` positions (after a round that accepted every
  /// proposal they hold kept - 1: the draft never ran its own last proposal; nothing to drop).
  void accept(int64_t kept) override { TINYLLM_TODO("ch3.4", "Task 1"); }

  const std::vector<KvCache>& caches() const { return caches_; }

 private:
  const LanguageModel* draft_;
  const Sampler* sampler_;
  Rng* rng_;
  std::vector<KvCache> caches_;
};

/// Task 1. The greedy rule: t_i = greedy_pick(row i of target_logits, 1 x (k + 1) x V, k =
/// proposal.ids.size() >= 0); accept while proposal.ids[i] == t_i; next = t_a (the correction, or
/// the bonus token t_k). Ignores proposal.probs. ShapeError unless the logits have k + 1 rows.
inline Verification verify_greedy(const Tensor& target_logits, const Proposal& proposal) {
  TINYLLM_TODO("ch3.4", "Task 1");
}

/// Task 1. The speculative loop. Prefills the P prompt ids into fresh target caches and picks the
/// first id with pick_first; then, while the generation goes on (N = P + ids so far): k_r =
/// min(k, remaining - 1) (the round's k + 1 tokens never pass max_new_tokens, so the target's
/// caches never pass P + max_new_tokens - 1 positions); proposal = drafter.propose(sequence, k_r)
/// when k_r > 0 (it may hold fewer ids; none: a plain decode step); ONE target.forward of [last,
/// proposal ids] at offset N - 1; verify; rewind the target's caches by (proposed - accepted);
/// drafter.accept(N + accepted); push the accepted ids, then the next one, into a
/// SpeculativeOutput (chapter 2.1's stopping). Stats add 1 round, the proposed and the accepted
/// ids; on_round gets every round after which the generation goes on.
/// Errors, before any model work: InvalidArgument for k < 1; check_generation_request's.
inline SpeculativeGeneration run_speculative(const LanguageModel& target, Drafter& drafter,
                                             const VerifyRule& verify,
                                             const TokenPicker& pick_first, const TokenIds& prompt,
                                             const GenerationOptions& options, int64_t k,
                                             const TokenCallback& on_token = {},
                                             const RoundCallback& on_round = {}) {
  check_draft_tokens(k);
  check_generation_request(static_cast<int64_t>(prompt.size()), options,
                           target.config().max_position_embeddings);
  TINYLLM_TODO("ch3.4", "Task 1");
}

/// Provided. Greedy speculative decoding with a draft model: exactly the ids of chapter 2.1's
/// greedy generate_tokens_with_kv_cache(target, prompt, options), k draft tokens per round.
/// Errors: InvalidArgument for k < 1; check_draft_model's ConfigError; ContextLengthError when
/// P + max_new_tokens exceeds either model's context; run_speculative's.
inline SpeculativeGeneration speculative_generate(const LanguageModel& target,
                                                  const LanguageModel& draft,
                                                  const TokenIds& prompt,
                                                  const GenerationOptions& options, int64_t k,
                                                  const TokenCallback& on_token = {},
                                                  const RoundCallback& on_round = {}) {
  check_draft_tokens(k);
  check_draft_model(target, draft, static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  ModelDrafter drafter(draft);  // greedy proposals
  return run_speculative(target, drafter, verify_greedy, greedy_pick, prompt, options, k, on_token,
                         on_round);
}

}  // namespace tinyllm
