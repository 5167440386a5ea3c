#include "engine/model/qwen2_model.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_5_qwen2_model/embedding.hpp>
#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>
#include <tinyllm/ch3_3_moe/moe_block.hpp>
#include <tinyllm/ch3_3_moe/qwen2_moe_model.hpp>
#include <tinyllm/ch3_3_moe/router.hpp>

#include "engine/model/attention.hpp"
#include "engine/model/mlx_checkpoint.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/numerics.hpp"

namespace tinyllm::engine {
namespace {

// The head's spec: options.head_format, else the layers' format with q4 raised to q8; a quantized
// head takes the layers' group size when they are quantized too, else its format's default.
WeightSpec head_spec(const EngineOptions& options) {
  const WeightSpec& layers = options.weights;
  WeightSpec head{layers.format == WeightFormat::Q4 ? WeightFormat::Q8 : layers.format, 0};
  if (options.head_format) head.format = *options.head_format;
  if (default_group_size(head.format) != 0) head.group_size = layers.group_size;
  return check_weight_spec(head);
}

// Columns [begin, begin + count) of an M x N tensor, as a new M x count tensor.
Tensor columns(const Tensor& t, int64_t begin, int64_t count) {
  Tensor out({t.dim(0), count});
  out.rows() = t.rows().middleCols(begin, count);
  return out;
}

// [bq; bk; bv] as one vector, the bias of the fused q/k/v product.
Tensor concat_vectors(const std::vector<const Tensor*>& parts) {
  int64_t n = 0;
  for (const Tensor* p : parts) n += p->numel();
  Tensor out({n});
  float* dst = out.data();
  for (const Tensor* p : parts) dst = std::copy_n(p->data(), p->numel(), dst);
  return out;
}

}  // namespace

Qwen2Model::Mlp Qwen2Model::convert_mlp(const Tensor& w_gate, const Tensor& w_up,
                                        const Tensor& w_down, const WeightSpec& spec) {
  std::vector<WeightMatrix> gate_up;
  gate_up.emplace_back(stack_rows({&w_gate, &w_up}), spec);
  return {StackedMatrix(std::move(gate_up)), WeightMatrix(w_down, spec)};
}

Qwen2Model::Qwen2Model(const Qwen2Config& config, const Checkpoint& checkpoint,
                       EngineOptions options)
    : config_(config),
      options_(options),
      rope_(config.head_dim, config.max_position_embeddings, config.rope_theta,
            /*traditional=*/false),
      pool_(std::make_unique<PagePool>(config.num_key_value_heads, config.head_dim,
                                       options.page_size, options.max_pages)) {
  check_supported_config(config_, "Qwen2Model", /*experts_supported=*/true);
  if (config_.quantization) {
    load_mlx(checkpoint);
  } else {
    load_dense(checkpoint);
  }
}

void Qwen2Model::load_dense(const Checkpoint& checkpoint) {
  options_.weights = check_weight_spec(options_.weights);
  const WeightSpec head = head_spec(options_);
  Qwen2ModelWeights w = load_qwen2_model_weights(checkpoint, config_);  // no MLP in sparse layers
  const float eps = config_.rms_norm_eps;
  for (size_t i = 0; i < w.layers.size(); ++i) {
    Qwen2BlockWeights& b = w.layers[i];
    const Qwen2AttentionWeights& a = b.attention;
    std::vector<WeightMatrix> qkv;
    qkv.emplace_back(stack_rows({&a.wq, &a.wk, &a.wv}), options_.weights);
    const bool sparse = config_.is_sparse_layer(static_cast<int64_t>(i));
    layers_.push_back(Layer{
        RMSNorm(config_.hidden_size, std::move(b.w_input_layernorm), eps),
        RMSNorm(config_.hidden_size, std::move(b.w_post_attention_layernorm), eps),
        StackedMatrix(std::move(qkv)),
        WeightMatrix(a.wo, options_.weights),
        sparse ? Mlp{} : convert_mlp(b.w_gate, b.w_up, b.w_down, options_.weights),
        sparse ? std::optional<Experts>(load_experts(checkpoint, static_cast<int64_t>(i)))
               : std::nullopt,
        concat_vectors({&a.bq, &a.bk, &a.bv}),
    });
    b = Qwen2BlockWeights{};  // frees this layer's f32 copy before the next one is converted
  }
  embedding_ = WeightMatrix(w.embed_tokens, head);
  w.embed_tokens = Tensor();
  if (!config_.tie_word_embeddings) head_.emplace(w.lm_head, head);
  norm_.emplace(config_.hidden_size, std::move(w.norm), eps);
}

Qwen2Model::Experts Qwen2Model::load_experts(const Checkpoint& checkpoint, int64_t layer) const {
  Qwen2MoeWeights w = load_qwen2_moe_weights(checkpoint, config_, layer);
  const WeightSpec exact{WeightFormat::F32, 0};
  Experts out{WeightMatrix(w.router, exact), {}, std::nullopt, std::nullopt};
  for (MlpWeights& e : w.experts) {
    out.experts.push_back(convert_mlp(e.w_gate, e.w_up, e.w_down, options_.weights));
    e = MlpWeights{};
  }
  if (w.shared) {
    out.shared = convert_mlp(w.shared->w_gate, w.shared->w_up, w.shared->w_down, options_.weights);
    out.gate.emplace(w.shared_gate, exact);
  }
  return out;
}

void Qwen2Model::load_mlx(const Checkpoint& checkpoint) {
  const QuantizationConfig& q = *config_.quantization;
  if (config_.moe) {
    throw ConfigError("Qwen2Model: " + checkpoint.dir().string() +
                      " is an MLX quantized Qwen2-MoE checkpoint; the engine reads MoE models from "
                      "Hugging Face checkpoints only (quantize them with --quantize)");
  }
  if (options_.weights.format != WeightFormat::F32 || options_.weights.group_size != 0 ||
      options_.head_format) {
    throw InvalidArgument(
        "Qwen2Model: " + checkpoint.dir().string() + " is an MLX checkpoint already quantized (" +
        mlx_quantization_name(q) + ", config.json \"quantization\"); its stored weights are used " +
        "as they are, so EngineOptions::weights (" + weight_format_name(options_.weights.format) +
        ") and head_format must be left at their defaults");
  }
  const int64_t e = config_.hidden_size, inter = config_.intermediate_size;
  const int64_t q_rows = config_.num_attention_heads * config_.head_dim;
  const int64_t kv_rows = config_.num_key_value_heads * config_.head_dim;
  const float eps = config_.rms_norm_eps;
  const auto matrix = [&](const std::string& prefix, int64_t rows, int64_t cols) {
    return load_mlx_matrix(checkpoint, q, prefix, rows, cols);
  };
  const auto vector = [&](const std::string& name, int64_t n) {
    return checkpoint.load(name, {n});
  };
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const std::string a = p + "self_attn.", m = p + "mlp.";
    std::vector<WeightMatrix> qkv, gate_up;
    qkv.push_back(matrix(a + "q_proj", q_rows, e));
    qkv.push_back(matrix(a + "k_proj", kv_rows, e));
    qkv.push_back(matrix(a + "v_proj", kv_rows, e));
    gate_up.push_back(matrix(m + "gate_proj", inter, e));
    gate_up.push_back(matrix(m + "up_proj", inter, e));
    Mlp mlp{StackedMatrix(std::move(gate_up)), matrix(m + "down_proj", e, inter)};
    const Tensor bq = vector(a + "q_proj.bias", q_rows), bk = vector(a + "k_proj.bias", kv_rows),
                 bv = vector(a + "v_proj.bias", kv_rows);
    layers_.push_back(Layer{
        RMSNorm(e, vector(p + "input_layernorm.weight", e), eps),
        RMSNorm(e, vector(p + "post_attention_layernorm.weight", e), eps),
        StackedMatrix(std::move(qkv)),
        matrix(a + "o_proj", e, q_rows),
        std::move(mlp),
        std::nullopt,
        concat_vectors({&bq, &bk, &bv}),
    });
  }
  embedding_ = matrix("model.embed_tokens", config_.vocab_size, e);
  if (!config_.tie_word_embeddings) head_.emplace(matrix("lm_head", config_.vocab_size, e));
  norm_.emplace(e, vector("model.norm.weight", e), eps);
}

