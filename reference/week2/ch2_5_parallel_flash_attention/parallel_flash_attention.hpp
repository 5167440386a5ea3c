// Chapter 2.5: flash attention, parallel and vectorized (the engine's attention kernel).
//
// You write (book/week2/ch2_5_parallel_flash_attention.md):
//   Task 1  flash_attention_parallel: every (problem, query tile) pair on an OpenMP thread
//   Task 2  attend_kv_range_body: the tile loop on raw pointers, in loops the compiler vectorizes
//   Task 3  merge_states and the split-KV decode path (one query row against a long S)
//
// The results equal ch2.4's flash_attention up to float rounding, and do not depend on the thread
// count: every output row is computed by one thread in a fixed order, whatever the number of
// threads. Shapes: N.. batch dims, H_q query heads, H KV heads, L queries, S keys, D head dim, Br x
// Bc tiles.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include <tinyllm/ch2_4_flash_attention/flash_attention.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/flash_support.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

// ---------------------------------------------------------------------------------------------------------------
// Task 2

/// Task 2. Feeds keys [col_begin, col_end) to the running state of `rows` query rows, in KV tiles
/// of block_cols keys starting at col_begin: the same steps as ch2.4's flash_attention_tile
/// (visibility, S = q K^T * scale, mask, max, exp, l, O) without finalizing. q: rows x D, rows
/// q_stride apart; k, v: S x D (row stride D); row0: the global index of q's first row (for the
/// mask). Leave the two products to Eigen on maps of the raw pointers (its register-blocked GEMM
/// beats naive loops: Q K^T and P V of a 32 x 32 tile), and write the per-row softmax work (mask,
/// max, exp, sum, rescaling O) as plain loops over contiguous floats under `#pragma omp simd`, with
/// exp_inplace. attend_kv_range compiles this body for AVX-512, AVX2 and plain x86-64 and picks one
/// at run time; allocate nothing per KV tile.
[[gnu::always_inline]] inline void attend_kv_range_body(const float* q, int64_t q_stride,
                                                        const float* k, const float* v, int64_t dim,
                                                        int64_t col_begin, int64_t col_end,
                                                        float scale, const HeadMask& mask,
                                                        int64_t row0, int block_cols,
                                                        FlashState& state) {
  // SOLUTION BEGIN ch2.5 Task 2
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  using StridedMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
  const int64_t rows = state.rows(), bc = block_cols;
  const Matrix q_scaled = StridedMap(q, rows, dim, Eigen::OuterStride<>(q_stride)) * scale;
  MatrixMap acc(state.acc.data(), rows, dim);
  Matrix tile(rows, bc);
  for (int64_t col0 = col_begin; col0 < col_end; col0 += bc) {
    const int64_t cols = std::min(bc, col_end - col0);
    TileVisibility visibility = TileVisibility::Visible;
    if (mask.kind != AttentionMask::Kind::None) {
      visibility = tile_visibility(mask, row0, rows, col0, cols);
      if (visibility == TileVisibility::Skipped) continue;
    }
    // Scores rows x cols, row stride bc: a register-blocked GEMM (Eigen) on the contiguous K rows.
    MatrixMap scores(tile.data(), rows, cols);
    scores.noalias() = q_scaled * ConstMatrixMap(k + col0 * dim, cols, dim).transpose();
    for (int64_t r = 0; r < rows; ++r) {
      float* s = scores.data() + r * cols;
      const int64_t row = row0 + r;
      if (visibility == TileVisibility::Partial) {
        if (mask.kind == AttentionMask::Kind::Causal) {
          for (int64_t c = std::max<int64_t>(0, row + mask.causal_offset + 1 - col0); c < cols;
               ++c) {
            s[c] = kNegInf;
          }
        } else {
          for (int64_t c = 0; c < cols; ++c) s[c] += mask.at(row, col0 + c);
        }
      }
      float tile_max = kNegInf;
#pragma omp simd reduction(max : tile_max)
      for (int64_t c = 0; c < cols; ++c) tile_max = std::max(tile_max, s[c]);
      const float m_new = std::max(state.m[r], tile_max);
      if (m_new == kNegInf) {  // nothing visible yet: P = 0, the state stays as it is
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) s[c] = 0.0f;
        continue;
      }
      const float correction = std::exp(state.m[r] - m_new);
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) s[c] -= m_new;
      exp_inplace(s, cols);
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < cols; ++c) sum += s[c];
      state.l[r] = correction * state.l[r] + sum;
      state.m[r] = m_new;
      if (correction != 1.0f) {
        float* o = state.acc.data() + r * dim;
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) o[d] *= correction;
      }
    }
    acc.noalias() += scores * ConstMatrixMap(v + col0 * dim, cols, dim);  // P V, Eigen GEMM
  }
  // SOLUTION END
}

