// Reads data/fixtures/ch2.4/flash_attention.safetensors (tools/fixtures/gen_week2_flash.py):
// case<i>.query, .key, .value, optional .scale, and up to three expected outputs: .out (no mask),
// .mask + .out_mask (additive), .out_causal (bottom-right causal). Shared by the tests of
// chapters 2.4 and 2.5.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_3_gqa/gqa.hpp>

#include "tinyllm/tensor.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::testing {

/// One expected output of a case: the mask it was computed with and the oracle's output.
struct FlashExpectation {
  std::string what;  // "none", "mask" or "causal"
  AttentionMask mask;
  Tensor out;
};

class FlashCases {
 public:
  FlashCases()
      : fixture_("ch2.4/flash_attention.safetensors"),
        count_(std::stoi(fixture_.meta("num_cases"))) {}

  int size() const { return count_; }
  std::string describe(int i) const {
    return "ch2.4/flash_attention.safetensors case " + std::to_string(i) + ": " +
           fixture_.meta(name(i, ""));
  }
  Tensor query(int i) const { return fixture_.tensor(name(i, ".query")); }
  Tensor key(int i) const { return fixture_.tensor(name(i, ".key")); }
  Tensor value(int i) const { return fixture_.tensor(name(i, ".value")); }
  std::optional<float> scale(int i) const {
    return fixture_.has(name(i, ".scale"))
               ? std::optional<float>(fixture_.scalar(name(i, ".scale")))
               : std::nullopt;
  }
  /// The expected outputs the case holds whose kind is in `kinds` (a subset of "none", "mask",
  /// "causal").
  std::vector<FlashExpectation> expectations(int i, const std::vector<std::string>& kinds) const {
    std::vector<FlashExpectation> result;
    for (const auto& kind : kinds) {
      if (kind == "none" && fixture_.has(name(i, ".out"))) {
        result.push_back({kind, AttentionMask::none(), fixture_.tensor(name(i, ".out"))});
      } else if (kind == "mask" && fixture_.has(name(i, ".out_mask"))) {
        result.push_back({kind, AttentionMask::from(fixture_.tensor(name(i, ".mask"))),
                          fixture_.tensor(name(i, ".out_mask"))});
      } else if (kind == "causal" && fixture_.has(name(i, ".out_causal"))) {
        result.push_back({kind, AttentionMask::causal(), fixture_.tensor(name(i, ".out_causal"))});
      }
    }
    return result;
  }

 private:
  static std::string name(int i, const std::string& suffix) {
    return "case" + std::to_string(i) + suffix;
  }

  Fixture fixture_;
  int count_;
};

/// The tile shapes every fixture case runs with (Br x Bc): the default, single elements, odd sizes
/// that leave ragged last tiles, tiles larger than the problem, and unequal rows and columns.
inline const std::vector<std::pair<int, int>>& flash_tile_shapes() {
  static const std::vector<std::pair<int, int>> shapes = {{32, 32}, {1, 1},  {7, 7},
                                                          {64, 64}, {7, 32}, {32, 7}};
  return shapes;
}

}  // namespace tinyllm::testing
