// Microbenchmarks of the engine's own kernels (engine/), through WeightMatrix::matmul as the
// engine calls it: y = x W^T for Qwen2-0.5B's weight shapes.
//   BM_EngineMatmul   decode (M = 1: the streaming kernels, int8_small_matmul for q8/q4,
//                     bf16_dot_small_matmul for bf16; GB/s of weight bytes read) and prefill
//                     (M = 512: bf16_gemm for bf16/q8/q4, Eigen for f32; GFLOP/s), with 1 and 2
//                     threads, KernelChoice::fast() as the engine runs them.
//   BM_BatchedDecode  M = 1..16 activation rows (a decode step of M requests) on one decode step's
//                     matrices, as one call against M separate calls, fast and exact kernel
//                     choices.
// Compare with quantized_matmul_bench (chapter 2.3's kernels with f32 activations). Release build:
//   build/release/bench/engine_bench --benchmark_filter='M:1/'
//   build/release/bench/engine_bench
//   --benchmark_filter='BM_BatchedDecode/shape:2/spec:1/.*mode:[01]'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/kernels/weight_matrix.hpp"
#include "tinyllm/tensor.hpp"

namespace {

using tinyllm::Tensor;
using tinyllm::engine::KernelChoice;
using tinyllm::engine::WeightFormat;
using tinyllm::engine::WeightMatrix;
using tinyllm::engine::WeightSpec;

constexpr int64_t kShapes[4][2] = {{896, 896}, {4864, 896}, {896, 4864}, {151936, 896}};
const WeightSpec kSpecs[] = {{WeightFormat::F32, 0},
                             {WeightFormat::Bf16, 0},
                             {WeightFormat::Q8, 32},
                             {WeightFormat::Q4, 64}};
const char* kSpecNames[] = {"f32", "bf16", "q8g32", "q4g64"};
// Decode cycles through copies of a weight totalling >= 512 MB, so that each call reads memory.
constexpr double kRotateBytes = 512e6;

Tensor normal_tensor(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  Tensor t({rows, cols});
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
  return t;
}

const std::vector<WeightMatrix>& weights(int shape, int spec, bool rotate) {
  static std::map<std::tuple<int, int, bool>, std::vector<WeightMatrix>> cache;
  auto& copies = cache[{shape, spec, rotate}];
  if (copies.empty()) {
    const Tensor w = normal_tensor(kShapes[shape][0], kShapes[shape][1], 7u);
    copies.emplace_back(w, kSpecs[spec]);
    const auto n = static_cast<size_t>(kRotateBytes / static_cast<double>(copies[0].bytes()));
    while (rotate && copies.size() < n) copies.push_back(copies[0]);
  }
  return copies;
}

// Args: shape index, spec index, M, threads.
void BM_EngineMatmul(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0)), spec = static_cast<int>(state.range(1));
  const int64_t M = state.range(2), K = kShapes[shape][0], N = kShapes[shape][1];
  const KernelChoice how = KernelChoice::fast(static_cast<int>(state.range(3)));
  const std::vector<WeightMatrix>& w = weights(shape, spec, M == 1);
  const Tensor x = normal_tensor(M, N, 99u);
  state.SetLabel(std::string(kSpecNames[spec]) + " " + std::to_string(K) + "x" + std::to_string(N) +
                 " M=" + std::to_string(M) + " t=" + std::to_string(how.threads));
  size_t copy = 0;
  for (auto _ : state) {
    Tensor y = w[copy].matmul(x, how);
    copy = (copy + 1) % w.size();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  if (M == 1) {
    state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w[0].bytes()) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  } else {
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * M * N * K * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
}

void EngineArgs(benchmark::internal::Benchmark* b) {
  for (int64_t M : {1, 512}) {
    for (int shape = 0; shape < 4; ++shape) {
      for (int spec = 0; spec < 4; ++spec) {
        for (int threads : {1, 2}) {
          if (M > 1 && shape == 3) continue;  // prefill computes the head for one position only
          b->Args({shape, spec, M, threads});
        }
      }
    }
  }
}
BENCHMARK(BM_EngineMatmul)
    ->Apply(EngineArgs)
    ->ArgNames({"shape", "spec", "M", "threads"})
    ->MinTime(0.3)
    ->UseRealTime();

