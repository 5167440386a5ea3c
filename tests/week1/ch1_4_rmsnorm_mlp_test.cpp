// Chapter 1.4 tests: RMSNorm (Task 1), SiLU and the Qwen2 SwiGLU MLP (Task 2).
// Expected values: tools/fixtures/gen_week1_ops.py (PyTorch, float64; SiLU is
// torch.nn.functional.silu). Run: ctest --preset week1 -L '^ch1\.4$'
#include <gtest/gtest.h>

#include <cmath>
#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"
#include "week1_op_cases.hpp"

namespace {

using tinyllm::Tensor;
using tinyllm::testing::OpCases;

// Expected values are float64 results rounded once to float32. RMSNorm sums at most 111 squares and
// the MLP's dot products have at most 128 terms: float32 rounding stays around 1e-6 relative.
// atol = rtol = 1e-5 keeps a 10x margin; a wrong eps placement, a missing weight or sqrt, or a
// swapped gate/up moves outputs by 1e-3 or more. rtol (not atol) carries the large-magnitude
// RMSNorm case, whose outputs reach 1e3.
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-5;

tinyllm::RMSNorm norm_of(const OpCases& cases, int i) {
  const Tensor weight = cases.tensor(i, "weight");
  if (cases.has(i, "eps")) return tinyllm::RMSNorm(weight.dim(0), weight, cases.scalar(i, "eps"));
  return tinyllm::RMSNorm(weight.dim(0), weight);  // the default eps = 1e-5
}

// ---- Task 1
// ------------------------------------------------------------------------------------------------------

TEST(RMSNorm, Task1_MatchesTorch) {
  // (100, 111) with eps = float32 epsilon, (2, 3, 16), rank-1 (5,) with the default eps, values
  // ~1e-3 where eps matters, a row of zeros (-> zeros), and values up to 3e4.
  OpCases cases("ch1.4/rmsnorm.safetensors");
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    EXPECT_TENSOR_NEAR(norm_of(cases, i).forward(cases.tensor(i, "x")), cases.tensor(i, "out"),
                       kAtol, kRtol);
  }
}

TEST(RMSNorm, Task1_LargeValuesStayFinite) {
  // Values up to 3e4 (weights up to 1e3): their squares (~1e9) overflow float16 (max 65504) but not
  // float32, so an implementation that accumulates in float32 stays finite and exact to float32
  // precision.
  OpCases cases("ch1.4/rmsnorm.safetensors");
  int ran = 0;
  for (int i = 0; i < cases.size(); ++i) {
    if (cases.describe(i).find("overflow f16") == std::string::npos) continue;
    SCOPED_TRACE(cases.describe(i));
    const Tensor out = norm_of(cases, i).forward(cases.tensor(i, "x"));
    for (float v : out.values()) ASSERT_TRUE(std::isfinite(v)) << v;
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
    ++ran;
  }
  EXPECT_EQ(ran, 1);
}

TEST(RMSNorm, Task1_RejectsBadShapes) {
  const tinyllm::RMSNorm norm(4, Tensor::full({4}, 2.0f), 0.0f);
  // Valid call: a constant vector has rms equal to its value, so the output is the weight.
  EXPECT_TENSOR_NEAR(norm.forward(Tensor::full({2, 4}, 3.0f)), Tensor::full({2, 4}, 2.0f), 1e-6,
                     1e-6);
  EXPECT_THROW(norm.forward(Tensor::full({2, 5}, 1.f)), tinyllm::ShapeError)
      << "x's last dim is not D";
  EXPECT_THROW(tinyllm::RMSNorm(4, Tensor::full({5}, 1.f)), tinyllm::ShapeError)
      << "weight of 5 values";
  EXPECT_THROW(tinyllm::RMSNorm(4, Tensor::full({1, 4}, 1.f)), tinyllm::ShapeError)
      << "rank-2 weight";
  EXPECT_THROW(tinyllm::RMSNorm(4, Tensor::full({4}, 1.f), -1e-6f), tinyllm::InvalidArgument)
      << "negative eps";
}

// ---- Task 2
// ------------------------------------------------------------------------------------------------------

TEST(MLP, Task2_SiluMatchesTorch) {
  // (10, 10) uniform [0, 1), (3, 4, 5) normal * 5, and extremes +-100, +-88, +-20, -0.
  OpCases cases("ch1.4/silu.safetensors");
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    EXPECT_TENSOR_NEAR(tinyllm::silu(cases.tensor(i, "x")), cases.tensor(i, "out"), kAtol, kRtol);
  }
}

TEST(MLP, Task2_Qwen2MLPMatchesTorch) {
  // (N.., E, I): (1x5, 4, 8), (2x16, 32, 64), (1x1, 64, 128) and rank-2 (3, 16, 24).
  OpCases cases("ch1.4/mlp.safetensors");
  ASSERT_GT(cases.size(), 0);
  for (int i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases.describe(i));
    const auto config = cases.ints(i, "config");  // [E, I]
    const tinyllm::Qwen2MLP mlp(config[0], config[1], cases.tensor(i, "w_gate"),
                                cases.tensor(i, "w_up"), cases.tensor(i, "w_down"));
    EXPECT_TENSOR_NEAR(mlp.forward(cases.tensor(i, "x")), cases.tensor(i, "out"), kAtol, kRtol);
  }
}

TEST(MLP, Task2_RejectsBadShapes) {
  // E=2, I=3. Valid call: x = 0 gives silu(0) * 0 = 0 everywhere.
  const tinyllm::Qwen2MLP mlp(2, 3, Tensor::full({3, 2}, 1.f), Tensor::full({3, 2}, 1.f),
                              Tensor::full({2, 3}, 1.f));
  EXPECT_TENSOR_NEAR(mlp.forward(Tensor::full({1, 4, 2}, 0.f)), Tensor::full({1, 4, 2}, 0.f), 0.0,
                     0.0);
  using tinyllm::ShapeError;
  EXPECT_THROW(mlp.forward(Tensor::full({1, 4, 3}, 0.f)), ShapeError) << "x's last dim is not E";
  EXPECT_THROW(tinyllm::Qwen2MLP(2, 3, Tensor::full({2, 3}, 1.f), Tensor::full({3, 2}, 1.f),
                                 Tensor::full({2, 3}, 1.f)),
               ShapeError)
      << "w_gate transposed";
  EXPECT_THROW(tinyllm::Qwen2MLP(2, 3, Tensor::full({3, 2}, 1.f), Tensor::full({3, 2}, 1.f),
                                 Tensor::full({3, 2}, 1.f)),
               ShapeError)
      << "w_down transposed";
}

}  // namespace
