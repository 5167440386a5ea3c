// Chapter 2.5 tests: flash attention, parallel. Task 1 OpenMP over (problem, query tile), Task 2
// the vectorized tile loop, Task 3 split-KV decode. Expected values: ch2.4's fixtures
// (tools/fixtures/gen_week2_flash.py, PyTorch float64 attention), ch2.4's scalar flash_attention on
// random shapes, and hand-computed merges. Every check runs with 1 and 2 OpenMP threads, and the
// Task 2 checks on every instruction set the CPU has (force_flash_isa). Run: ctest
// --preset week2 -L '^ch2\.5$'
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>

#include "ch2_4_flash_attention_cases.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace {

using tinyllm::AttentionMask;
using tinyllm::FlashKernel;
using tinyllm::FlashOptions;
using tinyllm::FlashState;
using tinyllm::Tensor;
using tinyllm::testing::flash_tile_shapes;
using tinyllm::testing::FlashCases;

// The same inputs and oracle as ch2.4 (see its tolerance note): float32 outputs within a few 1e-6
// of the float64 oracle. The vectorized loops only reorder float32 sums and use a 1-ulp exp, and a
// split-KV merge adds one rescaling per split, which stays well inside atol = rtol = 1e-5.
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-5;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs f with n OpenMP threads, then restores the previous count.
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

// Runs f once on every instruction set this CPU has for attend_kv_range (AVX-512, AVX2, plain
// x86-64), then goes back to the automatic choice.
void for_each_isa(const std::function<void()>& f) {
  using tinyllm::FlashIsa;
  struct Restore {
    ~Restore() { tinyllm::force_flash_isa(FlashIsa::Auto); }
  } restore;
  for (FlashIsa isa : {FlashIsa::Avx512, FlashIsa::Avx2, FlashIsa::Portable}) {
    if (!tinyllm::flash_isa_supported(isa)) continue;
    tinyllm::force_flash_isa(isa);
    SCOPED_TRACE(std::string("attend_kv_range on ") + tinyllm::flash_kernel_isa());
    f();
  }
}

FlashOptions options(FlashKernel kernel, int kv_splits, int br = 32, int bc = 32) {
  FlashOptions o;
  o.kernel = kernel;
  o.kv_splits = kv_splits;
  o.block_rows = br;
  o.block_cols = bc;
  return o;
}

// Every fixture case and expected output, every tile shape, 1 and 2 threads; the two thread counts
// must give identical tensors.
void check_fixture_cases(FlashKernel kernel, int kv_splits) {
  FlashCases cases;
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    const Tensor q = cases.query(i), k = cases.key(i), v = cases.value(i);
    for (const auto& expected : cases.expectations(i, {"none", "mask", "causal"})) {
      for (const auto& [br, bc] : flash_tile_shapes()) {
        SCOPED_TRACE(cases.describe(i) + " | mask " + expected.what + " | tiles " +
                     std::to_string(br) + " x " + std::to_string(bc));
        const FlashOptions o = options(kernel, kv_splits, br, bc);
        auto run = [&] {
          return tinyllm::flash_attention_parallel(q, k, v, cases.scale(i), expected.mask, o);
        };
        const Tensor one = with_threads(1, run), two = with_threads(2, run);
        EXPECT_TENSOR_NEAR(one, expected.out, kAtol, kRtol);
        EXPECT_EQ(one.values(), two.values()) << "1 and 2 threads differ";
      }
    }
  }
}

Tensor random_normal(const tinyllm::Shape& shape, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t(shape);
  for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = normal(rng);
  return t;
}

struct RandomCase {
  Tensor q, k, v, mask;
  std::string name;
};

// Random GQA problems: prefill (L = S = 80 and 130), L < S, decode L = 1 with a long S.
std::vector<RandomCase> random_cases() {
  std::mt19937 rng(11);
  std::vector<RandomCase> cases;
  auto add = [&](tinyllm::Shape batch, int64_t hq, int64_t h, int64_t L, int64_t S, int64_t D) {
    auto with = [&](std::initializer_list<int64_t> tail) {
      tinyllm::Shape shape = batch;
      shape.insert(shape.end(), tail);
      return shape;
    };
    cases.push_back({random_normal(with({hq, L, D}), rng), random_normal(with({h, S, D}), rng),
                     random_normal(with({h, S, D}), rng), random_normal({L, S}, rng),
                     "H_q = " + std::to_string(hq) + ", H = " + std::to_string(h) +
                         ", L = " + std::to_string(L) + ", S = " + std::to_string(S) +
                         ", D = " + std::to_string(D)});
  };
  add({2}, 4, 2, 80, 80, 16);
  add({}, 7, 1, 130, 130, 64);
  add({}, 2, 2, 20, 100, 33);
  add({1}, 14, 2, 1, 700, 64);
  add({}, 1, 1, 1, 2048, 64);
  return cases;
}

