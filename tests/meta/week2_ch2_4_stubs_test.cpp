// Red gate, chapter 2.4: every public learner function of flash_attention.hpp throws its TODO on
// the stubs.
#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week2Stubs, Ch2_4_FlashAttention) {
  const Tensor q = Tensor::full({1, 2, 3, 4}, 1.0f), kv = Tensor::full({1, 1, 5, 4}, 1.0f);
  const HeadMask causal{AttentionMask::Kind::Causal, 2, nullptr, 0, 0};
  Matrix scores = Matrix::Zero(3, 5);
  Matrix out(3, 4);
  EXPECT_STUB_THROWS_TODO("ch2.4", tile_visibility(causal, 0, 3, 0, 5));
  EXPECT_STUB_THROWS_TODO("ch2.4", add_tile_mask(scores, causal, 0, 0));
  EXPECT_STUB_THROWS_TODO("ch2.4", flash_attention_tile(q.matrix(0), kv.matrix(0), kv.matrix(0),
                                                        0.5f, HeadMask{}, 0, 32, out));
  EXPECT_STUB_THROWS_TODO("ch2.4", flash_attention(q, kv, kv));
  EXPECT_STUB_THROWS_TODO("ch2.4", flash_attention(q, kv, kv, 0.5f, AttentionMask::causal(), 2, 2));
}

}  // namespace
}  // namespace tinyllm
