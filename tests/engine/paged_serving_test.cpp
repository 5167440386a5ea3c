// Paged caches in the engine. The model: Qwen2Model as chapter 3.1's PagedLanguageModel
// (forward_paged) and the serving core's forward_pages, whose logits must be bitwise those of the
// dense step (tests/engine/engine_test.cpp ties the dense step to HF's logits). The serving core's
// paged mode (engine/serving/block_manager.hpp, scheduler.hpp): every request's ids equal its
// single-request run through chapter 2.1's generation on dense caches, with the prefix cache on or
// off and in a pool too small for the load (preemption); the prefix cache's hits are predicted
// from the prompts' common prefixes; no page is leaked.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>

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

Qwen2Model load(WeightFormat format, Kernels kernels, int64_t page_size = 16,
                int64_t max_pages = 0) {
  return load_model(tiny_qwen2(), EngineOptions{.weights = {format, 0},
                                                .head_format = {},
                                                .threads = 2,
                                                .kernels = kernels,
                                                .page_size = page_size,
                                                .max_pages = max_pages});
}

const Qwen2Model& exact_bf16() {
  static const Qwen2Model model = load(WeightFormat::Bf16, Kernels::Exact);
  return model;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())) == 0;
}

Generation alone(const LanguageModel& model, const TokenIds& prompt, const SamplingParams& p) {
  GenerationOptions options{.max_new_tokens = p.max_tokens, .stop_ids = p.stop_ids};
  if (p.sampler.temperature == 0.0f) return generate_tokens_with_kv_cache(model, prompt, options);
  Sampler sampler(p.sampler);
  return generate_tokens_with_kv_cache(model, prompt, options, std::ref(sampler));
}

const std::vector<std::string> kQuestions = {"What is 37 + 58?",
                                             "What is the capital of France?",
                                             "What is 91 - 36?",
                                             "What day comes after Monday?",
                                             "What is the opposite of hot?",
                                             "What is 12 * 7?"};

std::vector<TokenIds> chat_prompts(const Tokenizer& tokenizer, const std::string& system = "") {
  std::vector<TokenIds> out;
  for (const std::string& q : kQuestions) {
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    messages.push_back({"user", q});
    out.push_back(tokenizer.encode(apply_chat_template(messages, true)));
  }
  return out;
}

// Every request of `params` through an engine with `options`; returns their ids.
std::vector<TokenIds> serve(LLMEngine& engine, const std::vector<TokenIds>& prompts,
                            const std::vector<SamplingParams>& params) {
  for (size_t i = 0; i < prompts.size(); ++i) engine.submit(prompts[i], params[i]);
  engine.run_to_completion();
  std::vector<TokenIds> out;
  for (size_t i = 0; i < prompts.size(); ++i) out.push_back(engine.tokens(static_cast<int64_t>(i)));
  return out;
}

// Greedy requests, and every second one sampled with its own seed.
std::vector<SamplingParams> mixed_params(size_t n, int64_t max_tokens, const TokenIds& stop) {
  std::vector<SamplingParams> params;
  for (size_t i = 0; i < n; ++i) {
    SamplingParams p{{}, max_tokens, stop};
    if (i % 2 == 1) {
      p.sampler = SamplerConfig{.temperature = 0.8f, .top_k = 20, .top_p = 0.95f, .seed = 7 + i};
    }
    params.push_back(p);
  }
  return params;
}

// The serving core's invariant after a run: only cached free blocks hold pages, and none after
// the cache is cleared.
void expect_no_page_leak(LLMEngine& engine) {
  ASSERT_TRUE(engine.paging().has_value());
  EXPECT_EQ(engine.paging()->pages_in_use, engine.paging()->cached_pages);
  engine.clear_prefix_cache();
  EXPECT_EQ(engine.paging()->pages_in_use, 0);
  EXPECT_EQ(engine.paging()->cached_pages, 0);
}

