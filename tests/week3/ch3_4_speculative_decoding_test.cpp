// Chapter 3.4 tests. Oracles: chapter 2.1's greedy generation on the same target (greedy
// speculation must give exactly its ids, stop reason and stop token, whatever the drafter); for
// speculative sampling, the target's own distribution p (chapter 1.7's Sampler::distribution),
// checked with a chi-square test on test doubles of fixed distributions, where the emitted ids
// are independent draws from p at each position; exact hand-made cases for the rules and the
// n-gram lookup.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch3_4_speculative_decoding/prompt_lookup.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_decoding.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_sampling.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_support.hpp>

#include <gmock/gmock.h>

#include "tinyllm/chat_template.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// ---- Test doubles and shared helpers ----

// A LanguageModel whose logits at position s are rows[s % R], whatever the ids: fixed
// distributions, so the ids it leads to are independent draws. One layer of H = D = 1 caches, so
// offsets, rewinds and context overflows behave as a real model's.
class FixedLogitsModel : public LanguageModel {
 public:
  explicit FixedLogitsModel(std::vector<std::vector<float>> rows, int64_t context = 4096)
      : rows_(std::move(rows)) {
    config_.vocab_size = static_cast<int64_t>(rows_.front().size());
    config_.num_hidden_layers = 1;
    config_.num_attention_heads = config_.num_key_value_heads = 1;
    config_.hidden_size = config_.head_dim = 1;
    config_.max_position_embeddings = context;
  }
  const Qwen2Config& config() const override { return config_; }
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override {
    return {KvCache(batch, 1, 1, config_.max_position_embeddings)};
  }
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override {
    if (caches.size() != 1 || offset != caches[0].offset()) {
      throw InvalidArgument("FixedLogitsModel: offset " + std::to_string(offset) +
                            " but the cache holds " + std::to_string(caches[0].offset()));
    }
    const auto B = static_cast<int64_t>(tokens.size()), L = static_cast<int64_t>(tokens[0].size());
    for (const TokenIds& row : tokens) {
      for (TokenId id : row) {
        if (id < 0 || id >= config_.vocab_size) throw InvalidArgument("FixedLogitsModel: bad id");
      }
    }
    caches[0].append(Tensor({B, 1, L, 1}), Tensor({B, 1, L, 1}));
    const int64_t V = config_.vocab_size;
    Tensor logits({B, L, V});
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t l = 0; l < L; ++l) {
        const std::vector<float>& row = rows_[static_cast<size_t>(offset + l) % rows_.size()];
        std::copy(row.begin(), row.end(), logits.data() + (b * L + l) * V);
      }
    }
    return logits;
  }

 private:
  std::vector<std::vector<float>> rows_;
  Qwen2Config config_;
};

std::vector<float> log_of(const std::vector<float>& probs) {
  std::vector<float> out;
  for (float p : probs) out.push_back(std::log(p));
  return out;
}

// R rows of V random logits (a nonsense draft for the real target's vocabulary).
std::vector<std::vector<float>> random_rows(int64_t R, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::vector<float>> rows(static_cast<size_t>(R), std::vector<float>(V));
  for (auto& row : rows) {
    for (float& x : row) x = normal(rng);
  }
  return rows;
}

// Pearson's chi-square statistic of observed counts against expected probabilities, over the ids
// of positive probability; an id observed where the probability is 0 gives infinity.
double chi_square(const std::vector<int64_t>& counts, const std::vector<float>& probs) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  double stat = 0.0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probs[i] <= 0.0f) {
      if (counts[i] > 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    const double e = static_cast<double>(n) * probs[i];
    stat += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
  }
  return stat;
}

// The chi-square critical values at significance 0.001 for 1 to 4 degrees of freedom: a correct
// sampler exceeds them with probability 0.001 per test (all seeds here are fixed, so a test
// either always passes or always fails).
double chi_square_critical(const std::vector<float>& probs) {
  const double table[] = {0.0, 10.828, 13.816, 16.266, 18.467};
  const auto support = std::count_if(probs.begin(), probs.end(), [](float p) { return p > 0; });
  return table[support - 1];
}

fs::path model_dir(const std::string& name) {
  return testing::data_dir() / "models" / name;
}

