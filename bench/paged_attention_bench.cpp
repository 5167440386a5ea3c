// Paged attention microbenchmarks (chapter 3.2): a decode step (L = 1) of Qwen2-0.5B's attention
// shape (H_q = 14, H = 2, D = 64) at context S = 512, 2048 and 8192, through
//   dense  chapter 2.5's flash_attention_parallel on one contiguous 1 x H x S x D cache
//   paged  chapter 3.2's paged_attention_parallel on the same keys in pages of 16 or 128
//          positions, the pages in shuffled order in the pool (as after many requests came and
//          went), found through a block table
// with the same thread count. Counter: GB/s of K and V read (2 H S D floats per step), the
// bound of a decode step. Build Release with -DTINYLLM_NATIVE=ON and run:
//   build/<dir>/bench/paged_attention_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <random>
#include <string>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_attention.hpp>
#include <vector>

namespace {

using tinyllm::PagedKvCache;
using tinyllm::PagePool;
using tinyllm::Tensor;

constexpr int64_t kHeads = 14, kKvHeads = 2, kDim = 64;

Tensor random_tensor(const tinyllm::Shape& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t(shape);
  for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = normal(rng);
  return t;
}

// Args: paged (0/1), S, page_size, threads.
void BM_DecodeAttention(benchmark::State& state) {
  const bool paged = state.range(0) != 0;
  const int64_t S = state.range(1), page_size = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const Tensor q = random_tensor({1, kHeads, 1, kDim}, 1);
  const Tensor k = random_tensor({1, kKvHeads, S, kDim}, 2);
  const Tensor v = random_tensor({1, kKvHeads, S, kDim}, 3);
  // The pool: mint every page first, free them in a shuffled order, so the cache's pages come
  // back scattered (the pool reuses the most recently freed first).
  const int64_t pages = (S + page_size - 1) / page_size;
  PagePool pool(kKvHeads, kDim, page_size);
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < pages; ++i) ids.push_back(pool.allocate());
  std::shuffle(ids.begin(), ids.end(), std::mt19937(4));
  for (int32_t id : ids) pool.free(id);
  PagedKvCache cache(pool);
  cache.append(k, v);
  const tinyllm::PagedKvMetadata meta = tinyllm::build_paged_metadata({&cache});
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  for (auto _ : state) {
    Tensor out = paged ? tinyllm::paged_attention_parallel(q, pool, meta)
                       : tinyllm::flash_attention_parallel(q, k, v, std::nullopt,
                                                           tinyllm::AttentionMask::causal());
    benchmark::DoNotOptimize(out.data());
  }
  omp_set_num_threads(before);
  const double bytes = 2.0 * static_cast<double>(kKvHeads * S * kDim) * sizeof(float);
  state.counters["GB/s"] = benchmark::Counter(
      bytes * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(
      std::string(paged ? "ch3.2 paged, page " + std::to_string(page_size) : "ch2.5 dense") + ", " +
      std::to_string(threads) + "t, " + tinyllm::flash_kernel_isa());
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (int64_t S : {512, 2048, 8192}) {
      b->Args({0, S, 16, threads});
      b->Args({1, S, 16, threads});
      b->Args({1, S, 32, threads});
      b->Args({1, S, 128, threads});
    }
  }
  b->ArgNames({"paged", "S", "page", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_DecodeAttention)->Apply(Shapes);

}  // namespace

BENCHMARK_MAIN();