TEST(EnginePaged, ForwardPagedEqualsTheDenseStepBitwise) {
  // Ragged prefill chunks of three sequences in one step, a second chunk, then batched decode
  // steps: every step's logits on pages of any size are bitwise the dense step's, with the exact
  // kernels and the fast ones (int8 activations).
  const std::vector<TokenIds> prompts = testing::random_prompts(3, 4096, 30, 60, 3);
  struct Case {
    WeightFormat format;
    Kernels kernels;
    int64_t page_size;
  };
  for (const Case c :
       {Case{WeightFormat::Bf16, Kernels::Exact, 1}, Case{WeightFormat::Bf16, Kernels::Exact, 5},
        Case{WeightFormat::Bf16, Kernels::Exact, 16}, Case{WeightFormat::Q4, Kernels::Fast, 32},
        Case{WeightFormat::F32, Kernels::Exact, 64}}) {
    SCOPED_TRACE("page size " + std::to_string(c.page_size));
    const Qwen2Model model = load(c.format, c.kernels, c.page_size);
    std::vector<std::vector<KvCache>> dense(3);
    std::vector<std::vector<PagedKvCache>> paged(3);
    std::vector<std::vector<KvCache>*> dense_ptrs;
    std::vector<std::vector<PagedKvCache>*> paged_ptrs;
    for (size_t r = 0; r < 3; ++r) {
      dense[r] = model.create_kv_caches();
      paged[r] = model.create_paged_caches();
      dense_ptrs.push_back(&dense[r]);
      paged_ptrs.push_back(&paged[r]);
    }
    std::vector<std::vector<TokenIds>> steps(2);
    for (size_t r = 0; r < 3; ++r) {
      const auto split = static_cast<std::ptrdiff_t>(10 + 7 * r);
      steps[0].emplace_back(prompts[r].begin(), prompts[r].begin() + split);
      steps[1].emplace_back(prompts[r].begin() + split, prompts[r].end());
    }
    for (TokenId t = 1; t <= 5; ++t) steps.push_back({{t}, {static_cast<TokenId>(t + 100)}, {9}});
    for (size_t s = 0; s < steps.size(); ++s) {
      const Tensor want = model.forward_sequences(steps[s], dense_ptrs);
      const Tensor got = model.forward_paged(steps[s], paged_ptrs);
      ASSERT_TRUE(bitwise_equal(got, want)) << "step " << s;
    }
    int64_t pages = 0;
    for (size_t r = 0; r < 3; ++r) {
      const int64_t positions = dense[r][0].offset();
      for (const PagedKvCache& cache : paged[r]) {
        EXPECT_EQ(cache.offset(), positions);
        EXPECT_EQ(cache.num_pages(), (positions + c.page_size - 1) / c.page_size);
        pages += cache.num_pages();
      }
    }
    EXPECT_EQ(model.page_pool().pages_in_use(), pages);
    paged.clear();  // the caches give their pages back
    EXPECT_EQ(model.page_pool().pages_in_use(), 0);
  }
}

TEST(EnginePaged, ForwardPagedOutOfPagesChangesNothing) {
  // 8 layers x 2 pages of 4: room for 8 positions per layer.
  const Qwen2Model model = load(WeightFormat::Bf16, Kernels::Exact, 4, 16);
  std::vector<PagedKvCache> caches = model.create_paged_caches();
  model.forward_paged({{1, 2, 3, 4, 5, 6}}, {&caches});
  EXPECT_THROW(model.forward_paged({{7, 8, 9}}, {&caches}), OutOfPages);
  for (const PagedKvCache& cache : caches) {
    EXPECT_EQ(cache.offset(), 6);
    EXPECT_EQ(cache.num_pages(), 2);
  }
  EXPECT_EQ(model.page_pool().pages_in_use(), 16);
  // The caches still work: two more positions fit, and give the dense logits.
  std::vector<KvCache> dense = model.create_kv_caches();
  model.forward_last({{1, 2, 3, 4, 5, 6}}, 0, dense);
  EXPECT_TRUE(bitwise_equal(model.forward_paged({{7, 8}}, {&caches}),
                            model.forward_last({{7, 8}}, 6, dense)));
}

TEST(EnginePaged, ForwardPagesRefusesBadPageTables) {
  const Qwen2Model& model = exact_bf16();
  const int64_t layers = model.config().num_hidden_layers;
  PagePool pool(model.config().num_key_value_heads, model.config().head_dim, 4, 64);
  PagedSequence seq;
  for (int64_t l = 0; l < layers; ++l) seq.pages.push_back({pool.allocate()});
  EXPECT_NO_THROW(model.forward_pages(pool, {{1, 2, 3, 4}}, {seq}));
  seq.offset = 4;  // positions 4..5 need a second page per layer
  EXPECT_THROW(model.forward_pages(pool, {{5, 6}}, {seq}), InvalidArgument);
  PagedSequence freed = seq;
  freed.offset = 0;
  pool.free(freed.pages[3][0]);
  EXPECT_THROW(model.forward_pages(pool, {{1}}, {freed}), InvalidArgument);  // not allocated
  PagedSequence short_of_layers{0, {seq.pages[0]}};
  EXPECT_THROW(model.forward_pages(pool, {{1}}, {short_of_layers}), InvalidArgument);
  EXPECT_THROW(model.forward_pages(pool, {{1}, {2}}, {seq}), InvalidArgument);
  PagePool other(1, model.config().head_dim, 4, 64);
  EXPECT_THROW(model.forward_pages(other, {{1}}, {seq}), InvalidArgument);
  seq.offset = model.config().max_position_embeddings;
  EXPECT_THROW(model.forward_pages(pool, {{1}}, {seq}), ContextLengthError);
}

