// Red gate, chapter 2.2: every public learner function throws its chapter's TODO on the pristine
// stubs.
#include <tinyllm/ch2_2_quantized_matmul/quantized_matmul.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

// A valid 2 x 64 q4 g32 weight built by hand (quantize itself is a stub): every code 1, scale 1,
// bias 0.
QuantizedWeights hand_weights() {
  QuantizedWeights w;
  w.packed.assign(2 * 8, 0x11111111u);
  w.scales = Tensor::full({2, 2}, 1.0f);
  w.biases = Tensor::full({2, 2}, 0.0f);
  w.rows = 2;
  w.cols = 64;
  w.group_size = 32;
  w.bits = 4;
  return w;
}

TEST(Week2Stubs, Ch2_2_QuantizedMatmul) {
  const QuantizedWeights w = hand_weights();
  EXPECT_STUB_THROWS_TODO("ch2.2", quantize(Tensor::full({2, 64}, 1.0f), 32, 4));
  EXPECT_STUB_THROWS_TODO("ch2.2", dequantize(w));
  EXPECT_STUB_THROWS_TODO("ch2.2", quantized_matmul(Tensor::full({3, 64}, 1.0f), w));
  EXPECT_STUB_THROWS_TODO("ch2.2", quantized_linear(Tensor::full({2, 3, 64}, 1.0f), w));
}

}  // namespace
}  // namespace tinyllm
