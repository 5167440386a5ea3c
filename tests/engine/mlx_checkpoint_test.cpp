// MLX-format quantized checkpoints (engine/model/mlx_checkpoint.hpp) against Hugging Face's logits
// on the dequantized weights (data/fixtures/mlx, tools/fixtures/gen_mlx_checkpoint.py: the codes,
// scales and biases come from the generator's own PyTorch version of MLX's quantization, and HF's
// Qwen2ForCausalLM runs in float32 on q * scale + bias).
//   qwen2-mlx-q4-tied       bf16 scales/biases, 4-bit g64, embed_tokens (the tied head) 8-bit g64
//   qwen2-mlx-mixed-untied  f16, 4-bit g32, layer 0's v_proj 8-bit g32 (q/k/v then cannot be one
//                           matrix), layer 1's down_proj 8-bit g128, "lm_head": false (f16 head)
// The engine keeps the stored codes, so its weights are the oracle's exactly: with chapter 2.3's
// f32-activation kernels the logits match at the f32 tolerance of the other HF fixtures.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>

#include "engine/load_model.hpp"
#include "engine/model/mlx_checkpoint.hpp"
#include "engine_fixtures.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::engine {
namespace {

namespace fs = std::filesystem;
using testing::Fixture;

constexpr const char* kTied = "qwen2-mlx-q4-tied";
constexpr const char* kMixed = "qwen2-mlx-mixed-untied";

fs::path mlx_model(const std::string& name) {
  return testing::data_dir() / "fixtures" / "mlx" / name;
}
Fixture oracle(const std::string& name) {
  return Fixture("mlx/" + name + ".logits.safetensors");
}
EngineOptions kernels(bool fast) {
  EngineOptions o;
  o.kernels = fast ? Kernels::Fast : Kernels::Exact;
  return o;
}

TEST(MlxCheckpoint, ConfigReadsTheQuantizationAndItsOverrides) {
  const Qwen2Config tied = load_qwen2_config(mlx_model(kTied));
  ASSERT_TRUE(tied.quantization);
  EXPECT_EQ(tied.quantization->defaults, (QuantizationSpec{64, 4}));
  EXPECT_EQ(tied.quantization->of("model.embed_tokens"), (QuantizationSpec{64, 8}));
  EXPECT_EQ(tied.quantization->of("model.layers.1.mlp.up_proj"), (QuantizationSpec{64, 4}));
  EXPECT_EQ(mlx_quantization_name(*tied.quantization), "q4 g64 (mlx)");
  // Only "quantization_config" (newer mlx-lm), a false override and two others.
  const Qwen2Config mixed = load_qwen2_config(mlx_model(kMixed));
  ASSERT_TRUE(mixed.quantization);
  EXPECT_EQ(mixed.quantization->of("lm_head"), std::nullopt);
  EXPECT_EQ(mixed.quantization->of("model.layers.0.self_attn.v_proj"), (QuantizationSpec{32, 8}));
  EXPECT_EQ(mixed.quantization->of("model.layers.0.self_attn.k_proj"), (QuantizationSpec{32, 4}));
  EXPECT_EQ(mixed.quantization->of("model.layers.1.mlp.down_proj"), (QuantizationSpec{128, 8}));
  EXPECT_FALSE(load_qwen2_config(testing::data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied")
                   .quantization);
}

TEST(MlxCheckpoint, WeightsStayInTheirStoredFormats) {
  // Bytes per pass: b/8 per weight plus a f32 scale and bias per group; f32 for an unquantized one.
  const auto q = [](int64_t k, int64_t n, int bits, int group) {
    return k * n * bits / 8 + 8 * k * n / group;
  };
  // E = 128, q/k/v 128 + 64 + 64 rows, I = 256, 2 layers; the tied 1283 x 128 table at 8 bits.
  const int64_t tied_layer =
      q(256, 128, 4, 64) + q(128, 128, 4, 64) + q(512, 128, 4, 64) + q(128, 256, 4, 64);
  EXPECT_EQ(load_model(mlx_model(kTied), {}).weight_bytes(), 2 * tied_layer + q(1283, 128, 8, 64));
  // E = 64, q/k/v 64 + 32 + 32 rows (v at 8 bits in layer 0), I = 128 (down at 8 bits g128 in
  // layer 1); the f16 head as f32.
  const int64_t common =
      2 * q(64, 64, 4, 32) + q(32, 64, 4, 32) + q(256, 64, 4, 32);  // q, o, k, gate/up
  const int64_t layer0 = common + q(32, 64, 8, 32) + q(64, 128, 4, 32);
  const int64_t layer1 = common + q(32, 64, 4, 32) + q(64, 128, 8, 128);
  EXPECT_EQ(load_model(mlx_model(kMixed), {}).weight_bytes(), layer0 + layer1 + 4 * 512 * 64);
}

TEST(MlxCheckpoint, LogitsMatchHfOnTheDequantizedWeights) {
  // The same weights in f32 on both sides (chapter 2.3's kernels dequantize exactly): 1e-4 as
  // chapter 1.5's fixtures.
  for (const char* name : {kTied, kMixed}) {
    SCOPED_TRACE(name);
    const Qwen2Model engine = load_model(mlx_model(name), kernels(false));
    expect_prefill_then_decode_match(engine, oracle(name), 3, 1e-4, 1e-4);
    expect_prefill_then_decode_match(engine, oracle(name), 1, 1e-4, 1e-4);
  }
}

// The largest |engine - HF| over the fixture's 2 x 7 batch: prefill of 4 positions, then decode.
double max_logit_error(const Qwen2Model& engine, const Fixture& f) {
  const std::vector<TokenIds> ids = id_rows(f, "ids_b2l7");
  const Tensor expected = f.tensor("logits_b2l7");
  std::vector<KvCache> caches = engine.create_kv_caches(2);
  double worst = 0.0;
  const auto compare = [&](const Tensor& got, int64_t begin) {
    const Tensor want = positions(expected, begin, begin + got.dim(1));
    for (int64_t i = 0; i < got.numel(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(got.data()[i] - want.data()[i])));
    }
  };
  compare(engine.forward(columns(ids, 0, 4), 0, caches), 0);
  for (int64_t l = 4; l < 7; ++l) compare(engine.forward(columns(ids, l, l + 1), l, caches), l);
  return worst;
}

TEST(MlxCheckpoint, FastKernelsStayWithinTheActivationRounding) {
  // The default (fast) kernels quantize the activations of every q4/q8 product of up to kSmallMMax
  // rows to int8 per 32 values (decode steps and prefill chunks alike, as llama.cpp does; each
  // product is checked against its own bound in kernel_bounds_test.cpp): about 0.4% per value, in
  // every layer of these random models with large weights. Measured max |error| 1.35 (tied, logits
  // up to 13.9) and 0.45 (mixed, logits up to 9.2); with bf16 rounding only it was 0.21 and 0.086,
  // and on the trained tiny-qwen2 EngineKernels measures 0.55 with q4 weights. Bounds 1.5x.
  for (const auto& [name, bound] : {std::pair{kTied, 2.0}, std::pair{kMixed, 0.7}}) {
    const double err = max_logit_error(load_model(mlx_model(name), kernels(true)), oracle(name));
    std::cout << name << ", fast kernels: max |logit error| " << err << std::endl;
    EXPECT_LT(err, bound) << name;
    // The f32-activation kernels on the same run: the weights are the oracle's exactly.
    EXPECT_LT(max_logit_error(load_model(mlx_model(name), kernels(false)), oracle(name)), 1e-4)
        << name;
  }
}

TEST(MlxCheckpoint, GreedyIdsEqualHf) {
  // HF's 16 greedy ids with chapter 2.3's kernels (exact weights; the smallest top-1/top-2 margins,
  // 0.042 and 0.065, are far above their 1e-5 error but not above the int8/bf16 kernels' 0.09-0.21,
  // so those are checked by their logits bound above instead).
  for (const char* name : {kTied, kMixed}) {
    SCOPED_TRACE(name);
    const Fixture f = oracle(name);
    const std::vector<int64_t> expected = f.ints("greedy_ids");
    const Qwen2Model engine = load_model(mlx_model(name), kernels(false));
    const Generation out = generate_tokens_with_kv_cache(
        engine, id_rows(f, "greedy_prompt")[0],
        GenerationOptions{.max_new_tokens = static_cast<int64_t>(expected.size()), .stop_ids = {}});
    EXPECT_EQ(out.tokens, TokenIds(expected.begin(), expected.end()));
  }
}

// A copy of a fixture checkpoint in a fresh temporary directory, for corrupted variants.
class MlxVariant {
 public:
  explicit MlxVariant(const std::string& name) {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("tinyllm-mlx-" + std::string(test->name()) + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* file : {"config.json", "model.safetensors"}) {
      fs::copy_file(mlx_model(name) / file, dir_ / file);
    }
  }
  ~MlxVariant() { fs::remove_all(dir_); }
  MlxVariant(const MlxVariant&) = delete;
  MlxVariant& operator=(const MlxVariant&) = delete;
  const fs::path& dir() const { return dir_; }

