// Tensor: construction, element access, reshape, transpose and the Eigen matrix views, against
// hand-computed values.
#include <numeric>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

// [0, 1, 2, ..., numel - 1] in the given shape.
Tensor iota(const Shape& shape) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  std::iota(v.begin(), v.end(), 0.0f);
  return Tensor(shape, v);
}

TEST(Tensor, ShapeHelpers) {
  EXPECT_EQ(shape_to_string({2, 3, 4}), "[2, 3, 4]");
  EXPECT_EQ(shape_to_string({}), "[]");
  EXPECT_EQ(shape_numel({2, 3, 4}), 24);
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({5, 0}), 0);
  EXPECT_THROW(shape_numel({2, -1}), ShapeError);
}

TEST(Tensor, Construction) {
  const Tensor z({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.ndim(), 2);
  for (float v : z.values()) EXPECT_EQ(v, 0.0f);
  const Tensor f = Tensor::full({3}, 2.5f);
  EXPECT_EQ(f.values(), (std::vector<float>{2.5f, 2.5f, 2.5f}));
  EXPECT_EQ(Tensor::zeros({4}).numel(), 4);
  EXPECT_THROW(Tensor({2, 3}, std::vector<float>(5)), ShapeError);
  EXPECT_TRUE(Tensor().empty());
  EXPECT_EQ(Tensor({}, {7.0f}).numel(), 1);  // a scalar
}

TEST(Tensor, DimWithNegativeAxes) {
  const Tensor t({2, 3, 4});
  EXPECT_EQ(t.dim(0), 2);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(t.dim(-3), 2);
  EXPECT_THROW(t.dim(3), ShapeError);
  EXPECT_THROW(t.dim(-4), ShapeError);
}

TEST(Tensor, AtIsRowMajor) {
  Tensor t = iota({2, 3, 4});
  EXPECT_EQ(t.at({0, 0, 0}), 0.0f);
  EXPECT_EQ(t.at({0, 1, 2}), 6.0f);  // 0*12 + 1*4 + 2
  EXPECT_EQ(t.at({1, 2, 3}), 23.0f);
  t.at({1, 0, 1}) = -1.0f;
  EXPECT_EQ(t.data()[13], -1.0f);
  const Tensor& c = t;
  EXPECT_EQ(c.at({1, 0, 1}), -1.0f);
}

TEST(Tensor, AtChecksBounds) {
  Tensor t = iota({2, 3});
  EXPECT_THROW(t.at({2, 0}), ShapeError);
  EXPECT_THROW(t.at({0, 3}), ShapeError);
  EXPECT_THROW(t.at({-1, 0}), ShapeError);
  EXPECT_THROW(t.at({0}), ShapeError);        // too few indices
  EXPECT_THROW(t.at({0, 0, 0}), ShapeError);  // too many
  const Tensor& c = t;
  EXPECT_THROW(c.at({0, 5}), ShapeError);
}

TEST(Tensor, Reshape) {
  const Tensor t = iota({2, 3, 4});
  const Tensor r = t.reshape({6, 4});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.values(), t.values());
  EXPECT_EQ(r.at({4, 1}), 17.0f);
  EXPECT_EQ(t.reshape({-1, 2}).shape(), (Shape{12, 2}));
  EXPECT_EQ(t.reshape({2, -1, 3}).shape(), (Shape{2, 4, 3}));
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));  // the original is unchanged
  Tensor moved = iota({4, 2});
  const Tensor flat = std::move(moved).reshape({8});
  EXPECT_EQ(flat.shape(), Shape{8});
  EXPECT_EQ(flat.at({7}), 7.0f);
}

TEST(Tensor, ReshapeRejectsWrongSizes) {
  const Tensor t = iota({2, 3, 4});
  EXPECT_THROW(t.reshape({5, 5}), ShapeError);
  EXPECT_THROW(t.reshape({-1, -1}), ShapeError);
  EXPECT_THROW(t.reshape({-1, 5}), ShapeError);
  EXPECT_THROW(t.reshape({-2, -12}), ShapeError);
}

