// Chapter 2.6 tests. The oracles: the course's exact BatchingKvCache example (spec section 4.4,
// Task 2); chapter 2.1's single-request model and greedy generation, which the issue itself
// defines as the expected value of every batched request (batching must not change a single
// logit beyond float rounding, nor any greedy id); Hugging Face's greedy ids of the embedded
// tiny-qwen2 model (data/fixtures/models, an independent oracle).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batched_model.hpp>
#include <tinyllm/ch2_6_continuous_batching/batching_kv_cache.hpp>
#include <tinyllm/ch2_6_continuous_batching/continuous_batching.hpp>

#include "ch2_6_continuous_batching_cases.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

using testing::Fixture;
using testing::random_prompts;
using testing::single_run;

// Batched and single-request logits differ only in summation order (measured: ~1e-6).
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> values(const Tensor& t) {
  return std::vector<float>(t.data(), t.data() + t.numel());
}

// Position l of row b of a B x L x V tensor, as [V].
Tensor logits_at(const Tensor& logits, int64_t b, int64_t l) {
  const int64_t L = logits.dim(1), V = logits.dim(2);
  const float* row = logits.data() + (b * L + l) * V;
  return Tensor({V}, std::vector<float>(row, row + V));
}

bool all_finite(const Tensor& t) {
  return std::all_of(t.data(), t.data() + t.numel(), [](float x) { return std::isfinite(x); });
}

// A KvCache of batch 1 holding `keys` (H = D = 1) with values = keys + 100.
KvCache filled_cache(const std::vector<float>& keys, int64_t max_seq_len) {
  KvCache cache(1, 1, 1, max_seq_len);
  std::vector<float> vals = keys;
  for (float& v : vals) v += 100.0f;
  const auto n = static_cast<int64_t>(keys.size());
  cache.update_and_fetch(Tensor({1, 1, n, 1}, keys), Tensor({1, 1, n, 1}, vals));
  return cache;
}

// ---------------------------------------------------------------------------------------------
// Task 1

TEST(BatchingKvCache, Task1_CourseExampleKeysValuesAndMask) {
  // 3 slots, H = D = 1: slot 0 has 1 cached token, slot 2 has 2, slot 1 is idle; 2 new each.
  BatchingKvCache cache(3, 1, 1, 16);
  cache.add_request(filled_cache({10}, 16), 0);
  cache.add_request(filled_cache({20, 21}, 16), 2);
  const Tensor keys({3, 1, 2, 1}, {12, 13, 98, 99, 22, 23});
  Tensor vals = keys;
  for (int64_t i = 0; i < vals.numel(); ++i) vals.data()[i] += 100.0f;
  const BatchKvFetch out = cache.update_and_fetch(keys, vals);
  ASSERT_EQ(out.keys.shape(), Shape({3, 1, 4, 1}));
  ASSERT_EQ(out.values.shape(), Shape({3, 1, 4, 1}));
  ASSERT_EQ(out.mask.shape(), Shape({3, 1, 2, 4}));
  EXPECT_EQ(values(out.keys), std::vector<float>({0, 10, 12, 13, 0, 0, 0, 0, 20, 21, 22, 23}));
  EXPECT_EQ(values(out.values),
            std::vector<float>({0, 110, 112, 113, 0, 0, 0, 0, 120, 121, 122, 123}));
  const float n = -kInf;
  EXPECT_EQ(values(out.mask), std::vector<float>({n, 0, 0, n, n, 0, 0, 0,     // slot 0
                                                  n, n, n, n, n, n, n, n,     // slot 1: idle
                                                  0, 0, 0, n, 0, 0, 0, 0}));  // slot 2
  EXPECT_EQ(cache.offset(0), 3);
  EXPECT_EQ(cache.offset(2), 4);
  EXPECT_FALSE(cache.is_active(1));
}

