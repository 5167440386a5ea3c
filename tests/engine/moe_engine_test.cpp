// The engine on Qwen2-MoE checkpoints against Hugging Face's Qwen2MoeForCausalLM
// (data/fixtures/ch3.3: three random checkpoints, tools/fixtures/gen_hf_moe.py; data/fixtures/
// models: the trained tiny-qwen2-moe).
//   f32 / bf16  exact kernels on f32 or the checkpoint's own bf16 bits: within chapter 1.5's 1e-4
//               (the bar for `logits` is 1e-3).
//   q8 / q4     HF's greedy chat answers of the trained model come out unchanged.
//   batching    a sequence's logits do not depend on what shares its step (the experts' rows are
//               grouped per step, each row still computed on its own).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include "engine/load_model.hpp"
#include "engine_fixtures.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::engine {
namespace {

namespace fs = std::filesystem;
using testing::Fixture;

constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;
const std::vector<std::string> kHfCheckpoints = {"moe-f32-normtopk-mlponly",
                                                 "moe-bf16-softmax-step2", "moe-bf16-noshared"};

fs::path hf_model(const std::string& name) {
  return testing::data_dir() / "fixtures" / "ch3.3" / name;
}
fs::path tiny_moe() {
  return testing::data_dir() / "models" / "tiny-qwen2-moe";
}
EngineOptions exact(WeightFormat format) {
  return EngineOptions{
      .weights = {format, 0}, .head_format = {}, .threads = 0, .kernels = Kernels::Exact};
}
EngineOptions fast(WeightFormat format) {
  EngineOptions o = exact(format);
  o.kernels = Kernels::Fast;
  return o;
}

TEST(EngineMoe, F32AndBf16LogitsMatchHfPrefillAndDecode) {
  for (const std::string& name : kHfCheckpoints) {
    const bool bf16_on_disk = name.find("bf16") != std::string::npos;
    for (WeightFormat format : {WeightFormat::F32, WeightFormat::Bf16}) {
      if (format == WeightFormat::Bf16 && !bf16_on_disk) continue;  // bf16 rounding of f32 weights
      SCOPED_TRACE(name + " " + weight_format_name(format));
      const Qwen2Model engine = load_model(hf_model(name), exact(format));
      const Fixture f("ch3.3/" + name + ".safetensors");
      expect_prefill_then_decode_match(engine, f, 1, kLogitAtol, kLogitRtol);
      expect_prefill_then_decode_match(engine, f, 5, kLogitAtol, kLogitRtol);
    }
  }
}

TEST(EngineMoe, GreedyIdsMatchHf) {
  for (const std::string& name : kHfCheckpoints) {
    SCOPED_TRACE(name);
    const Fixture f("ch3.3/" + name + ".safetensors");
    const Qwen2Model engine = load_model(hf_model(name), fast(WeightFormat::F32));
    const std::vector<int64_t> expected = f.ints("greedy_ids");
    const Generation out = generate_tokens_with_kv_cache(
        engine, id_rows(f, "greedy_prompt")[0],
        GenerationOptions{.max_new_tokens = static_cast<int64_t>(expected.size()), .stop_ids = {}});
    EXPECT_EQ(out.tokens, TokenIds(expected.begin(), expected.end()));
  }
}

TEST(EngineMoe, TinyQwen2MoeF32AndBf16MatchHfLogits) {
  for (WeightFormat format : {WeightFormat::F32, WeightFormat::Bf16}) {
    SCOPED_TRACE(weight_format_name(format));
    const Qwen2Model engine = load_model(tiny_moe(), exact(format));
    for (const char* prompt : {"raw_story", "chat_add"}) {
      SCOPED_TRACE(prompt);
      const Fixture f(std::string("models/tiny-qwen2-moe.") + prompt + ".safetensors");
      const std::vector<int64_t> flat = f.ints("input_ids");
      const auto T = static_cast<int64_t>(flat.size());
      testing::expect_prefill_then_decode_match(engine, {TokenIds(flat.begin(), flat.end())},
                                                f.tensor("logits").reshape({1, T, -1}), T / 2,
                                                kLogitAtol, kLogitRtol);
    }
  }
}

TEST(EngineMoe, EveryPrecisionAnswersTheChatLikeHf) {
  // HF's greedy answer of the bf16 model up to <|im_end|>, with the engine's fast kernels.
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_moe());
  const Fixture f("models/tiny-qwen2-moe.chat_add.safetensors");
  const std::vector<int64_t> greedy = f.ints("greedy_ids");
  const auto im_end = std::find(greedy.begin(), greedy.end(),
                                static_cast<int64_t>(*tokenizer.token_to_id("<|im_end|>")));
  ASSERT_NE(im_end, greedy.end());
  for (WeightFormat format :
       {WeightFormat::F32, WeightFormat::Bf16, WeightFormat::Q8, WeightFormat::Q4}) {
    SCOPED_TRACE(weight_format_name(format));
    const Qwen2Model engine = load_model(tiny_moe(), fast(format));
    const TextGeneration out =
        simple_generate_with_kv_cache(engine, tokenizer, f.meta("prompt"),
                                      GenerationOptions{.max_new_tokens = 32, .stop_ids = {}});
    EXPECT_EQ(out.generation.tokens, TokenIds(greedy.begin(), im_end));
    EXPECT_EQ(out.text, "23 + 45 = 68.");
  }
}