  /// Sets config.json's "quantization" object (both keys where the fixture has both).
  void edit_quantization(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json config = nlohmann::json::parse(std::ifstream(dir_ / "config.json"));
    for (const char* key : {"quantization", "quantization_config"}) {
      if (config.contains(key)) edit(config[key]);
    }
    std::ofstream(dir_ / "config.json") << config.dump(2);
  }

  /// Rewrites model.safetensors: every tensor in its stored dtype, passed through `edit` first.
  void edit_tensors(const std::function<void(std::vector<TensorToSave>&)>& edit) {
    std::vector<TensorToSave> tensors;
    {
      const SafetensorsFile file = SafetensorsFile::open(dir_ / "model.safetensors");
      for (const std::string& name : file.names()) {
        const TensorInfo& info = file.info(name);
        TensorToSave t{
            .name = name, .values = {}, .integers = {}, .shape = info.shape, .dtype = info.dtype};
        if (info.dtype == DType::U32) {
          t.integers = file.load_ints(name);
        } else {
          t.values = file.load(name);  // bf16 values: exact in f32, written back as bf16
        }
        tensors.push_back(std::move(t));
      }
    }
    edit(tensors);
    save_safetensors(dir_ / "model.safetensors", tensors);
  }

 private:
  fs::path dir_;
};

TensorToSave& find(std::vector<TensorToSave>& tensors, const std::string& name) {
  for (TensorToSave& t : tensors) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tensor " + name);
}
void erase(std::vector<TensorToSave>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const TensorToSave& t) { return t.name == name; });
}