TEST(BatchingKvCache, Task1_RequestsJoinAndLeaveSlots) {
  BatchingKvCache cache(2, 2, 3, 8);
  cache.add_request(KvCache(1, 2, 3, 8), 1);  // an empty cache: the request prefills through it
  EXPECT_TRUE(cache.is_active(1));
  EXPECT_FALSE(cache.is_active(0));
  EXPECT_EQ(cache.offset(1), 0);
  const Tensor kv = Tensor::full({2, 2, 1, 3}, 1.5f);
  const BatchKvFetch first = cache.update_and_fetch(kv, kv);
  EXPECT_EQ(first.keys.shape(), Shape({2, 2, 1, 3}));
  EXPECT_EQ(values(first.mask), std::vector<float>({-kInf, 0}));
  EXPECT_EQ(values(first.keys),
            std::vector<float>({0, 0, 0, 0, 0, 0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5}));
  EXPECT_EQ(cache.offset(1), 1);
  // Slot 0 joins with 2 cached positions; the next step appends one to each.
  cache.add_request(KvCache(1, 2, 3, 8), 0);
  cache.update_and_fetch(kv, kv);
  const BatchKvFetch third = cache.update_and_fetch(kv, kv);
  EXPECT_EQ(cache.offset(0), 2);
  EXPECT_EQ(cache.offset(1), 3);
  EXPECT_EQ(values(third.mask), std::vector<float>({-kInf, 0, 0, 0, 0, 0}));
  // Slot 1 leaves and a fresh request takes it.
  cache.remove_request(1);
  EXPECT_FALSE(cache.is_active(1));
  cache.add_request(KvCache(1, 2, 3, 8), 1);
  EXPECT_EQ(cache.offset(1), 0);
  const BatchKvFetch fourth = cache.update_and_fetch(kv, kv);
  EXPECT_EQ(fourth.keys.shape(), Shape({2, 2, 3, 3}));
  EXPECT_EQ(values(fourth.mask), std::vector<float>({0, 0, 0, -kInf, -kInf, 0}));
}

TEST(BatchingKvCache, Task1_SlotErrorsAreInvalidArgument) {
  BatchingKvCache cache(2, 1, 1, 8);
  cache.add_request(filled_cache({1}, 8), 0);
  EXPECT_THROW(cache.add_request(filled_cache({2}, 8), 0), InvalidArgument);  // occupied
  EXPECT_THROW(cache.add_request(filled_cache({2}, 8), 2), InvalidArgument);  // outside
  EXPECT_THROW(cache.add_request(filled_cache({2}, 8), -1), InvalidArgument);
  EXPECT_THROW(cache.remove_request(1), InvalidArgument);  // idle
  EXPECT_THROW(cache.remove_request(5), InvalidArgument);
  cache.remove_request(0);
  EXPECT_THROW(cache.remove_request(0), InvalidArgument);  // already removed
  EXPECT_THROW(cache.offset(0), InvalidArgument);
}

TEST(BatchingKvCache, Task1_WrongShapesAreShapeErrors) {
  BatchingKvCache cache(2, 1, 2, 8);
  cache.add_request(KvCache(1, 1, 2, 8), 0);
  EXPECT_THROW(cache.add_request(KvCache(2, 1, 2, 8), 1), ShapeError);  // batch 2
  EXPECT_THROW(cache.add_request(KvCache(1, 1, 4, 8), 1), ShapeError);  // D 4
  EXPECT_THROW(cache.add_request(KvCache(1, 2, 2, 8), 1), ShapeError);  // H 2
  EXPECT_FALSE(cache.is_active(1));
  const Tensor ok = Tensor::full({2, 1, 1, 2}, 1.0f);
  cache.update_and_fetch(ok, ok);
  const Tensor three_rows = Tensor::full({3, 1, 1, 2}, 1.0f);
  EXPECT_THROW(cache.update_and_fetch(three_rows, three_rows), ShapeError);
  EXPECT_THROW(cache.update_and_fetch(ok, three_rows), ShapeError);
  EXPECT_EQ(cache.offset(0), 1);
}