TEST(EngineMoe, ASequenceDoesNotDependOnItsStepNeighbours) {
  // Three sequences decoded in one forward_sequences step (their rows grouped by expert together)
  // give bitwise the logits each gets alone, in every precision.
  const std::vector<TokenIds> prompts = testing::random_prompts(3, 4096, 5, 30, /*seed=*/33);
  for (WeightFormat format : {WeightFormat::Bf16, WeightFormat::Q8, WeightFormat::Q4}) {
    SCOPED_TRACE(weight_format_name(format));
    const Qwen2Model engine = load_model(tiny_moe(), fast(format));
    std::vector<std::vector<KvCache>> together, alone;
    std::vector<Tensor> expected;
    for (const TokenIds& p : prompts) {
      alone.push_back(engine.create_kv_caches());
      together.push_back(engine.create_kv_caches());
      engine.forward_last({p}, 0, together.back());
      engine.forward_last({p}, 0, alone.back());
      expected.push_back(engine.forward_last({{7}}, static_cast<int64_t>(p.size()), alone.back()));
    }
    std::vector<std::vector<KvCache>*> caches;
    for (auto& c : together) caches.push_back(&c);
    const Tensor step = engine.forward_sequences({{7}, {7}, {7}}, caches);
    for (size_t r = 0; r < prompts.size(); ++r) {
      const int64_t V = step.dim(1);
      const Tensor row({1, V}, std::vector<float>(step.data() + static_cast<int64_t>(r) * V,
                                                  step.data() + static_cast<int64_t>(r + 1) * V));
      EXPECT_TENSOR_NEAR(row, expected[r], 0.0, 0.0);
    }
  }
}

TEST(EngineMoe, WeightBytesCountTheActiveExperts) {
  // f32: per layer attention (q, k, v, o) + router + k = 2 of 8 experts + shared expert and gate;
  // plus the untied head.
  const Qwen2Model engine = load_model(tiny_moe(), exact(WeightFormat::F32));
  const int64_t E = 256, kv = 128, V = 4096;
  const int64_t attention = E * E * 2 + E * kv * 2;
  const int64_t moe = 8 * E + 2 * 3 * E * 128 + 3 * E * 384 + E;
  EXPECT_EQ(engine.weight_bytes(), 4 * (4 * (attention + moe) + V * E));
  EXPECT_EQ(engine.precision(), "f32");
}

}  // namespace
}  // namespace tinyllm::engine