std::vector<KvCache> Qwen2Model::create_kv_caches(int64_t batch) const {
  return std::vector<KvCache>(static_cast<size_t>(config_.num_hidden_layers),
                              KvCache(batch, config_.num_key_value_heads, config_.head_dim,
                                      config_.max_position_embeddings));
}

int64_t Qwen2Model::weight_bytes() const {
  const auto mlp_bytes = [](const Mlp& m) { return m.gate_up.bytes() + m.down.bytes(); };
  int64_t n = head_ ? head_->bytes() : embedding_.bytes();
  for (const Layer& l : layers_) {
    n += l.qkv.bytes() + l.wo.bytes();
    if (!l.experts) {
      n += mlp_bytes(l.mlp);
      continue;
    }
    const Experts& x = *l.experts;
    int64_t experts = 0;
    for (const Mlp& m : x.experts) experts += mlp_bytes(m);
    n += x.router.bytes() +
         experts * config_.moe->num_experts_per_tok / static_cast<int64_t>(x.experts.size());
    if (x.shared) n += mlp_bytes(*x.shared) + x.gate->bytes();
  }
  return n;
}

std::string Qwen2Model::precision() const {
  if (config_.quantization) return mlx_quantization_name(*config_.quantization);
  const WeightSpec& w = options_.weights;
  std::string name = weight_format_name(w.format);
  if (w.group_size != 0) name += " g" + std::to_string(w.group_size);
  const WeightMatrix& head = head_ ? *head_ : embedding_;
  if (head.format() != w.format) name += " (head " + weight_format_name(head.format()) + ")";
  return name;
}

