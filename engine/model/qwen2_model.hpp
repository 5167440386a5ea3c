// The engine's Qwen2 model: how the chapters add up to a fast Qwen2 on a CPU (provided code, not
// an exercise). It is a LanguageModel (chapter 2.1's interface), so chapter 2.1's generation,
// chapter 2.6/2.7's schedulers and the serving core (engine/serving) drive it unchanged.
//
// One step (step.hpp) runs M activation rows — B x L' of forward, or the R ragged sequences of
// forward_sequences — through the layers together, so each weight matrix is read once per step:
//
//   ids (M) --(embedding rows, any format: WeightMatrix::rows_f32)--> x: M x E, f32
//   per layer:
//     h   = RMSNorm(x)                                   ch1.4 RMSNorm
//     qkv = h [Wq; Wk; Wv]^T + [bq; bk; bv]              one fused WeightMatrix: M rows at once
//     o   = step_attention(qkv, caches)                  attention.hpp: ch1.2 RoPE per sequence
//                                                        offset, ch2.1 KvCache::append, online
//                                                        softmax per query row on cache views
//     x  += o Wo^T
//     h   = RMSNorm(x)
//     x  += (silu(h Wg^T) * h Wu^T) Wd^T                 [Wg; Wu] fused; ch1.4 silu
//           or, in a sparse layer of a Qwen2-MoE model (config.is_sparse_layer), the experts:
//     x  += moe(h)                                       ch3.3: routing = top_k_routing(h Wr^T),
//                                                        the step's M rows grouped by expert
//                                                        (combine_experts_grouped): expert e runs
//                                                        its M_e rows in one product, so a step
//                                                        reads each chosen expert once; plus
//                                                        sigmoid(h Wsg^T) * shared expert(h)
//   x = RMSNorm(x); logits = x Head^T  (forward_last / forward_sequences: only the last row of each
//   sequence, so prefill skips the V x E head for L'-1 positions)
//
// Weights: every linear layer and the head in one WeightSpec (f32, bf16, q8 or q4;
// weight_matrix.hpp), experts included; the routers (Wr, X x E) and the shared-expert gates (1 x E)
// stay f32, as llama.cpp keeps ffn_gate_inp: a rounded router would change which experts a token
// gets. Activations, norms, biases and the KV cache in f32. A tied embedding is
// stored once and serves as both table and head. An MLX checkpoint's layers come as they are stored
// (mlx_checkpoint.hpp), each in its own format. The head of a q4 model is q8 by default
// (head_format): the head turns the last hidden state straight into logits, nothing after it
// averages its rounding out, and it is a quarter of a 0.5B model's weights; llama.cpp's Q4_0 keeps
// its tied embedding in Q8_0 too. Every matrix product and the attention use `threads` OpenMP
// threads (0: OpenMP's default). Kernels: `kernels` picks the fast ones (int8 activations for
// q8/q4 decode, bf16 activations for bf16 decode and for prefill) or the exact ones (f32
// activations; only the float summation order differs from a plain product); engine/README.md has
// the table and the bounds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_2_rope/rope.hpp>
#include <tinyllm/ch1_4_rmsnorm_mlp/rmsnorm.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_language_model.hpp>

#include "engine/kernels/weight_matrix.hpp"
#include "engine/model/step.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/token.hpp"

namespace tinyllm::engine {

/// Which kernels the engine's products run (weight_matrix.hpp's KernelChoice).
enum class Kernels {
  Fast,   // int8 activations for q8/q4 decode (VNNI), bf16 activations for bf16 decode and for
          // prefill (AVX512-BF16)
  Exact,  // f32 activations everywhere: equal to a plain product up to float summation order
};

struct EngineOptions {
  WeightSpec weights;                       // every linear layer
  std::optional<WeightFormat> head_format;  // the head (and a tied table); default: see above
  int threads = 0;                          // 0: OpenMP's default
  Kernels kernels = Kernels::Fast;
  int64_t page_size = 16;  // page_pool(): positions per page, and at most max_pages pages
  int64_t max_pages = 0;   // (0: unbounded); the serving core's paged mode brings its own pool
};

class Qwen2Model : public PagedLanguageModel {
 public:
  /// Loads an HF Qwen2 or Qwen2-MoE checkpoint (f32, bf16 or f16 on disk, as chapters 1.5 and 3.3
  /// load them) and converts each linear layer to options.weights. Errors: those of chapter 1.5's loader
  /// (FormatError, ShapeError, ConfigError), InvalidArgument for a bad format or group size,
  /// ShapeError when E or I is not a multiple of the group size.
  /// An MLX quantized checkpoint (config.quantization; mlx_checkpoint.hpp) keeps its stored codes:
  /// options.weights and head_format must be left at their defaults (InvalidArgument otherwise),
  /// and load_mlx_matrix's errors apply; an MLX Qwen2-MoE checkpoint is a ConfigError.
  Qwen2Model(const Qwen2Config& config, const Checkpoint& checkpoint, EngineOptions options);

