// Chapter 2.4 tests: flash attention, scalar. Task 1 the online softmax of one query tile, Task 2
// masks and causal tile skipping, Task 3 the whole GQA call. Expected values:
// tools/fixtures/gen_week2_flash.py (PyTorch float64 attention from matmul + softmax, no tiles),
// plus ch1.3's grouped attention on random inputs. Run: ctest --preset week2 -L '^ch2\.4$'
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <tinyllm/ch1_3_gqa/gqa.hpp>
#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>

#include "ch2_4_flash_attention_cases.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace {

using tinyllm::AttentionMask;
using tinyllm::HeadMask;
using tinyllm::Tensor;
using tinyllm::TileVisibility;
using tinyllm::testing::flash_tile_shapes;
using tinyllm::testing::FlashCases;

// Inputs are O(1) float32 values (normal, or uniform [0, 1) with D = 128 for the course's large
// case); the expected values are float64 rounded once. Each output is a convex combination of value
// rows whose weights come from dot products of at most 128 terms and exp; float32 rounding (score
// errors around 1e-6 relative, the online rescaling adds a few ulps per KV tile) stays below 2e-6
// here. atol = rtol = 1e-5 (as in ch1.3) keeps a 5x margin; a wrong rescaling, KV head, mask
// alignment or skipped tile moves outputs by 1e-2 or more.
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-5;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs flash_attention_tile over every query tile of every head the way Task 3 will, with the GQA
// mapping and the MaskLayout written out here, so that Tasks 1 and 2 are tested on their own.
Tensor attend_by_tiles(const Tensor& q, const Tensor& k, const Tensor& v,
                       std::optional<float> scale, const AttentionMask& mask, int block_rows,
                       int block_cols) {
  Tensor out(q.shape());
  tinyllm::Shape scores_shape = q.shape();
  scores_shape.back() = k.dim(-2);
  const tinyllm::MaskLayout layout(mask, scores_shape);
  const int64_t hq = q.dim(-3), h = k.dim(-3), L = q.dim(-2);
  const float s = scale.value_or(1.0f / std::sqrt(static_cast<float>(q.dim(-1))));
  for (int64_t i = 0; i < q.num_matrices(); ++i) {
    const int64_t kv = (i / hq) * h + (i % hq) / (hq / h);
    for (int64_t row0 = 0; row0 < L; row0 += block_rows) {
      const int64_t rows = std::min<int64_t>(block_rows, L - row0);
      tinyllm::flash_attention_tile(q.matrix(i).middleRows(row0, rows), k.matrix(kv), v.matrix(kv),
                                    s, layout.head(i), row0, block_cols,
                                    out.matrix(i).middleRows(row0, rows));
    }
  }
  return out;
}

