// The serving core (engine/serving): LLMEngine over the engine's model. The oracle of every
// request is its single-request run through chapter 2.1's generation on the same model (greedy, or
// chapter 1.7's Sampler with the request's seed), which chapter 2.1's tests tie to Hugging Face's
// logits; the engine's exact kernels keep batched and single runs equal up to float summation
// order.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_7_chunked_prefill/chunked_prefill.hpp>

#include "engine/load_model.hpp"
#include "engine/serving/llm_engine.hpp"
#include "model_fixtures.hpp"
#include "tinyllm/chat_template.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::engine {
namespace {

namespace fs = std::filesystem;

fs::path tiny_qwen2() {
  return testing::data_dir() / "models" / "tiny-qwen2";
}

const Qwen2Model& exact_bf16() {
  static const Qwen2Model model =
      load_model(tiny_qwen2(), EngineOptions{.weights = {WeightFormat::Bf16, 0},
                                             .head_format = {},
                                             .threads = 0,
                                             .kernels = Kernels::Exact});
  return model;
}

std::vector<TokenIds> chat_prompts(const Tokenizer& tokenizer) {
  std::vector<TokenIds> out;
  for (const char* q : {"What is 37 + 58?", "What is the capital of France?", "What is 91 - 36?",
                        "What day comes after Monday?", "What is the opposite of hot?"}) {
    out.push_back(tokenizer.encode(apply_chat_template({{"user", q}}, true)));
  }
  return out;
}

Generation alone(const LanguageModel& model, const TokenIds& prompt, const SamplingParams& p) {
  GenerationOptions options{.max_new_tokens = p.max_tokens, .stop_ids = p.stop_ids};
  if (p.sampler.temperature == 0.0f) return generate_tokens_with_kv_cache(model, prompt, options);
  Sampler sampler(p.sampler);
  return generate_tokens_with_kv_cache(model, prompt, options, std::ref(sampler));
}

TEST(EngineModel, ForwardSequencesEqualsEachSequenceAlone) {
  const Qwen2Model& model = exact_bf16();
  const std::vector<TokenIds> prompts =
      testing::random_prompts(3, model.config().vocab_size, 4, 9, 5);
  std::vector<std::vector<KvCache>> own(3);
  std::vector<std::vector<KvCache>*> pointers;
  std::vector<TokenIds> first, second;
  for (size_t r = 0; r < 3; ++r) {
    own[r] = model.create_kv_caches();
    pointers.push_back(&own[r]);
    first.push_back(prompts[r]);  // ragged prefill of 4..9 tokens
    second.push_back({prompts[r][0]});
  }
  const Tensor prefill = model.forward_sequences(first, pointers);
  const Tensor decode = model.forward_sequences(second, pointers);
  for (size_t r = 0; r < 3; ++r) {
    std::vector<KvCache> caches = model.create_kv_caches();
    const Tensor p = model.forward_last({prompts[r]}, 0, caches);
    const Tensor d = model.forward_last({{prompts[r][0]}}, caches[0].offset(), caches);
    const auto row = static_cast<int64_t>(r), V = p.dim(1);
    EXPECT_TENSOR_NEAR(
        Tensor({V}, std::vector<float>(prefill.data() + row * V, prefill.data() + (row + 1) * V)),
        p.reshape({V}), 1e-4, 1e-4);
    EXPECT_TENSOR_NEAR(
        Tensor({V}, std::vector<float>(decode.data() + row * V, decode.data() + (row + 1) * V)),
        d.reshape({V}), 1e-4, 1e-4);
    EXPECT_EQ(own[r][0].offset(), static_cast<int64_t>(prompts[r].size()) + 1);
  }
}

// The last-position logits of `prompt` fed in chunks of the given sizes, each chunk sharing its
// step with a one-token decode of another sequence (forward_sequences), or alone.
Tensor chunked_logits(const Qwen2Model& model, const TokenIds& prompt,
                      const std::vector<int64_t>& chunks, bool with_neighbour) {
  std::vector<KvCache> caches = model.create_kv_caches(), neighbour = model.create_kv_caches();
  model.forward_last({{7, 8, 9}}, 0, neighbour);
  Tensor last;
  int64_t done = 0;
  for (const int64_t n : chunks) {
    const TokenIds chunk(prompt.begin() + done, prompt.begin() + done + n);
    done += n;
    if (!with_neighbour) {
      last = model.forward_last({chunk}, done - n, caches);
      continue;
    }
    const Tensor both = model.forward_sequences({{5}, chunk}, {&neighbour, &caches});
    const int64_t V = both.dim(1);
    last = Tensor({1, V}, std::vector<float>(both.data() + V, both.data() + 2 * V));
  }
  return last;
}

TEST(EngineModel, ATokensLogitsDoNotDependOnChunksOrNeighbours) {
  // Batch invariance: every product of up to kSmallMMax rows computes each row on its own
  // (tests/engine/kernel_bounds_test.cpp) and the attention of each query row runs the same
  // operations whatever the step around it (engine/model/attention.cpp), so a request's logits are
  // bitwise the same however its prompt is chunked and whatever shares its steps, with the exact
  // kernels and with the fast ones (int8 activations for q4 weights, where a last-bit difference
  // would otherwise grow into a different rounding step; bf16 activations for bf16 weights).
  const TokenIds prompt = testing::random_prompts(1, 200, 56, 56, 11)[0];
  const std::vector<std::vector<int64_t>> splits = {
      {16, 16, 16, 8}, {13, 16, 16, 11}, {16, 16, 16, 7, 1}, {1, 15, 16, 16, 8}, {8, 8, 8, 8, 24}};
  const fs::path mlx = testing::data_dir() / "fixtures" / "mlx" / "qwen2-mlx-q4-tied";
  // The MLX checkpoint with its own weights; the trained model as q4 and as bf16.
  struct Model {
    fs::path dir;
    WeightSpec weights;
    const char* name;
  };
  for (const Kernels kernels : {Kernels::Exact, Kernels::Fast}) {
    for (const Model& m :
         {Model{mlx, {}, "mlx q4"}, Model{tiny_qwen2(), {WeightFormat::Q4, 0}, "q4"},
          Model{tiny_qwen2(), {WeightFormat::Bf16, 0}, "bf16"}}) {
      const Qwen2Model model = load_model(
          m.dir,
          EngineOptions{.weights = m.weights, .head_format = {}, .threads = 2, .kernels = kernels});
      SCOPED_TRACE(std::string(m.name) + (kernels == Kernels::Fast ? " fast" : " exact"));
      const Tensor reference = chunked_logits(model, prompt, splits[0], false);
      for (const auto& split : splits) {
        for (const bool with_neighbour : {false, true}) {
          const Tensor logits = chunked_logits(model, prompt, split, with_neighbour);
          ASSERT_EQ(std::memcmp(logits.data(), reference.data(), sizeof(float) * reference.numel()),
                    0)
              << "split starting " << split[0] << (with_neighbour ? ", with a neighbour" : "");
        }
      }
    }
  }
}

TEST(EngineModel, ChapterSchedulerDrivesTheEngine) {
  // Chapter 2.7's scheduler takes the LanguageModel interface: the engine runs it unchanged.
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const TokenIds stop = default_stop_ids(model.config(), &tokenizer);
  ChunkedPrefillBatcher batcher(model, 3, 16);
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  for (const TokenIds& p : prompts) batcher.submit({p, 12, stop});
  const std::vector<RequestOutput> out = batcher.run();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out[i].tokens, alone(model, prompts[i], {{}, 12, stop}).tokens) << i;
  }
}

