// Chapter 1.7 tests: exact tests of the filters on hand-made distributions (ties and edges
// included), the final distribution against a PyTorch oracle
// (data/fixtures/ch1.7/sampling.safetensors, tools/fixtures/gen_sampling.py), statistical tests of
// the draws (fixed seeds, 20000 draws, chi-square against the oracle's distribution), seed
// reproducibility and the errors for nonsense parameters.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch1_7_sampling/sampler.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

using testing::Fixture;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor row(std::vector<float> values) {
  const auto V = static_cast<int64_t>(values.size());
  return Tensor({V}, std::move(values));
}

// Which ids have a finite logit (top-k) or a non-zero probability (top-p).
std::vector<int> finite_ids(const std::vector<float>& x) {
  std::vector<int> ids;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(x[i])) ids.push_back(static_cast<int>(i));
  }
  return ids;
}
std::vector<int> nonzero_ids(const std::vector<float>& x) {
  std::vector<int> ids;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != 0.0f) ids.push_back(static_cast<int>(i));
  }
  return ids;
}

void expect_probs_near(const std::vector<float>& actual, const std::vector<float>& expected,
                       double atol) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], atol) << "at id " << i;
  }
}

// One case of the PyTorch oracle fixture.
struct OracleCase {
  int index;
  std::vector<float> logits;
  SamplerConfig config;
  std::vector<float> probs;
};

OracleCase oracle_case(int index) {
  const Fixture fx("ch1.7/sampling.safetensors");
  const std::string prefix = "case" + std::to_string(index) + "_";
  const Tensor config = fx.tensor(prefix + "config");
  OracleCase c;
  c.index = index;
  c.logits = fx.tensor(prefix + "logits").values();
  c.probs = fx.tensor(prefix + "probs").values();
  c.config.temperature = config.data()[0];
  c.config.top_k = static_cast<int64_t>(config.data()[1]);
  c.config.top_p = config.data()[2];
  c.config.seed = 1000 + static_cast<uint64_t>(index);
  return c;
}

// Upper critical value of chi-square with `df` degrees of freedom at normal quantile z
// (Wilson-Hilferty).
double chi_square_critical(int df, double z) {
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// Draws `draws` tokens with a fresh Sampler and compares the counts with the oracle's distribution:
// filtered ids must never appear, and the chi-square statistic over the kept ids must stay below
// the p = 3e-5 critical value (deterministic with the fixed seed; a wrong filter, temperature or
// draw is off by thousands).
void expect_draws_follow_oracle(const OracleCase& c, int draws = 20000) {
  SCOPED_TRACE("oracle case " + std::to_string(c.index));
  Sampler sampler(c.config);
  const Tensor logits = row(c.logits);
  std::vector<int64_t> counts(c.logits.size(), 0);
  for (int n = 0; n < draws; ++n) {
    const TokenId id = sampler(logits);
    ASSERT_GE(id, 0);
    ASSERT_LT(id, static_cast<TokenId>(c.logits.size()));
    ++counts[id];
  }
  double chi2 = 0.0;
  int kept = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = c.probs[i] * draws;
    if (c.probs[i] == 0.0f) {
      EXPECT_EQ(counts[i], 0) << "id " << i << " is filtered out but was drawn";
      continue;
    }
    ++kept;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  if (kept > 1) {
    EXPECT_LT(chi2, chi_square_critical(kept - 1, 4.0))
        << "the draws do not follow the expected distribution";
  } else {
    EXPECT_EQ(counts[nonzero_ids(c.probs).at(0)], draws);
  }
}

// ---- Task 1 ----

TEST(Sampling, Task1_ArgmaxPicksLargestAndLowestIdOnTies) {
  EXPECT_EQ(argmax({0.1f, 3.0f, -1.0f, 2.0f}), 1);
  EXPECT_EQ(argmax({1.0f, 5.0f, 5.0f, 5.0f}), 1);
  EXPECT_EQ(argmax({-kInf, -3.0f, -kInf}), 1);
  EXPECT_EQ(argmax({7.0f}), 0);
  EXPECT_THROW(argmax({}), InvalidArgument);
}

TEST(Sampling, Task1_SoftmaxWithTemperatureMatchesTheMath) {
  // softmax(log p / T) = p^(1/T) / sum p^(1/T).
  const std::vector<float> logits = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                     std::log(0.125f)};
  expect_probs_near(softmax_with_temperature(logits, 1.0f), {0.5f, 0.25f, 0.125f, 0.125f}, 1e-6);
  const double z = 0.25 + 0.0625 + 2 * 0.015625;  // T = 0.5 squares the probabilities
  expect_probs_near(softmax_with_temperature(logits, 0.5f),
                    {float(0.25 / z), float(0.0625 / z), float(0.015625 / z), float(0.015625 / z)},
                    1e-6);
  const double w =
      std::sqrt(0.5) + std::sqrt(0.25) + 2 * std::sqrt(0.125);  // T = 2 takes square roots
  expect_probs_near(softmax_with_temperature(logits, 2.0f),
                    {float(std::sqrt(0.5) / w), float(0.5 / w), float(std::sqrt(0.125) / w),
                     float(std::sqrt(0.125) / w)},
                    1e-6);
  // Filtered entries get exactly 0, and large logits do not overflow.
  const auto p = softmax_with_temperature({1000.0f, -kInf, 1000.0f}, 1.0f);
  EXPECT_FLOAT_EQ(p[0], 0.5f);
  EXPECT_EQ(p[1], 0.0f);
  EXPECT_FLOAT_EQ(p[2], 0.5f);
}

