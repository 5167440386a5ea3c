// Chapter 3.2 tests. The oracles: PyTorch attention over the same pages gathered into dense K/V
// (tools/fixtures/gen_week3_paged.py: non-contiguous page ids, -1 padding, idle rows, causal and
// not, L > 1 chunks, GQA, garbage in every slot no context reaches); the course's exact cases
// (spec section 5.2) against chapter 2.4's flash attention and chapter 1.3's grouped attention on
// the gathered cache; Hugging Face's logits of tiny-qwen2 and chapter 2.1's Week 2 model for the
// model on paged attention; chapter 2.1's single-request greedy generation for the scheduler.
// Task 2 runs on every instruction set the CPU has, with 1 and 2 threads.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/qwen2_week3.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_attention.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_batching.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_model.hpp>

#include "model_fixtures.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

using testing::Fixture;
using testing::random_prompts;

constexpr double kAtol = 1e-5, kRtol = 1e-5;            // attention against float64 PyTorch
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;  // chapter 2.1's, against HF / Week 2

std::filesystem::path tiny_qwen2() {
  return testing::data_dir() / "models" / "tiny-qwen2";
}
std::filesystem::path small_qwen2() {
  return testing::data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied";
}

Tensor with_threads(int n, const std::function<Tensor()>& f) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  Tensor out;
  try {
    out = f();
  } catch (...) {
    omp_set_num_threads(before);
    throw;
  }
  omp_set_num_threads(before);
  return out;
}

void for_each_isa(const std::function<void()>& f) {
  struct Restore {
    ~Restore() { force_flash_isa(FlashIsa::Auto); }
  } restore;
  for (FlashIsa isa : {FlashIsa::Avx512, FlashIsa::Avx2, FlashIsa::Portable}) {
    if (!flash_isa_supported(isa)) continue;
    force_flash_isa(isa);
    SCOPED_TRACE(std::string("attend_kv_range on ") + flash_kernel_isa());
    f();
  }
}

// One fixture case: its pages loaded into a pool (ids = the fixture's), its metadata and outputs.
struct PagedCase {
  std::unique_ptr<PagePool> pool;
  PagedKvMetadata meta;
  Tensor query, out, out_causal;
  std::string description;
};

std::vector<PagedCase> load_cases() {
  const Fixture f("ch3.2/paged_attention.safetensors");
  std::vector<PagedCase> cases;
  for (int i = 0; i < std::stoi(f.meta("num_cases")); ++i) {
    const std::string p = "case" + std::to_string(i) + ".";
    PagedCase c;
    const Tensor keys = f.tensor(p + "keys"), values = f.tensor(p + "values");
    c.pool = std::make_unique<PagePool>(keys.dim(1), keys.dim(3), keys.dim(2));
    for (int64_t page = 0; page < keys.dim(0); ++page) {
      const int32_t id = c.pool->allocate();
      const int64_t n = c.pool->page_floats();
      std::copy_n(keys.data() + page * n, n, c.pool->keys(id));
      std::copy_n(values.data() + page * n, n, c.pool->values(id));
    }
    const std::vector<int64_t> table = f.ints(p + "block_table"), lens = f.ints(p + "context_lens");
    c.meta.batch = static_cast<int64_t>(lens.size());
    c.meta.max_pages = static_cast<int64_t>(table.size()) / c.meta.batch;
    c.meta.page_size = keys.dim(2);
    c.meta.block_table.assign(table.begin(), table.end());
    c.meta.context_lens.assign(lens.begin(), lens.end());
    c.query = f.tensor(p + "query");
    c.out = f.tensor(p + "out");
    c.out_causal = f.tensor(p + "out_causal");
    c.description = f.meta("case" + std::to_string(i));
    cases.push_back(std::move(c));
  }
  return cases;
}

bool all_finite(const Tensor& t) {
  return std::all_of(t.data(), t.data() + t.numel(), [](float x) { return std::isfinite(x); });
}