// Batched decode: M = 1..16 activation rows (one per concurrent request) against the weights of one
// decode step of Qwen2-0.5B (the fused q/k/v, o, the fused gate/up, down, the tied head), each call
// reading the weights from memory (copies rotated as above). Modes: 0 one product of all M rows
// (what the engine calls), 1 the M rows as M separate M = 1 products (the baseline: M requests
// decoded one by one); with KernelChoice::fast() (2 and 3: the same with KernelChoice::exact()).
// bf16 weights: bf16_dot_small_matmul (fast) against bf16_small_matmul (exact).
// GB/s: weight bytes of ONE pass per call, so mode 0 at M rows matching mode 0 at M = 1 means the M
// rows cost no more than one. Args: shape, spec, M, threads, mode.
constexpr int64_t kStepShapes[5][2] = {
    {1152, 896}, {896, 896}, {9728, 896}, {896, 4864}, {151936, 896}};
const char* kStepShapeNames[] = {"qkv", "o", "gate_up", "down", "head"};

const std::vector<WeightMatrix>& step_weights(int shape, int spec) {
  // One (shape, spec) at a time: the rotated copies of every case would not fit in memory.
  static std::pair<int, int> key{-1, -1};
  static std::vector<WeightMatrix> copies;
  if (key != std::make_pair(shape, spec)) {
    copies.clear();
    copies.shrink_to_fit();
    key = {shape, spec};
    const Tensor w = normal_tensor(kStepShapes[shape][0], kStepShapes[shape][1], 7u);
    copies.emplace_back(w, kSpecs[spec]);
    const auto n = static_cast<size_t>(kRotateBytes / static_cast<double>(copies[0].bytes()));
    while (copies.size() < n) copies.push_back(copies[0]);
  }
  return copies;
}

void BM_BatchedDecode(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0)), spec = static_cast<int>(state.range(1));
  const int64_t M = state.range(2), N = kStepShapes[shape][1];
  const int mode = static_cast<int>(state.range(4));
  const bool fast = mode < 2, separate = mode % 2 == 1;
  const int threads = static_cast<int>(state.range(3));
  const KernelChoice how = fast ? KernelChoice::fast(threads) : KernelChoice::exact(threads);
  const std::vector<WeightMatrix>& w = step_weights(shape, spec);
  const Tensor x = normal_tensor(M, N, 99u);
  std::vector<Tensor> rows;
  for (int64_t m = 0; m < M; ++m) {
    rows.emplace_back(tinyllm::Shape{1, N});
    std::copy_n(x.data() + m * N, N, rows.back().data());
  }
  state.SetLabel(std::string(kSpecNames[spec]) + " " + kStepShapeNames[shape] +
                 " M=" + std::to_string(M) + " t=" + std::to_string(how.threads) +
                 (separate ? " separate" : " fused") + (fast ? " fast" : " exact"));
  size_t copy = 0;
  for (auto _ : state) {
    if (separate) {
      for (const Tensor& row : rows) {
        Tensor y = w[copy].matmul(row, how);
        benchmark::DoNotOptimize(y.data());
      }
    } else {
      Tensor y = w[copy].matmul(x, how);
      benchmark::DoNotOptimize(y.data());
    }
    copy = (copy + 1) % w.size();
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w[0].bytes()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void BatchedDecodeArgs(benchmark::internal::Benchmark* b) {
  for (int shape = 0; shape < 5; ++shape) {
    for (int spec = 0; spec < 4; ++spec) {
      for (int threads : {1, 2}) {
        for (int64_t M : {1, 2, 4, 8, 16}) {
          for (int mode = 0; mode < 4; ++mode) {
            if (M == 1 && mode % 2 == 1) continue;  // one row: separate is fused
            b->Args({shape, spec, M, threads, mode});
          }
        }
      }
    }
  }
}
BENCHMARK(BM_BatchedDecode)
    ->Apply(BatchedDecodeArgs)
    ->ArgNames({"shape", "spec", "M", "threads", "mode"})
    ->MinTime(0.2)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
