#include "engine/model/qwen2_engine.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include <tinyllm/ch1_4_rmsnorm_mlp/mlp.hpp>
#include <tinyllm/ch1_5_qwen2_model/embedding.hpp>
#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>

#include "engine/model/mlx_checkpoint.hpp"
#include "tinyllm/errors.hpp"

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

// The same columns viewed as B x L' x heads x D (M = B L'), the layout RoPE takes.
Tensor head_columns(const Tensor& t, int64_t begin, int64_t count, int64_t batch, int64_t length,
                    int64_t head_dim) {
  return columns(t, begin, count).reshape({batch, length, count / head_dim, head_dim});
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

Qwen2Engine::Qwen2Engine(const Qwen2Config& config, const Checkpoint& checkpoint,
                         EngineOptions options)
    : config_(config),
      options_(options),
      rope_(config.head_dim, config.max_position_embeddings, config.rope_theta,
            /*traditional=*/false) {
  check_supported_config(config_, "Qwen2Engine");
  if (config_.quantization) {
    load_mlx(checkpoint);
  } else {
    load_dense(checkpoint);
  }
}

void Qwen2Engine::load_dense(const Checkpoint& checkpoint) {
  options_.weights = check_weight_spec(options_.weights);
  const WeightSpec head = head_spec(options_);
  Qwen2ModelWeights w = load_qwen2_model_weights(checkpoint, config_);
  const float eps = config_.rms_norm_eps;
  for (Qwen2BlockWeights& b : w.layers) {
    const Qwen2AttentionWeights& a = b.attention;
    std::vector<WeightMatrix> qkv, gate_up;
    qkv.emplace_back(stack_rows({&a.wq, &a.wk, &a.wv}), options_.weights);
    gate_up.emplace_back(stack_rows({&b.w_gate, &b.w_up}), options_.weights);
    layers_.push_back(Layer{
        RMSNorm(config_.hidden_size, std::move(b.w_input_layernorm), eps),
        RMSNorm(config_.hidden_size, std::move(b.w_post_attention_layernorm), eps),
        StackedMatrix(std::move(qkv)),
        WeightMatrix(a.wo, options_.weights),
        StackedMatrix(std::move(gate_up)),
        WeightMatrix(b.w_down, options_.weights),
        concat_vectors({&a.bq, &a.bk, &a.bv}),
    });
    b = Qwen2BlockWeights{};  // frees this layer's f32 copy before the next one is converted
  }
  embedding_ = WeightMatrix(w.embed_tokens, head);
  w.embed_tokens = Tensor();
  if (!config_.tie_word_embeddings) head_.emplace(w.lm_head, head);
  norm_.emplace(config_.hidden_size, std::move(w.norm), eps);
}

void Qwen2Engine::load_mlx(const Checkpoint& checkpoint) {
  const QuantizationConfig& q = *config_.quantization;
  if (options_.weights.format != WeightFormat::F32 || options_.weights.group_size != 0 ||
      options_.head_format) {
    throw InvalidArgument(
        "Qwen2Engine: " + checkpoint.dir().string() + " is an MLX checkpoint already quantized (" +
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
    const Tensor bq = vector(a + "q_proj.bias", q_rows), bk = vector(a + "k_proj.bias", kv_rows),
                 bv = vector(a + "v_proj.bias", kv_rows);
    layers_.push_back(Layer{
        RMSNorm(e, vector(p + "input_layernorm.weight", e), eps),
        RMSNorm(e, vector(p + "post_attention_layernorm.weight", e), eps),
        StackedMatrix(std::move(qkv)),
        matrix(a + "o_proj", e, q_rows),
        StackedMatrix(std::move(gate_up)),
        matrix(m + "down_proj", e, inter),
        concat_vectors({&bq, &bk, &bv}),
    });
  }
  embedding_ = matrix("model.embed_tokens", config_.vocab_size, e);
  if (!config_.tie_word_embeddings) head_.emplace(matrix("lm_head", config_.vocab_size, e));
  norm_.emplace(e, vector("model.norm.weight", e), eps);
}

std::vector<KvCache> Qwen2Engine::create_kv_caches(int64_t batch) const {
  return std::vector<KvCache>(static_cast<size_t>(config_.num_hidden_layers),
                              KvCache(batch, config_.num_key_value_heads, config_.head_dim,
                                      config_.max_position_embeddings));
}

int64_t Qwen2Engine::weight_bytes() const {
  int64_t n = head_ ? head_->bytes() : embedding_.bytes();
  for (const Layer& l : layers_)
    n += l.qkv.bytes() + l.wo.bytes() + l.gate_up.bytes() + l.down.bytes();
  return n;
}

void Qwen2Engine::check_forward_args(const std::vector<TokenIds>& tokens, int64_t offset,
                                     const std::vector<KvCache>& caches) const {
  check_token_batch(tokens, config_.vocab_size, "Qwen2Engine::forward");
  const auto length = static_cast<int64_t>(tokens[0].size());
  if (caches.size() != layers_.size()) {
    throw InvalidArgument("Qwen2Engine::forward: got " + std::to_string(caches.size()) +
                          " caches for " + std::to_string(layers_.size()) + " layers");
  }
  for (const KvCache& cache : caches) {
    if (cache.batch() != static_cast<int64_t>(tokens.size())) {
      throw ShapeError("Qwen2Engine::forward: " + std::to_string(tokens.size()) +
                       " rows of tokens, but the caches hold " + std::to_string(cache.batch()));
    }
    if (cache.offset() != offset) {
      throw InvalidArgument("Qwen2Engine::forward: offset " + std::to_string(offset) +
                            " but a cache holds " + std::to_string(cache.offset()) + " positions");
    }
  }
  if (offset + length > config_.max_position_embeddings) {
    throw ContextLengthError(
        "Qwen2Engine::forward: " + std::to_string(offset) + " cached + " + std::to_string(length) +
        " new tokens do not fit into the context of " +
        std::to_string(config_.max_position_embeddings) + " (max_position_embeddings)");
  }
}

// qkv: (B L') x (H_q + 2 H) D -> o: (B L') x H_q D. Appends k and v to the cache, then attends to
// the cache's own buffers through keys_of / values_of (no copy of the S cached positions).
Tensor Qwen2Engine::attention(const Tensor& qkv, int64_t batch, int64_t length, int64_t offset,
                              KvCache& cache) const {
  const int64_t hq = config_.num_attention_heads, h = config_.num_key_value_heads;
  const int64_t d = config_.head_dim, group = hq / h, width = hq * d;
  const Tensor q = rope_.forward(head_columns(qkv, 0, width, batch, length, d), offset);
  const Tensor k = rope_.forward(head_columns(qkv, width, h * d, batch, length, d), offset);
  const Tensor v = head_columns(qkv, width + h * d, h * d, batch, length, d);
  cache.append(k.transpose(1, 2), v.transpose(1, 2));  // B x H x L' x D each, no copy out
  const int64_t S = cache.offset();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  Tensor out({batch * length, width});
  constexpr int kTile = 32;
  if (length == 1) {
    // Decode: the g query heads of KV head j are g adjacent rows of D floats; no mask (L' = 1).
#pragma omp parallel for collapse(2) schedule(static) num_threads(resolve_threads(options_.threads))
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < h; ++j) {
        FlashState state(group, d);
        attend_kv_range(q.data() + b * width + j * group * d, d, cache.keys_of(b, j).data(),
                        cache.values_of(b, j).data(), d, 0, S, scale, HeadMask{}, 0, kTile, state);
        state.finalize(out.data() + b * width + j * group * d, d);
      }
    }
    return out;
  }
  // Prefill: every (row, query head, tile of queries) on its own, bottom-right causal mask.
  const int64_t tiles = (length + kTile - 1) / kTile;
  const HeadMask causal{AttentionMask::Kind::Causal, S - length, nullptr, 0, 0};
#pragma omp parallel for collapse(3) schedule(dynamic) \
    num_threads(resolve_threads(options_.threads))
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < hq; ++i) {
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t row0 = t * kTile, rows = std::min<int64_t>(kTile, length - row0);
        const int64_t first = (b * length + row0) * width + i * d;  // q and out: row stride width
        FlashState state(rows, d);
        attend_kv_range(q.data() + first, width, cache.keys_of(b, i / group).data(),
                        cache.values_of(b, i / group).data(), d, 0, S, scale, causal, row0, kTile,
                        state);
        state.finalize(out.data() + first, width);
      }
    }
  }
  return out;
}