// Row b of a B x ... tensor as a 1 x ... tensor.
Tensor batch_row(const Tensor& t, int64_t b) {
  Shape shape = t.shape();
  shape[0] = 1;
  const int64_t n = t.numel() / t.dim(0);
  return Tensor(shape, std::vector<float>(t.data() + b * n, t.data() + (b + 1) * n));
}

Tensor random_tensor(const Shape& shape, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Task 1

TEST(PagedAttention, Task1_MatchesPyTorchOverTheSamePages) {
  for (const PagedCase& c : load_cases()) {
    SCOPED_TRACE(c.description);
    const Tensor plain = paged_attention(c.query, *c.pool, c.meta, std::nullopt, false);
    EXPECT_TENSOR_NEAR(plain, c.out, kAtol, kRtol);
    const Tensor causal = paged_attention(c.query, *c.pool, c.meta);
    EXPECT_TENSOR_NEAR(causal, c.out_causal, kAtol, kRtol);
  }
}

TEST(PagedAttention, Task1_CourseMatchesDenseFlashAttention) {
  // paged_attention_matches_dense_flash_attention: page 4, a chunk of 3 then a chunk of 3 ->
  // block table [[0, 1]], context [6], pages 2 x 2 x 4 x 4; queries 1 x 4 x 3 x 4, causal.
  std::mt19937 rng(6);
  PagePool pool(2, 4, 4);
  PagedKvCache cache(pool);
  for (int chunk = 0; chunk < 2; ++chunk) {
    cache.append(random_tensor({1, 2, 3, 4}, rng), random_tensor({1, 2, 3, 4}, rng));
  }
  const PagedKvMetadata meta = build_paged_metadata({&cache});
  EXPECT_EQ(meta.block_table, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(meta.context_lens, (std::vector<int32_t>{6}));
  EXPECT_EQ(pool.num_pages(), 2);
  const Tensor q = random_tensor({1, 4, 3, 4}, rng);
  const KvFetch kv = cache.gather_dense();
  EXPECT_TENSOR_NEAR(paged_attention(q, pool, meta),
                     flash_attention(q, kv.keys, kv.values, std::nullopt, AttentionMask::causal()),
                     kAtol, kRtol);
}

TEST(PagedAttention, Task1_CourseBatchMatchesEachRequestsAttention) {
  // batched_paged_attention_matches_dense_attention: caches of 3 and 6 tokens in slots 0 and 2 of
  // 3, one decode token each -> context [4, 0, 7]; rows 0 and 2 against each request's grouped
  // causal attention (chapter 1.3) on its own cache, the idle row 1 all zeros.
  std::mt19937 rng(7);
  PagePool pool(2, 4, 4);
  PagedKvCache first(pool), third(pool);
  first.append(random_tensor({1, 2, 3, 4}, rng), random_tensor({1, 2, 3, 4}, rng));
  third.append(random_tensor({1, 2, 6, 4}, rng), random_tensor({1, 2, 6, 4}, rng));
  first.append(random_tensor({1, 2, 1, 4}, rng), random_tensor({1, 2, 1, 4}, rng));
  third.append(random_tensor({1, 2, 1, 4}, rng), random_tensor({1, 2, 1, 4}, rng));
  const PagedKvMetadata meta = build_paged_metadata({&first, nullptr, &third});
  ASSERT_EQ(meta.context_lens, (std::vector<int32_t>{4, 0, 7}));
  ASSERT_EQ(pool.num_pages(), 3);
  const Tensor q = random_tensor({3, 4, 1, 4}, rng);
  const Tensor out = paged_attention(q, pool, meta);
  ASSERT_EQ(out.shape(), q.shape());
  for (const auto& [row, cache] :
       {std::pair<int64_t, const PagedKvCache*>{0, &first}, {2, &third}}) {
    const KvFetch kv = cache->gather_dense();
    EXPECT_TENSOR_NEAR(batch_row(out, row),
                       scaled_dot_product_attention_grouped(batch_row(q, row), kv.keys, kv.values,
                                                            std::nullopt, AttentionMask::causal()),
                       kAtol, kRtol);
  }
  EXPECT_TENSOR_NEAR(batch_row(out, 1), Tensor({1, 4, 1, 4}), 0.0, 0.0);
}

TEST(PagedAttention, Task1_RowsWithoutKeysAreZerosNeverNaN) {
  std::mt19937 rng(1);
  PagePool pool(1, 8, 4);
  PagedKvCache cache(pool);
  cache.append(random_tensor({1, 1, 2, 8}, rng), random_tensor({1, 1, 2, 8}, rng));
  const Tensor q = random_tensor({2, 2, 5, 8}, rng);
  // Row 0: context 2 with 5 causal queries: rows 0-2 see no key. Row 1: idle.
  const Tensor out = paged_attention(q, pool, build_paged_metadata({&cache, nullptr}));
  ASSERT_TRUE(all_finite(out));
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t l = 0; l < 5; ++l) {
      const float* row = out.data() + (h * 5 + l) * 8;
      const bool sees_keys = l >= 3;
      EXPECT_EQ(std::any_of(row, row + 8, [](float x) { return x != 0.0f; }), sees_keys)
          << "head " << h << ", row " << l;
    }
  }
  EXPECT_TENSOR_NEAR(batch_row(out, 1), Tensor({1, 2, 5, 8}), 0.0, 0.0);
}