// The embedded target and draft (chapter 2.1's model), loaded once.
struct Models {
  Qwen2ModelWeek2 target = load_qwen2_week2(model_dir("tiny-qwen2"));
  Qwen2ModelWeek2 draft = load_qwen2_week2(model_dir("tiny-qwen2-draft"));
  Tokenizer tokenizer = Tokenizer::from_model_dir(model_dir("tiny-qwen2"));
};
const Models& models() {
  static const Models m;
  return m;
}

TokenIds chat_prompt(const std::string& question) {
  return models().tokenizer.encode(apply_chat_template({{"user", question}}, true));
}

// Chat questions (arithmetic, a fact, a story) and a raw text. (Few and short: the tests run
// in a Debug build with sanitizers, where a token of the 8-layer model takes tens of ms.)
std::vector<TokenIds> test_prompts() {
  std::vector<TokenIds> out;
  for (const char* q : {"What is 71 - 38?", "What is the capital of Spain?",
                        "Tell me a short story about a fox."}) {
    out.push_back(chat_prompt(q));
  }
  out.push_back(models().tokenizer.encode("Once upon a time, there was a"));
  return out;
}

// A reading-comprehension question: the answer copies a sentence of the passage.
TokenIds reading_prompt() {
  return chat_prompt(
      "Use the following passages to answer the question.\n\nPassage 1: Ulris Brimin is a chemist "
      "who lives in Linnedale. Ulris was born in 1929 and plays the trumpet. Ulris has a "
      "parrot.\n\n"
      "Passage 2: Torrowick is a small town by the Swan River. It was founded in 1635 by Fellath "
      "Rasem. The town is known for its honey cakes. The mayor of Torrowick is Ilmi Ullum.\n\n"
      "Question: Who founded Torrowick?");
}

GenerationOptions chat_options(int64_t max_new_tokens) {
  return {.max_new_tokens = max_new_tokens,
          .stop_ids = default_stop_ids(models().target.config(), &models().tokenizer)};
}

void expect_same_generation(const Generation& actual, const Generation& expected) {
  EXPECT_EQ(actual.tokens, expected.tokens);
  EXPECT_EQ(actual.stop_reason, expected.stop_reason);
  EXPECT_EQ(actual.stop_token, expected.stop_token);
}

// ---- Task 1: the loop and the greedy rule ----

// 1 x R x V logits whose row r has its maximum at argmaxes[r].
Tensor logits_with_argmaxes(const std::vector<TokenId>& argmaxes, int64_t V) {
  const auto R = static_cast<int64_t>(argmaxes.size());
  Tensor t({1, R, V});
  for (int64_t r = 0; r < R; ++r) t.data()[r * V + argmaxes[static_cast<size_t>(r)]] = 1.0f;
  return t;
}

TEST(SpeculativeDecoding, Task1_VerifyGreedyAcceptsTheLongestAgreeingPrefix) {
  const Tensor rows = logits_with_argmaxes({2, 5, 1, 3}, 6);  // [last, d1, d2, d3]
  const auto check = [&](TokenIds drafts, int64_t accepted, TokenId next) {
    const Verification v = verify_greedy(rows, Proposal{std::move(drafts), {}});
    EXPECT_EQ(v.accepted, accepted);
    EXPECT_EQ(v.next, next);
  };
  check({2, 5, 1}, 3, 3);  // all accepted: the bonus token of the last row
  check({2, 5, 0}, 2, 1);  // rejected at d3: the target's correction
  check({2, 4, 1}, 1, 5);  // a later agreement after a rejection does not count
  check({0, 5, 1}, 0, 2);
  const Verification plain = verify_greedy(logits_with_argmaxes({4}, 6), Proposal{});
  EXPECT_EQ(plain.accepted, 0);
  EXPECT_EQ(plain.next, 4);
  EXPECT_THROW(verify_greedy(rows, Proposal{{2, 5}, {}}), ShapeError);
}

