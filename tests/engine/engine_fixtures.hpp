// Helpers of the engine's tests (engine_test.cpp, mlx_checkpoint_test.cpp), on top of the shared
// ones in tests/support/model_fixtures.hpp.
#pragma once

#include <cstdint>

#include "engine/model/qwen2_model.hpp"
#include "model_fixtures.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::engine {

using testing::columns;
using testing::id_rows;
using testing::positions;

/// Prefills positions [0, split) of the fixture's 2 x 7 batch (ids_b2l7) in one call, then decodes
/// the rest one position at a time, comparing every call with HF's logits_b2l7 at those positions.
inline void expect_prefill_then_decode_match(const Qwen2Model& engine, const testing::Fixture& f,
                                             int64_t split, double atol, double rtol) {
  testing::expect_prefill_then_decode_match(engine, id_rows(f, "ids_b2l7"), f.tensor("logits_b2l7"),
                                            split, atol, rtol);
}

}  // namespace tinyllm::engine
