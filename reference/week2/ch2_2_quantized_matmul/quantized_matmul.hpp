// Chapter 2.2: affine group quantization (MLX's format) and a scalar quantized matmul. Book:
// book/week2/ch2_2_quantized_matmul.md.
//   Task 1  quantize, dequantize
//   Task 2  quantized_matmul
//   Task 3  quantized_linear
//
// A weight W of K x N (K = out features, N = in features: "weight is out x in", as in linear) is
// cut into groups of G consecutive elements of each row. Each group keeps one scale and one bias
// (float) and one b-bit code per element, so that w ~= q * scale + bias. Codes are packed 32/b per
// uint32 word, element 0 in the lowest bits. Letters: M rows of activations (M = N.. flattened), K
// out features, N in features, G group size, b bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// A quantized K x N weight: `packed` holds K x N/(32/bits) words row by row, `scales` and `biases`
/// are K x N/G tensors. Element (k, n) is code number n % (32/bits) of word (k, n / (32/bits)).
struct QuantizedWeights {
  std::vector<uint32_t> packed;
  Tensor scales;
  Tensor biases;
  int64_t rows = 0;  // K
  int64_t cols = 0;  // N
  int group_size = 64;
  int bits = 4;
};

// ---------------------------------------------------------------------------------------------------------------
// Provided helpers (not exercises).

/// Codes per uint32 word: 8 for 4 bits, 4 for 8 bits.
inline int codes_per_word(int bits) {
  return 32 / bits;
}

/// Throws InvalidArgument unless bits is 4 or 8 and group_size is 32, 64 or 128.
inline void check_quantization(int group_size, int bits) {
  if (bits != 4 && bits != 8)
    throw InvalidArgument("quantization: bits must be 4 or 8, got " + std::to_string(bits));
  if (group_size != 32 && group_size != 64 && group_size != 128) {
    throw InvalidArgument("quantization: group_size must be 32, 64 or 128, got " +
                          std::to_string(group_size));
  }
}

/// Checks that the parts of `w` agree with each other (InvalidArgument for bits/group size,
/// ShapeError for sizes).
inline void check_quantized_weights(const QuantizedWeights& w) {
  check_quantization(w.group_size, w.bits);
  const std::string where =
      "QuantizedWeights [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "]";
  if (w.rows <= 0 || w.cols <= 0 || w.cols % w.group_size != 0) {
    throw ShapeError(where + ": N must be a positive multiple of group_size " +
                     std::to_string(w.group_size));
  }
  const Shape group_shape = {w.rows, w.cols / w.group_size};
  check_shape(w.scales, group_shape, where + ": scales");
  check_shape(w.biases, group_shape, where + ": biases");
  if (static_cast<int64_t>(w.packed.size()) != w.rows * (w.cols / codes_per_word(w.bits))) {
    throw ShapeError(where + ": packed holds " + std::to_string(w.packed.size()) +
                     " words, expected K x N/" + std::to_string(codes_per_word(w.bits)));
  }
}

/// The code of element (k, n): bits [b*(n % per), b*(n % per) + b) of word (k, n / per).
inline uint32_t code_at(const QuantizedWeights& w, int64_t k, int64_t n) {
  const int per = codes_per_word(w.bits);
  const uint32_t word = w.packed[static_cast<size_t>(k * (w.cols / per) + n / per)];
  return (word >> (w.bits * (n % per))) & ((1u << w.bits) - 1u);
}

/// An MLX-checkpoint layer: `<prefix>.weight` (U32, K x N/(32/bits)), `<prefix>.scales` and
/// `<prefix>.biases` (K x N/G, any float dtype: converted to f32 exactly). Throws
/// FormatError/ShapeError on a bad triple.
inline QuantizedWeights load_mlx_quantized(const SafetensorsFile& file, const std::string& prefix,
                                           int group_size, int bits) {
  check_quantization(group_size, bits);
  const TensorInfo& info = file.info(prefix + ".weight");
  if (info.dtype != DType::U32 || info.shape.size() != 2) {
    throw FormatError(prefix + ".weight: expected a 2-D U32 tensor, got " + dtype_name(info.dtype) +
                      " " + shape_to_string(info.shape));
  }
  QuantizedWeights w;
  w.rows = info.shape[0];
  w.cols = info.shape[1] * codes_per_word(bits);
  w.group_size = group_size;
  w.bits = bits;
  for (int64_t v : file.load_ints(prefix + ".weight")) w.packed.push_back(static_cast<uint32_t>(v));
  w.scales = file.load(prefix + ".scales");
  w.biases = file.load(prefix + ".biases");
  check_quantized_weights(w);
  return w;
}

// ---------------------------------------------------------------------------------------------------------------
// Exercises.