// ---- Task 1 -----------------------------------------------------------------------------------

TEST(ParallelFlashAttention, Task1_ParallelScalarTilesMatchTorch) {
  // ch2.4's cases and tile shapes, the Scalar kernel (ch2.4's flash_attention_tile), no KV split.
  check_fixture_cases(FlashKernel::Scalar, 1);
}

TEST(ParallelFlashAttention, Task1_ParallelScalarEqualsCh2_4Exactly) {
  // The same tiles computed by the same function, only on other threads: bit-identical to ch2.4.
  for (const RandomCase& c : random_cases()) {
    for (const AttentionMask& mask :
         {AttentionMask::none(), AttentionMask::causal(), AttentionMask::from(c.mask)}) {
      SCOPED_TRACE(c.name + ", mask kind " + std::to_string(static_cast<int>(mask.kind)));
      const Tensor expected = tinyllm::flash_attention(c.q, c.k, c.v, std::nullopt, mask);
      for (int threads : {1, 2}) {
        const Tensor out = with_threads(threads, [&] {
          return tinyllm::flash_attention_parallel(c.q, c.k, c.v, std::nullopt, mask,
                                                   options(FlashKernel::Scalar, 1));
        });
        EXPECT_EQ(out.values(), expected.values()) << threads << " threads";
      }
    }
  }
}

TEST(ParallelFlashAttention, Task1_RejectsBadArguments) {
  const Tensor q = Tensor::full({2, 4, 3, 5}, 0.5f), kv = Tensor::full({2, 2, 6, 5}, 0.25f);
  // Valid call: identical keys give uniform weights, so every output row is the constant value row.
  EXPECT_TENSOR_NEAR(
      tinyllm::flash_attention_parallel(q, kv, kv, std::nullopt, AttentionMask::none(),
                                        options(FlashKernel::Scalar, 1)),
      Tensor::full({2, 4, 3, 5}, 0.25f), 1e-7, 1e-6);
  using tinyllm::ShapeError;
  const Tensor kv3 = Tensor::full({2, 3, 6, 5}, 0.f);
  EXPECT_THROW(tinyllm::flash_attention_parallel(q, kv3, kv3), ShapeError) << "H_q = 4, H = 3";
  const Tensor kv_d4 = Tensor::full({2, 2, 6, 4}, 0.f);
  EXPECT_THROW(tinyllm::flash_attention_parallel(q, kv_d4, kv_d4), ShapeError) << "D differs";
  const Tensor kv_short = Tensor::full({2, 2, 2, 5}, 0.f);
  EXPECT_THROW(tinyllm::flash_attention_parallel(q, kv_short, kv_short, std::nullopt,
                                                 AttentionMask::causal()),
               ShapeError)
      << "causal with L = 3 > S = 2";
  EXPECT_THROW(tinyllm::flash_attention_parallel(q, kv, kv, std::nullopt,
                                                 AttentionMask::from(Tensor::full({5}, 0.f))),
               ShapeError);
  EXPECT_THROW(tinyllm::flash_attention_parallel(q, kv, kv, std::nullopt, AttentionMask::none(),
                                                 options(FlashKernel::Vectorized, 0, 0, 32)),
               tinyllm::InvalidArgument);
}

// ---- Task 2 -----------------------------------------------------------------------------------

TEST(ParallelFlashAttention, Task2_VectorizedMatchesTorch) {
  // Includes fully -inf rows and tiles (zeros, no NaN) and ragged tiles of 1, 7, 32 and 64; on
  // every instruction set the CPU has.
  for_each_isa([] { check_fixture_cases(FlashKernel::Vectorized, 1); });
}

TEST(ParallelFlashAttention, Task2_VectorizedEqualsScalarOnRandomShapes) {
  for_each_isa([] {
    for (const RandomCase& c : random_cases()) {
      for (const AttentionMask& mask :
           {AttentionMask::none(), AttentionMask::causal(), AttentionMask::from(c.mask)}) {
        SCOPED_TRACE(c.name + ", mask kind " + std::to_string(static_cast<int>(mask.kind)));
        const Tensor expected = tinyllm::flash_attention(c.q, c.k, c.v, 0.7f, mask);
        auto run = [&] {
          return tinyllm::flash_attention_parallel(c.q, c.k, c.v, 0.7f, mask,
                                                   options(FlashKernel::Vectorized, 1));
        };
        const Tensor one = with_threads(1, run), two = with_threads(2, run);
        EXPECT_TENSOR_NEAR(one, expected, kAtol, kRtol);
        EXPECT_EQ(one.values(), two.values()) << "1 and 2 threads differ";
      }
    }
  });
}

