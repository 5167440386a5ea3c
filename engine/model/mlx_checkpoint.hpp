// MLX-format quantized checkpoints (mlx-lm's `convert -q`, e.g.
// mlx-community/Qwen2-0.5B-Instruct-4bit): config.json carries "quantization": {"group_size": G,
// "bits": b, <per-layer overrides>} (parsed into Qwen2Config::quantization), and every quantized
// linear layer and the embedding `<prefix>` is stored as
//   <prefix>.weight  U32, K x N*b/32: 32/b codes per word, element 0 in the lowest bits
//   <prefix>.scales  K x N/G, the model's float dtype (bf16, f16 or f32)
//   <prefix>.biases  K x N/G, likewise; w = q * scale + bias
// exactly chapter 2.2's QuantizedWeights, so the engine keeps the stored codes as they are. Norm
// weights, q/k/v biases and layers whose override is false stay float (<prefix>.weight, K x N).
#pragma once

#include <cstdint>
#include <string>

#include "engine/kernels/weight_matrix.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/safetensors.hpp"

namespace tinyllm::engine {

/// Layer `prefix` ("model.layers.0.self_attn.q_proj") of a K x N weight, in the format config.json
/// gives it: quantized (the stored codes, scales and biases) or, where its override is false, f32.
/// FormatError for a missing .scales/.biases or codes that are not U32, ShapeError for a tensor of
/// the wrong shape, naming the tensor and the shape the config implies.
WeightMatrix load_mlx_matrix(const Checkpoint& checkpoint, const QuantizationConfig& quantization,
                             const std::string& prefix, int64_t rows, int64_t cols);

/// "q4 g64 (mlx)": the default format of a quantized checkpoint, for reports.
std::string mlx_quantization_name(const QuantizationConfig& quantization);

}  // namespace tinyllm::engine