TEST(Sampling, Task1_SampleFromWalksTheCumulativeSum) {
  // The documented draw: u = (top 53 bits of mt19937_64) * 2^-53, first id whose running sum
  // exceeds u * total.
  const std::vector<float> probs = {0.0f, 0.25f, 0.0f, 0.5f, 0.25f};
  const double cumulative[] = {0.0, 0.25, 0.25, 0.75, 1.0};
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::mt19937_64 engine(seed);
    const double u = static_cast<double>(engine() >> 11) / 9007199254740992.0;
    int expected = 0;
    while (!(cumulative[expected] > u)) ++expected;
    Rng rng(seed);
    EXPECT_EQ(sample_from(probs, rng), expected) << "seed " << seed << ", u = " << u;
  }
  // Weights need not be normalised; zero weights are never drawn.
  Rng rng(7);
  for (int n = 0; n < 1000; ++n) EXPECT_EQ(sample_from({0.0f, 3.0f, 0.0f}, rng), 1);
  EXPECT_THROW(sample_from({0.0f, 0.0f}, rng), InvalidArgument);
}

TEST(Sampling, Task1_TemperatureZeroIsGreedy) {
  Sampler sampler(SamplerConfig{.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 3});
  const Tensor logits = row({0.5f, 2.0f, 2.0f, -1.0f});
  for (int n = 0; n < 100; ++n) EXPECT_EQ(sampler(logits), 1);
  expect_probs_near(sampler.distribution(logits.values()), {0.0f, 1.0f, 0.0f, 0.0f}, 0.0);
}

TEST(Sampling, Task1_DistributionMatchesOracle) {
  for (int i : {0, 1, 2, 11}) {
    const OracleCase c = oracle_case(i);
    SCOPED_TRACE("oracle case " + std::to_string(i));
    expect_probs_near(Sampler(c.config).distribution(c.logits), c.probs, 1e-6);
  }
}

TEST(Sampling, Task1_DrawsFollowTheTemperedDistribution) {
  for (int i : {0, 1, 2}) expect_draws_follow_oracle(oracle_case(i));
}

