// The three shipped model directories (data/models, issue 3) load with the core loaders as they
// are: config.json (Qwen2 or Qwen2-MoE), tokenizer.json, and exactly the tensors the config
// implies, each with its shape and finite values. Plus the Qwen2-MoE config parser's own checks.
#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

namespace fs = std::filesystem;
using TensorShapes = std::map<std::string, Shape>;

fs::path model_dir(const std::string& name) {
  return testing::data_dir() / "models" / name;
}

// Attention, norms and embeddings: the tensors every Qwen2-family layer and model has.
TensorShapes attention_and_norm_tensors(const Qwen2Config& c) {
  const int64_t e = c.hidden_size, q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  TensorShapes out{{"model.embed_tokens.weight", {c.vocab_size, e}}, {"model.norm.weight", {e}}};
  if (!c.tie_word_embeddings) out["lm_head.weight"] = {c.vocab_size, e};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out[p + "input_layernorm.weight"] = {e};
    out[p + "post_attention_layernorm.weight"] = {e};
    out[p + "self_attn.q_proj.weight"] = {q, e};
    out[p + "self_attn.q_proj.bias"] = {q};
    out[p + "self_attn.k_proj.weight"] = {kv, e};
    out[p + "self_attn.k_proj.bias"] = {kv};
    out[p + "self_attn.v_proj.weight"] = {kv, e};
    out[p + "self_attn.v_proj.bias"] = {kv};
    out[p + "self_attn.o_proj.weight"] = {e, q};
  }
  return out;
}

void add_swiglu(TensorShapes& out, const std::string& prefix, int64_t e, int64_t width) {
  out[prefix + "gate_proj.weight"] = {width, e};
  out[prefix + "up_proj.weight"] = {width, e};
  out[prefix + "down_proj.weight"] = {e, width};
}

TensorShapes dense_tensors(const Qwen2Config& c) {
  TensorShapes out = attention_and_norm_tensors(c);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    add_swiglu(out, "model.layers." + std::to_string(i) + ".mlp.", c.hidden_size,
               c.intermediate_size);
  }
  return out;
}

TensorShapes moe_tensors(const Qwen2Config& c) {
  const MoeConfig& m = c.moe.value();
  TensorShapes out = attention_and_norm_tensors(c);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string mlp = "model.layers." + std::to_string(i) + ".mlp.";
    if (!m.is_sparse_layer(i)) {
      add_swiglu(out, mlp, c.hidden_size, c.intermediate_size);
      continue;
    }
    out[mlp + "gate.weight"] = {m.num_experts, c.hidden_size};  // the router
    for (int64_t x = 0; x < m.num_experts; ++x) {
      add_swiglu(out, mlp + "experts." + std::to_string(x) + ".", c.hidden_size,
                 m.moe_intermediate_size);
    }
    if (m.shared_expert_intermediate_size > 0) {
      add_swiglu(out, mlp + "shared_expert.", c.hidden_size, m.shared_expert_intermediate_size);
      out[mlp + "shared_expert_gate.weight"] = {1, c.hidden_size};
    }
  }
  return out;
}

// The checkpoint holds exactly `expected` (names and shapes), and every tensor converts to
// finite f32 values.
void expect_checkpoint_holds(const fs::path& dir, const TensorShapes& expected) {
  const Checkpoint checkpoint = Checkpoint::open(dir);
  TensorShapes found;
  for (const std::string& name : checkpoint.names()) found[name] = checkpoint.info(name).shape;
  EXPECT_EQ(found, expected) << dir;
  for (const auto& [name, shape] : expected) {
    if (!checkpoint.contains(name)) continue;
    const Tensor t = checkpoint.load(name, shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
      ASSERT_TRUE(std::isfinite(t.data()[i])) << name << " element " << i;
    }
  }
}

void expect_tokenizer_round_trips(const fs::path& dir) {
  const Tokenizer tokenizer = Tokenizer::from_model_dir(dir);
  const std::string text = "<|im_start|>user\nWhat is 37 + 58?<|im_end|>\n";
  const TokenIds ids = tokenizer.encode(text);
  EXPECT_EQ(ids.front(), 4090) << "<|im_start|>";
  EXPECT_EQ(tokenizer.decode(ids), text);
}

TEST(ModelDirs, TinyQwen2LoadsAsQwen2) {
  const Qwen2Config c = load_qwen2_config(model_dir("tiny-qwen2"));
  EXPECT_EQ(c.num_hidden_layers, 8);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.moe);
  EXPECT_FALSE(c.rope_scaling);
  EXPECT_FALSE(c.quantization);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) EXPECT_FALSE(c.is_sparse_layer(i)) << i;
  expect_checkpoint_holds(model_dir("tiny-qwen2"), dense_tensors(c));
  expect_tokenizer_round_trips(model_dir("tiny-qwen2"));
}