  const Qwen2Config& config() const override { return config_; }
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override;
  /// The LanguageModel methods; the same checks and errors as chapter 2.1's Qwen2ModelWeek2, plus
  /// NumericalError when a logit comes out NaN or infinite (naming the row and position).
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override;
  Tensor forward_last(const std::vector<TokenIds>& tokens, int64_t offset,
                      std::vector<KvCache>& caches) const override;
  Tensor forward_sequences(const std::vector<TokenIds>& tokens,
                           const std::vector<std::vector<KvCache>*>& caches) const override;

  /// Chapter 3.1's PagedLanguageModel: one step for R sequences on paged caches of page_pool(),
  /// the same step as forward_sequences with each sequence's keys written into and read from its
  /// pages in place (step.hpp, attention.hpp): logits bitwise equal to forward_sequences' for the
  /// same steps. Errors: check_paged_sequences', OutOfPages before any work when the pool cannot
  /// hold the new positions (the caches are left as they were), NumericalError.
  PagePool& page_pool() const override { return *pool_; }
  Tensor forward_paged(const std::vector<TokenIds>& tokens,
                       const std::vector<std::vector<PagedKvCache>*>& caches) const override;
  /// The serving core's paged step: R sequences whose page ids in `pool` (any pool of this
  /// model's H and D) the caller manages, as its block manager does, each already covering the
  /// new positions (step.hpp's PagedSequence) -> logits R x V of each sequence's last new
  /// position. Errors, before any work: InvalidArgument for a count mismatch, a pool of other
  /// H or D, a page list per layer missing, too few pages or a page the pool has not allocated;
  /// forward_sequences' checks of the ids and the context; NumericalError.
  Tensor forward_pages(PagePool& pool, const std::vector<TokenIds>& tokens,
                       const std::vector<PagedSequence>& sequences) const;

  const EngineOptions& options() const { return options_; }
  /// "bf16", "q4 g64 (head q8)", "q4 g64 (mlx)": the weights, for reports.
  std::string precision() const;
  /// Weight bytes one decode step of one sequence reads: every layer once, plus the head; in a
  /// sparse layer the router, the shared expert and k of the X experts (k / X of their bytes).
  int64_t weight_bytes() const;
  void set_threads(int threads) { options_.threads = threads; }
  void set_kernels(Kernels kernels) { options_.kernels = kernels; }

 private:
  /// A SwiGLU MLP: [Wg; Wu] fused (2 I x E) and Wd (E x I).
  struct Mlp {
    StackedMatrix gate_up;
    WeightMatrix down;
  };
  /// The MLP of a sparse layer (chapter 3.3's Qwen2MoeBlock in the engine's formats).
  struct Experts {
    WeightMatrix router;               // X x E, f32
    std::vector<Mlp> experts;          // X, each of moe_intermediate_size
    std::optional<Mlp> shared;         // shared_expert_intermediate_size > 0
    std::optional<WeightMatrix> gate;  // 1 x E, f32: the shared expert's sigmoid gate
  };
  struct Layer {
    RMSNorm input_norm, post_norm;
    StackedMatrix qkv;
    WeightMatrix wo;
    Mlp mlp;                         // dense layers
    std::optional<Experts> experts;  // sparse layers (then mlp is empty)
    Tensor qkv_bias;                 // (H_q + 2 H) D
  };
  void load_dense(const Checkpoint& checkpoint);
  void load_mlx(const Checkpoint& checkpoint);
  /// Checks a group's ids and caches (the errors of Qwen2ModelWeek2::forward) and adds it.
  void add_group(Step& step, const std::vector<TokenIds>& tokens, std::vector<KvCache>& caches,
                 const char* who) const;
  /// Checks one paged sequence (forward_pages' errors) and adds it as a group of one row.
  void add_paged_group(Step& step, const TokenIds& tokens, PagePool& pool,
                       const PagedSequence& sequence, const char* who) const;
  /// Runs the step; logits of every activation row, or of step.last_rows() only.
  Tensor run(const Step& step, bool last_only) const;
  Tensor layer_forward(const Layer& layer, const Tensor& x, const Step& step, size_t index) const;
  /// x: M x E -> M x E through a SwiGLU MLP.
  Tensor mlp_forward(const Mlp& mlp, const Tensor& x) const;
  /// x: M x E -> M x E through a sparse layer's experts, grouped by expert.
  Tensor experts_forward(const Experts& experts, const Tensor& x) const;
  /// A SwiGLU MLP's f32 weights in `spec`: [Wg; Wu] stacked, Wd.
  static Mlp convert_mlp(const Tensor& w_gate, const Tensor& w_up, const Tensor& w_down,
                         const WeightSpec& spec);
  /// A sparse layer's experts from the checkpoint, converted to options_.weights.
  Experts load_experts(const Checkpoint& checkpoint, int64_t layer) const;
  /// NumericalError naming the sequence and position of the first non-finite logit.
  void check_finite(const Tensor& logits, const Step& step, const std::vector<int64_t>& kept) const;
  KernelChoice kernel_choice() const;

  Qwen2Config config_;
  EngineOptions options_;
  std::vector<Layer> layers_;
  WeightMatrix embedding_;            // V x E: the table (and the head when tied)
  std::optional<WeightMatrix> head_;  // V x E, untied checkpoints only
  std::optional<RMSNorm> norm_;
  RoPE rope_;
  std::unique_ptr<PagePool> pool_;  // page_pool(): the model's cache memory, not its weights
};

}  // namespace tinyllm::engine