TEST(PagedServing, RequestsEqualTheirSingleRuns) {
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const TokenIds stop = default_stop_ids(model.config(), &tokenizer);
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  const std::vector<SamplingParams> params = mixed_params(prompts.size(), 12, stop);
  for (const int64_t page_size : {1, 16}) {
    LLMEngine engine(model, {.batch_size = 3,
                             .prefill_chunk = 16,
                             .kv_budget = 0,
                             .paged = true,
                             .page_size = page_size});
    const std::vector<TokenIds> ids = serve(engine, prompts, params);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(ids[i], alone(model, prompts[i], params[i]).tokens)
          << "request " << i << ", page size " << page_size;
    }
    EXPECT_EQ(engine.paging()->pages_in_use, 0);  // no prefix cache: nothing stays
    EXPECT_EQ(engine.paging()->prefix_hit_tokens, 0);
    EXPECT_EQ(engine.paging()->preemptions, 0);
    EXPECT_GT(engine.paging()->peak_pages_in_use, 0);
    EXPECT_EQ(engine.paging()->peak_pages_held, engine.paging()->peak_pages_in_use);
  }
}

// The longest common prefix of two id lists.
int64_t common_prefix(const TokenIds& a, const TokenIds& b) {
  const auto end = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<int64_t>(end.first - a.begin());
}

TEST(PagedServing, PrefixCacheReusesASharedSystemPrompt) {
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const TokenIds stop = default_stop_ids(model.config(), &tokenizer);
  const std::vector<TokenIds> prompts = chat_prompts(
      tokenizer,
      "You are a careful assistant. Answer questions about arithmetic, capitals, days of the "
      "week and opposites in one short sentence, and never add anything else.");
  const std::vector<SamplingParams> params = mixed_params(prompts.size(), 10, stop);
  const int64_t page_size = 8;
  // Request i finds the full pages of its longest common prefix with an earlier request (whose
  // prompt was prefilled before it started: one prefill at a time), short of its last position.
  int64_t expected_hits = 0, prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    int64_t best = 0;
    for (size_t j = 0; j < i; ++j) best = std::max(best, common_prefix(prompts[i], prompts[j]));
    const auto last = static_cast<int64_t>(prompts[i].size()) - 1;
    expected_hits += std::min(best, last) / page_size * page_size;
    prompt_tokens += static_cast<int64_t>(prompts[i].size());
  }
  ASSERT_GE(expected_hits, 5 * 3 * page_size);  // the system prompt spans several pages

  ServingOptions options{.batch_size = 2,
                         .prefill_chunk = 16,
                         .kv_budget = 0,
                         .paged = true,
                         .page_size = page_size,
                         .kv_pages = 0,
                         .prefix_cache = false};
  LLMEngine without(model, options);
  const std::vector<TokenIds> reference = serve(without, prompts, params);
  options.prefix_cache = true;
  LLMEngine with(model, options);
  const std::vector<TokenIds> cached = serve(with, prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(cached[i], reference[i]) << "request " << i;
    EXPECT_EQ(cached[i], alone(model, prompts[i], params[i]).tokens) << "request " << i;
  }
  const PagingStats stats = *with.paging();
  EXPECT_EQ(stats.prefix_hit_tokens, expected_hits);
  EXPECT_EQ(stats.prefix_query_tokens, prompt_tokens);
  EXPECT_EQ(stats.preemptions, 0);
  EXPECT_EQ(stats.evictions, 0);
  EXPECT_GT(stats.cached_pages, 0);
  expect_no_page_leak(with);
  expect_no_page_leak(without);
}

TEST(PagedServing, ATooSmallPoolPreemptsAndStillGivesSingleRunIds) {
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  const int64_t layers = model.config().num_hidden_layers, page_size = 8, max_tokens = 16;
  int64_t longest = 0;
  for (const TokenIds& p : prompts) longest = std::max<int64_t>(longest, p.size());
  // Room for the longest request and a bit: four slots cannot all grow at once.
  const int64_t blocks = (longest + max_tokens + page_size - 1) / page_size + 2;
  const std::vector<SamplingParams> params = mixed_params(prompts.size(), max_tokens, {});
  std::vector<Generation> expected;
  for (size_t i = 0; i < prompts.size(); ++i)
    expected.push_back(alone(model, prompts[i], params[i]));
  for (const bool prefix_cache : {false, true}) {
    SCOPED_TRACE(prefix_cache ? "prefix cache" : "no prefix cache");
    LLMEngine engine(model, {.batch_size = 4,
                             .prefill_chunk = 16,
                             .kv_budget = 0,
                             .paged = true,
                             .page_size = page_size,
                             .kv_pages = blocks * layers,
                             .prefix_cache = prefix_cache});
    for (size_t i = 0; i < prompts.size(); ++i) engine.submit(prompts[i], params[i]);
    while (engine.has_work()) {
      engine.step();
      ASSERT_LE(engine.paging()->pages_in_use, blocks * layers);
    }
    EXPECT_GT(engine.paging()->preemptions, 0);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto id = static_cast<int64_t>(i);
      EXPECT_EQ(engine.tokens(id), expected[i].tokens) << "request " << i;
      EXPECT_EQ(engine.metrics(id).output_tokens, static_cast<int64_t>(expected[i].tokens.size()));
    }
    EXPECT_EQ(engine.stats().finished, static_cast<int64_t>(prompts.size()));
    expect_no_page_leak(engine);
  }
}

