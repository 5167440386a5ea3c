#include "engine/model/mlx_checkpoint.hpp"

#include <utility>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {
namespace {

std::string describe(const QuantizationSpec& spec) {
  return std::to_string(spec.bits) + " bits in groups of " + std::to_string(spec.group_size);
}

}  // namespace

WeightMatrix load_mlx_matrix(const Checkpoint& checkpoint, const QuantizationConfig& quantization,
                             const std::string& prefix, int64_t rows, int64_t cols) {
  const std::optional<QuantizationSpec> spec = quantization.of(prefix);
  if (!spec) return WeightMatrix(checkpoint.load(prefix + ".weight", {rows, cols}), {});
  const std::string where = checkpoint.dir().string() + ": " + prefix + " (quantized to " +
                            describe(*spec) + " by config.json)";
  for (const char* part : {".weight", ".scales", ".biases"}) {
    if (!checkpoint.contains(prefix + part)) {
      throw FormatError(where + " has no " + prefix + part +
                        " (an MLX quantized layer is stored as .weight, .scales and .biases)");
    }
  }
  const int per = codes_per_word(spec->bits);
  const TensorInfo& info = checkpoint.info(prefix + ".weight");
  if (info.dtype != DType::U32) {
    throw FormatError(where + ": " + prefix + ".weight is " + dtype_name(info.dtype) +
                      ", expected U32 words of " + std::to_string(per) + " codes each");
  }
  if (cols % spec->group_size != 0 || info.shape != Shape{rows, cols / per}) {
    throw ShapeError(where + ": " + prefix + ".weight has shape " + shape_to_string(info.shape) +
                     ", expected " + shape_to_string({rows, cols / per}) + " (a " +
                     std::to_string(rows) + " x " + std::to_string(cols) + " layer, " +
                     std::to_string(per) + " codes per word; N must be a multiple of " +
                     std::to_string(spec->group_size) + ")");
  }
  QuantizedWeights w;
  w.rows = rows;
  w.cols = cols;
  w.group_size = spec->group_size;
  w.bits = spec->bits;
  w.packed.reserve(static_cast<size_t>(rows * (cols / per)));
  for (int64_t word : checkpoint.file_of(prefix + ".weight").load_ints(prefix + ".weight")) {
    w.packed.push_back(static_cast<uint32_t>(word));
  }
  const Shape groups = {rows, cols / spec->group_size};
  w.scales = checkpoint.load(prefix + ".scales", groups);
  w.biases = checkpoint.load(prefix + ".biases", groups);
  return WeightMatrix(std::move(w));
}

std::string mlx_quantization_name(const QuantizationConfig& quantization) {
  return "q" + std::to_string(quantization.defaults.bits) + " g" +
         std::to_string(quantization.defaults.group_size) + " (mlx)";
}

}  // namespace tinyllm::engine
