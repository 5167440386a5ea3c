// Chapter 2.7 tests. The oracles: chapter 2.1's one-shot prefill (the logits of a prompt must not
// depend on how it is cut into chunks, beyond float rounding) and chapter 2.1's single-request
// greedy generation, which the issue defines as the expected output of every request whatever the
// chunk size, batch size or arrival order.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batched_model.hpp>
#include <tinyllm/ch2_6_continuous_batching/continuous_batching.hpp>
#include <tinyllm/ch2_7_chunked_prefill/chunked_prefill.hpp>

#include "ch2_6_continuous_batching_cases.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

using testing::Fixture;
using testing::random_prompts;
using testing::single_run;

constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;

// Requests of 1 to 7 new tokens; request 0 wants one token, so it finishes with the token its
// prefill picks and must never take a slot.
std::vector<BatchRequest> requests_for(const std::vector<TokenIds>& prompts) {
  std::vector<BatchRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    requests.push_back({prompts[i], 1 + static_cast<int64_t>(i * 3 % 7), {}});
  }
  return requests;
}

// The greedy ids of the request alone (chapter 2.1).
TokenIds alone(const Qwen2ModelWeek2& model, const BatchRequest& r) {
  return single_run(model, r).tokens;
}

// ---------------------------------------------------------------------------------------------
// Task 1

TEST(ChunkedPrefill, Task1_LogitsEqualOneShotPrefill) {
  // The embedded model and the chat_reading fixture prompt, cut into chunks of 1, 3, 7, 32 and more
  // than the whole prompt.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::tiny_qwen2_model());
  const Fixture f("models/tiny-qwen2.chat_reading.safetensors");
  const std::vector<int64_t> ids = f.ints("input_ids");
  const TokenIds prompt(ids.begin(), ids.end());
  ASSERT_GT(prompt.size(), 33u);
  std::vector<KvCache> one_shot = model.create_kv_caches();
  const Tensor expected = decode_step(model, prompt, one_shot);
  for (int64_t chunk : {1, 3, 7, 32, 1000}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    std::vector<KvCache> caches = model.create_kv_caches();
    const Tensor logits = prefill_chunked(model, prompt, caches, chunk);
    EXPECT_TENSOR_NEAR(logits, expected, kLogitAtol, kLogitRtol);
    for (const KvCache& c : caches) EXPECT_EQ(c.offset(), static_cast<int64_t>(prompt.size()));
    // The caches are the one-shot caches too: the next decode step agrees.
    const Tensor next = decode_step(model, {prompt[0]}, caches);
    const Tensor next_one_shot = decode_step(model, {prompt[0]}, one_shot);
    EXPECT_TENSOR_NEAR(next, next_one_shot, kLogitAtol, kLogitRtol);
    for (KvCache& c : one_shot) c.rewind(1);
  }
}

TEST(ChunkedPrefill, Task1_NextChunkAdvancesByAtMostTheBudget) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const TokenIds prompt = random_prompts(1, model.config().vocab_size, 10, 10, 1)[0];
  std::vector<KvCache> caches = model.create_kv_caches();
  std::vector<KvCache> reference = model.create_kv_caches();
  const Tensor full = model.forward({prompt}, 0, reference);  // 1 x 10 x V
  const int64_t V = full.dim(2);
  for (auto [budget, after] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {4, 8}, {5, 10}}) {
    const Tensor logits = prefill_next_chunk(model, prompt, caches, budget);
    EXPECT_EQ(caches[0].offset(), after);
    const float* row = full.data() + (after - 1) * V;
    EXPECT_TENSOR_NEAR(logits, Tensor({V}, std::vector<float>(row, row + V)), kLogitAtol,
                       kLogitRtol);
  }
  EXPECT_THROW(prefill_next_chunk(model, prompt, caches, 1), InvalidArgument);  // all prefilled
  std::vector<KvCache> fresh = model.create_kv_caches();
  EXPECT_THROW(prefill_next_chunk(model, prompt, fresh, 0), InvalidArgument);
  EXPECT_THROW(prefill_chunked(model, prompt, fresh, 0), InvalidArgument);
  EXPECT_THROW(prefill_chunked(model, {}, fresh, 4), InvalidArgument);
  EXPECT_THROW(prefill_chunked(model, prompt, caches, 4), InvalidArgument);  // caches not empty
  std::vector<KvCache> no_caches;
  EXPECT_THROW(prefill_next_chunk(model, prompt, no_caches, 1), InvalidArgument);
  EXPECT_THROW(prefill_chunked(model, prompt, no_caches, 4), InvalidArgument);
  EXPECT_EQ(fresh[0].offset(), 0);
}

// ---------------------------------------------------------------------------------------------
// Task 2