TEST(BatchingKvCache, Task1_OverflowIsContextLengthErrorAndChangesNothing) {
  BatchingKvCache cache(2, 1, 1, 4);
  cache.add_request(filled_cache({1, 2, 3}, 4), 1);
  const Tensor two = Tensor::full({2, 1, 2, 1}, 7.0f);
  EXPECT_THROW(cache.update_and_fetch(two, two), ContextLengthError);
  EXPECT_EQ(cache.offset(1), 3);
  const Tensor one = Tensor::full({2, 1, 1, 1}, 7.0f);
  EXPECT_EQ(values(cache.update_and_fetch(one, one).keys),
            std::vector<float>({0, 0, 0, 0, 1, 2, 3, 7}));
}

// ---------------------------------------------------------------------------------------------
// Task 2

// The logits chapter 2.1's model gives a request alone: 1 x P x V for its whole prompt.
Tensor single_logits(const Qwen2ModelWeek2& model, const TokenIds& prompt) {
  std::vector<KvCache> caches = model.create_kv_caches();
  return model.forward({prompt}, 0, caches);
}

TEST(BatchedModel, Task2_StaggeredRequestsMatchSingleRequestLogits) {
  // The course's scenario, extended: 4 slots, requests start at global steps [0, 0, 1, 2] and feed
  // one prompt token per step; when one ends, a new request takes its slot.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::tiny_qwen2_model());
  struct Timed {
    int64_t slot, start;
    TokenIds prompt;
  };
  const std::vector<TokenIds> p = random_prompts(6, model.config().vocab_size, 3, 5, 26);
  std::vector<Timed> plan = {{0, 0, p[0]}, {1, 0, p[1]}, {2, 1, p[2]},
                             {3, 2, p[3]}, {0, 0, p[4]}, {2, 0, p[5]}};
  plan[4].start = plan[0].start + static_cast<int64_t>(plan[0].prompt.size());  // after request 0
  plan[5].start = plan[2].start + static_cast<int64_t>(plan[2].prompt.size()) + 1;  // idle gap
  std::vector<Tensor> expected;
  for (const Timed& r : plan) expected.push_back(single_logits(model, r.prompt));

  std::vector<BatchingKvCache> caches = create_batching_kv_caches(model, 4);
  int64_t compared = 0, idle_rows = 0;
  for (int64_t t = 0; t < 16; ++t) {
    std::vector<TokenIds> tokens(4, TokenIds{0});
    std::vector<int64_t> offsets(4, 0), owner(4, -1);
    for (size_t i = 0; i < plan.size(); ++i) {
      const int64_t pos = t - plan[i].start;
      if (pos < 0 || pos >= static_cast<int64_t>(plan[i].prompt.size())) continue;
      const auto s = static_cast<size_t>(plan[i].slot);
      if (pos == 0) {
        for (BatchingKvCache& c : caches) c.add_request(model.create_kv_caches()[0], plan[i].slot);
      }
      tokens[s] = {plan[i].prompt[static_cast<size_t>(pos)]};
      offsets[s] = pos;
      owner[s] = static_cast<int64_t>(i);
    }
    if (std::all_of(owner.begin(), owner.end(), [](int64_t o) { return o < 0; })) continue;
    const Tensor logits = batched_forward(model, tokens, offsets, caches);
    ASSERT_EQ(logits.shape(), Shape({4, 1, model.config().vocab_size}));
    ASSERT_TRUE(all_finite(logits)) << "step " << t;
    for (int64_t s = 0; s < 4; ++s) {
      const int64_t i = owner[static_cast<size_t>(s)];
      if (i < 0) {
        ++idle_rows;
        continue;
      }
      SCOPED_TRACE("step " + std::to_string(t) + ", request " + std::to_string(i));
      const int64_t pos = offsets[static_cast<size_t>(s)];
      EXPECT_TENSOR_NEAR(logits_at(logits, s, 0),
                         logits_at(expected[static_cast<size_t>(i)], 0, pos), kLogitAtol,
                         kLogitRtol);
      ++compared;
      if (pos + 1 == static_cast<int64_t>(plan[static_cast<size_t>(i)].prompt.size())) {
        for (BatchingKvCache& c : caches) c.remove_request(s);
      }
    }
  }
  int64_t total = 0;
  for (const Timed& r : plan) total += static_cast<int64_t>(r.prompt.size());
  EXPECT_EQ(compared, total);
  EXPECT_GT(idle_rows, 0);
}

