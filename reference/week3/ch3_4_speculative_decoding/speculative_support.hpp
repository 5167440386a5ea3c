// Chapter 3.4 (provided): the pieces every speculative decoder of this chapter shares, so that
// the tasks are about the algorithm: statistics, what a drafter proposes and what verification
// decides, the checks that a draft may serve a target, and chapter 2.1's stopping rules.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/token.hpp"
#include "tinyllm/tokenizer.hpp"

namespace tinyllm {

/// What speculation achieved in one generation.
struct SpeculativeStats {
  int64_t rounds = 0;    // verification calls of the target after its prefill
  int64_t proposed = 0;  // drafted ids the target verified
  int64_t accepted = 0;  // of those, how many it accepted
  /// accepted / proposed (0 when nothing was proposed).
  double acceptance_rate() const {
    return proposed == 0 ? 0.0 : static_cast<double>(accepted) / static_cast<double>(proposed);
  }
  /// accepted / rounds: drafted ids gained per target call (0 without rounds). Each round emits
  /// this plus one id.
  double mean_accepted_per_round() const {
    return rounds == 0 ? 0.0 : static_cast<double>(accepted) / static_cast<double>(rounds);
  }
};

/// The ids, stop reason and stop token exactly as chapter 2.1's generation returns them, plus the
/// statistics.
struct SpeculativeGeneration {
  Generation generation;
  SpeculativeStats stats;
};

/// Reported after every round after which the generation goes on: the round's proposed and
/// accepted ids, the sequence length N afterwards (prompt + emitted ids) and the target caches'
/// offset, which must be N - 1 (every position but the newest id).
struct SpeculativeRound {
  int64_t proposed = 0, accepted = 0;
  int64_t sequence_length = 0;
  int64_t target_offset = 0;
};
using RoundCallback = std::function<void(const SpeculativeRound& round)>;

/// A drafter's guess: ids d1..dk and, when they were drawn from distributions, each one's q
/// (V probabilities; probs[i] is the distribution ids[i] was drawn from). Empty probs: the ids
/// are deterministic (q one-hot at each id).
struct Proposal {
  TokenIds ids;
  std::vector<std::vector<float>> probs;
};

/// What the target decided about a proposal of k ids.
struct Verification {
  int64_t accepted = 0;  // a, 0 <= a <= k: ids[0 .. a) are kept
  TokenId next = 0;      // the target's own token after them: a correction (a < k) or a bonus
};

/// InvalidArgument unless k (draft tokens per round) >= 1.
inline void check_draft_tokens(int64_t k) {
  if (k < 1) {
    throw InvalidArgument(
        "speculative decoding: the number of draft tokens per round must be >= 1, "
        "got " +
        std::to_string(k));
  }
}

/// The draft must speak the target's vocabulary (ConfigError naming both vocab_size values) and
/// hold `positions` = prompt + max_new_tokens (ContextLengthError naming its context). Models with
/// the same V may still number their tokens differently: the front-ends also compare tokenizers
/// (check_same_tokenizer).
inline void check_draft_model(const LanguageModel& target, const LanguageModel& draft,
                              int64_t positions) {
  const int64_t vt = target.config().vocab_size, vd = draft.config().vocab_size;
  if (vt != vd) {
    throw ConfigError("the draft model's vocabulary has " + std::to_string(vd) +
                      " ids but the target's has " + std::to_string(vt) +
                      " (vocab_size): speculative decoding needs the same vocabulary");
  }
  const int64_t context = draft.config().max_position_embeddings;
  if (positions > context) {
    throw ContextLengthError("the prompt and the new tokens need " + std::to_string(positions) +
                             " positions, but the draft model's context is " +
                             std::to_string(context) + " tokens (max_position_embeddings)");
  }
}

/// Two tokenizers number the same tokens alike: the same vocab_size and the same token string for
/// every id. ConfigError naming both sizes, or the first id that differs.
inline void check_same_tokenizer(const Tokenizer& target, const Tokenizer& draft) {
  if (target.vocab_size() != draft.vocab_size()) {
    throw ConfigError("the draft model's tokenizer has " + std::to_string(draft.vocab_size()) +
                      " token ids but the target's has " + std::to_string(target.vocab_size()) +
                      ": speculative decoding needs the same tokenizer");
  }
  for (TokenId id = 0; id < target.vocab_size(); ++id) {
    if (target.id_to_token(id) != draft.id_to_token(id)) {
      throw ConfigError("the draft model's tokenizer differs from the target's at id " +
                        std::to_string(id) + " ('" + draft.id_to_token(id) + "' instead of '" +
                        target.id_to_token(id) +
                        "'): speculative decoding needs the same tokenizer");
    }
  }
}

/// Forgets the newest n positions of every layer's cache (chapter 2.1's KvCache::rewind).
inline void rewind_caches(std::vector<KvCache>& caches, int64_t n) {
  for (KvCache& cache : caches) cache.rewind(n);
}

/// Row `row` of batch row 0 of B x L' x V logits, as the [V] tensor a TokenPicker takes.
inline Tensor logits_row(const Tensor& logits, int64_t row) {
  const int64_t V = logits.dim(2);
  return Tensor({V}, std::vector<float>(logits.data() + row * V, logits.data() + (row + 1) * V));
}

/// The generated ids with chapter 2.1's stopping rules: push(id) ends the generation at a stop id
/// (StopToken; the id is not appended) or once max_new_tokens ids are appended (MaxTokens);
/// otherwise it appends id and calls on_token. After the end nothing more is taken.
class SpeculativeOutput {
 public:
  SpeculativeOutput(const GenerationOptions& options, TokenCallback on_token)
      : options_(options), on_token_(std::move(on_token)), done_(options.max_new_tokens == 0) {}

  /// Returns whether the generation goes on after this id.
  bool push(TokenId id) {
    if (done_) return false;
    const TokenIds& stop = options_.stop_ids;
    if (std::find(stop.begin(), stop.end(), id) != stop.end()) {
      result_.stop_reason = StopReason::StopToken;
      result_.stop_token = id;
      done_ = true;
      return false;
    }
    result_.tokens.push_back(id);
    if (on_token_) on_token_(id);
    done_ = remaining() == 0;
    return !done_;
  }
  bool done() const { return done_; }
  /// How many more ids may be appended.
  int64_t remaining() const {
    return options_.max_new_tokens - static_cast<int64_t>(result_.tokens.size());
  }
  const Generation& result() const { return result_; }

 private:
  GenerationOptions options_;
  TokenCallback on_token_;
  Generation result_;  // stop_reason MaxTokens unless a stop id ends it
  bool done_;
};

}  // namespace tinyllm