TEST(SpeculativeDecoding, Task1_OutputEqualsTargetGreedyForEveryK) {
  // The embedded draft on 4 prompts, k = 1..6: chapter 2.1's ids, stop reason and stop token.
  const Models& m = models();
  double best_rate = 0.0;
  for (const TokenIds& prompt : test_prompts()) {
    const GenerationOptions options = chat_options(16);
    const Generation expected = generate_tokens_with_kv_cache(m.target, prompt, options);
    for (int64_t k = 1; k <= 6; ++k) {
      SCOPED_TRACE("prompt of " + std::to_string(prompt.size()) + " ids, k = " + std::to_string(k));
      TokenIds streamed;
      const SpeculativeGeneration out = speculative_generate(
          m.target, m.draft, prompt, options, k, [&](TokenId id) { streamed.push_back(id); });
      expect_same_generation(out.generation, expected);
      EXPECT_EQ(streamed, expected.tokens);
      // Each round emits its accepted ids plus one (the last round may be cut short).
      EXPECT_LE(static_cast<int64_t>(expected.tokens.size()),
                1 + out.stats.accepted + out.stats.rounds);
      EXPECT_LE(out.stats.proposed, k * out.stats.rounds);
      best_rate = std::max(best_rate, out.stats.acceptance_rate());
    }
  }
  EXPECT_GT(best_rate, 0.5) << "the embedded draft agrees with the target 96.6% of the time";
}

TEST(SpeculativeDecoding, Task1_ABadDraftIsRejectedButChangesNothing) {
  // A draft of random fixed logits over the target's vocabulary: nearly every proposal is
  // rejected, and the output is still exactly the target's.
  const Models& m = models();
  const FixedLogitsModel nonsense(random_rows(7, m.target.config().vocab_size, 3));
  for (const TokenIds& prompt :
       {chat_prompt("What is 23 + 45?"), chat_prompt("Tell me a short story about a fox.")}) {
    const GenerationOptions options = chat_options(16);
    const Generation expected = generate_tokens_with_kv_cache(m.target, prompt, options);
    for (int64_t k : {1, 6}) {
      const SpeculativeGeneration out =
          speculative_generate(m.target, nonsense, prompt, options, k);
      expect_same_generation(out.generation, expected);
      EXPECT_GT(out.stats.proposed, 0);
      EXPECT_LT(out.stats.acceptance_rate(), 0.1);
    }
  }
}

TEST(SpeculativeDecoding, Task1_TheTargetAsItsOwnDraftAcceptsAlmostEverything) {
  const Models& m = models();
  const TokenIds prompt = chat_prompt("Tell me a short story about a fox.");
  const GenerationOptions options{.max_new_tokens = 30, .stop_ids = {}};
  const SpeculativeGeneration out = speculative_generate(m.target, m.target, prompt, options, 4);
  expect_same_generation(out.generation, generate_tokens_with_kv_cache(m.target, prompt, options));
  // Only rounding between a one-row and a five-row call could flip a near tie.
  EXPECT_GE(out.stats.acceptance_rate(), 0.95);
}

TEST(SpeculativeDecoding, Task1_StatisticsCountRoundsExactly) {
  // Test doubles: the target's argmax at position s is s % 3; a draft equal to it is always right,
  // one whose argmax is always 4 is always wrong.
  const std::vector<std::vector<float>> target_rows = {
      {5, 0, 0, 0, 1}, {0, 5, 0, 0, 1}, {0, 0, 5, 0, 1}};
  const FixedLogitsModel target(target_rows), good(target_rows), bad({{0, 0, 0, 0, 5}});
  const TokenIds prompt = {1, 2, 3};
  const GenerationOptions options{.max_new_tokens = 9, .stop_ids = {}};
  // Good draft, k = 3: the prefill (logits of position 2) gives id 2; then two rounds of 3
  // accepted drafts and a bonus id emit 4 ids each.
  const SpeculativeGeneration all = speculative_generate(target, good, prompt, options, 3);
  EXPECT_EQ(all.generation.tokens, (TokenIds{2, 0, 1, 2, 0, 1, 2, 0, 1}));
  EXPECT_EQ(all.stats.rounds, 2);
  EXPECT_EQ(all.stats.proposed, 6);
  EXPECT_EQ(all.stats.accepted, 6);
  EXPECT_DOUBLE_EQ(all.stats.acceptance_rate(), 1.0);
  EXPECT_DOUBLE_EQ(all.stats.mean_accepted_per_round(), 3.0);
  // Bad draft: one id per round; k_r = min(3, remaining - 1) = 3, ..., 3, 2, 1, 0.
  const SpeculativeGeneration none = speculative_generate(target, bad, prompt, options, 3);
  EXPECT_EQ(none.generation.tokens, all.generation.tokens);
  EXPECT_EQ(none.stats.rounds, 8);
  EXPECT_EQ(none.stats.proposed, 3 * 5 + 2 + 1 + 0);
  EXPECT_EQ(none.stats.accepted, 0);
}