TEST(BatchedModel, Task2_SeveralNewTokensPerRowMatchSingleRequestLogits) {
  // 3 slots: slot 0 prefilled with 3 tokens, slot 1 idle, slot 2 with 5; then 2 new tokens each.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const std::vector<TokenIds> p = random_prompts(2, model.config().vocab_size, 7, 7, 3);
  std::vector<BatchingKvCache> caches = create_batching_kv_caches(model, 3);
  const std::vector<int64_t> cached = {3, 0, 5};
  for (int64_t s : {0, 2}) {
    const TokenIds& prompt = p[static_cast<size_t>(s / 2)];
    std::vector<KvCache> own = model.create_kv_caches();
    model.forward({TokenIds(prompt.begin(), prompt.begin() + cached[static_cast<size_t>(s)])}, 0,
                  own);
    for (size_t i = 0; i < own.size(); ++i) caches[i].add_request(std::move(own[i]), s);
  }
  const std::vector<TokenIds> tokens = {{p[0][3], p[0][4]}, {0, 0}, {p[1][5], p[1][6]}};
  const Tensor logits = batched_forward(model, tokens, {3, 0, 5}, caches);
  ASSERT_EQ(logits.shape(), Shape({3, 2, model.config().vocab_size}));
  EXPECT_TRUE(all_finite(logits));
  for (int64_t s : {0, 2}) {
    const Tensor expected = single_logits(model, TokenIds(p[static_cast<size_t>(s / 2)].begin(),
                                                          p[static_cast<size_t>(s / 2)].begin() +
                                                              cached[static_cast<size_t>(s)] + 2));
    for (int64_t l = 0; l < 2; ++l) {
      EXPECT_TENSOR_NEAR(logits_at(logits, s, l),
                         logits_at(expected, 0, cached[static_cast<size_t>(s)] + l), kLogitAtol,
                         kLogitRtol);
    }
  }
  EXPECT_EQ(caches[1].offset(0), 5);
  EXPECT_EQ(caches[1].offset(2), 7);
}

TEST(BatchedModel, Task2_IdleSlotsStayFinite) {
  // One request in slot 2 of 4; the idle rows' attention has no key at all (mask all -inf).
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const TokenIds prompt = random_prompts(1, model.config().vocab_size, 6, 6, 5)[0];
  const Tensor expected = single_logits(model, prompt);
  std::vector<BatchingKvCache> caches = create_batching_kv_caches(model, 4);
  for (BatchingKvCache& c : caches) c.add_request(model.create_kv_caches()[0], 2);
  for (int64_t pos = 0; pos < 6; ++pos) {
    std::vector<TokenIds> tokens = {{5}, {7}, {prompt[static_cast<size_t>(pos)]}, {9}};
    const Tensor logits = batched_forward(model, tokens, {0, 3, pos, 0}, caches);
    ASSERT_TRUE(all_finite(logits)) << "position " << pos;
    EXPECT_TENSOR_NEAR(logits_at(logits, 2, 0), logits_at(expected, 0, pos), kLogitAtol,
                       kLogitRtol);
  }
  for (int64_t s : {0, 1, 3}) EXPECT_FALSE(caches[0].is_active(s));
}

