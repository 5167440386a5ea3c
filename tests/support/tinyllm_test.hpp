// Test support shared by every chapter's tests: fixture loading and tensor comparison.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"

namespace tinyllm::testing {

/// The data/ directory: $TINYLLM_DATA_DIR (ctest sets it) or the source tree's data/ compiled in.
/// Never the cwd.
std::filesystem::path data_dir();

/// A fixture file under data/fixtures/, e.g. Fixture("ch1.1/attention.safetensors"). A missing file
/// fails with the command that regenerates it (read from tools/fixtures/README.md's convention: the
/// `generator` in the metadata).
class Fixture {
 public:
  explicit Fixture(const std::string& relative_path);
  Tensor tensor(const std::string& name) const;
  std::vector<int64_t> ints(const std::string& name) const;
  /// A 0-d or 1-element tensor as a float.
  float scalar(const std::string& name) const;
  bool has(const std::string& name) const;
  /// A `__metadata__` entry; throws FormatError if absent.
  std::string meta(const std::string& key) const;
  const SafetensorsFile& file() const { return *file_; }

 private:
  std::shared_ptr<SafetensorsFile> file_;
};

/// numpy.allclose-style comparison: |a - e| <= atol + rtol * |e| elementwise, shapes equal, no NaN.
::testing::AssertionResult TensorNear(const char* actual_expr, const char* expected_expr,
                                      const char* atol_expr, const char* rtol_expr,
                                      const Tensor& actual, const Tensor& expected, double atol,
                                      double rtol);

}  // namespace tinyllm::testing

/// EXPECT_TENSOR_NEAR(actual, expected, atol, rtol): on failure prints both shapes, the max abs and
/// rel error and the first mismatching elements with their indices.
#define EXPECT_TENSOR_NEAR(actual, expected, atol, rtol) \
  EXPECT_PRED_FORMAT4(::tinyllm::testing::TensorNear, actual, expected, atol, rtol)
#define ASSERT_TENSOR_NEAR(actual, expected, atol, rtol) \
  ASSERT_PRED_FORMAT4(::tinyllm::testing::TensorNear, actual, expected, atol, rtol)