TEST(SpeculativeDecoding, Task1_CachesFollowTheSequenceAfterEveryRound) {
  // After each round the target holds every position but the newest id; the draft the same, or
  // one fewer after a round that accepted every proposal (it never ran its last proposal).
  const Models& m = models();
  for (const TokenIds& prompt : {chat_prompt("What is 23 + 45?"), reading_prompt()}) {
    ModelDrafter drafter(m.draft);
    int64_t rounds = 0, full = 0;
    const RoundCallback check = [&](const SpeculativeRound& r) {
      ++rounds;
      EXPECT_EQ(r.target_offset, r.sequence_length - 1);
      const int64_t draft_offset = drafter.caches()[0].offset();
      if (r.accepted == r.proposed) {
        ++full;
        EXPECT_EQ(draft_offset, r.sequence_length - 2);
      } else {
        EXPECT_EQ(draft_offset, r.sequence_length - 1);
      }
      for (const KvCache& c : drafter.caches()) EXPECT_EQ(c.offset(), draft_offset);
    };
    const GenerationOptions options = chat_options(24);
    const SpeculativeGeneration out = run_speculative(m.target, drafter, verify_greedy, greedy_pick,
                                                      prompt, options, 4, {}, check);
    expect_same_generation(out.generation,
                           generate_tokens_with_kv_cache(m.target, prompt, options));
    EXPECT_GT(rounds, 1);
    EXPECT_GT(full, 0) << "no round accepted all of its drafts: the N - 2 case went untested";
  }
}

TEST(SpeculativeDecoding, Task1_StopIdsAndBudgetsAsChapter21) {
  const Models& m = models();
  const TokenIds prompt = chat_prompt("What is the capital of Spain?");
  const Generation full = generate_tokens_with_kv_cache(m.target, prompt, chat_options(40));
  ASSERT_EQ(full.stop_reason, StopReason::StopToken);
  for (int64_t budget : {0, 1, 2, 5}) {
    for (int64_t k : {1, 6}) {
      SCOPED_TRACE("max_new_tokens " + std::to_string(budget) + ", k " + std::to_string(k));
      const GenerationOptions options = chat_options(budget);
      expect_same_generation(speculative_generate(m.target, m.draft, prompt, options, k).generation,
                             generate_tokens_with_kv_cache(m.target, prompt, options));
    }
  }
  // A stop id inside an accepted run of drafts ends the generation there.
  const TokenId third = full.tokens.at(2);
  const GenerationOptions stop_early{.max_new_tokens = 40, .stop_ids = {third}};
  const SpeculativeGeneration out = speculative_generate(m.target, m.draft, prompt, stop_early, 6);
  expect_same_generation(out.generation,
                         generate_tokens_with_kv_cache(m.target, prompt, stop_early));
  EXPECT_EQ(out.generation.stop_token, std::optional<TokenId>(third));
}

TEST(SpeculativeDecoding, Task1_ARequestThatFillsTheContextRuns) {
  // Context 16: a prompt of 10 and 6 new ids fill it exactly, with k = 6 (the rounds shrink k
  // so that the target never holds more than 15 positions); 7 new ids are refused up front.
  const std::vector<std::vector<float>> rows = {{5, 0, 0, 1}, {0, 5, 0, 1}};
  const FixedLogitsModel target(rows, 16), draft(rows, 16), short_draft(rows, 12);
  const TokenIds prompt(10, 3);
  const SpeculativeGeneration out =
      speculative_generate(target, draft, prompt, {.max_new_tokens = 6, .stop_ids = {}}, 6);
  EXPECT_EQ(out.generation.tokens, (TokenIds{1, 0, 1, 0, 1, 0}));  // argmax of position s: s % 2
  EXPECT_THROW(
      speculative_generate(target, draft, prompt, {.max_new_tokens = 7, .stop_ids = {}}, 6),
      ContextLengthError);
  try {
    speculative_generate(target, short_draft, prompt, {.max_new_tokens = 6, .stop_ids = {}}, 2);
    FAIL() << "16 positions do not fit into the draft's context of 12";
  } catch (const ContextLengthError& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("draft model's context is 12"));
  }
}