TEST(ParallelFlashAttention, Task2_AttendKvRangeSkipsCausalTiles) {
  // One row (row 0 of L = S = 64, causal) sees key 0 only: every KV tile after the first is
  // skipped, so NaN keys and values there must never be read.
  const int64_t S = 64, D = 8;
  Tensor k = Tensor::full({S, D}, std::numeric_limits<float>::quiet_NaN());
  Tensor v = Tensor::full({S, D}, std::numeric_limits<float>::quiet_NaN());
  for (int64_t c = 0; c < 16; ++c) {
    for (int64_t d = 0; d < D; ++d) {
      k.at({c, d}) = 0.1f;
      v.at({c, d}) = static_cast<float>(c + 1);
    }
  }
  const Tensor q = Tensor::full({1, D}, 1.0f);
  const tinyllm::HeadMask causal{AttentionMask::Kind::Causal, 0, nullptr, 0, 0};
  FlashState state(1, D);
  tinyllm::attend_kv_range(q.data(), D, k.data(), v.data(), D, 0, S, 1.0f, causal, 0, 16, state);
  Tensor out({1, D});
  state.finalize(out.data(), D);
  EXPECT_TENSOR_NEAR(out, Tensor::full({1, D}, 1.0f), 1e-6, 1e-6) << "row 0 sees key 0 only";
}

// ---- Task 3 -----------------------------------------------------------------------------------

TEST(ParallelFlashAttention, Task3_MergeStates) {
  // Row 0: part A saw one key with score 0 and value (4, 8), part B one with score ln 3 and value
  // (0, -4): weights 1/4 and 3/4 give (1, -1). Row 1: only part B saw a key (value (2, 2)). Row 2:
  // no part saw any key: zeros.
  FlashState a(3, 2), b(3, 2);
  a.m = {0.0f, -kInf, -kInf};
  a.l = {1.0f, 0.0f, 0.0f};
  a.acc = {4.0f, 8.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  b.m = {std::log(3.0f), 5.0f, -kInf};
  b.l = {1.0f, 1.0f, 0.0f};
  b.acc = {0.0f, -4.0f, 2.0f, 2.0f, 0.0f, 0.0f};
  const std::vector<FlashState> parts = {a, b};
  Tensor out({3, 2});
  tinyllm::merge_states(parts, out.data(), 2);
  EXPECT_TENSOR_NEAR(out, Tensor({3, 2}, {1.0f, -1.0f, 2.0f, 2.0f, 0.0f, 0.0f}), 1e-6, 1e-6);
}

TEST(ParallelFlashAttention, Task3_SplitKvMatchesTorch) {
  // Forced splits of 2 and 5 key ranges (more splits than KV tiles are capped), every case and tile
  // shape; the decode case (L = 1, S = 77) and the left padding that leaves whole ranges masked.
  check_fixture_cases(FlashKernel::Vectorized, 2);
  check_fixture_cases(FlashKernel::Vectorized, 5);
}

TEST(ParallelFlashAttention, Task3_DecodeWithLongSEqualsScalar) {
  // L = 1 against S = 700 and 2048 with 14 and 1 query heads: the automatic choice splits S (fewer
  // than 16 query tiles); forced 1, 3 and 8 splits too. All agree with ch2.4's scalar kernel.
  for (const RandomCase& c : random_cases()) {
    if (c.q.dim(-2) != 1) continue;
    for (const AttentionMask& mask : {AttentionMask::none(), AttentionMask::causal()}) {
      const Tensor expected = tinyllm::flash_attention(c.q, c.k, c.v, std::nullopt, mask);
      for (int splits : {0, 1, 3, 8}) {
        SCOPED_TRACE(c.name + ", kv_splits " + std::to_string(splits));
        auto run = [&] {
          return tinyllm::flash_attention_parallel(c.q, c.k, c.v, std::nullopt, mask,
                                                   options(FlashKernel::Vectorized, splits));
        };
        const Tensor one = with_threads(1, run), two = with_threads(2, run);
        EXPECT_TENSOR_NEAR(one, expected, kAtol, kRtol);
        EXPECT_EQ(one.values(), two.values()) << "1 and 2 threads differ";
      }
    }
  }
}

TEST(ParallelFlashAttention, Task3_DefaultOptionsMatchTorch) {
  // The engine's call: default options (vectorized, automatic splits, 32 x 32 tiles).
  FlashCases cases;
  for (int i = 0; i < cases.size(); ++i) {
    for (const auto& expected : cases.expectations(i, {"none", "mask", "causal"})) {
      SCOPED_TRACE(cases.describe(i) + " | mask " + expected.what);
      EXPECT_TENSOR_NEAR(
          tinyllm::flash_attention_parallel(cases.query(i), cases.key(i), cases.value(i),
                                            cases.scale(i), expected.mask),
          expected.out, kAtol, kRtol);
    }
  }
}

}  // namespace