TEST(Sampling, Task1_SameSeedSameTokens) {
  const Tensor logits = row({1.0f, 0.5f, 0.0f, -0.5f, 0.8f, 0.3f});
  auto draw = [&](uint64_t seed) {
    Sampler sampler(SamplerConfig{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = seed});
    std::vector<TokenId> ids;
    for (int n = 0; n < 200; ++n) ids.push_back(sampler(logits));
    return ids;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampling, Task1_WorksAsTokenPickerOfChapter16) {
  const Tensor logits = row({1.0f, 0.5f, 0.0f, -0.5f, 0.8f, 0.3f});
  const SamplerConfig config{.temperature = 0.9f, .top_k = 0, .top_p = 1.0f, .seed = 5};
  Sampler by_reference(config), direct(config);
  const TokenPicker picker = std::ref(by_reference);  // the RNG state lives in by_reference
  for (int n = 0; n < 50; ++n) EXPECT_EQ(picker(logits), direct(logits)) << "draw " << n;
}

TEST(Sampling, Task1_RejectsNonsenseParameters) {
  auto make = [](float temperature, int64_t top_k, float top_p) {
    return Sampler(
        SamplerConfig{.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = 0});
  };
  EXPECT_THROW(make(-0.1f, 0, 1.0f), InvalidArgument);
  EXPECT_THROW(make(kNaN, 0, 1.0f), InvalidArgument);
  EXPECT_THROW(make(kInf, 0, 1.0f), InvalidArgument);
  EXPECT_THROW(make(1.0f, -1, 1.0f), InvalidArgument);
  EXPECT_THROW(make(1.0f, 0, 0.0f), InvalidArgument);
  EXPECT_THROW(make(1.0f, 0, -0.5f), InvalidArgument);
  EXPECT_THROW(make(1.0f, 0, 1.5f), InvalidArgument);
  EXPECT_THROW(make(1.0f, 0, 2.0f), InvalidArgument);
  EXPECT_THROW(make(1.0f, 0, kNaN), InvalidArgument);
  try {
    make(1.0f, 0, 2.0f);
    FAIL() << "top_p = 2 was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(make(0.0f, 0, 1.0f));
  EXPECT_NO_THROW(make(1.0f, 1, 1e-6f));
}

TEST(Sampling, Task1_RejectsBadLogits) {
  Sampler greedy(SamplerConfig{});
  Sampler sampling(SamplerConfig{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0});
  EXPECT_THROW(greedy(Tensor({1, 4})), ShapeError);
  EXPECT_THROW(sampling(Tensor({2, 3})), ShapeError);
  EXPECT_THROW(greedy(row({1.0f, kNaN})), InvalidArgument);
  EXPECT_THROW(sampling(row({1.0f, kNaN})), InvalidArgument);
  EXPECT_THROW(sampling(row({-kInf, -kInf})), InvalidArgument);
}

// ---- Task 2 ----

TEST(Sampling, Task2_TopKKeepsTheKLargestLogits) {
  const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.0f, 5.0f};
  const auto two = top_k_filter(logits, 2);
  EXPECT_EQ(finite_ids(two), (std::vector<int>{1, 4}));
  EXPECT_EQ(two[1], 3.0f);  // survivors keep their value
  EXPECT_EQ(two[4], 5.0f);
  EXPECT_EQ(two[0], -kInf);
  EXPECT_EQ(finite_ids(top_k_filter(logits, 1)), (std::vector<int>{4}));
  EXPECT_EQ(finite_ids(top_k_filter(logits, 4)), (std::vector<int>{0, 1, 3, 4}));
}

TEST(Sampling, Task2_TopKTiesKeepTheLowerIds) {
  EXPECT_EQ(finite_ids(top_k_filter({1.0f, 2.0f, 2.0f, 2.0f, 0.0f}, 2)), (std::vector<int>{1, 2}));
  EXPECT_EQ(finite_ids(top_k_filter({3.0f, 3.0f}, 1)), (std::vector<int>{0}));
  EXPECT_EQ(finite_ids(top_k_filter({0.0f, 4.0f, 1.0f, 4.0f, 4.0f}, 3)),
            (std::vector<int>{1, 3, 4}));
}

TEST(Sampling, Task2_TopKEdges) {
  const std::vector<float> logits = {0.5f, -2.0f, 1.5f};
  EXPECT_EQ(top_k_filter(logits, 0), logits);    // off
  EXPECT_EQ(top_k_filter(logits, 3), logits);    // k == V
  EXPECT_EQ(top_k_filter(logits, 100), logits);  // k > V
  EXPECT_THROW(top_k_filter(logits, -1), InvalidArgument);
}

TEST(Sampling, Task2_TopKOneIsAlwaysTheArgmax) {
  Sampler sampler(SamplerConfig{.temperature = 2.0f, .top_k = 1, .top_p = 1.0f, .seed = 9});
  const Tensor logits = row({0.3f, 0.2f, 0.31f, 0.0f});
  for (int n = 0; n < 500; ++n) EXPECT_EQ(sampler(logits), 2);
}

TEST(Sampling, Task2_DistributionMatchesOracle) {
  for (int i : {3, 6, 8}) {
    const OracleCase c = oracle_case(i);
    SCOPED_TRACE("oracle case " + std::to_string(i));
    expect_probs_near(Sampler(c.config).distribution(c.logits), c.probs, 1e-6);
  }
}

TEST(Sampling, Task2_DrawsFollowTheTopKDistribution) {
  for (int i : {3, 6, 8}) expect_draws_follow_oracle(oracle_case(i));
}

// ---- Task 3 ----

TEST(Sampling, Task3_TopPKeepsTheSmallestPrefixReachingP) {
  // Sorted: id 1 (0.5), id 2 (0.25), then ids 0 and 3 (0.125). 0.5 < 0.7, 0.75 >= 0.7: keep {1, 2}.
  expect_probs_near(top_p_filter({0.125f, 0.5f, 0.25f, 0.125f}, 0.7f),
                    {0.0f, 2.0f / 3, 1.0f / 3, 0.0f}, 1e-7);
  expect_probs_near(top_p_filter({0.125f, 0.5f, 0.25f, 0.125f}, 0.8f),
                    {0.125f / 0.875f, 0.5f / 0.875f, 0.25f / 0.875f, 0.0f}, 1e-7);
}

TEST(Sampling, Task3_TopPExactlyOnABoundaryIsInclusive) {
  // 0.5 + 0.25 == 0.75 exactly (binary fractions): the token that reaches p is kept, nothing after
  // it. Ids 1 and 2 tie at 0.25: the lower id is kept.
  expect_probs_near(top_p_filter({0.5f, 0.25f, 0.25f}, 0.75f), {2.0f / 3, 1.0f / 3, 0.0f}, 1e-7);
  expect_probs_near(top_p_filter({0.25f, 0.5f, 0.25f}, 0.5f), {0.0f, 1.0f, 0.0f}, 0.0);
}

TEST(Sampling, Task3_TopPTiesKeepTheLowerIds) {
  EXPECT_EQ(nonzero_ids(top_p_filter({0.25f, 0.25f, 0.25f, 0.25f}, 0.5f)),
            (std::vector<int>{0, 1}));
  EXPECT_EQ(nonzero_ids(top_p_filter({0.1f, 0.3f, 0.3f, 0.3f}, 0.35f)), (std::vector<int>{1, 2}));
}

TEST(Sampling, Task3_TopPAlwaysKeepsTheTopToken) {
  expect_probs_near(top_p_filter({0.1f, 0.9f}, 0.05f), {0.0f, 1.0f}, 0.0);
  expect_probs_near(top_p_filter({0.2f, 0.2f, 0.6f}, 1e-6f), {0.0f, 0.0f, 1.0f}, 0.0);
}

TEST(Sampling, Task3_TopPOneKeepsEverything) {
  const std::vector<float> probs = {0.1f, 0.2f, 0.3f, 0.4f};
  EXPECT_EQ(nonzero_ids(top_p_filter(probs, 1.0f)), (std::vector<int>{0, 1, 2, 3}));
  expect_probs_near(top_p_filter(probs, 1.0f), probs, 1e-7);
}

TEST(Sampling, Task3_TopPRejectsOutOfRange) {
  const std::vector<float> probs = {0.5f, 0.5f};
  EXPECT_THROW(top_p_filter(probs, 0.0f), InvalidArgument);
  EXPECT_THROW(top_p_filter(probs, -0.1f), InvalidArgument);
  EXPECT_THROW(top_p_filter(probs, 1.01f), InvalidArgument);
  EXPECT_THROW(top_p_filter(probs, kNaN), InvalidArgument);
}

TEST(Sampling, Task3_DistributionMatchesOracle) {
  for (int i : {4, 5, 7, 9, 10}) {
    const OracleCase c = oracle_case(i);
    SCOPED_TRACE("oracle case " + std::to_string(i));
    expect_probs_near(Sampler(c.config).distribution(c.logits), c.probs, 1e-6);
  }
}

TEST(Sampling, Task3_DrawsFollowTheNucleus) {
  for (int i : {4, 5, 7, 9, 10}) expect_draws_follow_oracle(oracle_case(i));
}

}  // namespace
}  // namespace tinyllm
