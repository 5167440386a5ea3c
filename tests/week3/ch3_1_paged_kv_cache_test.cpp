// Chapter 3.1 tests. The oracles: the course's exact cases (spec section 5.1: page ids and lens,
// reuse after release, rewind [4, 4, 1] -> [4, 2]); chapter 2.1's KvCache, whose fetch() every
// gather_dense() must equal bit for bit for the same appends; allocator invariants that hold by
// definition (no page owned by two live caches, every page returned exactly once, a decode step
// allocates only when the last page is full); Hugging Face's logits of the trained tiny-qwen2
// (data/fixtures/models, an independent oracle) and chapter 2.1's Week 2 model for the model on
// paged caches.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/qwen2_week3.hpp>

#include "model_fixtures.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

using testing::Fixture;
using testing::random_prompts;

// The paged path and Week 2 differ in summation order only (batched_linear's dot products against
// Eigen's product; measured ~1e-6); chapter 2.1's tolerance against HF.
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;

std::filesystem::path tiny_qwen2() {
  return testing::data_dir() / "models" / "tiny-qwen2";
}
std::filesystem::path small_qwen2() {
  return testing::data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied";
}

// The course's _random_chunk(L): normal 1 x H x L x D (H = 2, D = 4 by default).
Tensor random_chunk(int64_t L, std::mt19937& rng, int64_t H = 2, int64_t D = 4) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t({1, H, L, D});
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
  return t;
}

void expect_same_values(const Tensor& actual, const Tensor& expected) {
  ASSERT_EQ(actual.shape(), expected.shape());
  EXPECT_EQ(actual.values(), expected.values());
}

int64_t total(const std::vector<int64_t>& lens) {
  return std::accumulate(lens.begin(), lens.end(), int64_t{0});
}

// ---------------------------------------------------------------------------------------------
// Task 1: the pool

TEST(PagePool, Task1_MintsIdsThenReusesTheMostRecentlyFreed) {
  PagePool pool(2, 4, 4);
  EXPECT_EQ(pool.allocate(), 0);
  EXPECT_EQ(pool.allocate(), 1);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.num_pages(), 3);
  EXPECT_EQ(pool.pages_in_use(), 3);
  pool.free(1);
  pool.free(0);
  EXPECT_EQ(pool.pages_in_use(), 1);
  EXPECT_EQ(pool.free_pages(), 2);
  EXPECT_FALSE(pool.in_use(0));
  EXPECT_EQ(pool.allocate(), 0);  // last freed, first reused
  EXPECT_EQ(pool.allocate(), 1);
  EXPECT_EQ(pool.allocate(), 3);  // nothing free: a new id
  EXPECT_EQ(pool.num_pages(), 4);
  EXPECT_EQ(pool.free_pages(), 0);
  EXPECT_EQ(pool.try_allocate(), std::optional<int32_t>(4));
}

TEST(PagePool, Task1_FreeingAFreeOrUnknownPageIsInvalidArgument) {
  PagePool pool(1, 2, 2);
  const int32_t page = pool.allocate();
  pool.free(page);
  EXPECT_THROW(pool.free(page), InvalidArgument);  // twice
  EXPECT_THROW(pool.free(1), InvalidArgument);     // never minted
  EXPECT_THROW(pool.free(-1), InvalidArgument);
  EXPECT_EQ(pool.free_pages(), 1);
  EXPECT_EQ(pool.allocate(), page);
  EXPECT_THROW(pool.keys(7), InvalidArgument);
}

TEST(PagePool, Task1_BoundedPoolRunsOutWithOutOfPages) {
  PagePool pool(1, 2, 4, /*max_pages=*/2);
  EXPECT_EQ(pool.try_allocate(), std::optional<int32_t>(0));
  EXPECT_EQ(pool.allocate(), 1);
  EXPECT_EQ(pool.try_allocate(), std::nullopt);
  EXPECT_THROW(pool.allocate(), OutOfPages);
  EXPECT_EQ(pool.num_pages(), 2);
  pool.free(0);
  EXPECT_EQ(pool.allocate(), 0);
  EXPECT_EQ(pool.pages_in_use(), 2);
  EXPECT_THROW(PagePool(1, 2, 0), InvalidArgument);
  EXPECT_THROW(PagePool(1, 2, 4, -1), InvalidArgument);
}

