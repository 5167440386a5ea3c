#include "tinyllm/config.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tinyllm/errors.hpp"

namespace tinyllm {
namespace {

using json = nlohmann::json;

json parse_json(const std::string& text, const std::string& source_name) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.what() carries the parser's position, e.g. "syntax error while parsing object - ... at line
    // 3, column 5".
    throw FormatError(source_name + " is not valid JSON: " + e.what());
  }
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError("cannot read " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Typed access to one config field; every message names the field and the file.
class Fields {
 public:
  Fields(const json& root, const std::string& source) : root_(root), source_(source) {}

  bool has(const char* key) const { return root_.contains(key) && !root_[key].is_null(); }

  const json& require(const char* key) const {
    if (!has(key)) throw ConfigError(source_ + " has no \"" + key + "\" (a Qwen2 config needs it)");
    return root_[key];
  }

  int64_t integer(const char* key) const { return to_integer(require(key), key); }
  int64_t integer(const char* key, int64_t fallback) const {
    return has(key) ? integer(key) : fallback;
  }

  int64_t positive(const char* key) const { return check_positive(integer(key), key); }
  int64_t positive(const char* key, int64_t fallback) const {
    return check_positive(integer(key, fallback), key);
  }

  float number(const char* key) const {
    const json& v = require(key);
    if (!v.is_number()) throw type_error(key, "a number", v);
    const double d = v.get<double>();
    if (!(d > 0.0) || d > std::numeric_limits<float>::max()) {
      throw ConfigError(source_ + ": \"" + key + "\" must be a positive number, got " + v.dump());
    }
    return static_cast<float>(d);
  }
  float number(const char* key, float fallback) const { return has(key) ? number(key) : fallback; }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = root_[key];
    if (!v.is_boolean()) throw type_error(key, "true or false", v);
    return v.get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = root_[key];
    if (!v.is_string()) throw type_error(key, "a string", v);
    return v.get<std::string>();
  }

  /// An int or a list of ints (eos_token_id); empty if absent.
  std::vector<int64_t> integers(const char* key) const {
    std::vector<int64_t> out;
    if (!has(key)) return out;
    const json& v = root_[key];
    if (v.is_array()) {
      for (const json& item : v) out.push_back(to_integer(item, key));
    } else if (v.is_number_integer()) {
      out.push_back(to_integer(v, key));
    } else {
      throw type_error(key, "an integer or a list of integers", v);
    }
    return out;
  }

  ConfigError type_error(const char* key, const char* expected, const json& v) const {
    return ConfigError(source_ + ": \"" + key + "\" must be " + expected + ", got " +
                       v.type_name() + " " + v.dump());
  }

 private:
  int64_t to_integer(const json& v, const char* key) const {
    if (!v.is_number_integer()) throw type_error(key, "an integer", v);
    if (v.is_number_unsigned() &&
        v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw ConfigError(source_ + ": \"" + key + "\" is too large: " + v.dump());
    }
    return v.get<int64_t>();
  }

  int64_t check_positive(int64_t value, const char* key) const {
    if (value <= 0) {
      throw ConfigError(source_ + ": \"" + key + "\" must be a positive integer, got " +
                        std::to_string(value));
    }
    return value;
  }

  const json& root_;
  const std::string& source_;
};

// The families a config.json may describe: its model_type, or (for configs without one) the class
// name its "architectures" list contains.
struct Architecture {
  const char* model_type;
  const char* class_name;
};
constexpr Architecture kQwen2{"qwen2", "Qwen2ForCausalLM"};
constexpr Architecture kQwen2Moe{"qwen2_moe", "Qwen2MoeForCausalLM"};

// Whether the config describes a Qwen2-MoE model (true) or a dense Qwen2 (false); ConfigError for
// any other family.
bool is_moe_architecture(const json& root, const std::string& source) {
  const Fields f(root, source);
  if (f.has("model_type")) {
    const std::string model_type = f.string("model_type", "");
    if (model_type == kQwen2.model_type) return false;
    if (model_type == kQwen2Moe.model_type) return true;
    throw ConfigError(source + " describes a \"" + model_type +
                      "\" model (model_type), but this loader reads \"" + kQwen2.model_type +
                      "\" and \"" + kQwen2Moe.model_type + "\" models");
  }
  std::string found;
  if (f.has("architectures")) {
    const json& arch = root["architectures"];
    if (!arch.is_array()) throw f.type_error("architectures", "a list of strings", arch);
    for (const json& a : arch) {
      if (!a.is_string()) throw f.type_error("architectures", "a list of strings", arch);
      if (a.get<std::string>() == kQwen2.class_name) return false;
      if (a.get<std::string>() == kQwen2Moe.class_name) return true;
      found += (found.empty() ? "" : ", ") + a.get<std::string>();
    }
  }
  throw ConfigError(source + " has no model_type, and its architectures [" + found +
                    "] include neither " + kQwen2.class_name + " nor " + kQwen2Moe.class_name);
}

// One RoPE-scaling object (HF's "rope_scaling", or transformers 5's "rope_parameters"), read from
// `where`; nullopt for the "default" type (plain RoPE).
std::optional<RopeScaling> parse_rope_scaling(const json& v, const std::string& where) {
  if (!v.is_object()) {
    throw ConfigError(
        where + " must be an object {\"type\": \"yarn\", \"factor\": 4.0, ...}, got " + v.dump());
  }
  const Fields f(v, where);
  // transformers reads "rope_type" and falls back to the older "type".
  const char* type_key = f.has("rope_type") ? "rope_type" : "type";
  const std::string type = f.string(type_key, "default");
  RopeScaling r;
  if (type == "default") {
    return std::nullopt;
  } else if (type == "linear") {
    r.type = RopeScaling::Type::Linear;
  } else if (type == "dynamic") {
    r.type = RopeScaling::Type::Dynamic;
  } else if (type == "yarn") {
    r.type = RopeScaling::Type::Yarn;
  } else {
    throw ConfigError(where + ": RoPE scaling type \"" + type +
                      "\" is not supported (only \"linear\", \"dynamic\" and \"yarn\" are)");
  }
  r.factor = f.number("factor");
  if (r.factor < 1.0f) {
    throw ConfigError(where + ": \"factor\" must be >= 1 (how many times the original context), " +
                      "got " + v["factor"].dump());
  }
  if (f.has("original_max_position_embeddings")) {
    r.original_max_position_embeddings = f.positive("original_max_position_embeddings");
  }
  if (r.type == RopeScaling::Type::Yarn) {
    r.beta_fast = f.number("beta_fast", r.beta_fast);
    r.beta_slow = f.number("beta_slow", r.beta_slow);
    if (f.has("attention_factor")) r.attention_factor = f.number("attention_factor");
  }
  return r;
}

// transformers 5 writes {"rope_parameters": {"rope_type": "default", "rope_theta": ...}} and may
// omit the top-level "rope_theta" that older configs have; a scaled rope_type there carries the
// RoPE scaling that older configs write as "rope_scaling".
float rope_theta_from_parameters(const json& root, const std::string& source) {
  const auto it = root.find("rope_parameters");
  if (it == root.end() || it->is_null()) return 10000.0f;
  if (!it->is_object())
    throw ConfigError(source + ": rope_parameters must be an object, got " + it->dump());
  const auto theta = it->find("rope_theta");
  if (theta == it->end()) return 10000.0f;
  if (!theta->is_number() || theta->get<double>() <= 0) {
    throw ConfigError(source + ": rope_parameters.rope_theta must be a positive number, got " +
                      theta->dump());
  }
  return theta->get<float>();
}

// "rope_scaling" when present, else the scaling part of "rope_parameters".
std::optional<RopeScaling> parse_rope_scaling(const json& root, const Fields& f,
                                              const std::string& source) {
  if (f.has("rope_scaling"))
    return parse_rope_scaling(root["rope_scaling"], source + ": rope_scaling");
  if (f.has("rope_parameters")) {
    return parse_rope_scaling(root["rope_parameters"], source + ": rope_parameters");
  }
  return std::nullopt;
}

// The experts of a Qwen2-MoE config, checked against each other and the layer count.
MoeConfig parse_moe(const json& root, const std::string& source_name, int64_t num_layers) {
  const Fields f(root, source_name);
  MoeConfig m;
  m.num_experts = f.positive("num_experts");
  m.num_experts_per_tok = f.positive("num_experts_per_tok");
  m.moe_intermediate_size = f.positive("moe_intermediate_size");
  m.shared_expert_intermediate_size = f.integer("shared_expert_intermediate_size", 0);
  m.norm_topk_prob = f.boolean("norm_topk_prob", false);
  m.decoder_sparse_step = f.positive("decoder_sparse_step", 1);
  m.mlp_only_layers = f.integers("mlp_only_layers");
  if (m.num_experts_per_tok > m.num_experts) {
    throw ConfigError(source_name + ": num_experts_per_tok " +
                      std::to_string(m.num_experts_per_tok) + " exceeds num_experts " +
                      std::to_string(m.num_experts) + " (top-k picks k of the experts)");
  }
  if (m.shared_expert_intermediate_size < 0) {
    throw ConfigError(source_name + ": shared_expert_intermediate_size must be >= 0 (0: no " +
                      "shared expert), got " + std::to_string(m.shared_expert_intermediate_size));
  }
  for (int64_t layer : m.mlp_only_layers) {
    if (layer < 0 || layer >= num_layers) {
      throw ConfigError(source_name + ": mlp_only_layers lists layer " + std::to_string(layer) +
                        ", but the model has " + std::to_string(num_layers) + " layers");
    }
  }
  return m;
}

// One {"group_size": G, "bits": b} object of a "quantization" entry, checked against what chapter
// 2.2's format holds.
QuantizationSpec parse_quantization_spec(const json& v, const std::string& where) {
  const Fields f(v, where);
  QuantizationSpec spec;
  spec.group_size = static_cast<int>(f.integer("group_size"));
  spec.bits = static_cast<int>(f.integer("bits"));
  if (spec.bits != 4 && spec.bits != 8) {
    throw ConfigError(where + ": " + std::to_string(spec.bits) +
                      "-bit quantization is not supported (only 4 and 8 bits are: chapter 2.2's "
                      "MLX affine format)");
  }
  if (spec.group_size != 32 && spec.group_size != 64 && spec.group_size != 128) {
    throw ConfigError(where + ": group_size " + std::to_string(spec.group_size) +
                      " is not supported (only 32, 64 and 128 are)");
  }
  return spec;
}

// "quantization" (mlx-lm), else "quantization_config" when it is mlx-lm's (no "quant_method":
// transformers' GPTQ/AWQ/bitsandbytes configs have one, and their weights are another format).
std::optional<QuantizationConfig> parse_quantization(const json& root, const std::string& source) {
  const char* key = root.contains("quantization") && !root["quantization"].is_null()
                        ? "quantization"
                        : "quantization_config";
  const auto it = root.find(key);
  if (it == root.end() || it->is_null()) return std::nullopt;
  const std::string where = source + ": \"" + key + "\"";
  if (!it->is_object()) {
    throw ConfigError(where + " must be an object {\"group_size\": 64, \"bits\": 4}, got " +
                      it->dump());
  }
  if (it->contains("quant_method")) {
    throw ConfigError(where + " has quant_method " + (*it)["quant_method"].dump() +
                      ", which is not supported (only MLX checkpoints are: \"quantization\": " +
                      "{\"group_size\": 64, \"bits\": 4})");
  }
  const std::string mode = Fields(*it, where).string("mode", "affine");
  if (mode != "affine") {
    throw ConfigError(where + ": mode \"" + mode + "\" is not supported (only \"affine\" is)");
  }
  QuantizationConfig q;
  q.defaults = parse_quantization_spec(*it, where);
  for (const auto& [name, value] : it->items()) {
    if (name == "group_size" || name == "bits" || name == "mode") continue;
    const std::string layer = where + "[\"" + name + "\"]";
    if (value.is_object()) {
      q.layers[name] = parse_quantization_spec(value, layer);
    } else if (value.is_boolean()) {
      q.layers[name] = value.get<bool>() ? std::optional(q.defaults) : std::nullopt;
    } else {
      throw ConfigError(layer + " must be a layer override ({\"group_size\": G, \"bits\": b} or " +
                        "false), got " + value.dump());
    }
  }
  return q;
}

void append_unique(std::vector<int64_t>& ids, const std::vector<int64_t>& more) {
  for (int64_t id : more) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
}

// The fields of every Qwen2-family config (attention, norms, embeddings, RoPE, context), plus the
// experts of a Qwen2-MoE one.
Qwen2Config parse_config_fields(const json& root, const std::string& source_name) {
  const Fields f(root, source_name);
  const bool moe = is_moe_architecture(root, source_name);

  Qwen2Config c;
  c.vocab_size = f.positive("vocab_size");
  c.hidden_size = f.positive("hidden_size");
  c.intermediate_size = f.positive("intermediate_size");
  c.num_hidden_layers = f.positive("num_hidden_layers");
  c.num_attention_heads = f.positive("num_attention_heads");
  c.num_key_value_heads = f.positive("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = f.positive("max_position_embeddings");
  c.rms_norm_eps = f.number("rms_norm_eps");
  c.rope_theta = f.number("rope_theta", rope_theta_from_parameters(root, source_name));
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  // Recent transformers versions write "dtype", older ones "torch_dtype".
  c.torch_dtype = f.string("torch_dtype", f.string("dtype", ""));
  c.eos_token_ids = f.integers("eos_token_id");
  c.quantization = parse_quantization(root, source_name);
  c.rope_scaling = parse_rope_scaling(root, f, source_name);

  if (c.hidden_size % c.num_attention_heads != 0) {
    throw ConfigError(source_name + ": hidden_size " + std::to_string(c.hidden_size) +
                      " is not divisible by num_attention_heads " +
                      std::to_string(c.num_attention_heads));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw ConfigError(
        source_name + ": num_attention_heads " + std::to_string(c.num_attention_heads) +
        " is not divisible by num_key_value_heads " + std::to_string(c.num_key_value_heads) +
        " (grouped-query attention shares each K/V head among a whole number of query heads)");
  }
  c.head_dim = f.positive("head_dim", c.hidden_size / c.num_attention_heads);
  if (moe) c.moe = parse_moe(root, source_name, c.num_hidden_layers);
  return c;
}

}  // namespace

std::optional<QuantizationSpec> QuantizationConfig::of(const std::string& path) const {
  const auto it = layers.find(path);
  return it == layers.end() ? std::optional(defaults) : it->second;
}

bool MoeConfig::is_sparse_layer(int64_t layer) const {
  const bool dense_by_choice =
      std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end();
  return !dense_by_choice && (layer + 1) % decoder_sparse_step == 0;
}

const char* RopeScaling::type_name(Type type) {
  switch (type) {
    case Type::Linear:
      return "linear";
    case Type::Dynamic:
      return "dynamic";
    case Type::Yarn:
      return "yarn";
  }
  return "?";
}

Qwen2Config parse_qwen2_config(const std::string& json_text, const std::string& source_name) {
  const json root = parse_json(json_text, source_name);
  if (!root.is_object()) {
    throw ConfigError(source_name +
                      " must contain a JSON object {\"hidden_size\": ..., ...}, got " +
                      std::string(root.type_name()));
  }
  return parse_config_fields(root, source_name);
}

Qwen2Config load_qwen2_config(const std::filesystem::path& config_json) {
  std::filesystem::path path = config_json;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) path /= "config.json";
  if (!std::filesystem::exists(path, ec))
    throw FormatError("config file " + path.string() + " does not exist");
  Qwen2Config config = parse_qwen2_config(read_text_file(path), path.string());

  // generation_config.json (when present beside config.json) lists the end-of-sequence ids that
  // generation uses.
  const auto generation = path.parent_path() / "generation_config.json";
  if (std::filesystem::exists(generation, ec)) {
    const json root = parse_json(read_text_file(generation), generation.string());
    if (!root.is_object()) throw ConfigError(generation.string() + " must contain a JSON object");
    const std::string source = generation.string();
    append_unique(config.eos_token_ids, Fields(root, source).integers("eos_token_id"));
  }
  return config;
}

}  // namespace tinyllm
