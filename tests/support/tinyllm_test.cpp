#include "tinyllm_test.hpp"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "tinyllm/errors.hpp"

#ifndef TINYLLM_DEFAULT_DATA_DIR
#error "TINYLLM_DEFAULT_DATA_DIR must be defined by the build"
#endif

namespace tinyllm::testing {

std::filesystem::path data_dir() {
  if (const char* env = std::getenv("TINYLLM_DATA_DIR"); env != nullptr && *env != '\0') return env;
  return TINYLLM_DEFAULT_DATA_DIR;
}

Fixture::Fixture(const std::string& relative_path) {
  const auto path = data_dir() / "fixtures" / relative_path;
  if (!std::filesystem::exists(path)) {
    throw FormatError("fixture " + path.string() +
                      " is missing; regenerate the fixtures with `bash tools/fixtures/generate.sh` "
                      "(see tools/fixtures/README.md)");
  }
  file_ = std::make_shared<SafetensorsFile>(SafetensorsFile::open(path));
}

Tensor Fixture::tensor(const std::string& name) const {
  return file_->load(name);
}
std::vector<int64_t> Fixture::ints(const std::string& name) const {
  return file_->load_ints(name);
}
bool Fixture::has(const std::string& name) const {
  return file_->contains(name);
}

float Fixture::scalar(const std::string& name) const {
  const Tensor t = tensor(name);
  if (t.numel() != 1)
    throw ShapeError("fixture value " + name + " is not a scalar: " + shape_to_string(t.shape()));
  return t.data()[0];
}

std::string Fixture::meta(const std::string& key) const {
  const auto it = file_->metadata().find(key);
  if (it == file_->metadata().end()) {
    throw FormatError("fixture " + file_->path().string() + " has no metadata key '" + key + "'");
  }
  return it->second;
}

namespace {
std::string index_string(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    idx[i] = shape[i] == 0 ? 0 : flat % shape[i];
    flat = shape[i] == 0 ? 0 : flat / shape[i];
  }
  return shape_to_string(idx);
}
}  // namespace

::testing::AssertionResult TensorNear(const char* actual_expr, const char* expected_expr,
                                      const char*, const char*, const Tensor& actual,
                                      const Tensor& expected, double atol, double rtol) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure()
           << actual_expr << " has shape " << shape_to_string(actual.shape()) << " but "
           << expected_expr << " has shape " << shape_to_string(expected.shape());
  }
  double max_abs = 0.0, max_rel = 0.0;
  int64_t bad = 0;
  std::ostringstream first;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.data()[i], e = expected.data()[i];
    const double diff = std::fabs(a - e);
    const bool ok = !std::isnan(a) && !std::isnan(e) ? diff <= atol + rtol * std::fabs(e)
                                                     : (std::isnan(a) && std::isnan(e));
    const bool both_inf = std::isinf(a) && std::isinf(e) && (a > 0) == (e > 0);
    if (!both_inf && !std::isnan(diff)) {
      max_abs = std::max(max_abs, diff);
      if (e != 0.0) max_rel = std::max(max_rel, diff / std::fabs(e));
    }
    if (!ok && !both_inf) {
      if (bad < 5)
        first << "\n    at " << index_string(actual.shape(), i) << ": actual " << a << ", expected "
              << e;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << actual_expr << " differs from " << expected_expr << " in " << bad << " of "
         << actual.numel() << " elements (shape " << shape_to_string(actual.shape()) << ", atol "
         << atol << ", rtol " << rtol << "); max abs error " << max_abs << ", max rel error "
         << max_rel << first.str();
}

}  // namespace tinyllm::testing
