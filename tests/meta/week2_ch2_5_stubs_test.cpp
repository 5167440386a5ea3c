// Red gate, chapter 2.5: every public learner function of parallel_flash_attention.hpp throws its
// TODO on the stubs.
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>

#include <vector>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week2Stubs, Ch2_5_ParallelFlashAttention) {
  const Tensor q = Tensor::full({1, 2, 3, 4}, 1.0f), kv = Tensor::full({1, 1, 5, 4}, 1.0f);
  FlashState state(3, 4);
  EXPECT_STUB_THROWS_TODO("ch2.5", attend_kv_range(q.data(), 4, kv.data(), kv.data(), 4, 0, 5, 0.5f,
                                                   HeadMask{}, 0, 32, state));
  const std::vector<FlashState> parts = {state, state};
  std::vector<float> out(12);
  EXPECT_STUB_THROWS_TODO("ch2.5", merge_states(parts, out.data(), 4));
  Tensor result(q.shape());
  EXPECT_STUB_THROWS_TODO(
      "ch2.5", split_kv_attention(q, kv, kv, 0.5f, MaskLayout(AttentionMask::none(), {1, 2, 3, 5}),
                                  FlashOptions(), 2, result));
  EXPECT_STUB_THROWS_TODO("ch2.5", flash_attention_parallel(q, kv, kv));
  const Tensor q1 = Tensor::full({1, 2, 1, 4}, 1.0f);
  EXPECT_STUB_THROWS_TODO("ch2.5", gqa_decode_attention(q1, kv, kv, 0.5f, FlashOptions()));
}

}  // namespace
}  // namespace tinyllm