Tensor Qwen2Engine::layer_forward(const Layer& layer, const Tensor& x, int64_t batch,
                                  int64_t length, int64_t offset, KvCache& cache) const {
  const KernelChoice how{options_.threads, options_.int8_decode, options_.bf16_prefill};
  Tensor qkv = layer.qkv.matmul(layer.input_norm.forward(x), how);
  qkv.rows().rowwise() += layer.qkv_bias.rows().row(0);
  Tensor h = layer.wo.matmul(attention(qkv, batch, length, offset, cache), how);
  h.rows() += x.rows();
  const Tensor gate_up = layer.gate_up.matmul(layer.post_norm.forward(h), how);
  const int64_t inter = config_.intermediate_size;
  Tensor act = silu(columns(gate_up, 0, inter));
  act.rows().array() *= gate_up.rows().rightCols(inter).array();
  Tensor out = layer.down.matmul(act, how);
  out.rows() += h.rows();
  return out;
}

Tensor Qwen2Engine::forward(const std::vector<TokenIds>& tokens, int64_t offset,
                            std::vector<KvCache>& caches, bool last_only) const {
  check_forward_args(tokens, offset, caches);
  const auto batch = static_cast<int64_t>(tokens.size());
  const auto length = static_cast<int64_t>(tokens[0].size());
  const int64_t e = config_.hidden_size, vocab = config_.vocab_size;
  Tensor x({batch * length, e});
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t l = 0; l < length; ++l) {
      embedding_.rows_f32(tokens[static_cast<size_t>(b)][static_cast<size_t>(l)], 1,
                          x.data() + (b * length + l) * e);
    }
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    x = layer_forward(layers_[i], x, batch, length, offset, caches[i]);
  }
  int64_t kept = length;
  if (last_only && length > 1) {
    Tensor last({batch, e});
    for (int64_t b = 0; b < batch; ++b) last.rows().row(b) = x.rows().row((b + 1) * length - 1);
    x = std::move(last);
    kept = 1;
  }
  const KernelChoice how{options_.threads, options_.int8_decode, options_.bf16_prefill};
  const Tensor logits = (head_ ? *head_ : embedding_).matmul(norm_->forward(x), how);
  return logits.reshape({batch, kept, vocab});
}