/// Task 1. Quantizes w: K x N (float) group by group. For each group of G elements of a row:
///   scale = (max - min) / (2^bits - 1), bias = min, q = round((w - bias) / scale) clamped to [0,
///   2^bits - 1],
/// computed in float in exactly that order (subtract, then divide) and rounded half to even
/// (std::nearbyint), as MLX and PyTorch round. A constant group (max == min) gets scale 0 and codes
/// 0: it dequantizes to its value. Packs the codes 32/bits per word, element 0 in the lowest bits.
/// Throws InvalidArgument for bits not 4/8 or G not 32/64/128, ShapeError unless w is 2-D with N %
/// G == 0.
inline QuantizedWeights quantize(const Tensor& w, int group_size = 64, int bits = 4) {
  check_quantization(group_size, bits);
  if (w.ndim() != 2 || w.dim(1) % group_size != 0 || w.numel() == 0) {
    throw ShapeError("quantize: w must be K x N with N a multiple of " +
                     std::to_string(group_size) + ", got " + shape_to_string(w.shape()));
  }
  // SOLUTION BEGIN ch2.2 Task 1
  const int64_t K = w.dim(0), N = w.dim(1), groups = N / group_size;
  const int per = codes_per_word(bits);
  const float n_bins = static_cast<float>((1 << bits) - 1);
  QuantizedWeights out;
  out.rows = K;
  out.cols = N;
  out.group_size = group_size;
  out.bits = bits;
  out.scales = Tensor({K, groups});
  out.biases = Tensor({K, groups});
  out.packed.assign(static_cast<size_t>(K * (N / per)), 0u);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* v = w.data() + k * N + g * group_size;
      const auto [lo, hi] = std::minmax_element(v, v + group_size);
      const float scale = (*hi - *lo) / n_bins;
      out.scales.data()[k * groups + g] = scale;
      out.biases.data()[k * groups + g] = *lo;
      for (int j = 0; j < group_size; ++j) {
        float q = scale > 0.0f ? std::nearbyint((v[j] - *lo) / scale) : 0.0f;
        q = std::clamp(q, 0.0f, n_bins);
        const int64_t n = g * group_size + j;
        out.packed[static_cast<size_t>(k * (N / per) + n / per)] |= static_cast<uint32_t>(q)
                                                                    << (bits * (n % per));
      }
    }
  }
  return out;
  // SOLUTION END
}

/// Task 1. The float weight K x N that `w` stands for: element (k, n) = q * scale + bias of its
/// group (code_at gives q). Throws what check_quantized_weights throws.
inline Tensor dequantize(const QuantizedWeights& w) {
  check_quantized_weights(w);
  // SOLUTION BEGIN ch2.2 Task 1
  Tensor out({w.rows, w.cols});
  const int64_t groups = w.cols / w.group_size;
  for (int64_t k = 0; k < w.rows; ++k) {
    for (int64_t n = 0; n < w.cols; ++n) {
      const int64_t g = k * groups + n / w.group_size;
      out.data()[k * w.cols + n] =
          static_cast<float>(code_at(w, k, n)) * w.scales.data()[g] + w.biases.data()[g];
    }
  }
  return out;
  // SOLUTION END
}

/// Task 2. y = a W^T without materialising W: a: M x N, w: K x N (quantized) -> M x K.
/// The scalar loop over (i, k, group) that the fast kernels of chapter 2.3 must reproduce. Per
/// group, use the factored form  scale * sum_j(a_j * q_j) + bias * sum_j(a_j)  with float
/// accumulators. Throws ShapeError unless a is 2-D with N columns.
inline Tensor quantized_matmul(const Tensor& a, const QuantizedWeights& w) {
  check_quantized_weights(w);
  if (a.ndim() != 2 || a.dim(1) != w.cols) {
    throw ShapeError("quantized_matmul: a must be M x N with N = " + std::to_string(w.cols) +
                     ", got " + shape_to_string(a.shape()));
  }
  // SOLUTION BEGIN ch2.2 Task 2
  const int64_t M = a.dim(0), K = w.rows, N = w.cols, G = w.group_size, groups = N / G;
  Tensor out({M, K});
  for (int64_t i = 0; i < M; ++i) {
    const float* x = a.data() + i * N;
    for (int64_t k = 0; k < K; ++k) {
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        float sum_xq = 0.0f, sum_x = 0.0f;
        for (int64_t j = g * G; j < (g + 1) * G; ++j) {
          sum_xq += x[j] * static_cast<float>(code_at(w, k, j));
          sum_x += x[j];
        }
        acc += w.scales.data()[k * groups + g] * sum_xq + w.biases.data()[k * groups + g] * sum_x;
      }
      out.data()[i * K + k] = acc;
    }
  }
  return out;
  // SOLUTION END
}

/// Task 3. A quantized linear layer: x: N.. x N (any rank >= 1), w: K x N, bias (optional): K ->
/// N.. x K, i.e. quantized_matmul on x viewed as M x N (M = product of the leading dims), reshaped
/// back, plus the bias. Throws ShapeError if x's last dim is not N or the bias is not a vector of K
/// values, and what check_quantized_weights throws for inconsistent weights.
inline Tensor quantized_linear(const Tensor& x, const QuantizedWeights& w,
                               const Tensor* bias = nullptr) {
  // SOLUTION BEGIN ch2.2 Task 3
  check_quantized_weights(w);
  if (x.ndim() < 1 || x.dim(-1) != w.cols) {
    throw ShapeError("quantized_linear: x must be N.. x N with N = " + std::to_string(w.cols) +
                     ", got " + shape_to_string(x.shape()));
  }
  if (bias != nullptr) check_shape(*bias, {w.rows}, "quantized_linear: bias");
  Shape out_shape = x.shape();
  out_shape.back() = w.rows;
  Tensor out = quantized_matmul(x.reshape({-1, w.cols}), w).reshape(out_shape);
  if (bias != nullptr) out.rows().rowwise() += bias->rows().row(0);
  return out;
  // SOLUTION END
}

}  // namespace tinyllm
