// The engine: how the chapters add up to a fast Qwen2 on a CPU (provided code, not an exercise).
//
// Same model and API as chapter 2.1's Qwen2ModelWeek2 (forward(tokens, offset, caches) -> logits,
// one KvCache per layer), rebuilt from the chapters' fast pieces:
//
//   ids B x L' --(embedding rows, any format: WeightMatrix::row)--> x: (B L') x E, f32
//   per layer:
//     h   = RMSNorm(x)                                   ch1.4 RMSNorm
//     qkv = h [Wq; Wk; Wv]^T + [bq; bk; bv]              one fused WeightMatrix: ch2.3 kernels
//     q, k = RoPE(q, k at positions offset..)            ch1.2 RoPE
//     cache.append(k, v)                                 ch2.1 KvCache (no copy of the S rows)
//     o   = attention(q, cache)                          ch2.5 attend_kv_range on zero-copy
//                                                        keys_of/values_of views of the cache:
//           prefill: per (row, query head, tile of 32 queries), bottom-right causal mask;
//           decode:  per (row, KV head), the g = H_q/H query heads sharing it as g rows, no mask
//     x  += o Wo^T
//     h   = RMSNorm(x)
//     x  += (silu(h Wg^T) * h Wu^T) Wd^T                 [Wg; Wu] fused; ch1.4 silu
//   x = RMSNorm(x); logits = x Head^T  (only the last position of each row when asked: prefill then
//   skips the V x E head for L'-1 positions)
//
// Weights: every linear layer and the head in one WeightSpec (f32, bf16, q8 or q4;
// weight_matrix.hpp), activations, norms, biases and the KV cache in f32. A tied embedding is
// stored once and serves as both table and head. An MLX checkpoint's layers come as they are stored
// (mlx_checkpoint.hpp), each in its own format. The head of a q4 model is q8 by default
// (head_format): the head turns the last hidden state straight into logits, nothing after it
// averages its rounding out, and it is a quarter of a 0.5B model's weights; llama.cpp's Q4_0 keeps
// its tied embedding in Q8_0 too. Every matrix product and the attention use `threads` OpenMP
// threads (0: OpenMP's default).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include <tinyllm/ch1_2_rope/rope.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>
#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/token.hpp"
#include "tinyllm/tokenizer.hpp"
#include "engine/kernels/weight_matrix.hpp"

namespace tinyllm::engine {

struct EngineOptions {
  WeightSpec weights;                       // every linear layer
  std::optional<WeightFormat> head_format;  // the head (and a tied table); default: see above
  int threads = 0;                          // 0: OpenMP's default
  bool int8_decode = true;                  // q8/q4 decode with int8 activations (int8_matvec.hpp)
  bool bf16_prefill = true;                 // bf16/q8/q4 prefill in bf16 x bf16 (bf16_gemm.hpp)
};

class Qwen2Engine {
 public:
  /// Loads an HF Qwen2 checkpoint (f32 or bf16 on disk, as chapter 1.5 loads it) and converts each
  /// linear layer to options.weights. Errors: those of chapter 1.5's loader (FormatError,
  /// ShapeError, ConfigError), InvalidArgument for a bad format or group size, ShapeError when E
  /// or I is not a multiple of the group size.
  /// An MLX quantized checkpoint (config.quantization; mlx_checkpoint.hpp) keeps its stored codes:
  /// options.weights and head_format must be left at their defaults (InvalidArgument otherwise),
  /// and load_mlx_matrix's errors apply.
  Qwen2Engine(const Qwen2Config& config, const Checkpoint& checkpoint, EngineOptions options);

  /// tokens: B rows of L' new ids at positions offset .. offset+L'-1; caches: one per layer
  /// (create_kv_caches(B)), each holding `offset` positions -> logits B x L' x V, or B x 1 x V
  /// (the last position only) when last_only. The same checks and errors as Qwen2ModelWeek2.
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset, std::vector<KvCache>& caches,
                 bool last_only = false) const;

  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const;
  const Qwen2Config& config() const { return config_; }
  const EngineOptions& options() const { return options_; }
  /// Weight bytes one decode step reads (every layer once, plus the head).
  int64_t weight_bytes() const;
  void set_threads(int threads) { options_.threads = threads; }

 private:
  struct Layer {
    RMSNorm input_norm, post_norm;
    StackedMatrix qkv;
    WeightMatrix wo;
    StackedMatrix gate_up;
    WeightMatrix down;
    Tensor qkv_bias;  // (H_q + 2 H) D
  };
  void load_dense(const Checkpoint& checkpoint);
  void load_mlx(const Checkpoint& checkpoint);
  void check_forward_args(const std::vector<TokenIds>& tokens, int64_t offset,
                          const std::vector<KvCache>& caches) const;
  Tensor attention(const Tensor& qkv, int64_t batch, int64_t length, int64_t offset,
                   KvCache& cache) const;
  Tensor layer_forward(const Layer& layer, const Tensor& x, int64_t batch, int64_t length,
                       int64_t offset, KvCache& cache) const;

  Qwen2Config config_;
  EngineOptions options_;
  std::vector<Layer> layers_;
  WeightMatrix embedding_;            // V x E: the table (and the head when tied)
  std::optional<WeightMatrix> head_;  // V x E, untied checkpoints only
  std::optional<RMSNorm> norm_;
  RoPE rope_;
};

/// Loads config.json and the weights of a model directory into an engine.
Qwen2Engine load_qwen2_engine(const std::filesystem::path& model_dir, EngineOptions options);

/// Chapter 2.1's generation loop on the engine: prefill the prompt once (last position only), then
/// one token per step until a stop id (not appended) or max_new_tokens. Same errors as
/// generate_tokens_with_kv_cache (InvalidArgument, ContextLengthError before any model work).
Generation engine_generate_tokens(const Qwen2Engine& engine, const TokenIds& prompt,
                                  const GenerationOptions& options,
                                  const TokenPicker& pick = greedy_pick,
                                  const TokenCallback& on_token = {});
/// simple_generate_with_kv_cache on the engine: encode, default stop ids, stream the text.
TextGeneration engine_generate_text(const Qwen2Engine& engine, const Tokenizer& tokenizer,
                                    std::string_view prompt, GenerationOptions options,
                                    const TokenPicker& pick = greedy_pick,
                                    const TextCallback& on_text = {});

}  // namespace tinyllm::engine
