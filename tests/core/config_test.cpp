// Qwen2Config parsing and validation (config.json and generation_config.json as Hugging Face writes
// them).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

namespace fs = std::filesystem;

// The config.json of Qwen2.5-0.5B-Instruct (abridged only in that it is on fewer lines).
const char* const kQwen25Config = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// The smallest config that parses: every required field, nothing else.
std::string minimal(const std::string& extra = "") {
  return R"({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 16, "intermediate_size": 40,
             "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64,
             "rms_norm_eps": 1e-5)" +
         extra + "}";
}

// `minimal()` with one field replaced or removed (value "" removes it).
std::string with_field(const std::string& key, const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(minimal());
  if (value.empty()) {
    j.erase(key);
  } else {
    j[key] = nlohmann::json::parse(value);
  }
  return j.dump();
}

template <typename E>
void expect_error(const std::string& json, std::initializer_list<std::string> parts) {
  try {
    parse_qwen2_config(json, "test/config.json");
    ADD_FAILURE() << "expected an exception for " << json;
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(Config, Qwen25InstructConfig) {
  const Qwen2Config c = parse_qwen2_config(kQwen25Config);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.intermediate_size, 4864);
  EXPECT_EQ(c.num_hidden_layers, 24);
  EXPECT_EQ(c.num_attention_heads, 14);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
}

TEST(Config, MinimalConfigGetsDefaults) {
  const Qwen2Config c = parse_qwen2_config(minimal());
  EXPECT_EQ(c.num_key_value_heads, 4);  // = num_attention_heads
  EXPECT_EQ(c.head_dim, 4);             // = hidden_size / num_attention_heads
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.torch_dtype, "");
}

TEST(Config, TiedAndUntiedEmbeddings) {
  EXPECT_TRUE(parse_qwen2_config(minimal(R"(, "tie_word_embeddings": true)")).tie_word_embeddings);
  EXPECT_FALSE(
      parse_qwen2_config(minimal(R"(, "tie_word_embeddings": false)")).tie_word_embeddings);
}

TEST(Config, ExplicitHeadDimAndKvHeads) {
  const Qwen2Config c = parse_qwen2_config(
      minimal(R"(, "head_dim": 8, "num_key_value_heads": 2, "rope_theta": 5e5)"));
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_FLOAT_EQ(c.rope_theta, 5e5f);
}

TEST(Config, NullMeansDefault) {
  const Qwen2Config c = parse_qwen2_config(
      minimal(R"(, "num_key_value_heads": null, "head_dim": null, "rope_scaling": null)"));
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 4);
}

TEST(Config, EosTokenIdAsList) {
  EXPECT_EQ(parse_qwen2_config(minimal(R"(, "eos_token_id": [151645, 151643])")).eos_token_ids,
            (std::vector<int64_t>{151645, 151643}));
  expect_error<ConfigError>(minimal(R"(, "eos_token_id": "151645")"), {"eos_token_id"});
  expect_error<ConfigError>(minimal(R"(, "eos_token_id": [1, "x"])"), {"eos_token_id"});
}

TEST(Config, IgnoresUnknownFields) {
  const Qwen2Config c =
      parse_qwen2_config(minimal(R"(, "foo": {"bar": [1, 2]}, "sliding_window": null)"));
  EXPECT_EQ(c.hidden_size, 16);
}

TEST(Config, ArchitecturesWithoutModelType) {
  nlohmann::json j = nlohmann::json::parse(minimal());
  j.erase("model_type");
  j["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_EQ(parse_qwen2_config(j.dump()).hidden_size, 16);
  j["architectures"] = {"LlamaForCausalLM"};
  expect_error<ConfigError>(j.dump(), {"LlamaForCausalLM", "Qwen2"});
  j.erase("architectures");
  expect_error<ConfigError>(j.dump(), {"Qwen2"});
}

TEST(Config, WrongModelTypeIsConfigErrorNamingIt) {
  expect_error<ConfigError>(with_field("model_type", R"("llama")"),
                            {"llama", "qwen2", "test/config.json"});
  expect_error<ConfigError>(with_field("model_type", R"("qwen3")"), {"qwen3"});
}

TEST(Config, MissingRequiredFieldIsConfigErrorNamingIt) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "max_position_embeddings", "rms_norm_eps"}) {
    expect_error<ConfigError>(with_field(field, ""), {field, "test/config.json"});
  }
}