TEST(ChunkedPrefillBatcher, Task2_GreedyIdsEqualSingleRequestRuns) {
  // Chunk sizes 1, 3, 32 and larger than any prompt, batch sizes 1 to 4, 6 requests.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  const std::vector<BatchRequest> requests =
      requests_for(random_prompts(6, model.config().vocab_size, 1, 40, 17));
  std::vector<TokenIds> expected;
  for (const BatchRequest& r : requests) expected.push_back(alone(model, r));
  for (int64_t chunk : {1, 3, 32, 100}) {
    for (int64_t batch_size : {1, 2, 3, 4}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk) + ", batch " + std::to_string(batch_size));
      const BatchedWeek2Model batched(model);
      ChunkedPrefillBatcher batcher(batched, batch_size, chunk);
      for (const BatchRequest& r : requests) batcher.submit(r);
      const std::vector<RequestOutput> out = batcher.run();
      for (size_t i = 0; i < out.size(); ++i) {
        EXPECT_EQ(out[i].tokens, expected[i]) << "request " << i;
        EXPECT_TRUE(out[i].finished);
      }
    }
  }
}

TEST(ChunkedPrefillBatcher, Task2_SixteenRequestsBatch4Chunk32) {
  // The scenario: 16 requests, 4 slots, chunks of 32 (prompts up to 70 tokens need 3).
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  std::vector<BatchRequest> requests =
      requests_for(random_prompts(16, model.config().vocab_size, 5, 70, 23));
  requests[3].stop_ids = {alone(model, requests[3]).at(1)};
  const BatchedWeek2Model batched(model);
  ChunkedPrefillBatcher batcher(batched, 4, 32);
  for (const BatchRequest& r : requests) batcher.submit(r);
  const std::vector<RequestOutput> out = batcher.run();
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].tokens, alone(model, requests[i])) << "request " << i;
  }
  EXPECT_EQ(out[3].finish_reason, FinishReason::StopToken);
}

TEST(ChunkedPrefillBatcher, Task2_PrefillSpendsTheBudgetBetweenDecodeSteps) {
  // Two short requests decode for a while; a 70-token prompt arrives third and, with a budget of
  // 16 tokens per iteration, prefills over 5 iterations while the other two keep decoding.
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  std::vector<TokenIds> prompts = random_prompts(4, model.config().vocab_size, 4, 4, 31);
  prompts[2] = random_prompts(1, model.config().vocab_size, 70, 70, 32)[0];
  std::vector<BatchRequest> requests = requests_for(prompts);
  requests[0].max_new_tokens = 12;
  requests[1].max_new_tokens = 12;
  requests[2].max_new_tokens = 3;
  requests[3].max_new_tokens = 3;
  const BatchedWeek2Model batched(model);
  ChunkedPrefillBatcher batcher(batched, 3, 16);
  for (const BatchRequest& r : requests) batcher.submit(r);
  const int64_t n = static_cast<int64_t>(requests.size());
  // Prompt tokens prefilled so far: requests are taken in order, so all of those taken from the
  // queue except the one still prefilling count whole.
  auto prefilled = [&](const BatchProgress& p) {
    int64_t total = 0;
    for (int64_t i = 0; i < n - p.waiting; ++i) {
      total += static_cast<int64_t>(requests[static_cast<size_t>(i)].prompt.size());
    }
    return p.prefill_request < 0 ? total : total - p.prefill_total + p.prefill_done;
  };
  int64_t before = 0, interleaved = 0, generated_before = 0;
  const std::vector<RequestOutput> out = batcher.run([&](const BatchProgress& p) {
    const int64_t now = prefilled(p);
    EXPECT_LE(now - before, 16) << "step " << p.step;
    int64_t generated = 0;
    for (const BatchProgress::Slot& s : p.slots) generated += s.request >= 0 ? s.generated : 0;
    if (p.prefill_request == 2 && generated > generated_before) ++interleaved;
    before = now;
    generated_before = generated;
  });
  EXPECT_GE(interleaved, 3);  // decode steps ran while request 2 was still prefilling
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].tokens, alone(model, requests[i])) << "request " << i;
  }
  EXPECT_LT(out[0].first_token_s, out[2].first_token_s);
  EXPECT_TRUE(batcher.done());
}

TEST(ChunkedPrefillBatcher, Task2_BadSettingsAreInvalidArgument) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(testing::batching_fixture_model());
  ChunkedPrefillBatcher batcher(model, 2, 4);
  batcher.submit({{1, 2, 3, 4, 5, 6}, 2, {}});
  EXPECT_EQ(batcher.run()[0].tokens, alone(model, {{1, 2, 3, 4, 5, 6}, 2, {}}));
  EXPECT_EQ(batcher.prefill_chunk(), 4);
  EXPECT_THROW(ChunkedPrefillBatcher(model, 2, 0), InvalidArgument);
  EXPECT_THROW(ChunkedPrefillBatcher(model, 0, 4), InvalidArgument);
}

}  // namespace
}  // namespace tinyllm