TEST(BatchedModel, Task2_BadArgumentsAreErrors) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  std::vector<BatchingKvCache> caches = create_batching_kv_caches(model, 2);
  EXPECT_THROW(batched_forward(model, {{1}, {2}}, {0, 0}, caches), InvalidArgument);  // no slot
  for (BatchingKvCache& c : caches) c.add_request(model.create_kv_caches()[0], 0);
  batched_forward(model, {{1}, {2}}, {0, 0}, caches);  // valid: slot 0 now holds 1 position
  EXPECT_THROW(batched_forward(model, {{1}, {2}}, {0, 0}, caches), InvalidArgument);  // offset
  EXPECT_THROW(batched_forward(model, {{1}}, {1}, caches), ShapeError);  // 1 row for 2 slots
  EXPECT_THROW(batched_forward(model, {{1}, {2}}, {1}, caches), InvalidArgument);
  EXPECT_THROW(batched_forward(model, {{1}, {512}}, {1, 0}, caches), InvalidArgument);
  std::vector<BatchingKvCache> one_layer(caches.begin(), caches.begin() + 1);
  EXPECT_THROW(batched_forward(model, {{1}, {2}}, {1, 0}, one_layer), InvalidArgument);
  EXPECT_EQ(caches[0].offset(0), 1);
}