KernelChoice Qwen2Model::kernel_choice() const {
  // Fast: int8 activations for every q8/q4 product of up to kSmallMMax rows, bf16 activations for
  // every bf16 one, whether they are a decode step of R requests or a prefill chunk, bf16 GEMMs
  // above. The streaming kernels give every row the same operations whatever M, so a request's
  // tokens do not depend on what else shares its steps or how its prompt was chunked (as long as
  // each step has <= kSmallMMax rows); llama.cpp likewise quantizes the activations of every
  // quantized product to 8 bits.
  return options_.kernels == Kernels::Exact ? KernelChoice::exact(options_.threads)
                                            : KernelChoice::fast(options_.threads);
}

void Qwen2Model::add_group(Step& step, const std::vector<TokenIds>& tokens,
                           std::vector<KvCache>& caches, const char* who) const {
  check_token_batch(tokens, config_.vocab_size, who);
  const auto batch = static_cast<int64_t>(tokens.size());
  const auto length = static_cast<int64_t>(tokens[0].size());
  if (caches.size() != layers_.size()) {
    throw InvalidArgument(std::string(who) + ": got " + std::to_string(caches.size()) +
                          " caches for " + std::to_string(layers_.size()) + " layers");
  }
  const int64_t offset = caches[0].offset();
  for (const KvCache& cache : caches) {
    if (cache.batch() != batch) {
      throw ShapeError(std::string(who) + ": " + std::to_string(batch) +
                       " rows of tokens, but the caches hold " + std::to_string(cache.batch()));
    }
    if (cache.offset() != offset) {
      throw InvalidArgument(std::string(who) + ": the layers' caches hold different numbers of " +
                            "positions (" + std::to_string(offset) + " and " +
                            std::to_string(cache.offset()) + ")");
    }
  }
  if (offset + length > config_.max_position_embeddings) {
    throw ContextLengthError(
        std::string(who) + ": " + std::to_string(offset) + " cached + " + std::to_string(length) +
        " new tokens do not fit into the context of " +
        std::to_string(config_.max_position_embeddings) + " (max_position_embeddings)");
  }
  step.groups.push_back(StepGroup{&caches, batch, length, offset, step.rows});
  for (const TokenIds& row : tokens) step.ids.insert(step.ids.end(), row.begin(), row.end());
  step.rows += batch * length;
}

Tensor Qwen2Model::forward(const std::vector<TokenIds>& tokens, int64_t offset,
                           std::vector<KvCache>& caches) const {
  Step step;
  add_group(step, tokens, caches, "Qwen2Model::forward");
  if (offset != step.groups[0].offset) {
    throw InvalidArgument("Qwen2Model::forward: offset " + std::to_string(offset) +
                          " but the caches hold " + std::to_string(step.groups[0].offset) +
                          " positions");
  }
  const Tensor logits = run(step, /*last_only=*/false);
  return logits.reshape({step.groups[0].batch, step.groups[0].length, config_.vocab_size});
}

Tensor Qwen2Model::forward_last(const std::vector<TokenIds>& tokens, int64_t offset,
                                std::vector<KvCache>& caches) const {
  Step step;
  add_group(step, tokens, caches, "Qwen2Model::forward_last");
  if (offset != step.groups[0].offset) {
    throw InvalidArgument("Qwen2Model::forward_last: offset " + std::to_string(offset) +
                          " but the caches hold " + std::to_string(step.groups[0].offset) +
                          " positions");
  }
  return run(step, /*last_only=*/true);
}