TEST(PagedAttention, Task1_BadArgumentsAreErrors) {
  std::mt19937 rng(2);
  PagePool pool(2, 4, 4);
  PagedKvCache cache(pool);
  cache.append(random_tensor({1, 2, 6, 4}, rng), random_tensor({1, 2, 6, 4}, rng));
  const PagedKvMetadata meta = build_paged_metadata({&cache});
  const Tensor q = random_tensor({1, 4, 1, 4}, rng);
  EXPECT_TRUE(all_finite(paged_attention(q, pool, meta)));                                  // valid
  EXPECT_THROW(paged_attention(random_tensor({1, 4, 1, 5}, rng), pool, meta), ShapeError);  // D
  EXPECT_THROW(paged_attention(random_tensor({1, 3, 1, 4}, rng), pool, meta), ShapeError);  // H_q
  EXPECT_THROW(paged_attention(random_tensor({2, 4, 1, 4}, rng), pool, meta), ShapeError);  // B
  EXPECT_THROW(paged_attention(random_tensor({4, 1, 4}, rng), pool, meta), ShapeError);
  PagedKvMetadata bad = meta;
  bad.block_table[1] = -1;  // position 4..5 need logical page 1
  EXPECT_THROW(paged_attention(q, pool, bad), InvalidArgument);
  bad = meta;
  bad.block_table[0] = 9;  // not a page of the pool
  EXPECT_THROW(paged_attention(q, pool, bad), InvalidArgument);
  bad = meta;
  bad.context_lens[0] = 9;  // more than 2 pages of 4
  EXPECT_THROW(paged_attention(q, pool, bad), InvalidArgument);
  bad = meta;
  bad.context_lens[0] = -1;
  EXPECT_THROW(paged_attention(q, pool, bad), InvalidArgument);
  bad = meta;
  bad.page_size = 8;
  EXPECT_THROW(paged_attention(q, pool, bad), InvalidArgument);
  EXPECT_THROW(paged_attention_parallel(q, pool, bad), InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Task 2

TEST(PagedAttention, Task2_ParallelMatchesPyTorchForEveryTilingSplitAndThreadCount) {
  const std::vector<PagedCase> cases = load_cases();
  for_each_isa([&] {
    for (const PagedCase& c : cases) {
      SCOPED_TRACE(c.description);
      for (const auto& [br, bc] : {std::pair<int, int>{32, 32}, {7, 5}, {1, 64}}) {
        for (int splits : {0, 1, 3}) {
          FlashOptions o;
          o.block_rows = br;
          o.block_cols = bc;
          o.kv_splits = splits;
          SCOPED_TRACE("tiles " + std::to_string(br) + " x " + std::to_string(bc) + ", splits " +
                       std::to_string(splits));
          for (bool causal : {false, true}) {
            const Tensor one = with_threads(1, [&] {
              return paged_attention_parallel(c.query, *c.pool, c.meta, {}, causal, o);
            });
            const Tensor two = with_threads(2, [&] {
              return paged_attention_parallel(c.query, *c.pool, c.meta, {}, causal, o);
            });
            EXPECT_TENSOR_NEAR(one, causal ? c.out_causal : c.out, kAtol, kRtol);
            EXPECT_EQ(one.values(), two.values()) << "the thread count changed the result";
          }
        }
      }
    }
  });
}

TEST(PagedAttention, Task2_DecodeAtLongContextMatchesDenseParallelFlashAttention) {
  // A decode step of Qwen2-0.5B's attention shape at context 1000 (pages of 16 in shuffled order)
  // against chapter 2.5's flash_attention_parallel on the gathered cache.
  std::mt19937 rng(11);
  PagePool pool(2, 64, 16);
  std::vector<PagedKvCache> caches;
  for (int i = 0; i < 3; ++i) caches.emplace_back(pool);
  for (int step = 0; step < 25; ++step) {  // three caches take turns: ids interleave
    for (int i = 0; i < 3; ++i) {
      caches[static_cast<size_t>(i)].append(random_tensor({1, 2, 40, 64}, rng),
                                            random_tensor({1, 2, 40, 64}, rng));
    }
  }
  caches[1].rewind(333);
  const Tensor q = random_tensor({3, 14, 1, 64}, rng);
  const PagedKvMetadata meta = build_paged_metadata({&caches[0], &caches[1], &caches[2]});
  const Tensor out = paged_attention_parallel(q, pool, meta);
  for (int64_t b = 0; b < 3; ++b) {
    const KvFetch kv = caches[static_cast<size_t>(b)].gather_dense();
    EXPECT_TENSOR_NEAR(batch_row(out, b),
                       flash_attention_parallel(batch_row(q, b), kv.keys, kv.values), kAtol, kRtol);
  }
  EXPECT_TENSOR_NEAR(paged_attention(q, pool, meta), out, kAtol, kRtol);
}

// ---------------------------------------------------------------------------------------------
// Task 3

TEST(PagedModel, Task3_DecodingMatchesWeek2AndHf) {
  // tiny-qwen2 through paged attention (pages of 5: never aligned with anything), half of each
  // prompt prefilled and the rest decoded one token at a time, against HF's logits and chapter
  // 2.1's model at every position.
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(tiny_qwen2());
  const Qwen2PagedAttentionModel model(week2, 5);
  for (const char* prompt : {"raw_story", "chat_add"}) {
    SCOPED_TRACE(prompt);
    const Fixture f(std::string("models/tiny-qwen2.") + prompt + ".safetensors");
    const std::vector<int64_t> flat = f.ints("input_ids");
    const TokenIds ids(flat.begin(), flat.end());
    const auto T = static_cast<int64_t>(ids.size());
    const Tensor hf = f.tensor("logits").reshape({T, -1});
    const int64_t V = hf.dim(1);
    std::vector<PagedKvCache> paged = model.create_paged_caches();
    std::vector<KvCache> dense = week2.create_kv_caches();
    int64_t done = 0;
    for (int64_t end = T / 2; end <= T; ++end) {
      SCOPED_TRACE("position " + std::to_string(end - 1));
      const TokenIds chunk(ids.begin() + done, ids.begin() + end);
      const Tensor got = model.forward_paged({chunk}, {&paged});
      EXPECT_TENSOR_NEAR(got, week2.forward_last({chunk}, done, dense), kLogitAtol, kLogitRtol);
      EXPECT_TENSOR_NEAR(
          got, Tensor({1, V}, std::vector<float>(hf.data() + (end - 1) * V, hf.data() + end * V)),
          kLogitAtol, kLogitRtol);
      done = end;
    }
  }
}

TEST(PagedModel, Task3_BatchedStepMatchesEachRequestAlone) {
  // Four sequences at offsets 9, 0, 3 and 17 in one step (one paged attention call for all, their
  // pages interleaved in the pool), 1 and then 3 new tokens each, against each alone in Week 2.
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  const Qwen2PagedAttentionModel model(week2, 4);
  const std::vector<TokenIds> p = random_prompts(4, week2.config().vocab_size, 24, 24, 19);
  std::vector<int64_t> done = {9, 0, 3, 17};
  std::vector<std::vector<PagedKvCache>> paged(4);
  std::vector<std::vector<KvCache>> dense(4);
  std::vector<std::vector<PagedKvCache>*> pointers;
  for (size_t r = 0; r < 4; ++r) {
    paged[r] = model.create_paged_caches();
    dense[r] = week2.create_kv_caches();
    for (int64_t pos = 0; pos < done[r]; ++pos) {  // one token at a time: the pages interleave
      const TokenIds one = {p[r][static_cast<size_t>(pos)]};
      model.forward_paged({one}, {&paged[r]});
      week2.forward({one}, pos, dense[r]);
    }
    pointers.push_back(&paged[r]);
  }
  for (int64_t length : {1, 3}) {
    SCOPED_TRACE(std::to_string(length) + " new tokens each");
    std::vector<TokenIds> tokens;
    for (size_t r = 0; r < 4; ++r) {
      const auto begin = p[r].begin() + done[r];
      tokens.emplace_back(begin, begin + length);
    }
    const Tensor logits = model.forward_paged(tokens, pointers);
    for (size_t r = 0; r < 4; ++r) {
      const Tensor want = week2.forward_last({tokens[r]}, done[r], dense[r]);
      EXPECT_TENSOR_NEAR(batch_row(logits, static_cast<int64_t>(r)), want, kLogitAtol, kLogitRtol)
          << "sequence " << r;
      done[r] += length;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Task 4

std::vector<BatchRequest> mixed_requests(int64_t vocab, int n, uint32_t seed) {
  std::vector<BatchRequest> requests;
  const std::vector<TokenIds> prompts = random_prompts(n, vocab, 2, 20, seed);
  for (int i = 0; i < n; ++i) {
    requests.push_back({prompts[static_cast<size_t>(i)], 3 + (i * 5) % 9, {}});
  }
  return requests;
}

// The request alone: chapter 2.1's greedy generation (max_new_tokens capped by the context).
TokenIds single_run(const Qwen2ModelWeek2& model, const BatchRequest& r) {
  const int64_t room =
      model.config().max_position_embeddings - static_cast<int64_t>(r.prompt.size());
  return generate_tokens_with_kv_cache(
             model, r.prompt,
             GenerationOptions{.max_new_tokens = std::min(r.max_new_tokens, room),
                               .stop_ids = r.stop_ids})
      .tokens;
}

TEST(PagedBatcher, Task4_GreedyIdsEqualSingleRequestRunsAndNoPageLeaks) {
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  const std::vector<BatchRequest> requests = mixed_requests(week2.config().vocab_size, 7, 11);
  std::vector<TokenIds> expected;
  for (const BatchRequest& r : requests) expected.push_back(single_run(week2, r));
  for (int64_t batch_size : {1, 3, 9}) {
    SCOPED_TRACE("batch " + std::to_string(batch_size));
    const Qwen2PagedAttentionModel model(week2, 4);
    PagedContinuousBatcher batcher(model, batch_size);
    for (const BatchRequest& r : requests) batcher.submit(r);
    const std::vector<RequestOutput> out = batcher.run([&](const BatchProgress& p) {
      int64_t positions = 0;
      for (const BatchProgress::Slot& s : p.slots) positions += s.request >= 0 ? s.offset : 0;
      EXPECT_GE(model.page_pool().pages_in_use() * 4, positions * 2);  // 2 layers
    });
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_EQ(out[i].tokens, expected[i]) << "request " << i;
      EXPECT_TRUE(out[i].finished);
    }
    EXPECT_EQ(model.page_pool().pages_in_use(), 0);
    EXPECT_EQ(batcher.pages_reserved(), 0);
  }
}

TEST(PagedBatcher, Task4_ASmallPoolLimitsAdmissionButNotTheIds) {
  // 4 slots, but a pool of 24 pages (2 layers, pages of 4): each request reserves
  // 2 x ceil((P + max_new) / 4) pages, so only some of them run at once. Every request still
  // gets its single-request ids, the pool never holds more than it has, and nothing leaks.
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  const std::vector<BatchRequest> requests = mixed_requests(week2.config().vocab_size, 8, 5);
  const Qwen2PagedAttentionModel model(week2, 4, /*max_pages=*/24);
  PagedContinuousBatcher batcher(model, 4);
  for (const BatchRequest& r : requests) {
    EXPECT_LE(batcher.pages_needed(r), 24);
    batcher.submit(r);
  }
  int64_t most_active = 0, steps_with_waiting_and_idle_slot = 0;
  const std::vector<RequestOutput> out = batcher.run([&](const BatchProgress& p) {
    int64_t active = 0;
    for (const BatchProgress::Slot& s : p.slots) active += s.request >= 0 ? 1 : 0;
    most_active = std::max(most_active, active);
    if (p.waiting > 0 && active < 4) ++steps_with_waiting_and_idle_slot;
    EXPECT_LE(model.page_pool().pages_in_use(), 24);
    EXPECT_LE(batcher.pages_reserved(), 24);
  });
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].tokens, single_run(week2, requests[i])) << "request " << i;
  }
  EXPECT_GE(most_active, 2);
  EXPECT_GT(steps_with_waiting_and_idle_slot, 0);  // admission waited for pages, not slots
  EXPECT_EQ(model.page_pool().pages_in_use(), 0);
  EXPECT_LE(model.page_pool().num_pages(), 24);
}

TEST(PagedBatcher, Task4_FinishedRequestsReleaseTheirPagesAtOnce) {
  // A request that stops with its first token never joins a slot; one with max_new_tokens 0
  // finishes at submission; a request that can never fit is refused at submit.
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  std::vector<BatchRequest> requests = mixed_requests(week2.config().vocab_size, 3, 7);
  const TokenIds plain = single_run(week2, {requests[0].prompt, 4, {}});
  requests[0].stop_ids = {plain[0]};
  requests[1].max_new_tokens = 0;
  const Qwen2PagedAttentionModel model(week2, 4, /*max_pages=*/16);
  PagedContinuousBatcher batcher(model, 2);
  for (const BatchRequest& r : requests) batcher.submit(r);
  EXPECT_THROW(batcher.submit({TokenIds(40, 1), 30, {}}), OutOfPages);  // 2 x 18 pages > 16
  std::vector<int64_t> in_use;
  const std::vector<RequestOutput> out = batcher.run(
      [&](const BatchProgress&) { in_use.push_back(model.page_pool().pages_in_use()); });
  EXPECT_TRUE(out[0].tokens.empty());
  EXPECT_EQ(out[0].finish_reason, FinishReason::StopToken);
  EXPECT_TRUE(out[1].tokens.empty());
  EXPECT_EQ(out[2].tokens, single_run(week2, requests[2]));
  ASSERT_FALSE(in_use.empty());
  // After the first step only request 2 holds pages: 2 layers x ceil(offset / 4).
  const int64_t offset = static_cast<int64_t>(requests[2].prompt.size()) + 1;
  EXPECT_EQ(in_use[0], 2 * ((offset + 3) / 4));
  EXPECT_EQ(in_use.back(), 0);
  EXPECT_EQ(batcher.requests().size(), 3u);
}

}  // namespace
}  // namespace tinyllm