// The error's type and a part of its message.
template <typename Error>
void expect_error(const std::function<void()>& run, const std::string& part) {
  try {
    run();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    std::cout << "  " << e.what() << std::endl;
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}
void expect_config_error(const std::function<void(nlohmann::json&)>& edit,
                         const std::string& part) {
  MlxVariant v(kTied);
  v.edit_quantization(edit);
  expect_error<ConfigError>([&] { load_model(v.dir(), {}); }, part);
}

TEST(MlxCheckpoint, UnsupportedQuantizationIsConfigError) {
  expect_config_error([](nlohmann::json& q) { q["bits"] = 3; },
                      "3-bit quantization is not supported (only 4 and 8 bits are");
  expect_config_error([](nlohmann::json& q) { q["model.embed_tokens"]["bits"] = 6; },
                      "[\"model.embed_tokens\"]: 6-bit quantization is not supported");
  expect_config_error([](nlohmann::json& q) { q["group_size"] = 48; },
                      "group_size 48 is not supported (only 32, 64 and 128 are)");
  expect_config_error([](nlohmann::json& q) { q["mode"] = "mxfp4"; },
                      "mode \"mxfp4\" is not supported");
  expect_config_error([](nlohmann::json& q) { q.erase("bits"); }, "has no \"bits\"");
  expect_config_error([](nlohmann::json& q) { q["lm_head"] = "no"; },
                      "[\"lm_head\"] must be a layer override");
  expect_config_error(
      [](nlohmann::json& q) {
        q = {{"quant_method", "gptq"}, {"bits", 4}};
      },
      "quant_method \"gptq\", which is not supported");
}

TEST(MlxCheckpoint, MissingScalesOrBiasesIsFormatError) {
  for (const char* part : {".scales", ".biases"}) {
    MlxVariant v(kTied);
    const std::string name = std::string("model.layers.1.mlp.up_proj") + part;
    v.edit_tensors([&](std::vector<TensorToSave>& t) { erase(t, name); });
    expect_error<FormatError>([&] { load_model(v.dir(), {}); }, "has no " + name);
  }
}

TEST(MlxCheckpoint, CodesThatAreNotU32AreFormatError) {
  MlxVariant v(kTied);
  v.edit_tensors([](std::vector<TensorToSave>& t) {
    TensorToSave& w = find(t, "model.layers.0.self_attn.o_proj.weight");
    w.dtype = DType::I64;
  });
  expect_error<FormatError>([&] { load_model(v.dir(), {}); },
                            "o_proj.weight is I64, expected U32 words of 8 codes each");
}

TEST(MlxCheckpoint, WrongShapesAreShapeError) {
  {  // config.json says 8 bits for a layer stored with 4: 4 codes per word, twice the words.
    MlxVariant v(kTied);
    v.edit_quantization([](nlohmann::json& q) {
      q["model.layers.0.self_attn.q_proj"] = {{"group_size", 64}, {"bits", 8}};
    });
    expect_error<ShapeError>([&] { load_model(v.dir(), {}); },
                             "q_proj.weight has shape [128, 16], expected [128, 32]");
  }
  {  // Scales of one group too few.
    MlxVariant v(kTied);
    v.edit_tensors([](std::vector<TensorToSave>& t) {
      TensorToSave& s = find(t, "model.layers.1.mlp.down_proj.scales");  // 128 x 4
      Tensor fewer({128, 3});
      fewer.rows() = s.values.rows().leftCols(3);
      s.values = fewer;
      s.shape = {128, 3};
    });
    expect_error<ShapeError>([&] { load_model(v.dir(), {}); }, "down_proj.scales");
  }
}

TEST(MlxCheckpoint, OtherWeightOptionsAreInvalidArgument) {
  EngineOptions q8;
  q8.weights = {WeightFormat::Q8, 0};
  expect_error<InvalidArgument>([&] { load_model(mlx_model(kTied), q8); },
                                "already quantized (q4 g64 (mlx)");
  EngineOptions head;
  head.head_format = WeightFormat::Q8;
  EXPECT_THROW(load_model(mlx_model(kTied), head), InvalidArgument);
}

}  // namespace
}  // namespace tinyllm::engine