TEST(ModelDirs, DraftLoadsAsQwen2) {
  const Qwen2Config c = load_qwen2_config(model_dir("tiny-qwen2-draft"));
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.vocab_size, load_qwen2_config(model_dir("tiny-qwen2")).vocab_size);
  EXPECT_FALSE(c.moe);
  expect_checkpoint_holds(model_dir("tiny-qwen2-draft"), dense_tensors(c));
  expect_tokenizer_round_trips(model_dir("tiny-qwen2-draft"));
}

TEST(ModelDirs, MoeLoadsAsQwen2WithExperts) {
  const Qwen2Config c = load_qwen2_config(model_dir("tiny-qwen2-moe"));
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.rope_scaling);
  ASSERT_TRUE(c.moe);
  const MoeConfig& m = *c.moe;
  EXPECT_EQ(m.num_experts, 8);
  EXPECT_EQ(m.num_experts_per_tok, 2);
  EXPECT_EQ(m.moe_intermediate_size, 128);
  EXPECT_EQ(m.shared_expert_intermediate_size, 384);
  EXPECT_FALSE(m.norm_topk_prob);
  EXPECT_EQ(m.decoder_sparse_step, 1);
  EXPECT_TRUE(m.mlp_only_layers.empty());
  for (int64_t i = 0; i < 4; ++i) EXPECT_TRUE(c.is_sparse_layer(i)) << i;
  EXPECT_EQ(c.eos_token_ids.front(), 4091);
  expect_checkpoint_holds(model_dir("tiny-qwen2-moe"), moe_tensors(c));
  expect_tokenizer_round_trips(model_dir("tiny-qwen2-moe"));
}

// A small valid Qwen2-MoE config with one field replaced (or added) by `field`: `value`.
std::string moe_config_with(const std::string& field, const std::string& value) {
  std::string json = R"({"model_type": "qwen2_moe", "vocab_size": 64, "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
    "num_key_value_heads": 1, "max_position_embeddings": 32, "rms_norm_eps": 1e-6,
    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8,
    "shared_expert_intermediate_size": 24, "decoder_sparse_step": 2, "mlp_only_layers": [3])";
  return json + ", \"" + field + "\": " + value + "}";
}

TEST(MoeConfig, SparseLayersFollowStepAndMlpOnlyLayers) {
  const Qwen2Config c = parse_qwen2_config(moe_config_with("norm_topk_prob", "true"));
  ASSERT_TRUE(c.moe);
  EXPECT_TRUE(c.moe->norm_topk_prob);
  EXPECT_EQ(c.moe->decoder_sparse_step, 2);
  EXPECT_EQ(c.moe->mlp_only_layers, std::vector<int64_t>{3});
  EXPECT_EQ(c.intermediate_size, 32);  // the dense layers' MLP width
  // Layers 1 and 3 have (i + 1) % 2 == 0; layer 3 is listed in mlp_only_layers.
  EXPECT_FALSE(c.is_sparse_layer(0));
  EXPECT_TRUE(c.is_sparse_layer(1));
  EXPECT_FALSE(c.is_sparse_layer(2));
  EXPECT_FALSE(c.is_sparse_layer(3));
  EXPECT_TRUE(c.moe->is_sparse_layer(1));
}

TEST(MoeConfig, ArchitecturesWithoutModelTypePickTheFamily) {
  nlohmann::json j = nlohmann::json::parse(moe_config_with("norm_topk_prob", "true"));
  j.erase("model_type");
  j["architectures"] = {"Qwen2MoeForCausalLM"};
  EXPECT_TRUE(parse_qwen2_config(j.dump()).moe);
  j["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_FALSE(parse_qwen2_config(j.dump()).moe);
}

TEST(MoeConfig, DenseConfigIgnoresExpertFields) {
  // A "qwen2" config that happens to carry expert fields is still dense.
  std::string json = moe_config_with("norm_topk_prob", "true");
  json.replace(json.find("qwen2_moe"), 9, "qwen2");
  EXPECT_FALSE(parse_qwen2_config(json).moe);
}

TEST(MoeConfig, RejectsInconsistentExpertFields) {
  EXPECT_THROW(parse_qwen2_config(moe_config_with("num_experts_per_tok", "5")), ConfigError);
  EXPECT_THROW(parse_qwen2_config(moe_config_with("num_experts", "0")), ConfigError);
  EXPECT_THROW(parse_qwen2_config(moe_config_with("shared_expert_intermediate_size", "-1")),
               ConfigError);
  EXPECT_THROW(parse_qwen2_config(moe_config_with("mlp_only_layers", "[4]")), ConfigError);
  EXPECT_THROW(parse_qwen2_config(moe_config_with("moe_intermediate_size", "\"8\"")), ConfigError);
  EXPECT_THROW(parse_qwen2_config("{\"model_type\": \"qwen2_moe\", "), FormatError);
}

TEST(MoeConfig, MissingExpertFieldIsConfigErrorNamingIt) {
  std::string json = moe_config_with("norm_topk_prob", "true");
  json.replace(json.find(R"("num_experts": 4, )"), 18, "");
  try {
    parse_qwen2_config(json);
    ADD_FAILURE() << "no exception";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("num_experts"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tinyllm
