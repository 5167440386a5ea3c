// Non-finite values: find_non_finite, format_float and check_finite_logits, the check that stops
// generation on NaN or infinite logits instead of sampling garbage (issue 8).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/numerics.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

const float kNan = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// Runs `fn`, expects NumericalError, and checks that its message contains every one of `parts`.
template <typename Fn>
void expect_numerical_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a NumericalError, got none";
  } catch (const NumericalError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(Numerics, FindNonFinite) {
  const float max = std::numeric_limits<float>::max();
  const float denorm = std::numeric_limits<float>::denorm_min();
  std::vector<float> v = {0.0f, -0.0f, max, -max, denorm, 1.0f};
  EXPECT_EQ(find_non_finite(v), -1);
  EXPECT_EQ(find_non_finite(std::vector<float>{}), -1);
  v[4] = kNan;
  EXPECT_EQ(find_non_finite(v), 4);
  v[2] = -kInf;
  EXPECT_EQ(find_non_finite(v), 2);
  EXPECT_FALSE(is_finite_bits(-kNan));
  EXPECT_FALSE(is_finite_bits(kInf));
  EXPECT_TRUE(is_finite_bits(max));
}

TEST(Numerics, FormatFloat) {
  EXPECT_EQ(format_float(kNan), "nan");
  EXPECT_EQ(format_float(-kNan), "nan");
  EXPECT_EQ(format_float(kInf), "inf");
  EXPECT_EQ(format_float(-kInf), "-inf");
  EXPECT_EQ(format_float(1.5f), "1.5");
  EXPECT_EQ(format_float(-0.25f), "-0.25");
}

TEST(Numerics, FiniteLogitsPass) {
  const float max = std::numeric_limits<float>::max();
  EXPECT_NO_THROW(check_finite_logits(Tensor({4}, {1, -2, max, -max}), 0, "test"));
  EXPECT_NO_THROW(check_finite_logits(Tensor({2, 3, 4}), 17, "test"));  // zeros
}

TEST(Numerics, NanLogitsAreNumericalErrorNamingPositionAndVocabId) {
  expect_numerical_error(
      [] {
        check_finite_logits(Tensor({5}, {0, 1, 2, kNan, 4}), 7, "gen");
      },
      {"gen: ", "non-finite logits at position 7", "first bad value at vocab id 3: nan"});
  // A 1 x V row is one row: no row number.
  try {
    check_finite_logits(Tensor({1, 3}, {0, kNan, 1}), 2, "gen");
    ADD_FAILURE() << "no exception";
  } catch (const NumericalError& e) {
    EXPECT_EQ(std::string(e.what()).find("row"), std::string::npos) << e.what();
  }
}

TEST(Numerics, InfiniteLogitsOfABatchNameTheRow) {
  // B x L x V = 2 x 2 x 3: flat index 8 is row 2 (batch 1, position 0), vocab id 2.
  Tensor logits({2, 2, 3});
  logits.data()[8] = -kInf;
  logits.data()[11] = kNan;  // a later bad value: the first one is reported
  expect_numerical_error(
      [&] { check_finite_logits(logits, 12, "Qwen2Engine::generate"); },
      {"Qwen2Engine::generate", "position 12", "vocab id 2", "row 2 of 4", "-inf"});
  Tensor batch({3, 4});
  batch.data()[5] = kInf;
  expect_numerical_error([&] { check_finite_logits(batch, 0, "batch"); },
                         {"vocab id 1", "row 1 of 3", ": inf)"});
}

}  // namespace
}  // namespace tinyllm