TEST(Config, WrongTypeIsConfigErrorNamingTheField) {
  expect_error<ConfigError>(with_field("hidden_size", R"("896")"), {"hidden_size"});
  expect_error<ConfigError>(with_field("hidden_size", "16.5"), {"hidden_size"});
  expect_error<ConfigError>(with_field("num_hidden_layers", "[2]"), {"num_hidden_layers"});
  expect_error<ConfigError>(with_field("rms_norm_eps", R"("1e-6")"), {"rms_norm_eps"});
  expect_error<ConfigError>(minimal(R"(, "tie_word_embeddings": "true")"), {"tie_word_embeddings"});
  expect_error<ConfigError>(minimal(R"(, "tie_word_embeddings": 1)"), {"tie_word_embeddings"});
  expect_error<ConfigError>(minimal(R"(, "rope_theta": "10000")"), {"rope_theta"});
  expect_error<ConfigError>(minimal(R"(, "torch_dtype": 16)"), {"torch_dtype"});
  expect_error<ConfigError>(with_field("model_type", "2"), {"model_type"});
}

TEST(Config, NonPositiveSizesAreConfigError) {
  expect_error<ConfigError>(with_field("vocab_size", "0"), {"vocab_size"});
  expect_error<ConfigError>(with_field("hidden_size", "-16"), {"hidden_size"});
  expect_error<ConfigError>(with_field("num_hidden_layers", "0"), {"num_hidden_layers"});
  expect_error<ConfigError>(with_field("rms_norm_eps", "0"), {"rms_norm_eps"});
  expect_error<ConfigError>(minimal(R"(, "num_key_value_heads": 0)"), {"num_key_value_heads"});
  expect_error<ConfigError>(minimal(R"(, "head_dim": -1)"), {"head_dim"});
  expect_error<ConfigError>(minimal(R"(, "rope_theta": -1)"), {"rope_theta"});
}

TEST(Config, HiddenSizeNotDivisibleByHeadsIsConfigError) {
  expect_error<ConfigError>(with_field("num_attention_heads", "3"),
                            {"hidden_size", "num_attention_heads", "16", "3"});
}

TEST(Config, HeadsNotDivisibleByKvHeadsIsConfigError) {
  expect_error<ConfigError>(minimal(R"(, "num_key_value_heads": 3)"),
                            {"num_key_value_heads", "3", "4"});
}

TEST(Config, RopeScalingYarnAsQwen25Writes) {
  // The long-context settings of Qwen2.5's model cards.
  const Qwen2Config c = parse_qwen2_config(minimal(
      R"(, "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768,
                            "type": "yarn"})"));
  ASSERT_TRUE(c.rope_scaling);
  EXPECT_EQ(c.rope_scaling->type, RopeScaling::Type::Yarn);
  EXPECT_STREQ(RopeScaling::type_name(c.rope_scaling->type), "yarn");
  EXPECT_FLOAT_EQ(c.rope_scaling->factor, 4.0f);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 32768);
  EXPECT_FLOAT_EQ(c.rope_scaling->beta_fast, 32.0f);  // transformers' defaults
  EXPECT_FLOAT_EQ(c.rope_scaling->beta_slow, 1.0f);
  EXPECT_FALSE(c.rope_scaling->attention_factor);
  EXPECT_FALSE(c.moe);
}

TEST(Config, RopeScalingTypesAndFields) {
  const Qwen2Config linear =
      parse_qwen2_config(minimal(R"(, "rope_scaling": {"rope_type": "linear", "factor": 2})"));
  ASSERT_TRUE(linear.rope_scaling);
  EXPECT_EQ(linear.rope_scaling->type, RopeScaling::Type::Linear);
  EXPECT_FLOAT_EQ(linear.rope_scaling->factor, 2.0f);
  EXPECT_FALSE(linear.rope_scaling->original_max_position_embeddings);

  const Qwen2Config dynamic =
      parse_qwen2_config(minimal(R"(, "rope_scaling": {"type": "dynamic", "factor": 8.0})"));
  ASSERT_TRUE(dynamic.rope_scaling);
  EXPECT_EQ(dynamic.rope_scaling->type, RopeScaling::Type::Dynamic);

  // "rope_type" wins over the older "type", as in transformers.
  const Qwen2Config yarn = parse_qwen2_config(minimal(
      R"(, "rope_scaling": {"type": "linear", "rope_type": "yarn", "factor": 4.0,
                            "beta_fast": 16, "beta_slow": 2, "attention_factor": 1.5})"));
  ASSERT_TRUE(yarn.rope_scaling);
  EXPECT_EQ(yarn.rope_scaling->type, RopeScaling::Type::Yarn);
  EXPECT_FLOAT_EQ(yarn.rope_scaling->beta_fast, 16.0f);
  EXPECT_FLOAT_EQ(yarn.rope_scaling->beta_slow, 2.0f);
  EXPECT_EQ(yarn.rope_scaling->attention_factor, 1.5f);

  // "default" is plain RoPE.
  EXPECT_FALSE(
      parse_qwen2_config(minimal(R"(, "rope_scaling": {"rope_type": "default"})")).rope_scaling);
  EXPECT_FALSE(parse_qwen2_config(kQwen25Config).rope_scaling);  // "rope_scaling": null
}