TEST(Tensor, TransposeLastTwo) {
  const Tensor t = iota({2, 3});  // [[0 1 2] [3 4 5]]
  const Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_EQ(tt.values(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(Tensor, TransposeMiddleAxesOf4D) {
  // B x L x H x D = 1 x 2 x 3 x 2 -> B x H x L x D.
  const Tensor t = iota({1, 2, 3, 2});
  const Tensor u = t.transpose(1, 2);
  EXPECT_EQ(u.shape(), (Shape{1, 3, 2, 2}));
  // u[0, h, l, d] = t[0, l, h, d] = l*6 + h*2 + d
  EXPECT_EQ(u.values(), (std::vector<float>{0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11}));
  for (int64_t h = 0; h < 3; ++h) {
    for (int64_t l = 0; l < 2; ++l) {
      for (int64_t d = 0; d < 2; ++d) EXPECT_EQ(u.at({0, h, l, d}), t.at({0, l, h, d}));
    }
  }
  EXPECT_EQ(u.transpose(1, 2).values(), t.values());  // transposing back restores the original
}

TEST(Tensor, TransposeWithNegativeAxes) {
  const Tensor t = iota({2, 3, 4});
  const Tensor a = t.transpose(0, -1);
  EXPECT_EQ(a.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(a.at({3, 1, 1}), t.at({1, 1, 3}));
  EXPECT_EQ(t.transpose(-1, -2).values(), t.transpose(1, 2).values());
  EXPECT_EQ(t.transpose(1, 1).values(), t.values());
  EXPECT_THROW(t.transpose(0, 3), ShapeError);
  EXPECT_THROW(t.transpose(-4, 0), ShapeError);
}

TEST(Tensor, MatrixViewsOfLastTwoDims) {
  Tensor t = iota({2, 2, 3});
  EXPECT_EQ(t.num_matrices(), 2);
  const auto m1 = t.matrix(1);
  EXPECT_EQ(m1.rows(), 2);
  EXPECT_EQ(m1.cols(), 3);
  EXPECT_EQ(m1(0, 0), 6.0f);
  EXPECT_EQ(m1(1, 2), 11.0f);
  t.matrix(0)(1, 0) = 100.0f;  // writes through to the tensor
  EXPECT_EQ(t.at({0, 1, 0}), 100.0f);
  const Tensor& c = t;
  EXPECT_EQ(c.matrix(1)(0, 1), 7.0f);
  // Eigen arithmetic on a view: matrix(1) * ones(3) = row sums [6+7+8, 9+10+11].
  const Vector sums = c.matrix(1) * Vector::Ones(3);
  EXPECT_EQ(sums(0), 21.0f);
  EXPECT_EQ(sums(1), 30.0f);
  EXPECT_THROW(t.matrix(2), ShapeError);
  EXPECT_THROW(t.matrix(-1), ShapeError);
  Tensor v({3});
  EXPECT_THROW(v.matrix(0), ShapeError);
  EXPECT_THROW(v.num_matrices(), ShapeError);
}

TEST(Tensor, RowsView) {
  Tensor t = iota({2, 2, 3});
  const auto r = t.rows();
  EXPECT_EQ(r.rows(), 4);
  EXPECT_EQ(r.cols(), 3);
  EXPECT_EQ(r(3, 0), 9.0f);
  t.rows().row(2).setZero();
  EXPECT_EQ(t.at({1, 0, 2}), 0.0f);
  EXPECT_EQ(t.at({1, 1, 0}), 9.0f);
  Tensor v = iota({5});
  EXPECT_EQ(v.rows().rows(), 1);
  EXPECT_EQ(v.rows().cols(), 5);
}

TEST(Tensor, FromMatrixAndCheckShape) {
  Matrix m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  const Tensor t = Tensor::from_matrix(m);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.values(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_NO_THROW(check_shape(t, {2, 3}, "t"));
  try {
    check_shape(t, {3, 2}, "query");
    ADD_FAILURE() << "no exception";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("query"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  }
}

TEST(Tensor, TensorNearReportsMismatches) {
  const Tensor a({2}, {1.0f, 2.0f});
  EXPECT_TRUE(testing::TensorNear("a", "b", "0", "0", a, Tensor({2}, {1.0f, 2.0f}), 0.0, 0.0));
  EXPECT_FALSE(testing::TensorNear("a", "b", "0", "0", a, Tensor({2}, {1.0f, 2.5f}), 0.1, 0.0));
  EXPECT_TRUE(testing::TensorNear("a", "b", "0", "0", a, Tensor({2}, {1.0f, 2.5f}), 0.5, 0.0));
  EXPECT_FALSE(testing::TensorNear("a", "b", "0", "0", a, Tensor({1, 2}, {1.0f, 2.0f}), 1.0, 1.0));
}

}  // namespace
}  // namespace tinyllm