TEST(LLMEngine, GreedyAndSampledRequestsEqualSingleRuns) {
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const TokenIds stop = default_stop_ids(model.config(), &tokenizer);
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  std::vector<SamplingParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SamplingParams p{{}, 12, stop};
    if (i % 2 == 1)
      p.sampler = SamplerConfig{.temperature = 0.8f, .top_k = 20, .top_p = 0.95f, .seed = 100 + i};
    params.push_back(p);
  }
  LLMEngine engine(model, {.batch_size = 3, .prefill_chunk = 16, .kv_budget = 0});
  std::map<int64_t, TokenIds> streamed;
  std::map<int64_t, int> finishes;
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine.submit(prompts[i], params[i], [&](const RequestEvent& e) {
      if (e.token) streamed[e.request].push_back(*e.token);
      if (e.finish) ++finishes[e.request];
    });
  }
  int64_t max_running = 0;
  while (engine.has_work()) {
    engine.step();
    max_running = std::max(max_running, engine.running());
  }
  EXPECT_LE(max_running, 4);  // 3 slots + 1 prefilling
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto id = static_cast<int64_t>(i);
    const Generation expected = alone(model, prompts[i], params[i]);
    EXPECT_EQ(engine.tokens(id), expected.tokens) << "request " << i;
    EXPECT_EQ(streamed[id], expected.tokens) << "request " << i;
    EXPECT_EQ(finishes[id], 1);
    ASSERT_TRUE(engine.finish(id).has_value());
    EXPECT_EQ(*engine.finish(id),
              expected.stop_reason == StopReason::StopToken ? Finish::Stop : Finish::Length);
    const RequestMetrics& m = engine.metrics(id);
    ASSERT_TRUE(m.ttft().has_value());
    EXPECT_GE(*m.ttft(), 0.0);
    EXPECT_EQ(m.output_tokens, static_cast<int64_t>(expected.tokens.size()));
  }
  EXPECT_EQ(engine.stats().finished, static_cast<int64_t>(prompts.size()));
  EXPECT_EQ(engine.scheduler().cache_manager().reserved_positions(), 0);
}

