#include "engine/kernels/weight_matrix.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <tinyllm/ch2_3_fast_qmatmul/fast_qmatmul.hpp>

#include "engine/kernels/bf16_dot.hpp"
#include "engine/kernels/bf16_gemm.hpp"
#include "engine/kernels/bf16_matvec.hpp"
#include "engine/kernels/int8_matvec.hpp"
#include "tinyllm/errors.hpp"

namespace tinyllm::engine {

WeightFormat parse_weight_format(const std::string& name) {
  if (name == "f32") return WeightFormat::F32;
  if (name == "bf16") return WeightFormat::Bf16;
  if (name == "q8") return WeightFormat::Q8;
  if (name == "q4") return WeightFormat::Q4;
  throw InvalidArgument("unknown weight precision '" + name + "' (expected f32, bf16, q8 or q4)");
}

std::string weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::F32:
      return "f32";
    case WeightFormat::Bf16:
      return "bf16";
    case WeightFormat::Q8:
      return "q8";
    case WeightFormat::Q4:
      return "q4";
  }
  return "?";
}

namespace {
bool quantized(WeightFormat f) {
  return f == WeightFormat::Q8 || f == WeightFormat::Q4;
}
int bits_of(WeightFormat f) {
  return f == WeightFormat::Q8 ? 8 : 4;
}
}  // namespace

int default_group_size(WeightFormat format) {
  if (format == WeightFormat::Q8) return 32;
  if (format == WeightFormat::Q4) return 64;
  return 0;
}

WeightSpec check_weight_spec(WeightSpec spec) {
  if (!quantized(spec.format)) {
    if (spec.group_size != 0) {
      throw InvalidArgument("a group size (" + std::to_string(spec.group_size) +
                            ") only applies to q8 and q4, not to " +
                            weight_format_name(spec.format));
    }
    return spec;
  }
  if (spec.group_size == 0) spec.group_size = default_group_size(spec.format);
  check_quantization(spec.group_size, bits_of(spec.format));  // InvalidArgument unless 32/64/128
  return spec;
}

WeightMatrix::WeightMatrix(const Tensor& w, WeightSpec spec) : spec_(check_weight_spec(spec)) {
  if (w.ndim() != 2) {
    throw ShapeError("WeightMatrix: expected a K x N weight, got " + shape_to_string(w.shape()));
  }
  switch (spec_.format) {
    case WeightFormat::F32:
      w_ = w;
      break;
    case WeightFormat::Bf16:
      w_ = to_bf16(w);
      break;
    default:
      w_ = quantize(w, spec_.group_size, bits_of(spec_.format));
  }
}

WeightMatrix::WeightMatrix(QuantizedWeights w)
    : spec_{w.bits == 8 ? WeightFormat::Q8 : WeightFormat::Q4, w.group_size} {
  check_quantized_weights(w);
  w_ = std::move(w);
}

int64_t WeightMatrix::rows() const {
  return std::visit(
      [](const auto& w) -> int64_t {
        if constexpr (std::is_same_v<std::decay_t<decltype(w)>, Tensor>) {
          return w.dim(0);
        } else {
          return w.rows;
        }
      },
      w_);
}

int64_t WeightMatrix::cols() const {
  return std::visit(
      [](const auto& w) -> int64_t {
        if constexpr (std::is_same_v<std::decay_t<decltype(w)>, Tensor>) {
          return w.dim(1);
        } else {
          return w.cols;
        }
      },
      w_);
}

int64_t WeightMatrix::bytes() const {
  const int64_t n = rows() * cols();
  if (spec_.format == WeightFormat::F32) return 4 * n;
  if (spec_.format == WeightFormat::Bf16) return 2 * n;
  return n * bits_of(spec_.format) / 8 + 2 * 4 * (n / spec_.group_size);
}

namespace {

// y = a W^T for f32 weights, split over blocks of rows of W like chapter 2.3's kernels: decode
// (M = 1) is a matrix-vector product that Eigen runs on one thread only, so each thread takes a
// contiguous slice of rows; prefill gives every thread whole row blocks times all M rows (Eigen's
// GEMM, single-threaded inside the region).
Tensor f32_matmul(const Tensor& a, const Tensor& w, int threads) {
  const int64_t M = a.dim(0), K = w.dim(0), N = w.dim(1);
  Tensor out({M, K});
  const ConstMatrixMap A = a.rows(), W = w.rows();
  MatrixMap Y = out.rows();
  const int64_t blocks = threads * ((K + threads * 128 - 1) / (threads * 128));
  const int64_t block = (K + blocks - 1) / blocks;
#pragma omp parallel num_threads(threads)
  {
    omp_set_num_threads(1);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = b * block, count = std::min(block, K - k0);
      if (count <= 0) continue;
      if (M == 1) {
        Eigen::Map<Eigen::VectorXf>(out.data() + k0, count).noalias() =
            W.middleRows(k0, count) * Eigen::Map<const Eigen::VectorXf>(a.data(), N);
      } else {
        Y.middleCols(k0, count).noalias() = A * W.middleRows(k0, count).transpose();
      }
    }
  }
  return out;
}

}  // namespace