Tensor Qwen2Model::forward_sequences(const std::vector<TokenIds>& tokens,
                                     const std::vector<std::vector<KvCache>*>& caches) const {
  check_sequences(tokens, caches);
  Step step;
  for (size_t r = 0; r < tokens.size(); ++r) {
    add_group(step, {tokens[r]}, *caches[r], "Qwen2Model::forward_sequences");
  }
  return run(step, /*last_only=*/true);
}

void Qwen2Model::add_paged_group(Step& step, const TokenIds& tokens, PagePool& pool,
                                 const PagedSequence& sequence, const char* who) const {
  check_token_batch({tokens}, config_.vocab_size, who);
  const auto length = static_cast<int64_t>(tokens.size());
  const std::string what = std::string(who) + ": sequence " + std::to_string(step.groups.size());
  if (sequence.offset < 0 || sequence.offset + length > config_.max_position_embeddings) {
    throw ContextLengthError(what + ": " + std::to_string(sequence.offset) + " cached + " +
                             std::to_string(length) +
                             " new tokens do not fit into the context of " +
                             std::to_string(config_.max_position_embeddings));
  }
  if (sequence.pages.size() != layers_.size()) {
    throw InvalidArgument(what + " has page lists for " + std::to_string(sequence.pages.size()) +
                          " layers, the model has " + std::to_string(layers_.size()));
  }
  const int64_t needed = (sequence.offset + length + pool.page_size() - 1) / pool.page_size();
  for (const std::vector<int32_t>& pages : sequence.pages) {
    if (static_cast<int64_t>(pages.size()) < needed) {
      throw InvalidArgument(what + ": " + std::to_string(sequence.offset + length) +
                            " positions need " + std::to_string(needed) + " pages of " +
                            std::to_string(pool.page_size()) + ", it has " +
                            std::to_string(pages.size()));
    }
    for (const int32_t page : pages) {
      if (!pool.in_use(page)) {
        throw InvalidArgument(what + ": page " + std::to_string(page) +
                              " is not allocated in the pool");
      }
    }
  }
  step.groups.push_back(
      StepGroup{nullptr, 1, length, sequence.offset, step.rows, &pool, &sequence});
  step.ids.insert(step.ids.end(), tokens.begin(), tokens.end());
  step.rows += length;
}

Tensor Qwen2Model::forward_pages(PagePool& pool, const std::vector<TokenIds>& tokens,
                                 const std::vector<PagedSequence>& sequences) const {
  const char* who = "Qwen2Model::forward_pages";
  if (tokens.empty() || tokens.size() != sequences.size()) {
    throw InvalidArgument(std::string(who) + ": " + std::to_string(tokens.size()) +
                          " sequences of tokens and " + std::to_string(sequences.size()) +
                          " page tables (need the same number, at least one)");
  }
  if (pool.num_kv_heads() != config_.num_key_value_heads || pool.head_dim() != config_.head_dim) {
    throw InvalidArgument(std::string(who) + ": the pool's pages hold " +
                          std::to_string(pool.num_kv_heads()) + " heads of " +
                          std::to_string(pool.head_dim()) + ", the model has " +
                          std::to_string(config_.num_key_value_heads) + " KV heads of " +
                          std::to_string(config_.head_dim));
  }
  Step step;
  for (size_t r = 0; r < tokens.size(); ++r) {
    add_paged_group(step, tokens[r], pool, sequences[r], who);
  }
  return run(step, /*last_only=*/true);
}

Tensor Qwen2Model::forward_paged(const std::vector<TokenIds>& tokens,
                                 const std::vector<std::vector<PagedKvCache>*>& caches) const {
  check_paged_sequences(tokens, caches);
  // The caches take their pages for the new positions first (zeros, overwritten by the step), so
  // the step only writes into pages it owns; a pool that runs out changes nothing.
  std::vector<PagedSequence> sequences(tokens.size());
  std::vector<PagedKvCache*> grown;
  try {
    for (size_t r = 0; r < tokens.size(); ++r) {
      sequences[r].offset = (*caches[r])[0].offset();
      const Tensor zeros({1, config_.num_key_value_heads, static_cast<int64_t>(tokens[r].size()),
                          config_.head_dim});
      for (PagedKvCache& cache : *caches[r]) {
        cache.append(zeros, zeros);
        grown.push_back(&cache);
        sequences[r].pages.push_back(cache.page_ids());
      }
    }
  } catch (const OutOfPages&) {
    for (size_t i = 0; i < grown.size(); ++i) {
      grown[i]->rewind(static_cast<int64_t>(tokens[i / layers_.size()].size()));
    }
    throw;
  }
  return forward_pages(*pool_, tokens, sequences);
}