TEST(BatchedModel, Task2_ForwardSequencesMatchesEachSequenceAlone) {
  // BatchedWeek2Model::forward_sequences (one batched_forward for R sequences at their own
  // offsets) against each sequence's own forward_last; the caches come back advanced.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const BatchedWeek2Model batched(model);
  const std::vector<TokenIds> p = random_prompts(3, model.config().vocab_size, 9, 9, 41);
  const std::vector<int64_t> cached = {4, 0, 7};
  for (int64_t new_tokens : {1, 2}) {
    SCOPED_TRACE(std::to_string(new_tokens) + " new tokens per sequence");
    std::vector<std::vector<KvCache>> own(3), alone(3);
    std::vector<std::vector<KvCache>*> pointers;
    std::vector<TokenIds> tokens;
    for (size_t r = 0; r < 3; ++r) {
      own[r] = model.create_kv_caches();
      alone[r] = model.create_kv_caches();
      const auto done = p[r].begin() + cached[r];
      if (cached[r] > 0) {
        model.forward({TokenIds(p[r].begin(), done)}, 0, own[r]);
        model.forward({TokenIds(p[r].begin(), done)}, 0, alone[r]);
      }
      tokens.emplace_back(done, done + new_tokens);
      pointers.push_back(&own[r]);
    }
    const Tensor logits = batched.forward_sequences(tokens, pointers);
    ASSERT_EQ(logits.shape(), Shape({3, model.config().vocab_size}));
    for (size_t r = 0; r < 3; ++r) {
      const Tensor expected = model.forward_last({tokens[r]}, cached[r], alone[r]);
      const auto row = static_cast<int64_t>(r);
      EXPECT_TENSOR_NEAR(logits_at(logits.reshape({3, 1, logits.dim(1)}), row, 0),
                         logits_at(expected.reshape({1, 1, expected.dim(1)}), 0, 0), kLogitAtol,
                         kLogitRtol);
      for (const KvCache& c : own[r]) EXPECT_EQ(c.offset(), cached[r] + new_tokens);
    }
  }
  // Ragged sequences (1 and 3 new tokens) run one at a time and still match.
  std::vector<KvCache> a = model.create_kv_caches(), b = model.create_kv_caches();
  const Tensor ragged =
      batched.forward_sequences({{p[0][0]}, {p[1][0], p[1][1], p[1][2]}}, {&a, &b});
  std::vector<KvCache> b_alone = model.create_kv_caches();
  const Tensor expected = model.forward_last({{p[1][0], p[1][1], p[1][2]}}, 0, b_alone);
  EXPECT_TENSOR_NEAR(logits_at(ragged.reshape({2, 1, ragged.dim(1)}), 1, 0),
                     logits_at(expected.reshape({1, 1, expected.dim(1)}), 0, 0), kLogitAtol,
                     kLogitRtol);
  EXPECT_EQ(b[0].offset(), 3);
  EXPECT_THROW(batched.forward_sequences({}, {}), InvalidArgument);
  EXPECT_THROW(batched.forward_sequences({{1}}, {nullptr}), InvalidArgument);
  EXPECT_THROW(batched.forward_sequences({{1}, {2}}, {&a}), InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Task 3

std::vector<BatchRequest> mixed_requests(const Qwen2ModelWeek2& model, int n, uint32_t seed) {
  std::vector<BatchRequest> requests;
  const std::vector<TokenIds> prompts = random_prompts(n, model.config().vocab_size, 2, 20, seed);
  for (int i = 0; i < n; ++i) {
    requests.push_back({prompts[static_cast<size_t>(i)], 3 + (i * 5) % 9, {}});
  }
  return requests;
}

// The scheduler over the Week 2 model with Task 2's batched step (BatchedWeek2Model).
std::vector<RequestOutput> run_batched(const Qwen2ModelWeek2& model, int64_t batch_size,
                                       const std::vector<BatchRequest>& requests) {
  const BatchedWeek2Model batched(model);
  ContinuousBatcher batcher(batched, batch_size);
  for (const BatchRequest& r : requests) batcher.submit(r);
  return batcher.run();
}

// A LanguageModel that forwards to another and records the size of every forward_sequences call.
class CountingModel : public LanguageModel {
 public:
  explicit CountingModel(const LanguageModel& inner) : inner_(inner) {}
  const Qwen2Config& config() const override { return inner_.config(); }
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override {
    return inner_.create_kv_caches(batch);
  }
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override {
    return inner_.forward(tokens, offset, caches);
  }
  Tensor forward_sequences(const std::vector<TokenIds>& tokens,
                           const std::vector<std::vector<KvCache>*>& caches) const override {
    sizes.push_back(static_cast<int64_t>(tokens.size()));
    return inner_.forward_sequences(tokens, caches);
  }
  mutable std::vector<int64_t> sizes;

 private:
  const LanguageModel& inner_;
};

TEST(ContinuousBatcher, Task3_GreedyIdsEqualSingleRequestRuns) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  std::vector<BatchRequest> requests = mixed_requests(model, 7, 11);
  std::vector<Generation> expected;
  for (const BatchRequest& r : requests) expected.push_back(single_run(model, r));
  for (bool reversed : {false, true}) {
    std::vector<size_t> order(requests.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = reversed ? order.size() - 1 - i : i;
    std::vector<BatchRequest> submitted;
    for (size_t i : order) submitted.push_back(requests[i]);
    for (int64_t batch_size : {1, 2, 4, 9}) {  // 9 slots for 7 requests: some never used
      SCOPED_TRACE("batch " + std::to_string(batch_size) + (reversed ? ", reversed" : ""));
      const std::vector<RequestOutput> out = run_batched(model, batch_size, submitted);
      ASSERT_EQ(out.size(), submitted.size());
      for (size_t k = 0; k < out.size(); ++k) {
        EXPECT_TRUE(out[k].finished);
        EXPECT_EQ(out[k].tokens, expected[order[k]].tokens) << "request " << order[k];
        EXPECT_EQ(out[k].finish_reason, FinishReason::MaxTokens);
      }
    }
  }
}

TEST(ContinuousBatcher, Task3_StopIdsContextFullAndZeroTokens) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const int64_t context = model.config().max_position_embeddings;  // 128
  std::vector<BatchRequest> requests = mixed_requests(model, 3, 7);
  const Generation plain = single_run(model, {requests[0].prompt, 10, {}});
  ASSERT_GE(plain.tokens.size(), 4u);
  requests[0].max_new_tokens = 10;
  requests[0].stop_ids = {plain.tokens[3]};  // ends before its 4th token (or earlier)
  requests[1].prompt = random_prompts(1, model.config().vocab_size, context - 5, context - 5, 9)[0];
  requests[1].max_new_tokens = 20;  // only 5 fit
  requests[2].max_new_tokens = 0;
  // Finished by the first token, so never joining a slot: max_new_tokens = 1, and a stop id
  // equal to the first greedy id. Then P + max_new_tokens == context exactly: MaxTokens wins.
  BatchRequest one_token = requests[0], stop_at_first = requests[0], exact_fit = requests[1];
  one_token.max_new_tokens = 1;
  one_token.stop_ids = {};
  stop_at_first.stop_ids = {plain.tokens[0]};
  exact_fit.max_new_tokens = 5;
  requests.insert(requests.end(), {one_token, stop_at_first, exact_fit});
  const std::vector<RequestOutput> out = run_batched(model, 2, requests);
  const Generation stopped = single_run(model, requests[0]);
  EXPECT_EQ(out[0].tokens, stopped.tokens);
  EXPECT_EQ(out[0].finish_reason, FinishReason::StopToken);
  EXPECT_EQ(out[0].stop_token, std::optional<TokenId>(plain.tokens[3]));
  EXPECT_EQ(out[1].tokens, single_run(model, requests[1]).tokens);
  EXPECT_EQ(out[1].tokens.size(), 5u);
  EXPECT_EQ(out[1].finish_reason, FinishReason::ContextFull);
  EXPECT_TRUE(out[2].tokens.empty());
  EXPECT_EQ(out[2].finish_reason, FinishReason::MaxTokens);
  EXPECT_EQ(out[3].tokens, TokenIds{plain.tokens[0]});
  EXPECT_EQ(out[3].finish_reason, FinishReason::MaxTokens);
  EXPECT_TRUE(out[4].tokens.empty());
  EXPECT_EQ(out[4].finish_reason, FinishReason::StopToken);
  EXPECT_EQ(out[5].tokens, single_run(model, requests[5]).tokens);
  EXPECT_EQ(out[5].tokens.size(), 5u);
  EXPECT_EQ(out[5].finish_reason, FinishReason::MaxTokens);
  for (const RequestOutput& o : out) EXPECT_TRUE(o.finished);
}

TEST(ContinuousBatcher, Task3_EmbeddedModelMatchesHfGreedyIds) {
  // Hugging Face's greedy ids of tiny-qwen2 for its 6 fixture prompts, up to the first near tie
  // (margin < 0.05) and at most 12, through 3 slots.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::tiny_qwen2_model());
  std::vector<BatchRequest> requests;
  std::vector<TokenIds> expected;
  for (const char* name : {"chat_add", "chat_capital", "chat_multiturn", "chat_reading",
                           "raw_story", "tool_weather"}) {
    const Fixture f(std::string("models/tiny-qwen2.") + name + ".safetensors");
    const std::vector<int64_t> input = f.ints("input_ids"), greedy = f.ints("greedy_ids");
    const Tensor margin = f.tensor("greedy_margin");
    size_t n = 0;
    while (n < 12 && n < greedy.size() && margin.data()[n] >= 0.05f) ++n;
    requests.push_back({TokenIds(input.begin(), input.end()), static_cast<int64_t>(n), {}});
    expected.emplace_back(greedy.begin(), greedy.begin() + static_cast<std::ptrdiff_t>(n));
  }
  const std::vector<RequestOutput> out = run_batched(model, 3, requests);
  size_t compared = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].tokens, expected[i]) << "prompt " << i;
    compared += expected[i].size();
  }
  EXPECT_GE(compared, 30u);
}

