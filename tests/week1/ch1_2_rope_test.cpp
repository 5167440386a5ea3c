// Chapter 1.2 tests: RoPE, traditional (Task 1) and half-split (Task 2), with offsets.
// Expected values: tools/fixtures/gen_week1_ops.py (PyTorch, float64; the traditional form rotates
// complex numbers, the half-split form is Hugging Face's rotate_half). Run:
//   ctest --preset week1 -L '^ch1\.2$'
#include <gtest/gtest.h>

#include <tinyllm/ch1_2_rope/rope.hpp>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"
#include "week1_op_cases.hpp"

namespace {

using tinyllm::Tensor;
using tinyllm::testing::OpCases;

// x is uniform in [-1, 1); each output is x1 * cos - x2 * sin of float32 values, so float32 tables
// (cos/sin rounded once) give errors of a few 1e-8. atol = rtol = 1e-5 also leaves room for tables
// computed in float (about 1e-7 * position radians of error, positions < 64 here), while a wrong
// pairing, frequency or position moves outputs by 1e-2 or more.
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-5;

enum class Offsets { None, Single, PerRow };

// Runs every rope.safetensors case of the given form and offset kind; returns how many ran.
int check_rope_cases(bool traditional, Offsets kind) {
  OpCases cases("ch1.2/rope.safetensors");
  int ran = 0;
  for (int i = 0; i < cases.size(); ++i) {
    const auto config = cases.ints(i, "config");  // [D, max_seq_len, traditional]
    const Offsets case_kind = cases.has(i, "offsets")  ? Offsets::PerRow
                              : cases.has(i, "offset") ? Offsets::Single
                                                       : Offsets::None;
    if ((config[2] != 0) != traditional || case_kind != kind) continue;
    SCOPED_TRACE(cases.describe(i));
    const tinyllm::RoPE rope(config[0], config[1], cases.scalar(i, "base"), traditional);
    const Tensor x = cases.tensor(i, "x");
    Tensor out;
    switch (kind) {
      case Offsets::None:
        out = rope.forward(x);
        break;
      case Offsets::Single:
        out = rope.forward(x, cases.ints(i, "offset").at(0));
        break;
      case Offsets::PerRow:
        out = rope.forward(x, cases.ints(i, "offsets"));
        break;
    }
    EXPECT_TENSOR_NEAR(out, cases.tensor(i, "out"), kAtol, kRtol);
    ++ran;
  }
  return ran;
}

// x[:, begin:end] of an N x L x H x D tensor.
Tensor slice_tokens(const Tensor& x, int64_t begin, int64_t end) {
  const int64_t n = x.dim(0), l = x.dim(1), h = x.dim(2), d = x.dim(3);
  Tensor out({n, end - begin, h, d});
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t t = begin; t < end; ++t)
      out.matrix(b * (end - begin) + t - begin) = x.matrix(b * l + t);
  }
  return out;
}

// ---- Task 1
// ------------------------------------------------------------------------------------------------------

TEST(RoPE, Task1_TraditionalNoOffset) {
  // N=1, L=10, H=8, D=4 (positions 0..9).
  EXPECT_GT(check_rope_cases(/*traditional=*/true, Offsets::None), 0);
}

TEST(RoPE, Task1_TraditionalWithOffset) {
  // Offsets 7, 0 and 59 (the last position of a 64-long table); D = 4, 8, 64; base 1e4 and 1e6.
  EXPECT_GT(check_rope_cases(/*traditional=*/true, Offsets::Single), 0);
}

TEST(RoPE, Task1_TraditionalPerRowOffsets) {
  // One offset per batch row: [0, 7, 28] (the last reaching max_seq_len - 1) and [5, 0].
  EXPECT_GT(check_rope_cases(/*traditional=*/true, Offsets::PerRow), 0);
}

TEST(RoPE, Task1_RejectsBadArguments) {
  const tinyllm::RoPE rope(4, 8, 10000.0f, /*traditional=*/true);
  const Tensor x = Tensor::full({2, 3, 1, 4}, 1.0f);
  // Valid call: position 0 is the identity rotation.
  const Tensor first = rope.forward(slice_tokens(x, 0, 1));
  EXPECT_TENSOR_NEAR(first, slice_tokens(x, 0, 1), 1e-7, 0.0);
  using tinyllm::InvalidArgument;
  using tinyllm::ShapeError;
  EXPECT_THROW(tinyllm::RoPE(5, 8), ShapeError) << "odd D";
  EXPECT_THROW(tinyllm::RoPE(0, 8), ShapeError) << "D = 0";
  EXPECT_THROW(tinyllm::RoPE(4, 0), InvalidArgument) << "max_seq_len = 0";
  EXPECT_THROW(rope.forward(Tensor::full({3, 1, 4}, 0.f)), ShapeError)
      << "rank 3 instead of N x L x H x D";
  EXPECT_THROW(rope.forward(Tensor::full({2, 3, 1, 6}, 0.f)), ShapeError)
      << "D = 6 for a RoPE of D = 4";
  EXPECT_THROW(rope.forward(x, std::vector<int64_t>{0, 1, 2}), ShapeError)
      << "3 offsets for 2 rows";
  EXPECT_THROW(rope.forward(x, 6), InvalidArgument) << "positions 6..8 with max_seq_len 8";
  EXPECT_THROW(rope.forward(x, std::vector<int64_t>{0, 6}), InvalidArgument)
      << "row 1 at positions 6..8";
  EXPECT_THROW(rope.forward(x, -1), InvalidArgument) << "negative offset";
  EXPECT_NO_THROW(rope.forward(x, 5)) << "positions 5..7 fit into max_seq_len 8";
}

// ---- Task 2
// ------------------------------------------------------------------------------------------------------

TEST(RoPE, Task2_HalfSplitNoOffset) {
  EXPECT_GT(check_rope_cases(/*traditional=*/false, Offsets::None), 0);
}

TEST(RoPE, Task2_HalfSplitWithOffset) {
  EXPECT_GT(check_rope_cases(/*traditional=*/false, Offsets::Single), 0);
}

TEST(RoPE, Task2_HalfSplitPerRowOffsets) {
  EXPECT_GT(check_rope_cases(/*traditional=*/false, Offsets::PerRow), 0);
}

TEST(RoPE, Task2_OffsetMatchesSliceOfLongerSequence) {
  // What a KV cache relies on: rotating tokens 3..6 on their own with offset 3 gives exactly what
  // they get as part of the whole sequence (the same table entries, the same arithmetic).
  OpCases cases("ch1.2/rope.safetensors");
  const tinyllm::RoPE rope(4, 20, 10000.0f, /*traditional=*/false);
  const Tensor x = cases.tensor(0, "x");  // 1 x 10 x 8 x 4
  const Tensor whole = rope.forward(x);
  EXPECT_TENSOR_NEAR(rope.forward(slice_tokens(x, 3, 7), 3), slice_tokens(whole, 3, 7), 1e-6, 0.0);
  EXPECT_TENSOR_NEAR(rope.forward(slice_tokens(x, 9, 10), std::vector<int64_t>{9}),
                     slice_tokens(whole, 9, 10), 1e-6, 0.0);
}

}  // namespace