Qwen2Engine load_qwen2_engine(const std::filesystem::path& model_dir, EngineOptions options) {
  const Qwen2Config config = load_qwen2_config(model_dir / "config.json");
  return Qwen2Engine(config, Checkpoint::open(model_dir), options);
}

Generation engine_generate_tokens(const Qwen2Engine& engine, const TokenIds& prompt,
                                  const GenerationOptions& options, const TokenPicker& pick,
                                  const TokenCallback& on_token) {
  check_generation_request(static_cast<int64_t>(prompt.size()), options,
                           engine.config().max_position_embeddings);
  Generation result;
  std::vector<KvCache> caches = engine.create_kv_caches();
  TokenIds step = prompt;  // the prompt first (prefill), then each picked id (decode)
  while (static_cast<int64_t>(result.tokens.size()) < options.max_new_tokens) {
    const Tensor logits = engine.forward({step}, caches[0].offset(), caches, /*last_only=*/true);
    const TokenId id = pick(logits.reshape({logits.dim(2)}));
    if (std::count(options.stop_ids.begin(), options.stop_ids.end(), id) > 0) {
      result.stop_reason = StopReason::StopToken;
      result.stop_token = id;
      return result;
    }
    result.tokens.push_back(id);
    if (on_token) on_token(id);
    step = {id};
  }
  result.stop_reason = StopReason::MaxTokens;
  return result;
}

TextGeneration engine_generate_text(const Qwen2Engine& engine, const Tokenizer& tokenizer,
                                    std::string_view prompt, GenerationOptions options,
                                    const TokenPicker& pick, const TextCallback& on_text) {
  TextGeneration result;
  const TokenIds ids = tokenizer.encode(prompt);
  result.prompt_tokens = static_cast<int64_t>(ids.size());
  if (options.stop_ids.empty()) options.stop_ids = default_stop_ids(engine.config(), &tokenizer);
  StreamingDecoder decoder(tokenizer);
  const auto emit = [&](const std::string& text) {
    result.text += text;
    if (on_text && !text.empty()) on_text(text);
  };
  result.generation = engine_generate_tokens(engine, ids, options, pick,
                                             [&](TokenId id) { emit(decoder.push(id)); });
  emit(decoder.finish());
  return result;
}

}  // namespace tinyllm::engine
