// Red gate, chapter 2.3: every public learner function throws its chapter's TODO on the pristine
// stubs.
#include <tinyllm/ch2_3_fast_qmatmul/bf16_matmul.hpp>
#include <tinyllm/ch2_3_fast_qmatmul/fast_qmatmul.hpp>
#include <vector>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

// A valid 2 x 64 q4 g32 weight built by hand: every code 1, scale 1, bias 0.
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

TEST(Week2Stubs, Ch2_3_FastQuantizedMatmul) {
  const QuantizedWeights w = hand_weights();
  const std::vector<float> x(64, 1.0f), sums(2, 32.0f);
  std::vector<float> y(2 * 64);
  EXPECT_STUB_THROWS_TODO("ch2.3", group_sums(x.data(), 64, 32));
  EXPECT_STUB_THROWS_TODO("ch2.3", qdot_row_portable(w, 0, x.data(), sums.data()));
  EXPECT_STUB_THROWS_TODO("ch2.3", split_even_odd(x.data(), 64));
  if (kernel_path_supported(KernelPath::Avx2)) {
    EXPECT_STUB_THROWS_TODO("ch2.3", qdot_row_avx2(w, 0, x.data(), sums.data()));
  }
  if (kernel_path_supported(KernelPath::Avx512)) {
    EXPECT_STUB_THROWS_TODO("ch2.3", qdot_row_avx512(w, 0, x.data(), sums.data()));
  }
  EXPECT_STUB_THROWS_TODO("ch2.3",
                          quantized_matvec(x.data(), w, y.data(), KernelPath::Portable, 1));
  EXPECT_STUB_THROWS_TODO("ch2.3", dequantize_rows(w, 0, 2, y.data()));
  EXPECT_STUB_THROWS_TODO("ch2.3", quantized_matmul_fast(Tensor::full({3, 64}, 1.0f), w));
  EXPECT_STUB_THROWS_TODO("ch2.3", quantized_linear_fast(Tensor::full({1, 64}, 1.0f), w));
}

TEST(Week2Stubs, Ch2_3_Bf16Matmul) {
  const Bf16Weights w = to_bf16(Tensor::full({3, 40}, 0.5f));
  const std::vector<float> x(40, 1.0f);
  const std::vector<uint16_t> xb(40, 0x3F80);
  EXPECT_STUB_THROWS_TODO("ch2.3", bf16_dot_row_portable(w, 0, x.data()));
  if (kernel_path_supported(KernelPath::Avx512)) {
    EXPECT_STUB_THROWS_TODO("ch2.3", bf16_dot_row_avx512(w, 0, x.data()));
  }
  if (kernel_path_supported(KernelPath::Avx512Bf16)) {
    EXPECT_STUB_THROWS_TODO("ch2.3", bf16_dot_row_avx512bf16(w, 0, xb.data(), xb.data()));
  }
  EXPECT_STUB_THROWS_TODO("ch2.3", bf16_matmul(Tensor::full({1, 40}, 1.0f), w));
  EXPECT_STUB_THROWS_TODO("ch2.3", bf16_matmul(Tensor::full({4, 40}, 1.0f), w));
}

}  // namespace
}  // namespace tinyllm