TEST(ContinuousBatcher, Task3_RequestsJoinAsSoonAsASlotFrees) {
  // Batch 2: request 0 wants 2 tokens, request 1 wants 6, request 2 waits. Step 1 admits 0 and 1
  // (first tokens from prefill) and decodes their second tokens: request 0 is done and leaves.
  // Step 2 gives its slot to request 2 while request 1 is still decoding.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  std::vector<BatchRequest> requests = mixed_requests(model, 3, 5);
  requests[0].max_new_tokens = 2;
  requests[1].max_new_tokens = 6;
  requests[2].max_new_tokens = 3;
  const BatchedWeek2Model batched(model);
  const CountingModel counting(batched);
  ContinuousBatcher batcher(counting, 2);
  for (const BatchRequest& r : requests) batcher.submit(r);
  std::vector<BatchProgress> seen;
  const std::vector<RequestOutput> out =
      batcher.run([&](const BatchProgress& p) { seen.push_back(p); });
  ASSERT_EQ(seen.size(), 5u);  // request 1: first token from prefill, then 5 decode steps
  EXPECT_EQ(seen[0].slots[0].request, -1);
  EXPECT_EQ(seen[0].slots[1].request, 1);
  EXPECT_EQ(seen[0].waiting, 1);
  EXPECT_EQ(seen[0].finished, 1);
  EXPECT_EQ(seen[1].slots[0].request, 2);
  EXPECT_EQ(seen[1].slots[1].request, 1);
  EXPECT_EQ(seen[1].slots[1].generated, 3);
  EXPECT_EQ(seen[1].slots[1].offset,
            static_cast<int64_t>(requests[1].prompt.size()) + 2);  // prompt + 2 fed tokens
  EXPECT_EQ(seen.back().finished, 3);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].step, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(seen[i].slots.size(), 2u);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].tokens, single_run(model, requests[i]).tokens) << "request " << i;
    EXPECT_GT(out[i].first_token_s, 0.0);
    EXPECT_LE(out[i].first_token_s, out[i].last_token_s);
  }
  EXPECT_LT(out[0].last_token_s, out[2].first_token_s);  // request 2 started after 0 finished
  EXPECT_EQ(batcher.stats().steps, 5);
  EXPECT_TRUE(batcher.done());
  // One model step per iteration for all active slots: 2, 2, 1 (request 2 done), 1, 1.
  EXPECT_EQ(counting.sizes, (std::vector<int64_t>{2, 2, 2, 1, 1}));
}

