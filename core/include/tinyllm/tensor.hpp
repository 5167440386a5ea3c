// Tensor: a shape plus contiguous row-major float32 storage. It is deliberately small: the
// arithmetic is done with Eigen on 2-D views of the tensor's slices (`matrix(i)`), the way a
// learner thinks about attention.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace tinyllm {

using Shape = std::vector<int64_t>;

/// Row-major dynamic float matrix and maps over tensor storage.
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using Vector = Eigen::VectorXf;

/// "[2, 3, 4]"
std::string shape_to_string(const Shape& shape);
/// Product of the dimensions (1 for a scalar shape []).
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  /// A zero-filled tensor of the given shape.
  explicit Tensor(Shape shape);
  /// Takes `values` (row-major) as the contents; throws ShapeError if the sizes disagree.
  Tensor(Shape shape, std::vector<float> values);

  static Tensor zeros(const Shape& shape) { return Tensor(shape); }
  static Tensor full(const Shape& shape, float value);
  /// Copies a matrix into a 2-D tensor [rows, cols].
  static Tensor from_matrix(const Matrix& m);

  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  /// Size of dimension `axis`; negative axes count from the end (-1 is the last dimension).
  int64_t dim(int axis) const;
  int64_t numel() const { return static_cast<int64_t>(data_.size()); }
  bool empty() const { return data_.empty(); }

  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  const std::vector<float>& values() const { return data_; }

  /// Element access by full index, e.g. t.at({b, h, l, d}). Bounds are checked (ShapeError).
  float& at(std::initializer_list<int64_t> index);
  float at(std::initializer_list<int64_t> index) const;

  /// The same data with another shape of equal numel; one dimension may be -1 (inferred). Throws
  /// ShapeError.
  Tensor reshape(Shape new_shape) const&;
  Tensor reshape(Shape new_shape) &&;

  /// Swaps two axes (copies). transpose(1, 2) turns B x L x H x D into B x H x L x D.
  Tensor transpose(int axis_a, int axis_b) const;

  /// Number of 2-D matrices formed by the last two dimensions (product of the leading dimensions).
  int64_t num_matrices() const;
  /// View of the i-th matrix formed by the last two dimensions (rows = dim(-2), cols = dim(-1)).
  MatrixMap matrix(int64_t i);
  ConstMatrixMap matrix(int64_t i) const;
  /// View of the whole tensor as [numel / dim(-1), dim(-1)]: each row is one vector of the last
  /// axis.
  MatrixMap rows();
  ConstMatrixMap rows() const;

 private:
  void require_rank(int min_rank, const char* what) const;

  Shape shape_;
  std::vector<float> data_;
};

/// Throws ShapeError with "<what>: expected <expected>, got <actual>" unless the shapes are equal.
void check_shape(const Tensor& t, const Shape& expected, const std::string& what);

}  // namespace tinyllm