namespace detail {
#define TINYLLM_ATTEND_ARGS                                                                \
  const float *q, int64_t q_stride, const float *k, const float *v, int64_t dim,           \
      int64_t col_begin, int64_t col_end, float scale, const HeadMask &mask, int64_t row0, \
      int block_cols, FlashState &state
#define TINYLLM_ATTEND_CALL                                                                       \
  attend_kv_range_body(q, q_stride, k, v, dim, col_begin, col_end, scale, mask, row0, block_cols, \
                       state)
[[gnu::target("avx512f,avx512vl,avx512bw,avx512dq,fma,prefer-vector-width=512")]] inline void
attend_avx512(TINYLLM_ATTEND_ARGS) {
  TINYLLM_ATTEND_CALL;
}
[[gnu::target("avx2,fma")]] inline void attend_avx2(TINYLLM_ATTEND_ARGS) {
  TINYLLM_ATTEND_CALL;
}
inline void attend_portable(TINYLLM_ATTEND_ARGS) {
  TINYLLM_ATTEND_CALL;
}
using AttendFn = void (*)(TINYLLM_ATTEND_ARGS);
#undef TINYLLM_ATTEND_ARGS
#undef TINYLLM_ATTEND_CALL
}  // namespace detail

/// The instruction sets attend_kv_range_body is compiled for. Auto: the best one this CPU has.
enum class FlashIsa { Auto, Portable, Avx2, Avx512 };