TEST(ContinuousBatcher, Task3_AnyLanguageModelGivesTheSameIds) {
  // The scheduler takes the interface: the plain Week 2 model (forward_sequences one sequence at a
  // time, the interface's default) and BatchedWeek2Model (one batched_forward) agree.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const std::vector<BatchRequest> requests = mixed_requests(model, 5, 23);
  ContinuousBatcher plain(model, 3);
  for (const BatchRequest& r : requests) plain.submit(r);
  const std::vector<RequestOutput> expected = plain.run();
  const std::vector<RequestOutput> out = run_batched(model, 3, requests);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].tokens, expected[i].tokens) << i;
}

TEST(ContinuousBatcher, Task3_BadRequestsAreErrors) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const BatchedWeek2Model batched(model);
  ContinuousBatcher batcher(batched, 2);
  batcher.submit({{1, 2, 3}, 2, {}});
  EXPECT_EQ(batcher.run()[0].tokens.size(), 2u);
  EXPECT_THROW(batcher.submit({{}, 2, {}}), InvalidArgument);
  EXPECT_THROW(batcher.submit({{1, 2}, -1, {}}), InvalidArgument);
  EXPECT_THROW(batcher.submit({{1, 512}, 2, {}}), InvalidArgument);
  EXPECT_THROW(batcher.submit({TokenIds(129, 1), 2, {}}), ContextLengthError);
  EXPECT_THROW(batcher.submit({TokenIds(128, 1), 1, {}}), ContextLengthError);  // no room left
  EXPECT_THROW(ContinuousBatcher(model, 0), InvalidArgument);
  EXPECT_EQ(batcher.requests().size(), 1u);
}

}  // namespace
}  // namespace tinyllm