TEST(SpeculativeDecoding, Task1_BadDraftsAndKAreRefused) {
  const Models& m = models();
  const TokenIds prompt = chat_prompt("What is 2 + 3?");
  const GenerationOptions options = chat_options(4);
  // A valid request first (it needs Task 1) ...
  EXPECT_EQ(speculative_generate(m.target, m.draft, prompt, options, 2).generation.tokens,
            generate_tokens_with_kv_cache(m.target, prompt, options).tokens);
  // ... then the refusals.
  for (int64_t k : {0, -1}) {
    EXPECT_THROW(speculative_generate(m.target, m.draft, prompt, options, k), InvalidArgument);
  }
  const FixedLogitsModel small_vocab(random_rows(1, 512, 1));
  try {
    speculative_generate(m.target, small_vocab, prompt, options, 2);
    FAIL() << "a draft of 512 ids cannot serve a target of 4096";
  } catch (const ConfigError& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("512"));
    EXPECT_THAT(std::string(e.what()), HasSubstr("4096"));
  }
  const Tokenizer other = Tokenizer::from_model_dir(testing::data_dir() / "tokenizers/test-bpe");
  EXPECT_THROW(check_same_tokenizer(m.tokenizer, other), ConfigError);
  EXPECT_NO_THROW(
      check_same_tokenizer(m.tokenizer, Tokenizer::from_model_dir(model_dir("tiny-qwen2-draft"))));
}

// ---- Task 2: speculative sampling ----

const std::vector<float> kP = {0.4f, 0.3f, 0.15f, 0.1f, 0.05f};
const std::vector<float> kQ = {0.1f, 0.2f, 0.3f, 0.25f, 0.15f};  // rejections are frequent

TEST(SpeculativeSampling, Task2_ResidualIsTheNormalisedPositivePart) {
  const std::vector<float> r =
      residual_distribution({0.5f, 0.3f, 0.2f, 0.0f}, {0.1f, 0.2f, 0.3f, 0.4f});
  ASSERT_EQ(r.size(), 4u);  // max(0, p - q) = {0.4, 0.1, 0, 0} -> {0.8, 0.2, 0, 0}
  EXPECT_NEAR(r[0], 0.8f, 1e-6);
  EXPECT_NEAR(r[1], 0.2f, 1e-6);
  EXPECT_EQ(r[2], 0.0f);
  EXPECT_EQ(r[3], 0.0f);
  EXPECT_EQ(residual_distribution(kP, kP), kP);  // nothing positive: p itself
  EXPECT_THROW(residual_distribution(kP, {0.5f, 0.5f}), InvalidArgument);
}

// Emits one id per trial: x ~ q, then `rule` decides; returns the counts of the emitted ids.
using Rule = std::function<TokenId(const std::vector<float>& p, const std::vector<float>& q,
                                   TokenId x, Rng& rng)>;
std::vector<int64_t> emitted_counts(const Rule& rule, int64_t trials, int64_t* accepted = nullptr) {
  Rng rng(2024);
  std::vector<int64_t> counts(kP.size(), 0);
  for (int64_t t = 0; t < trials; ++t) {
    const TokenId x = sample_from(kQ, rng);
    const TokenId y = rule(kP, kQ, x, rng);
    ++counts[static_cast<size_t>(y)];
    if (accepted != nullptr && y == x) ++*accepted;
  }
  return counts;
}

TEST(SpeculativeSampling, Task2_TheRuleEmitsTheTargetDistribution) {
  const int64_t trials = 20000;
  int64_t kept = 0;
  const Rule correct = [](const auto& p, const auto& q, TokenId x, Rng& rng) {
    return accept_or_resample(p, q, x, rng).token;
  };
  const double stat = chi_square(emitted_counts(correct, trials, &kept), kP);
  EXPECT_LT(stat, chi_square_critical(kP)) << "the emitted ids do not follow p";
  // A draft is kept with probability sum min(p, q) = 0.6 (a rejected x has p(x) < q(x), where the
  // residual is 0, so y == x exactly when x is accepted); 4 standard deviations.
  EXPECT_NEAR(static_cast<double>(kept) / trials, 0.6, 4 * std::sqrt(0.6 * 0.4 / trials));
  // The same test rejects wrong rules: always keeping the draft (the output follows q) ...
  const Rule keep_draft = [](const auto&, const auto&, TokenId x, Rng&) { return x; };
  EXPECT_GT(chi_square(emitted_counts(keep_draft, trials), kP), chi_square_critical(kP));
  // ... and resampling from p instead of the residual after a rejection.
  const Rule resample_p = [](const auto& p, const auto& q, TokenId x, Rng& rng) {
    const size_t i = static_cast<size_t>(x);
    return rng.uniform() * q[i] < p[i] ? x : sample_from(p, rng);
  };
  EXPECT_GT(chi_square(emitted_counts(resample_p, trials), kP), chi_square_critical(kP));
}