/// Whether this CPU can run `isa` (Auto and Portable: always).
inline bool flash_isa_supported(FlashIsa isa) {
  switch (isa) {
    case FlashIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
    case FlashIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
}

namespace detail {
inline std::atomic<FlashIsa>& forced_flash_isa() {
  static std::atomic<FlashIsa> isa{FlashIsa::Auto};
  return isa;
}
}  // namespace detail

/// Provided. Makes attend_kv_range run one instruction set from now on (the tests run every path
/// this CPU has, so the AVX2 and plain builds of your Task 2 body are checked too); Auto goes back
/// to the best one. InvalidArgument for an instruction set this CPU lacks.
inline void force_flash_isa(FlashIsa isa) {
  if (!flash_isa_supported(isa)) {
    throw InvalidArgument("force_flash_isa: this CPU cannot run the requested instruction set");
  }
  detail::forced_flash_isa().store(isa);
}

/// The instruction set attend_kv_range runs with now: the forced one, else the best of this CPU.
inline FlashIsa active_flash_isa() {
  const FlashIsa forced = detail::forced_flash_isa().load();
  if (forced != FlashIsa::Auto) return forced;
  static const FlashIsa best = flash_isa_supported(FlashIsa::Avx512) ? FlashIsa::Avx512
                               : flash_isa_supported(FlashIsa::Avx2) ? FlashIsa::Avx2
                                                                     : FlashIsa::Portable;
  return best;
}

/// The name of active_flash_isa(): "avx512", "avx2" or "portable".
inline const char* flash_kernel_isa() {
  switch (active_flash_isa()) {
    case FlashIsa::Avx512:
      return "avx512";
    case FlashIsa::Avx2:
      return "avx2";
    default:
      return "portable";
  }
}

/// attend_kv_range_body compiled for active_flash_isa().
inline void attend_kv_range(const float* q, int64_t q_stride, const float* k, const float* v,
                            int64_t dim, int64_t col_begin, int64_t col_end, float scale,
                            const HeadMask& mask, int64_t row0, int block_cols, FlashState& state) {
  const FlashIsa isa = active_flash_isa();
  const detail::AttendFn fn = isa == FlashIsa::Avx512 ? detail::attend_avx512
                              : isa == FlashIsa::Avx2 ? detail::attend_avx2
                                                      : detail::attend_portable;
  fn(q, q_stride, k, v, dim, col_begin, col_end, scale, mask, row0, block_cols, state);
}

// ---------------------------------------------------------------------------------------------------------------
// Task 3

/// Task 3. Merges the states of one set of query rows that saw disjoint key ranges into out
/// (rows x D, rows out_stride apart): with M = max_j m_j, l = sum_j exp(m_j - M) l_j and
/// O = sum_j exp(m_j - M) O_j, out = O / l; a row with M = -inf (no key visible anywhere) is zeros.
inline void merge_states(std::span<const FlashState> parts, float* out, int64_t out_stride) {
  // SOLUTION BEGIN ch2.5 Task 3
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t rows = parts.front().rows(), dim = parts.front().dim;
  FlashState merged(rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    float M = kNegInf;
    for (const FlashState& p : parts) M = std::max(M, p.m[r]);
    if (M == kNegInf) continue;  // l stays 0: finalize writes zeros
    for (const FlashState& p : parts) {
      if (p.m[r] == kNegInf) continue;
      const float w = std::exp(p.m[r] - M);
      merged.l[r] += w * p.l[r];
      for (int64_t d = 0; d < dim; ++d) merged.acc[r * dim + d] += w * p.acc[r * dim + d];
    }
  }
  merged.finalize(out, out_stride);
  // SOLUTION END
}

/// Task 3. The split-KV path of flash_attention_parallel (scale resolved, layout built, splits >
/// 1): each query tile's keys are cut into `splits` ranges of whole KV tiles; every (problem, query
/// tile, range) item runs attend_kv_range on its own FlashState in one `omp parallel for
/// collapse(3)`, then every (problem, query tile) merges its states into out. This is what keeps
/// two threads busy when a decode step (L = 1) has fewer heads than threads, or one head and a very
/// long S.
inline void split_kv_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                               float scale, const MaskLayout& layout, const FlashOptions& options,
                               int64_t splits, Tensor& out) {
  // SOLUTION BEGIN ch2.5 Task 3
  const int64_t num_heads = query.dim(-3), num_kv_heads = key.dim(-3);
  const int64_t group = num_heads / num_kv_heads, L = query.dim(-2), S = key.dim(-2);
  const int64_t D = query.dim(-1), br = options.block_rows, bc = options.block_cols;
  const int64_t problems = query.num_matrices(), tiles = (L + br - 1) / br;
  const int64_t kv_tiles = (S + bc - 1) / bc, chunk = (kv_tiles + splits - 1) / splits * bc;
  std::vector<FlashState> states;
  states.reserve(problems * tiles * splits);
  for (int64_t n = 0; n < problems * tiles * splits; ++n) {
    states.emplace_back(std::min(br, L - (n / splits % tiles) * br), D);
  }
  ParallelErrors errors;
#pragma omp parallel for collapse(3) schedule(dynamic)
  for (int64_t i = 0; i < problems; ++i) {
    for (int64_t t = 0; t < tiles; ++t) {
      for (int64_t j = 0; j < splits; ++j) {
        errors.run([&] {
          const int64_t kv = (i / num_heads) * num_kv_heads + (i % num_heads) / group;
          const int64_t begin = std::min(S, j * chunk), end = std::min(S, begin + chunk);
          attend_kv_range(query.data() + (i * L + t * br) * D, D, key.data() + kv * S * D,
                          value.data() + kv * S * D, D, begin, end, scale, layout.head(i), t * br,
                          bc, states[(i * tiles + t) * splits + j]);
        });
      }
    }
  }
  errors.rethrow();
#pragma omp parallel for collapse(2)
  for (int64_t i = 0; i < problems; ++i) {
    for (int64_t t = 0; t < tiles; ++t) {
      errors.run([&] {
        merge_states(std::span<const FlashState>(states).subspan((i * tiles + t) * splits, splits),
                     out.data() + (i * L + t * br) * D, D);
      });
    }
  }
  errors.rethrow();
  // SOLUTION END
}

// ---------------------------------------------------------------------------------------------------------------
// Task 1 (Task 3 adds the split-KV path and the GQA decode packing)

/// Task 3 (defined below flash_attention_parallel, which it calls).
inline Tensor gqa_decode_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                   float scale, const FlashOptions& options);

