// Chapter 1.4, Task 2: SiLU and the SwiGLU feed-forward network of Qwen2. Book:
// book/week1/ch1_4_rmsnorm_mlp.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include <tinyllm/ch1_1_attention/attention.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"

namespace tinyllm {

/// Task 2. SiLU (a.k.a. swish), elementwise: silu(x) = x * sigmoid(x) = x / (1 + exp(-x)).
/// x: any shape -> the same shape. For very negative x, exp(-x) overflows to inf and the result is
/// -0, which is the correct limit; do not "fix" that.
/// It is the gate nonlinearity of Qwen2MLP below: close to x for large x, close to 0 for very
/// negative x, smooth (and slightly negative) in between, unlike ReLU's hard corner at 0.
inline Tensor silu(const Tensor& x) {
  TINYLLM_TODO("ch1.4", "Task 2");
}

/// The Qwen2 MLP (SwiGLU): a gated feed-forward layer without biases.
class Qwen2MLP {
 public:
  /// dim = E, hidden_dim = I (intermediate size). w_gate, w_up: I x E; w_down: E x I.
  /// Throws ShapeError if a weight has the wrong shape.
  Qwen2MLP(int64_t dim, int64_t hidden_dim, Tensor w_gate, Tensor w_up, Tensor w_down)
      : dim_(dim),
        hidden_dim_(hidden_dim),
        w_gate_(std::move(w_gate)),
        w_up_(std::move(w_up)),
        w_down_(std::move(w_down)) {
    check_shape(w_gate_, {hidden_dim, dim}, "Qwen2MLP: w_gate");
    check_shape(w_up_, {hidden_dim, dim}, "Qwen2MLP: w_up");
    check_shape(w_down_, {dim, hidden_dim}, "Qwen2MLP: w_down");
  }

  /// Task 2. x: N.. x E -> N.. x E (N.. usually B x L):
  ///   out = linear(silu(linear(x, w_gate)) * linear(x, w_up), w_down)
  /// where * is elementwise on the N.. x I intermediate: the up projection, gated by silu of the
  /// gate projection. Throws ShapeError if x's last dim is not E.
  Tensor forward(const Tensor& x) const {
    if (x.ndim() < 1 || x.dim(-1) != dim_) {
      throw ShapeError("Qwen2MLP: x must be N.. x E with E = " + std::to_string(dim_) +
                       ", got shape " + shape_to_string(x.shape()));
    }
    TINYLLM_TODO("ch1.4", "Task 2");
  }

  /// Provided accessors to the weights (chapter 2.6's batched step multiplies them itself).
  const Tensor& w_gate() const { return w_gate_; }
  const Tensor& w_up() const { return w_up_; }
  const Tensor& w_down() const { return w_down_; }

 private:
  int64_t dim_;
  int64_t hidden_dim_;
  Tensor w_gate_, w_up_, w_down_;  // I x E, I x E, E x I
};

}  // namespace tinyllm
