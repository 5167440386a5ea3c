// Reads the operator fixtures of chapters 1.1-1.4 written by tools/fixtures/gen_week1_ops.py: every
// file holds cases named case<i>.<tensor>, the number of cases in the metadata key num_cases and a
// one-line description of each case in the metadata key case<i>.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "tinyllm/tensor.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::testing {

class OpCases {
 public:
  explicit OpCases(const std::string& file)
      : file_(file), fixture_(file), count_(std::stoi(fixture_.meta("num_cases"))) {}

  int size() const { return count_; }
  /// "ch1.1/softmax.safetensors case 3: (4, 33) normal * 1000", for SCOPED_TRACE.
  std::string describe(int i) const {
    return file_ + " case " + std::to_string(i) + ": " + fixture_.meta("case" + std::to_string(i));
  }
  bool has(int i, const std::string& name) const { return fixture_.has(key(i, name)); }
  Tensor tensor(int i, const std::string& name) const { return fixture_.tensor(key(i, name)); }
  std::vector<int64_t> ints(int i, const std::string& name) const {
    return fixture_.ints(key(i, name));
  }
  float scalar(int i, const std::string& name) const { return fixture_.scalar(key(i, name)); }
  /// The tensor if the case has it (e.g. an optional mask), else nullopt.
  std::optional<Tensor> optional_tensor(int i, const std::string& name) const {
    return has(i, name) ? std::optional<Tensor>(tensor(i, name)) : std::nullopt;
  }
  std::optional<float> optional_scalar(int i, const std::string& name) const {
    return has(i, name) ? std::optional<float>(scalar(i, name)) : std::nullopt;
  }

 private:
  static std::string key(int i, const std::string& name) {
    return "case" + std::to_string(i) + "." + name;
  }

  std::string file_;
  Fixture fixture_;
  int count_;
};

}  // namespace tinyllm::testing