TEST(LLMEngine, CancelFreesTheSlotAtOnce) {
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  LLMEngine engine(model, {.batch_size = 1, .prefill_chunk = 64, .kv_budget = 0});
  std::vector<Finish> seen;
  const auto record = [&](const RequestEvent& e) {
    if (e.finish) seen.push_back(*e.finish);
  };
  const int64_t running = engine.submit(prompts[0], {{}, 30, {}}, record);
  const int64_t queued = engine.submit(prompts[1], {{}, 30, {}}, record);
  const int64_t last = engine.submit(prompts[2], {{}, 5, {}}, record);
  engine.step();
  engine.step();
  EXPECT_EQ(engine.running(), 1);
  EXPECT_TRUE(engine.cancel(queued));    // still waiting
  EXPECT_TRUE(engine.cancel(running));   // decoding in the only slot
  EXPECT_FALSE(engine.cancel(running));  // already gone
  EXPECT_FALSE(engine.cancel(99));
  EXPECT_EQ(engine.running(), 0);
  engine.run_to_completion();
  EXPECT_EQ(engine.tokens(last), alone(model, prompts[2], {{}, 5, {}}).tokens);
  EXPECT_EQ(engine.finish(running), std::optional<Finish>(Finish::Cancelled));
  EXPECT_EQ(engine.finish(queued), std::optional<Finish>(Finish::Cancelled));
  EXPECT_EQ(seen, (std::vector<Finish>{Finish::Cancelled, Finish::Cancelled, Finish::Length}));
  EXPECT_EQ(engine.stats().cancelled, 2);
  EXPECT_EQ(engine.scheduler().cache_manager().reserved_positions(), 0);
}

TEST(LLMEngine, KvBudgetLimitsAdmission) {
  // A budget for one request at a time: the others wait for its reservation, then run.
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  int64_t longest = 0;
  for (const TokenIds& p : prompts) longest = std::max<int64_t>(longest, p.size());
  LLMEngine engine(model, {.batch_size = 4, .prefill_chunk = 64, .kv_budget = longest + 8});
  for (size_t i = 0; i < 3; ++i) engine.submit(prompts[i], {{}, 8, {}});
  while (engine.has_work()) {
    engine.step();
    EXPECT_LE(engine.running(), 1);
    EXPECT_LE(engine.scheduler().cache_manager().reserved_positions(), longest + 8);
  }
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(engine.tokens(i), alone(model, prompts[static_cast<size_t>(i)], {{}, 8, {}}).tokens);
  }
}

TEST(LLMEngine, BadRequestsAreRefusedBeforeAnyWork) {
  const Qwen2Model& model = exact_bf16();
  LLMEngine engine(model, {.batch_size = 2, .prefill_chunk = 8, .kv_budget = 0});
  const int64_t context = model.config().max_position_embeddings;
  EXPECT_THROW(engine.submit(TokenIds(static_cast<size_t>(context), 1), {{}, 4, {}}),
               ContextLengthError);
  EXPECT_THROW(engine.submit({}, {{}, 4, {}}), InvalidArgument);
  EXPECT_THROW(engine.submit({1, 2}, {{}, -1, {}}), InvalidArgument);
  EXPECT_THROW(engine.submit({1, 2}, {SamplerConfig{.temperature = -1.0f}, 4, {}}),
               InvalidArgument);
  EXPECT_THROW(engine.submit({1, 2}, {SamplerConfig{.temperature = 1.0f, .top_p = 0.0f}, 4, {}}),
               InvalidArgument);
  EXPECT_THROW(engine.submit({1, static_cast<TokenId>(model.config().vocab_size)}, {{}, 4, {}}),
               InvalidArgument);
  EXPECT_FALSE(engine.has_work());
  std::vector<Finish> seen;
  engine.submit({1, 2}, {{}, 0, {}}, [&](const RequestEvent& e) { seen.push_back(*e.finish); });
  EXPECT_EQ(seen, std::vector<Finish>{Finish::Length});
  EXPECT_FALSE(engine.has_work());
  EXPECT_THROW(LLMEngine(model, {.batch_size = 0, .prefill_chunk = 8, .kv_budget = 0}),
               InvalidArgument);
  EXPECT_THROW(LLMEngine(model, {.batch_size = 1, .prefill_chunk = 8, .kv_budget = -1}),
               InvalidArgument);
  EXPECT_THROW(LLMEngine small(model, {.batch_size = 1, .prefill_chunk = 8, .kv_budget = 4});
               small.submit({1, 2, 3}, {{}, 8, {}}), ContextLengthError);
}

}  // namespace
}  // namespace tinyllm::engine