TEST(PagePool, Task1_GrowingKeepsEarlierPagesInPlace) {
  PagePool pool(2, 3, 4);
  const int32_t first = pool.allocate();
  float* keys = pool.keys(first);
  float* values = pool.values(first);
  for (int64_t i = 0; i < pool.page_floats(); ++i) {
    keys[i] = static_cast<float>(i);
    values[i] = -static_cast<float>(i);
  }
  for (int i = 0; i < 300; ++i) pool.allocate();  // the pool grows a lot
  EXPECT_EQ(pool.keys(first), keys);
  EXPECT_EQ(pool.values(first), values);
  for (int64_t i = 0; i < pool.page_floats(); ++i) {
    ASSERT_EQ(keys[i], static_cast<float>(i));
    ASSERT_EQ(values[i], -static_cast<float>(i));
  }
  EXPECT_EQ(pool.page_floats(), 2 * 4 * 3);
  EXPECT_EQ(pool.values(first), pool.keys(first) + pool.page_floats());
}

// ---------------------------------------------------------------------------------------------
// Task 2: the paged cache

TEST(PagedKvCache, Task2_CoursePagedCacheMatchesFullCache) {
  // paged_cache_matches_full_cache: page_size 4, chunks 3, 2, 5.
  std::mt19937 rng(31);
  PagePool pool(2, 4, 4);
  PagedKvCache paged(pool);
  KvCache full(1, 2, 4, 64);
  int64_t cached = 0;
  for (int64_t L : {3, 2, 5}) {
    SCOPED_TRACE("chunk " + std::to_string(L));
    const Tensor k = random_chunk(L, rng), v = random_chunk(L, rng);
    const KvFetch got = paged.update_and_fetch(k, v);
    const KvFetch want = full.update_and_fetch(k, v);
    cached += L;
    expect_same_values(got.keys, want.keys);
    expect_same_values(got.values, want.values);
    EXPECT_EQ(paged.offset(), cached);
    EXPECT_EQ(paged.num_pages(), (cached + 3) / 4);
    EXPECT_EQ(total(paged.page_lens()), cached);
    EXPECT_EQ(pool.page_size(), 4);
  }
  EXPECT_EQ(paged.page_lens(), (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(paged.page_ids(), (std::vector<int32_t>{0, 1, 2}));
}

TEST(PagedKvCache, Task2_CoursePoolReusesFreedPages) {
  // paged_pool_reuses_freed_pages: 6 tokens -> pages [0, 1]; release -> 2 free; a second cache
  // with 5 tokens reuses {0, 1}, and the pool still has 2 pages.
  std::mt19937 rng(5);
  PagePool pool(2, 4, 4);
  PagedKvCache first(pool);
  first.append(random_chunk(6, rng), random_chunk(6, rng));
  EXPECT_EQ(first.page_ids(), (std::vector<int32_t>{0, 1}));
  first.release();
  EXPECT_EQ(first.offset(), 0);
  EXPECT_TRUE(first.page_ids().empty());
  EXPECT_EQ(pool.free_pages(), 2);
  PagedKvCache second(pool);
  second.append(random_chunk(5, rng), random_chunk(5, rng));
  const std::vector<int32_t> ids = second.page_ids();
  EXPECT_EQ(std::set<int32_t>(ids.begin(), ids.end()), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(pool.num_pages(), 2);
  EXPECT_EQ(pool.free_pages(), 0);
  first.release();  // again: nothing left to free
  EXPECT_EQ(pool.pages_in_use(), 2);
}

TEST(PagedKvCache, Task2_CourseRewindFreesWholePages) {
  // paged_cache_rewind: chunks 4, 3, 2 -> page_lens [4, 4, 1]; rewind(3) -> offset 6, [4, 2].
  std::mt19937 rng(8);
  PagePool pool(2, 4, 4);
  PagedKvCache paged(pool);
  KvCache full(1, 2, 4, 64);
  for (int64_t L : {4, 3, 2}) {
    const Tensor k = random_chunk(L, rng), v = random_chunk(L, rng);
    paged.append(k, v);
    full.append(k, v);
  }
  EXPECT_EQ(paged.page_lens(), (std::vector<int64_t>{4, 4, 1}));
  paged.rewind(3);
  full.rewind(3);
  EXPECT_EQ(paged.offset(), 6);
  EXPECT_EQ(paged.page_lens(), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(paged.num_pages(), 2);
  EXPECT_EQ(pool.num_pages(), 3);
  EXPECT_EQ(pool.free_pages(), 1);
  expect_same_values(paged.gather_dense().keys, full.fetch().keys);
  expect_same_values(paged.gather_dense().values, full.fetch().values);
  // Appending after the rewind overwrites the stale tail, as KvCache does.
  const Tensor k = random_chunk(3, rng), v = random_chunk(3, rng);
  expect_same_values(paged.update_and_fetch(k, v).values, full.update_and_fetch(k, v).values);
  EXPECT_EQ(paged.page_lens(), (std::vector<int64_t>{4, 4, 1}));
  paged.rewind(0);
  EXPECT_EQ(paged.offset(), 9);
  paged.rewind(9);
  EXPECT_EQ(paged.num_pages(), 0);
  EXPECT_EQ(pool.pages_in_use(), 0);
  EXPECT_THROW(paged.rewind(1), InvalidArgument);
  EXPECT_THROW(paged.rewind(-1), InvalidArgument);
}

TEST(PagedKvCache, Task2_DecodeAllocatesOnlyWhenTheLastPageIsFull) {
  std::mt19937 rng(2);
  PagePool pool(2, 4, 4);
  PagedKvCache cache(pool);
  cache.append(random_chunk(2, rng), random_chunk(2, rng));  // a prompt of 2
  EXPECT_EQ(pool.pages_in_use(), 1);
  for (int64_t step = 0; step < 13; ++step) {
    const int64_t before = pool.pages_in_use();
    cache.append(random_chunk(1, rng), random_chunk(1, rng));
    const bool overflow = (2 + step) % 4 == 0;  // the new position opens a page
    EXPECT_EQ(pool.pages_in_use() - before, overflow ? 1 : 0) << "step " << step;
  }
  EXPECT_EQ(cache.offset(), 15);
  EXPECT_EQ(pool.pages_in_use(), 4);
}

// Every live cache's pages are in use and owned by no other cache; the pool's count agrees.
void expect_pages_owned_once(const PagePool& pool, const std::vector<PagedKvCache>& caches) {
  std::set<int32_t> owned;
  int64_t count = 0;
  for (const PagedKvCache& c : caches) {
    for (int32_t id : c.page_ids()) {
      EXPECT_TRUE(pool.in_use(id)) << "page " << id;
      EXPECT_TRUE(owned.insert(id).second) << "page " << id << " is owned twice";
      ++count;
    }
    EXPECT_EQ(c.num_pages(), (c.offset() + pool.page_size() - 1) / pool.page_size());
  }
  EXPECT_EQ(pool.pages_in_use(), count);
}

TEST(PagedKvCache, Task2_RandomWorkloadOwnsEveryPageOnceAndReturnsItOnce) {
  // Four caches over one pool, random appends, rewinds and releases: every cache equals its own
  // KvCache, no page has two owners, and at the end every page ever minted is free exactly once.
  std::mt19937 rng(77);
  PagePool pool(2, 4, 3);
  std::vector<PagedKvCache> caches;
  std::vector<KvCache> dense;
  for (int i = 0; i < 4; ++i) {
    caches.emplace_back(pool);
    dense.emplace_back(1, 2, 4, 1000);
  }
  std::uniform_int_distribution<int> pick(0, 3), action(0, 9), length(1, 7);
  for (int step = 0; step < 200; ++step) {
    const auto c = static_cast<size_t>(pick(rng));
    const int a = action(rng);
    if (a < 7) {
      const int64_t L = length(rng);
      const Tensor k = random_chunk(L, rng), v = random_chunk(L, rng);
      caches[c].append(k, v);
      dense[c].append(k, v);
    } else if (a < 9) {
      const int64_t n = std::min<int64_t>(caches[c].offset(), length(rng));
      caches[c].rewind(n);
      dense[c].rewind(n);
    } else {
      caches[c].release();
      dense[c] = KvCache(1, 2, 4, 1000);
    }
    expect_pages_owned_once(pool, caches);
    if (::testing::Test::HasFailure()) return;
  }
  for (size_t c = 0; c < caches.size(); ++c) {
    if (caches[c].offset() == 0) {  // (a KvCache that never grew has nothing to fetch)
      EXPECT_EQ(caches[c].gather_dense().keys.shape(), Shape({1, 2, 0, 4}));
      continue;
    }
    expect_same_values(caches[c].gather_dense().keys, dense[c].fetch().keys);
    expect_same_values(caches[c].gather_dense().values, dense[c].fetch().values);
  }
  for (PagedKvCache& c : caches) c.release();
  EXPECT_EQ(pool.pages_in_use(), 0);
  EXPECT_EQ(pool.free_pages(), pool.num_pages());
  // Each id is in the free list once: allocating them all gives every id exactly once.
  std::set<int32_t> again;
  for (int64_t i = 0; i < pool.num_pages(); ++i) again.insert(pool.allocate());
  EXPECT_EQ(static_cast<int64_t>(again.size()), pool.num_pages());
  EXPECT_EQ(pool.free_pages(), 0);
}

TEST(PagedKvCache, Task2_NonContiguousPagesGatherInLogicalOrder) {
  // Two caches that take turns: their page ids interleave (0, 2, 4 and 1, 3).
  std::mt19937 rng(12);
  PagePool pool(3, 2, 2);
  PagedKvCache a(pool), b(pool);
  KvCache da(1, 3, 2, 64), db(1, 3, 2, 64);
  for (int i = 0; i < 5; ++i) {
    PagedKvCache& paged = i % 2 == 0 ? a : b;
    KvCache& full = i % 2 == 0 ? da : db;
    const Tensor k = random_chunk(2, rng, 3, 2), v = random_chunk(2, rng, 3, 2);
    paged.append(k, v);
    full.append(k, v);
  }
  EXPECT_EQ(a.page_ids(), (std::vector<int32_t>{0, 2, 4}));
  EXPECT_EQ(b.page_ids(), (std::vector<int32_t>{1, 3}));
  expect_same_values(a.gather_dense().keys, da.fetch().keys);
  expect_same_values(b.gather_dense().values, db.fetch().values);
}

TEST(PagedKvCache, Task2_DestructorAndMovesReturnPagesOnce) {
  std::mt19937 rng(3);
  PagePool pool(2, 4, 4);
  {
    PagedKvCache scoped(pool);
    scoped.append(random_chunk(9, rng), random_chunk(9, rng));
    EXPECT_EQ(pool.pages_in_use(), 3);
  }
  EXPECT_EQ(pool.pages_in_use(), 0);  // the destructor released them
  PagedKvCache source(pool);
  source.append(random_chunk(5, rng), random_chunk(5, rng));
  const std::vector<int32_t> ids = source.page_ids();
  PagedKvCache moved(std::move(source));
  EXPECT_EQ(moved.page_ids(), ids);
  EXPECT_EQ(moved.offset(), 5);
  EXPECT_TRUE(source.page_ids().empty());  // NOLINT(bugprone-use-after-move): documented state
  source.release();                        // frees nothing
  EXPECT_EQ(pool.pages_in_use(), 2);
  PagedKvCache other(pool);
  other.append(random_chunk(1, rng), random_chunk(1, rng));
  EXPECT_EQ(pool.pages_in_use(), 3);
  other = std::move(moved);  // other's own page goes back, moved's two come over
  EXPECT_EQ(pool.pages_in_use(), 2);
  EXPECT_EQ(other.page_ids(), ids);
  std::vector<PagedKvCache> many;
  for (int i = 0; i < 20; ++i) {  // the vector's growth moves the caches around
    many.emplace_back(pool);
    many.back().append(random_chunk(1, rng), random_chunk(1, rng));
  }
  EXPECT_EQ(pool.pages_in_use(), 22);
  many.clear();
  EXPECT_EQ(pool.pages_in_use(), 2);
}

TEST(PagedKvCache, Task2_BadAppendsChangeNothing) {
  std::mt19937 rng(4);
  PagePool pool(2, 4, 4, /*max_pages=*/3);
  PagedKvCache cache(pool);
  cache.append(random_chunk(6, rng), random_chunk(6, rng));  // 2 pages
  EXPECT_THROW(cache.append(random_chunk(2, rng, 3, 4), random_chunk(2, rng, 3, 4)), ShapeError);
  EXPECT_THROW(cache.append(random_chunk(2, rng, 2, 5), random_chunk(2, rng, 2, 5)), ShapeError);
  EXPECT_THROW(cache.append(random_chunk(2, rng), random_chunk(3, rng)), ShapeError);
  EXPECT_THROW(cache.append(Tensor({2, 2, 1, 4}), Tensor({2, 2, 1, 4})), ShapeError);
  EXPECT_THROW(cache.append(Tensor({1, 2, 0, 4}), Tensor({1, 2, 0, 4})), ShapeError);
  // 8 more positions need 2 more pages, only 1 is left: nothing is taken.
  const KvFetch before = cache.gather_dense();
  EXPECT_THROW(cache.append(random_chunk(8, rng), random_chunk(8, rng)), OutOfPages);
  EXPECT_EQ(cache.offset(), 6);
  EXPECT_EQ(cache.num_pages(), 2);
  EXPECT_EQ(pool.pages_in_use(), 2);
  expect_same_values(cache.gather_dense().keys, before.keys);
  cache.append(random_chunk(6, rng), random_chunk(6, rng));  // exactly fits
  EXPECT_EQ(pool.pages_in_use(), 3);
}

TEST(PagedKvCache, Task2_CourseBlockTableAndContextLens) {
  // batched_paged_attention_matches_dense_attention's metadata: caches with 3 and 6 tokens in
  // slots 0 and 2 of a 3-slot batch, one decode token each -> context_lens [4, 0, 7], block table
  // 3 x 2 with row 1 = [-1, -1].
  std::mt19937 rng(9);
  PagePool pool(2, 4, 4);
  PagedKvCache first(pool), third(pool);
  first.append(random_chunk(3, rng), random_chunk(3, rng));
  third.append(random_chunk(6, rng), random_chunk(6, rng));
  first.append(random_chunk(1, rng), random_chunk(1, rng));
  third.append(random_chunk(1, rng), random_chunk(1, rng));
  const PagedKvMetadata meta = build_paged_metadata({&first, nullptr, &third});
  EXPECT_EQ(meta.batch, 3);
  EXPECT_EQ(meta.max_pages, 2);
  EXPECT_EQ(meta.page_size, 4);
  EXPECT_EQ(meta.context_lens, (std::vector<int32_t>{4, 0, 7}));
  EXPECT_EQ(meta.block_table, (std::vector<int32_t>{0, -1, -1, -1, 1, 2}));
  EXPECT_EQ(pool.num_pages(), 3);
  EXPECT_EQ(meta.page(2, 1), 2);
  const PagedKvMetadata wide = build_paged_metadata({&third, &first}, 4);
  EXPECT_EQ(wide.block_table, (std::vector<int32_t>{1, 2, -1, -1, 0, -1, -1, -1}));
  EXPECT_EQ(wide.context_lens, (std::vector<int32_t>{7, 4}));
  EXPECT_EQ(build_paged_metadata({nullptr, nullptr}).block_table, std::vector<int32_t>{});
  EXPECT_THROW(build_paged_metadata({&third}, 1), InvalidArgument);  // 2 pages in 1 column
  EXPECT_THROW(build_paged_metadata({}), InvalidArgument);
  PagePool other_pool(2, 4, 4);
  PagedKvCache stranger(other_pool);
  EXPECT_THROW(build_paged_metadata({&first, &stranger}), InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Task 3: the model on paged caches

TEST(ModelWeek3, Task3_DecodingTokenByTokenMatchesWeek2AndHf) {
  // tiny-qwen2: half of each fixture prompt prefilled, the rest decoded one token at a time,
  // through paged caches (page_size 4, so pages fill and open all the time) and through chapter
  // 2.1's KvCache; both against Hugging Face's logits at every position.
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(tiny_qwen2());
  const Qwen2ModelWeek3 model(week2, 4);
  for (const char* prompt : {"raw_story", "chat_add"}) {
    SCOPED_TRACE(prompt);
    const Fixture f(std::string("models/tiny-qwen2.") + prompt + ".safetensors");
    ASSERT_EQ(f.meta("logits_start"), "0");
    const std::vector<int64_t> flat = f.ints("input_ids");
    const TokenIds ids(flat.begin(), flat.end());
    const auto T = static_cast<int64_t>(ids.size());
    const Tensor hf = f.tensor("logits").reshape({T, -1});
    const int64_t V = hf.dim(1);
    std::vector<PagedKvCache> paged = model.create_paged_caches();
    std::vector<KvCache> dense = week2.create_kv_caches();
    int64_t done = 0;
    for (int64_t end = T / 2; end <= T; ++end) {
      const TokenIds chunk(ids.begin() + done, ids.begin() + end);
      const Tensor got = model.forward_paged({chunk}, {&paged});
      const Tensor want = week2.forward_last({chunk}, done, dense);
      ASSERT_EQ(got.shape(), Shape({1, V}));
      SCOPED_TRACE("position " + std::to_string(end - 1));
      EXPECT_TENSOR_NEAR(got, want, kLogitAtol, kLogitRtol);
      const Tensor hf_row({1, V},
                          std::vector<float>(hf.data() + (end - 1) * V, hf.data() + end * V));
      EXPECT_TENSOR_NEAR(got, hf_row, kLogitAtol, kLogitRtol);
      done = end;
    }
    for (const PagedKvCache& c : paged) EXPECT_EQ(c.num_pages(), (T + 3) / 4);
  }
  EXPECT_EQ(model.page_pool().pages_in_use(), 0);  // every cache went out of scope
}

TEST(ModelWeek3, Task3_CourseLayersShareOnePoolWithTheirOwnPages) {
  // model_kv_caches_share_layer_pools / keep_independent_page_metadata: 5 tokens, page_size 4 ->
  // layer 0 has pages [0, 1] with lens [4, 1]; every other layer the same lens and its own ids.
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  const Qwen2ModelWeek3 model(week2, 4);
  std::vector<PagedKvCache> caches = model.create_paged_caches();
  ASSERT_EQ(static_cast<int64_t>(caches.size()), week2.config().num_hidden_layers);
  model.forward_paged({{1, 2, 3, 4, 5}}, {&caches});
  EXPECT_EQ(caches[0].page_ids(), (std::vector<int32_t>{0, 1}));
  std::set<int32_t> seen;
  for (const PagedKvCache& c : caches) {
    EXPECT_EQ(&c.pool(), &model.page_pool());
    EXPECT_EQ(c.page_lens(), (std::vector<int64_t>{4, 1}));
    for (int32_t id : c.page_ids()) EXPECT_TRUE(seen.insert(id).second) << "page " << id;
  }
  EXPECT_EQ(model.page_pool().pages_in_use(), 2 * static_cast<int64_t>(caches.size()));
}

TEST(ModelWeek3, Task3_SequencesInOneStepMatchEachAlone) {
  // Three sequences at offsets 4, 0 and 7 with 1 and then 2 new tokens each, in one call, against
  // each sequence alone through the Week 2 model; then a ragged call (1 and 3 new tokens).
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  const Qwen2ModelWeek3 model(week2, 3);
  const std::vector<TokenIds> p = random_prompts(3, week2.config().vocab_size, 12, 12, 41);
  const std::vector<int64_t> cached = {4, 0, 7};
  std::vector<std::vector<PagedKvCache>> paged(3);
  std::vector<std::vector<KvCache>> dense(3);
  std::vector<std::vector<PagedKvCache>*> pointers;
  for (size_t r = 0; r < 3; ++r) {
    paged[r] = model.create_paged_caches();
    dense[r] = week2.create_kv_caches();
    if (cached[r] > 0) {
      const TokenIds head(p[r].begin(), p[r].begin() + cached[r]);
      model.forward_paged({head}, {&paged[r]});
      week2.forward({head}, 0, dense[r]);
    }
    pointers.push_back(&paged[r]);
  }
  std::vector<int64_t> done = cached;
  const auto step = [&](const std::vector<int64_t>& lengths) {
    std::vector<TokenIds> tokens;
    for (size_t r = 0; r < 3; ++r) {
      const auto begin = p[r].begin() + done[r];
      tokens.emplace_back(begin, begin + lengths[r]);
    }
    const Tensor logits = model.forward_paged(tokens, pointers);
    ASSERT_EQ(logits.shape(), Shape({3, week2.config().vocab_size}));
    for (size_t r = 0; r < 3; ++r) {
      SCOPED_TRACE("sequence " + std::to_string(r));
      const Tensor want = week2.forward_last({tokens[r]}, done[r], dense[r]);
      const int64_t V = want.dim(1);
      const auto row = static_cast<int64_t>(r);
      EXPECT_TENSOR_NEAR(Tensor({1, V}, std::vector<float>(logits.data() + row * V,
                                                           logits.data() + (row + 1) * V)),
                         want, kLogitAtol, kLogitRtol);
      done[r] += lengths[r];
      for (const PagedKvCache& c : paged[r]) EXPECT_EQ(c.offset(), done[r]);
    }
  };
  step({1, 1, 1});
  step({2, 2, 2});
  step({1, 3, 1});  // ragged: one sequence at a time
}

TEST(ModelWeek3, Task3_BadCallsAreErrorsBeforeAnyCacheChanges) {
  const Qwen2ModelWeek2 week2 = load_qwen2_week2(small_qwen2());
  const Qwen2ModelWeek3 model(week2, 4, /*max_pages=*/4);  // 2 layers: 2 pages per layer
  std::vector<PagedKvCache> caches = model.create_paged_caches();
  model.forward_paged({{1, 2, 3}}, {&caches});
  const int64_t V = week2.config().vocab_size, context = week2.config().max_position_embeddings;
  EXPECT_THROW(model.forward_paged({}, {}), InvalidArgument);
  EXPECT_THROW(model.forward_paged({{1}}, {nullptr}), InvalidArgument);
  EXPECT_THROW(model.forward_paged({{1}, {2}}, {&caches}), InvalidArgument);
  EXPECT_THROW(model.forward_paged({{static_cast<TokenId>(V)}}, {&caches}), InvalidArgument);
  EXPECT_THROW(model.forward_paged({{}}, {&caches}), ShapeError);
  EXPECT_THROW(model.forward_paged({TokenIds(static_cast<size_t>(context - 2), 1)}, {&caches}),
               ContextLengthError);
  std::vector<PagedKvCache> one_layer;
  one_layer.emplace_back(model.page_pool());
  EXPECT_THROW(model.forward_paged({{1}}, {&one_layer}), InvalidArgument);
  for (const PagedKvCache& c : caches) EXPECT_EQ(c.offset(), 3);
  // 9 positions need 3 pages in each layer; the first call left 2 of the 4 free.
  std::vector<PagedKvCache> more = model.create_paged_caches();
  EXPECT_THROW(model.forward_paged({{1, 2, 3, 4, 5, 6, 7, 8, 9}}, {&more}), OutOfPages);
  more.clear();
  caches.clear();
  EXPECT_EQ(model.page_pool().pages_in_use(), 0);
}

}  // namespace
}  // namespace tinyllm