// Every fixture case and expected output of the given kinds, with every tile shape.
void check_fixture_cases(const std::vector<std::string>& kinds, bool whole_call) {
  FlashCases cases;
  ASSERT_GT(cases.size(), 0);
  int checked = 0;
  for (int i = 0; i < cases.size(); ++i) {
    const Tensor q = cases.query(i), k = cases.key(i), v = cases.value(i);
    for (const auto& expected : cases.expectations(i, kinds)) {
      for (const auto& [br, bc] : flash_tile_shapes()) {
        SCOPED_TRACE(cases.describe(i) + " | mask " + expected.what + " | tiles " +
                     std::to_string(br) + " x " + std::to_string(bc));
        const Tensor out =
            whole_call ? tinyllm::flash_attention(q, k, v, cases.scale(i), expected.mask, br, bc)
                       : attend_by_tiles(q, k, v, cases.scale(i), expected.mask, br, bc);
        EXPECT_TENSOR_NEAR(out, expected.out, kAtol, kRtol);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 0);
}

Tensor random_normal(const tinyllm::Shape& shape, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t(shape);
  for (int64_t j = 0; j < t.numel(); ++j) t.data()[j] = normal(rng);
  return t;
}

// ---- Task 1 -----------------------------------------------------------------------------------

TEST(FlashAttention, Task1_TilesMatchTorchWithoutMask) {
  // Cases: the course's (6,3,2,5,3,1) and (18,6,7,5,3,10); L = 1 decode with S = 77; L = S = 100;
  // L = 50 < S = 130; tiles 32x32, 1x1, 7x7, 64x64, 7x32, 32x7 (ragged last tiles, tiles larger
  // than L and S).
  check_fixture_cases({"none"}, false);
}

TEST(FlashAttention, Task1_OnlineSoftmaxIsStableAcrossTiles) {
  // One query, S = 100 identical keys with scores near 1e4: exp(score) overflows unless each tile
  // subtracts the running max. Equal scores give equal weights, so the output is the mean of the
  // value rows; value row c is c in every column, the mean 49.5.
  const int64_t S = 100, D = 4;
  const Tensor q = Tensor::full({1, D}, 50.0f), k = Tensor::full({S, D}, 50.0f);
  Tensor v({S, D});
  for (int64_t c = 0; c < S; ++c) {
    for (int64_t d = 0; d < D; ++d) v.at({c, d}) = static_cast<float>(c);
  }
  for (int block_cols : {1, 7, 32, 100}) {
    SCOPED_TRACE("block_cols = " + std::to_string(block_cols));
    Tensor out({1, D});
    tinyllm::flash_attention_tile(q.matrix(0), k.matrix(0), v.matrix(0), 1.0f, HeadMask{}, 0,
                                  block_cols, out.matrix(0));
    EXPECT_TENSOR_NEAR(out, Tensor::full({1, D}, 49.5f), 1e-5, 1e-6);
  }
}

TEST(FlashAttention, Task1_LaterTileWithLargerScoresRescalesEarlierOnes) {
  // Two keys in two tiles (block_cols = 1), D = 2: scores 0 then ln(3), so the weights are 1/4 and
  // 3/4 and the first tile's partial sum must be rescaled by exp(0 - ln 3) when the second one
  // arrives.
  const Tensor q({1, 2}, {1.0f, 0.0f}), k({2, 2}, {0.0f, 5.0f, std::log(3.0f), -5.0f});
  const Tensor v({2, 2}, {4.0f, 8.0f, 0.0f, -4.0f});
  Tensor out({1, 2});
  tinyllm::flash_attention_tile(q.matrix(0), k.matrix(0), v.matrix(0), 1.0f, HeadMask{}, 0, 1,
                                out.matrix(0));
  EXPECT_TENSOR_NEAR(out, Tensor({1, 2}, {1.0f, -1.0f}), 1e-6, 1e-6);
}

// ---- Task 2 -----------------------------------------------------------------------------------

TEST(FlashAttention, Task2_TileVisibility) {
  // L = 3 queries at the end of S = 5 keys: row r sees keys c <= r + 2.
  const HeadMask causal{AttentionMask::Kind::Causal, 2, nullptr, 0, 0};
  EXPECT_EQ(tinyllm::tile_visibility(causal, 0, 1, 3, 2), TileVisibility::Skipped)
      << "row 0 sees keys 0-2 only";
  EXPECT_EQ(tinyllm::tile_visibility(causal, 0, 3, 0, 3), TileVisibility::Visible)
      << "keys 0-2 are seen by every row";
  EXPECT_EQ(tinyllm::tile_visibility(causal, 0, 3, 2, 3), TileVisibility::Partial);
  EXPECT_EQ(tinyllm::tile_visibility(causal, 1, 2, 4, 1), TileVisibility::Partial)
      << "row 2 sees key 4, row 1 does not";
  EXPECT_EQ(tinyllm::tile_visibility(causal, 2, 1, 4, 1), TileVisibility::Visible);
  const HeadMask square{AttentionMask::Kind::Causal, 0, nullptr, 0,
                        0};  // L = S = 64, 32 x 32 tiles
  EXPECT_EQ(tinyllm::tile_visibility(square, 0, 32, 32, 32), TileVisibility::Skipped);
  EXPECT_EQ(tinyllm::tile_visibility(square, 32, 32, 0, 32), TileVisibility::Visible);
  EXPECT_EQ(tinyllm::tile_visibility(square, 32, 32, 32, 32), TileVisibility::Partial);
  EXPECT_EQ(tinyllm::tile_visibility(HeadMask{}, 0, 32, 32, 32), TileVisibility::Visible);
  const float zero = 0.0f;
  const HeadMask additive{AttentionMask::Kind::Additive, 0, &zero, 0, 0};
  EXPECT_EQ(tinyllm::tile_visibility(additive, 0, 4, 0, 4), TileVisibility::Partial);
}

TEST(FlashAttention, Task2_AddTileMask) {
  // Causal, L = 3, S = 5 (offset 2): the tile rows 0-1 x keys 2-4.
  const HeadMask causal{AttentionMask::Kind::Causal, 2, nullptr, 0, 0};
  tinyllm::Matrix scores = tinyllm::Matrix::Constant(2, 3, 1.5f);
  tinyllm::add_tile_mask(scores, causal, 0, 2);
  const Tensor expected_causal({2, 3}, {1.5f, -kInf, -kInf, 1.5f, 1.5f, -kInf});
  EXPECT_EQ(Tensor::from_matrix(scores).values(), expected_causal.values());
  // Additive: a 3 x 5 mask m(r, c) = 10 r + c, read at rows 1-2 x keys 3-4.
  std::vector<float> mask(15);
  for (int j = 0; j < 15; ++j) mask[j] = static_cast<float>(10 * (j / 5) + j % 5);
  const HeadMask additive{AttentionMask::Kind::Additive, 2, mask.data(), 5, 1};
  scores = tinyllm::Matrix::Constant(2, 2, 0.5f);
  tinyllm::add_tile_mask(scores, additive, 1, 3);
  EXPECT_EQ(Tensor::from_matrix(scores).values(), (std::vector<float>{13.5f, 14.5f, 23.5f, 24.5f}));
}

TEST(FlashAttention, Task2_MasksMatchTorch) {
  // Additive masks (B x H_q x L x S, L x S, H_q x 1 x S, 1 x 1 x 1 x S) with -inf entries, and
  // causal masks for L = S = 16 and 100, L = 1 and L = 50 < S = 130, with every tile shape.
  check_fixture_cases({"mask", "causal"}, false);
}

TEST(FlashAttention, Task2_FullyMaskedRowsAndTilesGiveZerosNotNaN) {
  // Case 6: batch 0 hides its first 37 keys from every row (the whole first 32-key tile: the row
  // max of that tile is -inf); batch 1 has rows 3 and 35 entirely -inf (zeros, like ch1.1's
  // softmax) and a 32 x 32 tile of -inf. EXPECT_TENSOR_NEAR fails on any NaN.
  FlashCases cases;
  const int i = 6;
  const auto expected = cases.expectations(i, {"mask"});
  ASSERT_EQ(expected.size(), 1u);
  for (const auto& [br, bc] : flash_tile_shapes()) {
    SCOPED_TRACE(cases.describe(i) + " | tiles " + std::to_string(br) + " x " + std::to_string(bc));
    const Tensor out = attend_by_tiles(cases.query(i), cases.key(i), cases.value(i), std::nullopt,
                                       expected[0].mask, br, bc);
    EXPECT_TENSOR_NEAR(out, expected[0].out, kAtol, kRtol);
    for (int64_t h = 0; h < out.dim(1); ++h) {
      for (int64_t d = 0; d < out.dim(3); ++d) {
        EXPECT_EQ(out.at({1, h, 3, d}), 0.0f);
        EXPECT_EQ(out.at({1, h, 35, d}), 0.0f);
      }
    }
  }
}

TEST(FlashAttention, Task2_CausalSkipsTilesAboveTheDiagonal) {
  // L = S = 100, 32 x 32 tiles: the first query tile (rows 0-31) sees keys 0-31 only, so the KV
  // tiles from key 32 on must be skipped without reading K or V. They hold NaN here: reading one
  // (even multiplied by a zero weight) would make the output NaN.
  FlashCases cases;
  const int i = 4;
  const auto expected = cases.expectations(i, {"causal"});
  ASSERT_EQ(expected.size(), 1u);
  Tensor k = cases.key(i), v = cases.value(i);
  for (int64_t j = 32 * k.dim(-1); j < k.matrix(0).size(); ++j) {
    for (int64_t m = 0; m < k.num_matrices(); ++m) {
      k.matrix(m).data()[j] = std::numeric_limits<float>::quiet_NaN();
      v.matrix(m).data()[j] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  const Tensor q = cases.query(i);
  const HeadMask causal{AttentionMask::Kind::Causal, 0, nullptr, 0, 0};
  for (int64_t h = 0; h < q.dim(1); ++h) {
    Tensor out({32, q.dim(-1)});
    tinyllm::flash_attention_tile(q.matrix(h).topRows(32), k.matrix(h / 2), v.matrix(h / 2), 0.25f,
                                  causal, 0, 32, out.matrix(0));
    Tensor want({32, q.dim(-1)});
    want.matrix(0) = expected[0].out.matrix(h).topRows(32);
    EXPECT_TENSOR_NEAR(out, want, kAtol, kRtol) << "head " << h;
  }
}

// ---- Task 3 -----------------------------------------------------------------------------------

TEST(FlashAttention, Task3_MatchesTorch) {
  // Every case (batch dims (), (1,), (2,), (10,); H_q / H = 1, 2, 3, 4, 7; D = 5 to 128; scale 0.9,
  // 0.3 and the default) with no mask, additive masks and causal, with every tile shape.
  check_fixture_cases({"none", "mask", "causal"}, true);
}

TEST(FlashAttention, Task3_EqualsWeek1GroupedAttention) {
  // Random inputs: flash attention is an exact rewrite of ch1.3's attention, so both agree to
  // float32 rounding, whatever the tiles.
  std::mt19937 rng(7);
  struct Shape {
    tinyllm::Shape batch;
    int64_t hq, h, L, S, D;
  };
  for (const Shape& s : {Shape{{2}, 4, 2, 33, 65, 16}, Shape{{}, 3, 1, 1, 300, 64},
                         Shape{{2, 2}, 2, 2, 40, 40, 8}}) {
    auto with = [&](std::initializer_list<int64_t> tail) {
      tinyllm::Shape shape = s.batch;
      shape.insert(shape.end(), tail);
      return shape;
    };
    const Tensor q = random_normal(with({s.hq, s.L, s.D}), rng);
    const Tensor k = random_normal(with({s.h, s.S, s.D}), rng);
    const Tensor v = random_normal(with({s.h, s.S, s.D}), rng);
    Tensor mask = random_normal({s.L, s.S}, rng);
    for (const AttentionMask& m :
         {AttentionMask::none(), AttentionMask::causal(), AttentionMask::from(mask)}) {
      const Tensor expected = tinyllm::scaled_dot_product_attention_grouped(q, k, v, 0.5f, m);
      for (int tile : {32, 5}) {
        SCOPED_TRACE("L = " + std::to_string(s.L) + ", S = " + std::to_string(s.S) +
                     ", mask kind " + std::to_string(static_cast<int>(m.kind)) + ", tiles " +
                     std::to_string(tile));
        EXPECT_TENSOR_NEAR(tinyllm::flash_attention(q, k, v, 0.5f, m, tile, tile), expected, kAtol,
                           kRtol);
      }
    }
  }
}

TEST(FlashAttention, Task3_RejectsBadArguments) {
  const Tensor q = Tensor::full({2, 4, 3, 5}, 0.5f), kv = Tensor::full({2, 2, 6, 5}, 0.25f);
  // Valid call: identical keys give uniform weights, so every output row is the constant value row.
  EXPECT_TENSOR_NEAR(tinyllm::flash_attention(q, kv, kv), Tensor::full({2, 4, 3, 5}, 0.25f), 1e-7,
                     1e-6);
  using tinyllm::ShapeError;
  const Tensor kv3 = Tensor::full({2, 3, 6, 5}, 0.f);
  EXPECT_THROW(tinyllm::flash_attention(q, kv3, kv3), ShapeError) << "H_q = 4, H = 3";
  const Tensor kv_d4 = Tensor::full({2, 2, 6, 4}, 0.f);
  EXPECT_THROW(tinyllm::flash_attention(q, kv_d4, kv_d4), ShapeError) << "D differs";
  EXPECT_THROW(tinyllm::flash_attention(q, kv, Tensor::full({2, 2, 7, 5}, 0.f)), ShapeError)
      << "value S differs from key S";
  const Tensor kv_n3 = Tensor::full({3, 2, 6, 5}, 0.f);
  EXPECT_THROW(tinyllm::flash_attention(q, kv_n3, kv_n3), ShapeError) << "N differs";
  EXPECT_THROW(tinyllm::flash_attention(Tensor::full({3, 5}, 0.f), kv, kv), ShapeError) << "rank 2";
  EXPECT_THROW(tinyllm::flash_attention(q, kv, kv, std::nullopt,
                                        AttentionMask::from(Tensor::full({2, 3, 6}, 0.f))),
               ShapeError)
      << "a 2 x 3 x 6 mask does not broadcast to 2 x 4 x 3 x 6";
  const Tensor kv_short = Tensor::full({2, 2, 2, 5}, 0.f);
  EXPECT_THROW(
      tinyllm::flash_attention(q, kv_short, kv_short, std::nullopt, AttentionMask::causal()),
      ShapeError)
      << "causal with L = 3 > S = 2";
  EXPECT_THROW(tinyllm::flash_attention(q, kv, kv, std::nullopt, AttentionMask::none(), 0, 32),
               tinyllm::InvalidArgument);
  EXPECT_THROW(tinyllm::flash_attention(q, kv, kv, std::nullopt, AttentionMask::none(), 32, -1),
               tinyllm::InvalidArgument);
}

}  // namespace