TEST(PagedServing, CancelFreesPages) {
  const Qwen2Model& model = exact_bf16();
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  const std::vector<TokenIds> prompts = chat_prompts(tokenizer);
  LLMEngine engine(model, {.batch_size = 1,
                           .prefill_chunk = 8,
                           .kv_budget = 0,
                           .paged = true,
                           .page_size = 4,
                           .kv_pages = 0,
                           .prefix_cache = true});
  const int64_t decoding = engine.submit(prompts[0], {{}, 40, {}});
  const int64_t prefilling = engine.submit(prompts[1], {{}, 40, {}});
  const int64_t last = engine.submit(prompts[2], {{}, 6, {}});
  while (engine.progress().prefill_request != prefilling) engine.step();
  ASSERT_EQ(engine.progress().slots[0].request, decoding);
  // Pages held by requests (the rest of the pages in use are cached free blocks).
  const auto held = [&] { return engine.paging()->pages_in_use - engine.paging()->cached_pages; };
  const int64_t before = held();
  EXPECT_TRUE(engine.cancel(prefilling));
  const int64_t after_prefill = held();
  EXPECT_LT(after_prefill, before);
  EXPECT_GT(after_prefill, 0);
  EXPECT_TRUE(engine.cancel(decoding));
  EXPECT_EQ(held(), 0);
  engine.run_to_completion();
  EXPECT_EQ(engine.tokens(last), alone(model, prompts[2], {{}, 6, {}}).tokens);
  EXPECT_EQ(engine.finish(decoding), std::optional<Finish>(Finish::Cancelled));
  expect_no_page_leak(engine);
}

// A LanguageModel that is not the engine's: the paged mode cannot step on it.
class OtherModel : public LanguageModel {
 public:
  explicit OtherModel(const LanguageModel& inner) : inner_(inner) {}
  const Qwen2Config& config() const override { return inner_.config(); }
  std::vector<KvCache> create_kv_caches(int64_t batch) const override {
    return inner_.create_kv_caches(batch);
  }
  Tensor forward(const std::vector<TokenIds>& tokens, int64_t offset,
                 std::vector<KvCache>& caches) const override {
    return inner_.forward(tokens, offset, caches);
  }

 private:
  const LanguageModel& inner_;
};

TEST(PagedServing, BadOptionsAndRequestsAreRefused) {
  const Qwen2Model& model = exact_bf16();
  const int64_t layers = model.config().num_hidden_layers;
  const auto options = [](bool paged, int64_t page_size, int64_t pages, bool prefix) {
    return ServingOptions{.batch_size = 2,
                          .prefill_chunk = 8,
                          .kv_budget = 0,
                          .paged = paged,
                          .page_size = page_size,
                          .kv_pages = pages,
                          .prefix_cache = prefix};
  };
  EXPECT_THROW(LLMEngine(model, options(false, 16, 0, true)), InvalidArgument);
  EXPECT_THROW(LLMEngine(model, options(true, 0, 0, false)), InvalidArgument);
  EXPECT_THROW(LLMEngine(model, options(true, 16, -1, false)), InvalidArgument);
  EXPECT_THROW(LLMEngine(model, options(true, 16, layers - 1, false)), InvalidArgument);
  const OtherModel other(model);
  EXPECT_THROW(LLMEngine(other, options(true, 16, 0, false)), InvalidArgument);
  EXPECT_NO_THROW(LLMEngine(other, options(false, 16, 0, false)));
  // Two blocks of 4 positions: a request of 3 + 6 positions could never fit.
  LLMEngine small(model, options(true, 4, 2 * layers, false));
  EXPECT_THROW(small.submit({1, 2, 3}, {{}, 6, {}}), OutOfPages);
  EXPECT_FALSE(small.has_work());
  small.submit({1, 2, 3}, {{}, 5, {}});
  small.run_to_completion();
  EXPECT_EQ(small.tokens(0).size(), 5u);
  EXPECT_EQ(small.paging()->pages_in_use, 0);
}

}  // namespace
}  // namespace tinyllm::engine
