// Chapter 2.5: provided building blocks of the parallel flash attention (nothing to write here):
// the options, the running softmax state of a set of query rows, a vectorizable exp, and a way to
// carry exceptions out of OpenMP regions.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <vector>

namespace tinyllm {

/// Scalar: ch2.4's flash_attention_tile per query tile; Vectorized: Task 2's attend_kv_range.
enum class FlashKernel { Scalar, Vectorized };

struct FlashOptions {
  int block_rows = 32;  // Br
  int block_cols = 32;  // Bc
  FlashKernel kernel = FlashKernel::Vectorized;
  int kv_splits = 0;  // 1: never split S; n > 1: n splits; 0: automatic (see choose_kv_splits)
};

/// The running softmax of `rows` query rows: max m, sum l and the rows x D accumulator O
/// (row-major).
struct FlashState {
  std::vector<float> m, l, acc;
  int64_t dim = 0;

  FlashState(int64_t rows, int64_t d)
      : m(rows, -std::numeric_limits<float>::infinity()),
        l(rows, 0.0f),
        acc(rows * d, 0.0f),
        dim(d) {}
  int64_t rows() const { return static_cast<int64_t>(m.size()); }
  /// out row r = O[r] / l[r], or zeros for a fully masked row (l = 0). out rows are out_stride
  /// apart.
  void finalize(float* out, int64_t out_stride) const {
    for (int64_t r = 0; r < rows(); ++r) {
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
      for (int64_t d = 0; d < dim; ++d) out[r * out_stride + d] = acc[r * dim + d] * inv;
    }
  }
};

/// x[j] = exp(x[j]) for n floats x[j] <= 88, in a loop the compiler vectorizes (no branch, no int
/// conversion: Cephes' expf, 2^n times a degree-6 polynomial, within 2e-7 relative).
/// exp(x) = 0 for x < -87, including -inf (a masked score).
[[gnu::always_inline]] inline void exp_inplace(float* x, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float xj = x[j];
    const float v = xj < -87.0f ? -87.0f : xj;
    const float shifted =
        v * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds to an integer
    const float fn = shifted - 12582912.0f;      // n = round(x / ln 2)
    const int32_t ni = std::bit_cast<int32_t>(shifted) - 0x4B400000;
    const float r = (v - fn * 0.693359375f) + fn * 2.12194440e-4f;  // x - n ln 2, in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    x[j] = xj < -87.0f ? 0.0f : p * std::bit_cast<float>((ni + 127) << 23);
  }
}

/// Runs f() and keeps the first exception thrown on any thread: an exception must not leave an
/// OpenMP region (that terminates the program), so rethrow() re-raises it after the region.
class ParallelErrors {
 public:
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
};

/// How many key ranges each query tile's S is split into. options.kv_splits > 0 is taken
/// as it is (at most one split per KV tile); 0 splits only when there are fewer than 16 (problem,
/// query tile) pairs to share among threads, keeping at least 4 KV tiles per split. The choice
/// depends on the shapes only, never on the thread count, so results do not either.
inline int64_t choose_kv_splits(int64_t work_items, int64_t S, const FlashOptions& options) {
  const int64_t kv_tiles = std::max<int64_t>(1, (S + options.block_cols - 1) / options.block_cols);
  if (options.kv_splits > 0) return std::min<int64_t>(options.kv_splits, kv_tiles);
  if (work_items >= 16) return 1;
  return std::max<int64_t>(1, std::min((16 + work_items - 1) / work_items, kv_tiles / 4));
}

}  // namespace tinyllm