namespace {

// The streaming kernels for M <= kSmallMMax rows (row_blocks.hpp), where the CPU and N allow them:
// false if not.
bool small_m_matmul(const std::variant<Tensor, Bf16Weights, QuantizedWeights>& w, const Tensor& a,
                    const KernelChoice& how, int threads, Tensor& out) {
  const int64_t M = a.dim(0), N = a.dim(1);
  if (M < 1 || M > kSmallMMax || !dense_matvec_supported()) return false;
  if (const auto* f = std::get_if<Tensor>(&w)) {
    if (N % 32 != 0) return false;
    out = Tensor({M, f->dim(0)});
    f32_small_matmul(a.data(), M, *f, out.data(), threads);
  } else if (const auto* b = std::get_if<Bf16Weights>(&w)) {
    if (N % 32 != 0) return false;
    out = Tensor({M, b->rows});
    if (how.bf16_dot && bf16_dot_supported()) {
      bf16_dot_small_matmul(a.data(), M, *b, out.data(), threads);
    } else {
      bf16_small_matmul(a.data(), M, *b, out.data(), threads);
    }
  } else {
    const auto& q = std::get<QuantizedWeights>(w);
    out = Tensor({M, q.rows});
    if (how.int8_rows(M) && N % 64 == 0 && int8_matvec_supported()) {
      int8_small_matmul(a.data(), M, q, out.data(), threads);
    } else {
      dequant_small_matmul(a.data(), M, q, out.data(), threads);  // 32 | G | N
    }
  }
  return true;
}

}  // namespace

Tensor WeightMatrix::matmul(const Tensor& a, const KernelChoice& how) const {
  if (a.ndim() != 2 || a.dim(1) != cols()) {
    throw ShapeError("WeightMatrix::matmul: a must be M x N with N = " + std::to_string(cols()) +
                     ", got " + shape_to_string(a.shape()));
  }
  const int threads = resolve_threads(how.threads);
  Tensor out;
  if (small_m_matmul(w_, a, how, threads, out)) return out;
  if (const auto* f = std::get_if<Tensor>(&w_)) return f32_matmul(a, *f, threads);
  if (how.bf16_prefill && a.dim(0) > 1 && a.dim(1) % 2 == 0 && bf16_gemm_supported()) {
    return bf16_gemm(
        a, rows(), [this](int64_t k0, int64_t count, float* out) { rows_f32(k0, count, out); },
        threads);
  }
  if (const auto* b = std::get_if<Bf16Weights>(&w_)) {
    return bf16_matmul(a, *b, KernelPath::Auto, threads);
  }
  return quantized_matmul_fast(a, std::get<QuantizedWeights>(w_), KernelPath::Auto, threads);
}

void WeightMatrix::rows_f32(int64_t k0, int64_t count, float* out) const {
  if (k0 < 0 || count < 0 || k0 + count > rows()) {
    throw InvalidArgument("WeightMatrix::rows_f32: rows [" + std::to_string(k0) + ", " +
                          std::to_string(k0 + count) + ") of " + std::to_string(rows()));
  }
  const int64_t n = cols();
  if (const auto* f = std::get_if<Tensor>(&w_)) {
    std::memcpy(out, f->data() + k0 * n, static_cast<size_t>(count * n) * sizeof(float));
  } else if (const auto* b = std::get_if<Bf16Weights>(&w_)) {
    const uint16_t* src = b->data.data() + k0 * n;
    for (int64_t j = 0; j < count * n; ++j) out[j] = widen_bf16(src[j]);
  } else {
    dequantize_rows(std::get<QuantizedWeights>(w_), k0, count, out);
  }
}

namespace {

// a's rows on top of b's: same N, bits and group size (checked by the caller).
QuantizedWeights stack_quantized(const QuantizedWeights& a, const QuantizedWeights& b) {
  QuantizedWeights out = a;
  out.rows = a.rows + b.rows;
  out.packed.insert(out.packed.end(), b.packed.begin(), b.packed.end());
  out.scales = stack_rows({&a.scales, &b.scales});
  out.biases = stack_rows({&a.biases, &b.biases});
  return out;
}

}  // namespace

StackedMatrix::StackedMatrix(std::vector<WeightMatrix> parts) {
  for (WeightMatrix& part : parts) {
    if (!parts_.empty() && part.cols() != parts_.front().cols()) {
      throw ShapeError(
          "StackedMatrix: every part needs N = " + std::to_string(parts_.front().cols()) +
          ", got " + std::to_string(part.cols()));
    }
    const auto* q = std::get_if<QuantizedWeights>(&part.storage());
    const auto* last =
        parts_.empty() ? nullptr : std::get_if<QuantizedWeights>(&parts_.back().storage());
    if (q != nullptr && last != nullptr && q->bits == last->bits &&
        q->group_size == last->group_size) {
      parts_.back() = WeightMatrix(stack_quantized(*last, *q));
    } else {
      parts_.push_back(std::move(part));
    }
  }
}

int64_t StackedMatrix::rows() const {
  int64_t k = 0;
  for (const WeightMatrix& part : parts_) k += part.rows();
  return k;
}

int64_t StackedMatrix::bytes() const {
  int64_t n = 0;
  for (const WeightMatrix& part : parts_) n += part.bytes();
  return n;
}

Tensor StackedMatrix::matmul(const Tensor& a, const KernelChoice& how) const {
  if (parts_.size() == 1) return parts_.front().matmul(a, how);
  Tensor out({a.dim(0), rows()});
  int64_t k0 = 0;
  for (const WeightMatrix& part : parts_) {
    out.rows().middleCols(k0, part.rows()) = part.matmul(a, how).rows();
    k0 += part.rows();
  }
  return out;
}

Tensor stack_rows(const std::vector<const Tensor*>& parts) {
  int64_t rows = 0;
  const int64_t n = parts.front()->dim(1);
  for (const Tensor* p : parts) {
    check_shape(*p, {p->dim(0), n}, "stack_rows");
    rows += p->dim(0);
  }
  Tensor out({rows, n});
  float* dst = out.data();
  for (const Tensor* p : parts) dst = std::copy_n(p->data(), p->numel(), dst);
  return out;
}

}  // namespace tinyllm::engine
