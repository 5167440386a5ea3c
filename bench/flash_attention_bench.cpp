// Flash attention microbenchmarks (chapters 2.4-2.5): ch2.4's scalar flash_attention, ch2.5's
// flash_attention_parallel (vectorized, OpenMP) and ch1.3's scaled_dot_product_attention_grouped
// (the whole L x S score matrix), on Qwen2-0.5B's attention shape (H_q = 14, H = 2, D = 64):
//   prefill  L = S = 512, unmasked and causal (causal skips the tiles above the diagonal)
//   decode   L = 1 against S = 512 and 2048 cached keys
// Counters: GFLOP/s counts the 4 L S D H_q multiply-adds of Q K^T and P V that a full computation
// does (causal does about half of them, so its GFLOP/s reads as "effective"). Build Release with
// -DTINYLLM_NATIVE=ON and run:
//   build/<dir>/bench/flash_attention_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <omp.h>

#include <random>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>

namespace {

using tinyllm::AttentionMask;
using tinyllm::Tensor;

enum Impl { kScalar = 0, kParallel = 1, kWeek1 = 2 };
constexpr int64_t kHeads = 14, kKvHeads = 2, kDim = 64;

Tensor random_tensor(const tinyllm::Shape& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t(shape);
  for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = normal(rng);
  return t;
}

// Args: implementation, L, S, causal (0/1), threads.
void BM_Attention(benchmark::State& state) {
  const auto impl = static_cast<Impl>(state.range(0));
  const int64_t L = state.range(1), S = state.range(2);
  const AttentionMask mask = state.range(3) != 0 ? AttentionMask::causal() : AttentionMask::none();
  const int threads = static_cast<int>(state.range(4));
  const Tensor q = random_tensor({1, kHeads, L, kDim}, 1);
  const Tensor k = random_tensor({1, kKvHeads, S, kDim}, 2);
  const Tensor v = random_tensor({1, kKvHeads, S, kDim}, 3);
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  for (auto _ : state) {
    Tensor out;
    switch (impl) {
      case kScalar:
        out = tinyllm::flash_attention(q, k, v, std::nullopt, mask);
        break;
      case kParallel:
        out = tinyllm::flash_attention_parallel(q, k, v, std::nullopt, mask);
        break;
      case kWeek1:
        out = tinyllm::scaled_dot_product_attention_grouped(q, k, v, std::nullopt, mask);
        break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  omp_set_num_threads(before);
  const double flops = 4.0 * static_cast<double>(kHeads * L * S * kDim);
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(impl == kScalar     ? "ch2.4 scalar"
                             : impl == kParallel ? "ch2.5 parallel"
                                                 : "ch1.3 grouped") +
                 (state.range(3) != 0 ? ", causal" : ", no mask") + ", " + std::to_string(threads) +
                 "t" + (impl == kParallel ? std::string(", ") + tinyllm::flash_kernel_isa() : ""));
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int impl : {kScalar, kParallel, kWeek1}) {
    for (int threads : {1, 2}) {
      for (int causal : {0, 1}) b->Args({impl, 512, 512, causal, threads});  // prefill
      b->Args({impl, 1, 512, 1, threads});                                   // decode
      b->Args({impl, 1, 2048, 1, threads});
    }
  }
  b->ArgNames({"impl", "L", "S", "causal", "threads"})
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
}

BENCHMARK(BM_Attention)->Apply(Shapes);

}  // namespace

BENCHMARK_MAIN();
