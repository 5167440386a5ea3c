// Microbenchmarks of chapters 2.2-2.3: y = x W^T for Qwen2-0.5B's weight shapes (K x N = out x in),
// decode (M = 1, reported as GB/s of weight bytes read) and prefill (M = 512, reported as GFLOP/s),
// for
//   scalar                 chapter 2.2's quantized_matmul (q4 g64)
//   q4g64 / q8g32 / q8g64  chapter 2.3's quantized_matmul_fast (Auto path: AVX-512 where available)
//   bf16                   chapter 2.3's bf16_matmul (Auto path: AVX512-BF16 dot products where
//                          available)
//   f32                    Eigen (prefill: Eigen's GEMM; decode: Eigen's matrix-vector product,
//                          rows split over OpenMP threads)
// and a STREAM-like read of 1 GiB (the bandwidth bound of decode), each with 1 and 2 threads.
// Weight bytes count everything a kernel reads per call: codes plus f32 scales and biases (8 bytes
// per group). Build with -DCMAKE_BUILD_TYPE=Release -DTINYLLM_NATIVE=ON; run e.g.
//   build/w2-quant/bench/quantized_matmul_bench --benchmark_filter='decode'
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/fast_qmatmul.hpp>
#include <tuple>
#include <vector>

#include "tinyllm/tensor.hpp"