TEST(SpeculativeSampling, Task2_AcceptOrResampleChecksItsInputs) {
  Rng rng(1);
  const DraftDecision sure = accept_or_resample({0.0f, 1.0f}, {0.0f, 1.0f}, 1, rng);
  EXPECT_TRUE(sure.accepted);
  EXPECT_EQ(sure.token, 1);
  const DraftDecision never = accept_or_resample({1.0f, 0.0f}, {0.5f, 0.5f}, 1, rng);
  EXPECT_FALSE(never.accepted);
  EXPECT_EQ(never.token, 0);
  EXPECT_THROW(accept_or_resample(kP, kQ, 5, rng), InvalidArgument);
  EXPECT_THROW(accept_or_resample({0.5f, 0.5f}, {1.0f, 0.0f}, 1, rng), InvalidArgument);
  EXPECT_THROW(accept_or_resample(kP, {0.5f, 0.5f}, 0, rng), InvalidArgument);
}

// Speculative sampling on test doubles whose distributions depend on the position only: the ids
// at each position must be draws from the target's (transformed) distribution there.
void expect_positions_follow_target(const SamplerConfig& base) {
  const std::vector<std::vector<float>> target_rows = {log_of(kP),
                                                       log_of({0.1f, 0.1f, 0.2f, 0.2f, 0.4f})};
  const std::vector<std::vector<float>> draft_rows = {
      log_of(kQ), log_of({0.3f, 0.3f, 0.2f, 0.1f, 0.1f}), log_of({0.2f, 0.2f, 0.2f, 0.2f, 0.2f})};
  const FixedLogitsModel target(target_rows), draft(draft_rows);
  const Sampler sampler(base);
  const TokenIds prompt = {0, 1, 2};  // the first new id is at position 3 (logits of position 2)
  const int64_t new_ids = 6, trials = 3000;
  std::vector<std::vector<int64_t>> counts(static_cast<size_t>(new_ids),
                                           std::vector<int64_t>(5, 0));
  SpeculativeStats total;
  for (int64_t t = 0; t < trials; ++t) {
    SamplerConfig config = base;
    config.seed = static_cast<uint64_t>(t);
    const SpeculativeGeneration out = speculative_sample(
        target, draft, prompt, {.max_new_tokens = new_ids, .stop_ids = {}}, 3, config);
    ASSERT_EQ(static_cast<int64_t>(out.generation.tokens.size()), new_ids);
    for (size_t i = 0; i < counts.size(); ++i)
      ++counts[i][static_cast<size_t>(out.generation.tokens[i])];
    total.proposed += out.stats.proposed;
    total.accepted += out.stats.accepted;
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    SCOPED_TRACE("new id " + std::to_string(i));
    const size_t logits_position = prompt.size() - 1 + i;  // the logits that drew new id i
    const std::vector<float> p = sampler.distribution(target_rows[logits_position % 2]);
    EXPECT_LT(chi_square(counts[i], p), chi_square_critical(p));
  }
  EXPECT_GT(total.accepted, 0);
  EXPECT_LT(total.accepted, total.proposed);
}

TEST(SpeculativeSampling, Task2_EmittedIdsFollowTheTargetAtEveryPosition) {
  expect_positions_follow_target(
      SamplerConfig{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0});
}

TEST(SpeculativeSampling, Task2_TheTransformOfChapter17AppliesToBoth) {
  // p and q are Sampler::distribution of the same config: temperature, top-k, top-p.
  expect_positions_follow_target(
      SamplerConfig{.temperature = 0.7f, .top_k = 4, .top_p = 0.9f, .seed = 0});
}

TEST(SpeculativeSampling, Task2_TemperatureZeroIsGreedy) {
  const Models& m = models();
  for (const TokenIds& prompt : {chat_prompt("What is 23 + 45?"), reading_prompt()}) {
    const GenerationOptions options = chat_options(20);
    const SpeculativeGeneration out =
        speculative_sample(m.target, m.draft, prompt, options, 3, SamplerConfig{});
    expect_same_generation(out.generation,
                           generate_tokens_with_kv_cache(m.target, prompt, options));
  }
}

