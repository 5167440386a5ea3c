// Chapter 1.4, Task 1: RMSNorm, the normalisation in front of every Qwen2 attention block and MLP.
// Book: book/week1/ch1_4_rmsnorm_mlp.md.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

class RMSNorm {
 public:
  /// dim = D, the size of the normalised (last) axis; weight: D (the learned per-feature gain);
  /// eps > 0 keeps the division finite for an all-zero vector (Qwen2 configs use rms_norm_eps =
  /// 1e-6).
  /// Throws ShapeError if weight is not a vector of D values, InvalidArgument if eps < 0.
  RMSNorm(int64_t dim, Tensor weight, float eps = 1e-5f)
      : dim_(dim), weight_(std::move(weight)), eps_(eps) {
    check_shape(weight_, {dim}, "RMSNorm: weight");
    if (!(eps >= 0.0f))
      throw InvalidArgument("RMSNorm: eps must be >= 0, got " + std::to_string(eps));
  }

  /// Task 1. x: N.. x D -> N.. x D. Every vector v along the last axis becomes
  ///   weight * v / sqrt(mean(v^2) + eps)       (elementwise product with weight)
  /// computed in f32 (never in f16: squares of values around 300 already overflow f16's 65504).
  /// Throws ShapeError if x's last dim is not D.
  Tensor forward(const Tensor& x) const {
    if (x.ndim() < 1 || x.dim(-1) != dim_) {
      throw ShapeError("RMSNorm: x must be N.. x D with D = " + std::to_string(dim_) +
                       ", got shape " + shape_to_string(x.shape()));
    }
    TINYLLM_TODO("ch1.4", "Task 1");
  }

 private:
  int64_t dim_;
  Tensor weight_;  // D
  float eps_;
};

}  // namespace tinyllm
