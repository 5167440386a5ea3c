#include "tinyllm/tensor.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>
#include <utility>

#include "tinyllm/errors.hpp"

namespace tinyllm {

std::string shape_to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw ShapeError("negative dimension in shape " + shape_to_string(shape));
    n *= d;
  }
  return n;
}

Tensor::Tensor(Shape shape) : shape_(std::move(shape)), data_(shape_numel(shape_), 0.0f) {}

Tensor::Tensor(Shape shape, std::vector<float> values)
    : shape_(std::move(shape)), data_(std::move(values)) {
  if (shape_numel(shape_) != static_cast<int64_t>(data_.size())) {
    throw ShapeError("Tensor: shape " + shape_to_string(shape_) + " holds " +
                     std::to_string(shape_numel(shape_)) + " values, but " +
                     std::to_string(data_.size()) + " were given");
  }
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t(shape);
  std::fill(t.data_.begin(), t.data_.end(), value);
  return t;
}

Tensor Tensor::from_matrix(const Matrix& m) {
  Tensor t({m.rows(), m.cols()});
  t.matrix(0) = m;
  return t;
}

int64_t Tensor::dim(int axis) const {
  const int n = ndim();
  const int a = axis < 0 ? axis + n : axis;
  if (a < 0 || a >= n) {
    throw ShapeError("axis " + std::to_string(axis) + " is out of range for shape " +
                     shape_to_string(shape_));
  }
  return shape_[a];
}

float& Tensor::at(std::initializer_list<int64_t> index) {
  if (static_cast<int>(index.size()) != ndim()) {
    throw ShapeError("Tensor::at: " + std::to_string(index.size()) + " indices for shape " +
                     shape_to_string(shape_));
  }
  int64_t offset = 0;
  int axis = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape_[axis]) {
      throw ShapeError("Tensor::at: index " + std::to_string(i) + " out of range on axis " +
                       std::to_string(axis) + " of shape " + shape_to_string(shape_));
    }
    offset = offset * shape_[axis] + i;
    ++axis;
  }
  return data_[offset];
}

float Tensor::at(std::initializer_list<int64_t> index) const {
  return const_cast<Tensor*>(this)->at(index);
}

static Shape resolve_shape(Shape new_shape, int64_t numel, const Shape& old_shape) {
  int64_t known = 1;
  int inferred = -1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      if (inferred >= 0)
        throw ShapeError("reshape: more than one -1 in " + shape_to_string(new_shape));
      inferred = static_cast<int>(i);
    } else if (new_shape[i] < 0) {
      throw ShapeError("reshape: negative dimension in " + shape_to_string(new_shape));
    } else {
      known *= new_shape[i];
    }
  }
  if (inferred >= 0 && known > 0 && numel % known == 0) new_shape[inferred] = numel / known;
  if (shape_numel(new_shape) != numel) {
    throw ShapeError("reshape: cannot view shape " + shape_to_string(old_shape) + " as " +
                     shape_to_string(new_shape));
  }
  return new_shape;
}

Tensor Tensor::reshape(Shape new_shape) const& {
  Tensor copy = *this;
  return std::move(copy).reshape(std::move(new_shape));
}

Tensor Tensor::reshape(Shape new_shape) && {
  shape_ = resolve_shape(std::move(new_shape), numel(), shape_);
  return std::move(*this);
}

Tensor Tensor::transpose(int axis_a, int axis_b) const {
  const int n = ndim();
  const int a = axis_a < 0 ? axis_a + n : axis_a;
  const int b = axis_b < 0 ? axis_b + n : axis_b;
  if (a < 0 || a >= n || b < 0 || b >= n) {
    throw ShapeError("transpose: axes out of range for shape " + shape_to_string(shape_));
  }
  Shape out_shape = shape_;
  std::swap(out_shape[a], out_shape[b]);
  Tensor out(out_shape);
  // Strides of the input, then walk the output in order and gather.
  std::vector<int64_t> in_stride(n, 1);
  for (int i = n - 2; i >= 0; --i) in_stride[i] = in_stride[i + 1] * shape_[i + 1];
  std::vector<int64_t> perm_stride = in_stride;
  std::swap(perm_stride[a], perm_stride[b]);
  std::vector<int64_t> index(n, 0);
  for (int64_t flat = 0; flat < out.numel(); ++flat) {
    int64_t src = 0;
    for (int i = 0; i < n; ++i) src += index[i] * perm_stride[i];
    out.data_[flat] = data_[src];
    for (int i = n - 1; i >= 0; --i) {
      if (++index[i] < out_shape[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

void Tensor::require_rank(int min_rank, const char* what) const {
  if (ndim() < min_rank) {
    throw ShapeError(std::string(what) + ": needs a tensor of rank >= " + std::to_string(min_rank) +
                     ", got shape " + shape_to_string(shape_));
  }
}

int64_t Tensor::num_matrices() const {
  require_rank(2, "Tensor::num_matrices");
  return numel() == 0 ? 0 : numel() / (dim(-1) * dim(-2));
}

MatrixMap Tensor::matrix(int64_t i) {
  require_rank(2, "Tensor::matrix");
  const int64_t rows = dim(-2), cols = dim(-1);
  if (i < 0 || i >= num_matrices()) {
    throw ShapeError("Tensor::matrix: index " + std::to_string(i) + " out of range for shape " +
                     shape_to_string(shape_));
  }
  return MatrixMap(data_.data() + i * rows * cols, rows, cols);
}

ConstMatrixMap Tensor::matrix(int64_t i) const {
  auto m = const_cast<Tensor*>(this)->matrix(i);
  return ConstMatrixMap(m.data(), m.rows(), m.cols());
}

MatrixMap Tensor::rows() {
  require_rank(1, "Tensor::rows");
  const int64_t cols = dim(-1);
  return MatrixMap(data_.data(), cols == 0 ? 0 : numel() / cols, cols);
}

ConstMatrixMap Tensor::rows() const {
  auto m = const_cast<Tensor*>(this)->rows();
  return ConstMatrixMap(m.data(), m.rows(), m.cols());
}

void check_shape(const Tensor& t, const Shape& expected, const std::string& what) {
  if (t.shape() != expected) {
    throw ShapeError(what + ": expected shape " + shape_to_string(expected) + ", got " +
                     shape_to_string(t.shape()));
  }
}

}  // namespace tinyllm