TEST(Config, BadRopeScalingIsConfigError) {
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": "longrope", "factor": 4.0})"),
                            {"longrope", "rope_scaling", "test/config.json"});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": "su"})"), {"\"su\""});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": "yarn"})"), {"factor"});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": "linear", "factor": 0.5})"),
                            {"factor", ">= 1"});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": "linear", "factor": "2"})"),
                            {"factor"});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": 3, "factor": 2})"), {"type"});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": "yarn")"), {"rope_scaling"});
  expect_error<ConfigError>(
      minimal(R"(, "rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": -1})"),
      {"beta_fast"});
  expect_error<ConfigError>(minimal(R"(, "rope_scaling": {"type": "dynamic", "factor": 4,
                                    "original_max_position_embeddings": 0})"),
                            {"original_max_position_embeddings"});
}

TEST(Config, Qwen2MoeModelTypeGetsExperts) {
  nlohmann::json j = nlohmann::json::parse(minimal());
  j["model_type"] = "qwen2_moe";
  expect_error<ConfigError>(j.dump(), {"num_experts", "test/config.json"});
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 8;
  const Qwen2Config c = parse_qwen2_config(j.dump());
  ASSERT_TRUE(c.moe);
  EXPECT_EQ(c.moe->num_experts, 4);
  EXPECT_EQ(c.moe->shared_expert_intermediate_size, 0);  // no shared expert unless given
  EXPECT_EQ(c.moe->decoder_sparse_step, 1);
  EXPECT_FALSE(parse_qwen2_config(minimal()).moe);
}

TEST(Config, InvalidJsonIsFormatErrorWithPosition) {
  expect_error<FormatError>("{\n  \"hidden_size\": 896,\n  \"vocab_size\": ,\n}",
                            {"test/config.json", "line 3"});
  expect_error<FormatError>("", {"test/config.json"});
}

TEST(Config, TopLevelNotAnObjectIsConfigError) {
  expect_error<ConfigError>("[1, 2]", {"test/config.json"});
}

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("tinyllm_config_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  fs::path dir_;
};

TEST_F(ConfigFiles, LoadsConfigAndGenerationConfig) {
  write("config.json", kQwen25Config);
  write("generation_config.json", R"({"bos_token_id": 151643, "do_sample": true,
                                      "eos_token_id": [151645, 151643], "top_p": 0.8})");
  const Qwen2Config c = load_qwen2_config(dir_ / "config.json");
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
}

TEST_F(ConfigFiles, LoadsWithoutGenerationConfig) {
  write("config.json", minimal(R"(, "eos_token_id": 7)"));
  EXPECT_EQ(load_qwen2_config(dir_ / "config.json").eos_token_ids, std::vector<int64_t>{7});
  EXPECT_EQ(load_qwen2_config(dir_).eos_token_ids,
            std::vector<int64_t>{7});  // a model directory works too
}

TEST_F(ConfigFiles, MissingFileIsFormatError) {
  try {
    load_qwen2_config(dir_ / "config.json");
    ADD_FAILURE() << "no exception";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST_F(ConfigFiles, BadGenerationConfigIsFormatError) {
  write("config.json", minimal());
  write("generation_config.json", "{\"eos_token_id\": [1,");
  EXPECT_THROW(load_qwen2_config(dir_ / "config.json"), FormatError);
}

TEST_F(ConfigFiles, InvalidConfigFileNamesThePath) {
  write("config.json", minimal(R"(, "num_key_value_heads": 3)"));
  try {
    load_qwen2_config(dir_ / "config.json");
    ADD_FAILURE() << "no exception";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "config.json").string()), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tinyllm

namespace tinyllm {
namespace {

// transformers 5 writes the RoPE base inside "rope_parameters" and may leave out the top-level
// "rope_theta".
TEST(Config, RopeThetaFromRopeParameters) {
  const Qwen2Config c = parse_qwen2_config(
      minimal(R"(, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0})"));
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
}

// transformers 5 writes a scaled RoPE into "rope_parameters" too.
TEST(Config, ScaledRopeParametersAreRopeScaling) {
  const Qwen2Config c = parse_qwen2_config(minimal(
      R"(, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0})"));
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  ASSERT_TRUE(c.rope_scaling);
  EXPECT_EQ(c.rope_scaling->type, RopeScaling::Type::Yarn);
  EXPECT_FLOAT_EQ(c.rope_scaling->factor, 4.0f);
  EXPECT_FALSE(
      parse_qwen2_config(minimal(R"(, "rope_parameters": {"rope_type": "default"})")).rope_scaling);
  expect_error<ConfigError>(
      minimal(R"(, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8})"),
      {"llama3", "rope_parameters"});
}

}  // namespace
}  // namespace tinyllm