/// Task 1. flash_attention (ch2.4) for N.. x H_q x L x D queries and N.. x H x S x D keys/values,
/// in parallel: `#pragma omp parallel for collapse(2)` over the problems i (N.. x H_q) and their
/// query tiles, each computed with options.kernel (Scalar: ch2.4's flash_attention_tile;
/// Vectorized: a FlashState fed every key by attend_kv_range, then finalized). Wrap each
/// iteration's body in ParallelErrors::run. Task 3: when choose_kv_splits(...) > 1, each (problem,
/// tile, split) item runs attend_kv_range on its own key range into its own FlashState, then
/// merge_states; and a decode step (L = 1, H_q > H, no additive mask, automatic splits) goes to
/// gqa_decode_attention.
inline Tensor flash_attention_parallel(const Tensor& query, const Tensor& key, const Tensor& value,
                                       std::optional<float> scale = std::nullopt,
                                       const AttentionMask& mask = AttentionMask::none(),
                                       const FlashOptions& options = FlashOptions()) {
  const Shape scores_shape =
      check_flash_attention_args(query, key, value, options.block_rows, options.block_cols);
  const MaskLayout layout(mask, scores_shape);
  // SOLUTION BEGIN ch2.5 Task 1
  const int64_t num_heads = query.dim(-3), num_kv_heads = key.dim(-3),
                group = num_heads / num_kv_heads;
  const int64_t L = query.dim(-2), S = key.dim(-2), D = query.dim(-1), br = options.block_rows;
  const int64_t problems = query.num_matrices(), tiles = (L + br - 1) / br;
  const float s = scale.value_or(1.0f / std::sqrt(static_cast<float>(D)));
  if (options.kernel == FlashKernel::Vectorized && options.kv_splits == 0 && L == 1 && group > 1 &&
      mask.kind != AttentionMask::Kind::Additive) {
    return gqa_decode_attention(query, key, value, s, options);
  }
  const int64_t splits = options.kernel == FlashKernel::Vectorized
                             ? choose_kv_splits(problems * tiles, S, options)
                             : 1;
  Tensor out(query.shape());
  if (splits > 1) {
    split_kv_attention(query, key, value, s, layout, options, splits, out);
    return out;
  }
  ParallelErrors errors;
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t i = 0; i < problems; ++i) {
    for (int64_t t = 0; t < tiles; ++t) {
      errors.run([&] {
        const int64_t kv = (i / num_heads) * num_kv_heads + (i % num_heads) / group;
        const int64_t row0 = t * br, rows = std::min(br, L - row0);
        const float* q = query.data() + (i * L + row0) * D;
        float* o = out.data() + (i * L + row0) * D;
        if (options.kernel == FlashKernel::Scalar) {
          flash_attention_tile(query.matrix(i).middleRows(row0, rows), key.matrix(kv),
                               value.matrix(kv), s, layout.head(i), row0, options.block_cols,
                               out.matrix(i).middleRows(row0, rows));
          return;
        }
        FlashState state(rows, D);
        attend_kv_range(q, D, key.data() + kv * S * D, value.data() + kv * S * D, D, 0, S, s,
                        layout.head(i), row0, options.block_cols, state);
        state.finalize(o, D);
      });
    }
  }
  errors.rethrow();
  return out;
  // SOLUTION END
}

/// Task 3. A decode step (L = 1) with H_q / H = g > 1 and no additive mask (a causal mask with
/// L = 1 hides nothing): the g query heads that share a KV head have their single rows next to each
/// other in memory, so view query as N.. x H x g x D, attend with no mask (each KV head's S keys
/// and values are then read once per step instead of g times, and the automatic split-KV keeps
/// every thread busy with only H problems), and view the result back as N.. x H_q x 1 x D.
inline Tensor gqa_decode_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                   float scale, const FlashOptions& options) {
  // SOLUTION BEGIN ch2.5 Task 3
  Shape packed = query.shape();
  packed[packed.size() - 2] = query.dim(-3) / key.dim(-3);
  packed[packed.size() - 3] = key.dim(-3);
  return flash_attention_parallel(query.reshape(packed), key, value, scale, AttentionMask::none(),
                                  options)
      .reshape(query.shape());
  // SOLUTION END
}

}  // namespace tinyllm