Tensor Qwen2Model::layer_forward(const Layer& layer, const Tensor& x, const Step& step,
                                 size_t index) const {
  const KernelChoice how = kernel_choice();
  Tensor qkv = layer.qkv.matmul(layer.input_norm.forward(x), how);
  qkv.rows().rowwise() += layer.qkv_bias.rows().row(0);
  const Tensor o = step_attention(config_, rope_, qkv, step, index, options_.threads);
  Tensor h = layer.wo.matmul(o, how);
  h.rows() += x.rows();
  const Tensor normed = layer.post_norm.forward(h);
  Tensor out =
      layer.experts ? experts_forward(*layer.experts, normed) : mlp_forward(layer.mlp, normed);
  out.rows() += h.rows();
  return out;
}

Tensor Qwen2Model::mlp_forward(const Mlp& mlp, const Tensor& x) const {
  const KernelChoice how = kernel_choice();
  const Tensor gate_up = mlp.gate_up.matmul(x, how);
  const int64_t inter = mlp.gate_up.rows() / 2;
  Tensor act = silu(columns(gate_up, 0, inter));
  act.rows().array() *= gate_up.rows().rightCols(inter).array();
  return mlp.down.matmul(act, how);
}

Tensor Qwen2Model::experts_forward(const Experts& experts, const Tensor& x) const {
  // Chapter 3.3's routing and grouping; the products are the engine's. The router's and the
  // gate's f32 products are exact, and each row of them bitwise its own (weight_matrix.hpp), so a
  // token's experts do not depend on what else shares the step.
  const MoeConfig& moe = *config_.moe;
  const KernelChoice exact = KernelChoice::exact(options_.threads);
  const Routing routing =
      top_k_routing(experts.router.matmul(x, exact), moe.num_experts_per_tok, moe.norm_topk_prob);
  Tensor out = combine_experts_grouped(
      x, routing, static_cast<int64_t>(experts.experts.size()), [&](int64_t e, const Tensor& rows) {
        return mlp_forward(experts.experts[static_cast<size_t>(e)], rows);
      });
  if (experts.shared) {
    add_gated_shared_expert(out, mlp_forward(*experts.shared, x), experts.gate->matmul(x, exact));
  }
  return out;
}

Tensor Qwen2Model::run(const Step& step, bool last_only) const {
  const int64_t e = config_.hidden_size;
  Tensor x({step.rows, e});
  for (int64_t m = 0; m < step.rows; ++m) {
    embedding_.rows_f32(step.ids[static_cast<size_t>(m)], 1, x.data() + m * e);
  }
  for (size_t i = 0; i < layers_.size(); ++i) x = layer_forward(layers_[i], x, step, i);
  std::vector<int64_t> kept;  // activation row of each logits row
  if (last_only) {
    kept = step.last_rows();
    Tensor last({static_cast<int64_t>(kept.size()), e});
    for (size_t r = 0; r < kept.size(); ++r) {
      last.rows().row(static_cast<int64_t>(r)) = x.rows().row(kept[r]);
    }
    x = std::move(last);
  }
  const Tensor logits = (head_ ? *head_ : embedding_).matmul(norm_->forward(x), kernel_choice());
  check_finite(logits, step, kept);
  return logits;
}

void Qwen2Model::check_finite(const Tensor& logits, const Step& step,
                              const std::vector<int64_t>& kept) const {
  const int64_t V = logits.dim(1);
  for (int64_t r = 0; r < logits.dim(0); ++r) {
    const float* row = logits.data() + r * V;
    if (find_non_finite(std::span<const float>(row, static_cast<size_t>(V))) < 0) continue;
    const int64_t m = kept.empty() ? r : kept[static_cast<size_t>(r)];
    // Which sequence row and position the activation row m is.
    int64_t sequence = 0, position = 0;
    for (const StepGroup& g : step.groups) {
      if (m < g.first_row + g.batch * g.length) {
        const int64_t local = m - g.first_row;
        sequence += local / g.length;
        position = g.offset + local % g.length;
        break;
      }
      sequence += g.batch;
    }
    check_finite_logits(Tensor({V}, std::vector<float>(row, row + V)), position,
                        "Qwen2Model, sequence " + std::to_string(sequence));
  }
}

}  // namespace tinyllm::engine