TEST(SpeculativeSampling, Task2_ASeedRepeatsItsIdsOnTheRealModels) {
  const Models& m = models();
  const TokenIds prompt = chat_prompt("Tell me a short story about a fox.");
  const GenerationOptions options{.max_new_tokens = 24, .stop_ids = {}};
  const SamplerConfig config{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 7};
  const SpeculativeGeneration a = speculative_sample(m.target, m.draft, prompt, options, 4, config);
  const SpeculativeGeneration b = speculative_sample(m.target, m.draft, prompt, options, 4, config);
  EXPECT_EQ(a.generation.tokens, b.generation.tokens);
  EXPECT_EQ(static_cast<int64_t>(a.generation.tokens.size()), 24);
  EXPECT_GT(a.stats.accepted, 0);
}

// ---- Task 3: prompt lookup ----

TEST(PromptLookup, Task3_ProposesWhatFollowedTheMostRecentMatch) {
  const TokenIds seq = {1, 2, 3, 4, 1, 2, 5, 6, 1, 2};
  EXPECT_EQ(prompt_lookup_proposal(seq, 2, 3), (TokenIds{5, 6, 1}));     // the match at 4, not 0
  EXPECT_EQ(prompt_lookup_proposal(seq, 2, 9), (TokenIds{5, 6, 1, 2}));  // up to the end
  EXPECT_EQ(prompt_lookup_proposal(seq, 3, 2), (TokenIds{}));            // "6 1 2" is new
  EXPECT_EQ(prompt_lookup_proposal(seq, 1, 2), (TokenIds{5, 6}));        // "2" last at 5
  EXPECT_EQ(prompt_lookup_proposal({7, 7, 7}, 2, 4), (TokenIds{7}));     // overlapping
  EXPECT_EQ(prompt_lookup_proposal({7, 8}, 2, 4), (TokenIds{}));         // N <= n
  EXPECT_EQ(prompt_lookup_proposal({4}, 1, 4), (TokenIds{}));
  EXPECT_THROW(prompt_lookup_proposal(seq, 0, 3), InvalidArgument);
  EXPECT_THROW(prompt_lookup_proposal(seq, 2, 0), InvalidArgument);
}

TEST(PromptLookup, Task3_OutputEqualsTargetGreedy) {
  const Models& m = models();
  std::vector<TokenIds> prompts = test_prompts();
  prompts.push_back(reading_prompt());
  for (const TokenIds& prompt : prompts) {
    const GenerationOptions options = chat_options(16);
    const Generation expected = generate_tokens_with_kv_cache(m.target, prompt, options);
    for (const auto& [n, k] : {std::pair<int64_t, int64_t>{1, 2}, {2, 5}, {3, 3}}) {
      SCOPED_TRACE("n " + std::to_string(n) + ", k " + std::to_string(k));
      expect_same_generation(prompt_lookup_generate(m.target, prompt, options, n, k).generation,
                             expected);
    }
  }
}

TEST(PromptLookup, Task3_CopiedAnswersAreAccepted) {
  // The answer "Torrowick was founded by Fellath Rasem." copies the passage: lookups hit.
  const Models& m = models();
  const GenerationOptions options = chat_options(24);
  int64_t rounds_seen = 0;
  const SpeculativeGeneration out = prompt_lookup_generate(
      m.target, reading_prompt(), options, 2, 4, {}, [&](const SpeculativeRound& r) {
        ++rounds_seen;
        EXPECT_EQ(r.target_offset, r.sequence_length - 1);
      });
  expect_same_generation(out.generation,
                         generate_tokens_with_kv_cache(m.target, reading_prompt(), options));
  EXPECT_GT(out.stats.accepted, 0);
  EXPECT_GT(out.stats.acceptance_rate(), 0.0);
  EXPECT_LT(out.stats.rounds, static_cast<int64_t>(out.generation.tokens.size()) - 1)
      << "accepted lookups must save target calls";
}

TEST(PromptLookup, Task3_BadNIsRefused) {
  const Models& m = models();
  const TokenIds prompt = reading_prompt();
  EXPECT_EQ(
      prompt_lookup_generate(m.target, prompt, chat_options(3), 2, 3).generation.tokens.size(), 3u);
  EXPECT_THROW(prompt_lookup_generate(m.target, prompt, chat_options(3), 0, 3), InvalidArgument);
  EXPECT_THROW(prompt_lookup_generate(m.target, prompt, chat_options(3), 2, 0), InvalidArgument);
}

}  // namespace
}  // namespace tinyllm