namespace {

using tinyllm::Tensor;

// Qwen2-0.5B: q/o projections, gate/up, down, and the tied embedding as the output head.
constexpr int64_t kShapes[4][2] = {{896, 896}, {4864, 896}, {896, 4864}, {151936, 896}};

enum Kind { kScalarQ4G64, kQ4G64, kQ8G32, kQ8G64, kBf16, kF32 };
const char* kKindNames[] = {"scalar_q4g64", "q4g64", "q8g32", "q8g64", "bf16", "f32"};

// Decode benchmarks cycle through copies of the weight totalling >= 512 MB, so that every call
// reads from memory (a 896 x 896 q4 weight alone would sit in the 32 MiB L3 and measure the cache
// instead).
constexpr double kRotateBytes = 512e6;

struct Weights {
  std::vector<Tensor> f32;
  std::vector<tinyllm::QuantizedWeights> q;
  std::vector<tinyllm::Bf16Weights> bf16;
  double bytes = 0;  // read per matrix-vector product
  size_t copies = 1;
};

Tensor random_tensor(const tinyllm::Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = normal(rng);
  return t;
}

// Built once per (shape, kind, rotate) and kept until another is asked for (one at a time: memory).
const Weights& weights(int shape, Kind kind, bool rotate) {
  static std::tuple<int, int, bool> key{-1, -1, false};
  static std::unique_ptr<Weights> slot;
  if (key != std::make_tuple(shape, static_cast<int>(kind), rotate)) {
    slot.reset();
    key = {shape, static_cast<int>(kind), rotate};
    slot = std::make_unique<Weights>();
    const int64_t K = kShapes[shape][0], N = kShapes[shape][1];
    Tensor w = random_tensor({K, N}, 1234u + static_cast<uint32_t>(shape));
    const double groups_bytes = 8.0;  // f32 scale + f32 bias per group
    switch (kind) {
      case kScalarQ4G64:
      case kQ4G64:
        slot->q.push_back(tinyllm::quantize(w, 64, 4));
        slot->bytes = K * N / 2.0 + K * (N / 64) * groups_bytes;
        break;
      case kQ8G32:
        slot->q.push_back(tinyllm::quantize(w, 32, 8));
        slot->bytes = K * N + K * (N / 32) * groups_bytes;
        break;
      case kQ8G64:
        slot->q.push_back(tinyllm::quantize(w, 64, 8));
        slot->bytes = K * N + K * (N / 64) * groups_bytes;
        break;
      case kBf16:
        slot->bf16.push_back(tinyllm::to_bf16(w));
        slot->bytes = K * N * 2.0;
        break;
      case kF32:
        slot->f32.push_back(std::move(w));
        slot->bytes = K * N * 4.0;
        break;
    }
    slot->copies =
        rotate ? static_cast<size_t>(std::max(1.0, std::ceil(kRotateBytes / slot->bytes))) : 1;
    for (size_t i = 1; i < slot->copies; ++i) {
      if (!slot->q.empty()) slot->q.push_back(slot->q[0]);
      if (!slot->bf16.empty()) slot->bf16.push_back(slot->bf16[0]);
      if (!slot->f32.empty()) slot->f32.push_back(slot->f32[0]);
    }
  }
  return *slot;
}

Tensor run(const Weights& w, Kind kind, const Tensor& x, int threads, size_t copy) {
  switch (kind) {
    case kScalarQ4G64:
      return tinyllm::quantized_matmul(x, w.q[copy]);
    case kQ4G64:
    case kQ8G32:
    case kQ8G64:
      return tinyllm::quantized_matmul_fast(x, w.q[copy], tinyllm::KernelPath::Auto, threads);
    case kBf16:
      return tinyllm::bf16_matmul(x, w.bf16[copy], tinyllm::KernelPath::Auto, threads);
    case kF32: {
      const int64_t M = x.dim(0), K = w.f32[copy].dim(0);
      Tensor y({M, K});
      tinyllm::MatrixMap Y = y.rows();
      const tinyllm::ConstMatrixMap W = w.f32[copy].rows();
      if (M > 1) {
        Eigen::setNbThreads(threads);
        Y.noalias() = x.rows() * W.transpose();
        Eigen::setNbThreads(-1);  // back to OpenMP's default, which the chapter kernels rely on
      } else {  // Eigen's matrix-vector product is single-threaded: split the rows
        const Eigen::Map<const Eigen::VectorXf> xv(x.data(), x.dim(1));
#pragma omp parallel num_threads(threads)
        {
          const int t = omp_get_thread_num(), n = omp_get_num_threads();
          const int64_t k0 = K * t / n, k1 = K * (t + 1) / n;
          Eigen::Map<Eigen::VectorXf>(y.data() + k0, k1 - k0).noalias() =
              W.middleRows(k0, k1 - k0) * xv;
        }
      }
      return y;
    }
  }
  return {};
}

// Args: shape index, kind, M, threads.
void BM_Matmul(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0));
  const Kind kind = static_cast<Kind>(state.range(1));
  const int64_t M = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const int64_t K = kShapes[shape][0], N = kShapes[shape][1];
  const Weights& w = weights(shape, kind, M == 1 && kind != kScalarQ4G64);
  const Tensor x = random_tensor({M, N}, 99u);
  state.SetLabel(std::string(kKindNames[kind]) + " " + std::to_string(K) + "x" + std::to_string(N) +
                 " M=" + std::to_string(M) + " t=" + std::to_string(threads));
  size_t copy = 0;
  for (auto _ : state) {
    Tensor y = run(w, kind, x, threads, copy);
    copy = (copy + 1) % w.copies;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  if (M == 1) {
    state.counters["GB/s"] =
        benchmark::Counter(w.bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  } else {
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * M * N * K * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  for (int64_t M : {1, 512}) {
    for (int shape = 0; shape < 4; ++shape) {
      for (int kind = kScalarQ4G64; kind <= kF32; ++kind) {
        for (int threads : {1, 2}) {
          if (kind == kScalarQ4G64 && (threads == 2 || (M > 1 && shape != 0)))
            continue;  // single-threaded, slow
          b->Args({shape, kind, M, threads});
        }
      }
    }
  }
}
BENCHMARK(BM_Matmul)
    ->Apply(MatmulArgs)
    ->ArgNames({"shape", "kind", "M", "threads"})
    ->MinTime(0.3)
    ->UseRealTime();

// The decode bound: read 1 GiB of floats (far beyond the caches) and sum them, with 1 and 2
// threads.
void BM_ReadBandwidth(benchmark::State& state) {
  static std::vector<float> data(size_t{1} << 28, 1.0f);
  const int threads = static_cast<int>(state.range(0));
  const int64_t n = static_cast<int64_t>(data.size());
  const float* p = data.data();
  state.SetLabel("read 1 GiB, t=" + std::to_string(threads));
  for (auto _ : state) {
    float sum = 0.0f;
#pragma omp parallel for simd num_threads(threads) reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < n; ++i) sum += p[i];
    benchmark::DoNotOptimize(sum);
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n) * sizeof(float) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->ArgName("threads")->MinTime(1.0)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
