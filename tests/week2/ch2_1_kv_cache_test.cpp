// Chapter 2.1 tests: the KV cache against torch.cat (data/fixtures/ch2.1/kv_cache.safetensors,
// tools/fixtures/gen_ch2_1_kv_cache.py); the Week 2 model, decoding one position at a time or in
// chunks, against Hugging Face's full-sequence logits (data/fixtures/ch1.5: two random checkpoints;
// data/fixtures/models: the trained tiny-qwen2); generation with a cache against HF's greedy ids.
// The HF logits are full recomputes of the whole sequence (no cache), so they are an independent
// oracle of what every cached step must give.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/generate_with_kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>

#include <gmock/gmock.h>

#include "model_fixtures.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

namespace fs = std::filesystem;
using testing::columns;
using testing::Fixture;
using testing::id_rows;
using testing::positions;

constexpr const char* kCheckpoints[] = {"qwen2-bf16-tied", "qwen2-f32-untied-sharded"};
// The tolerance of chapter 1.5's model tests: f32 on the same weights as HF, differing only in
// summation order (measured: a few 1e-6).
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;

fs::path fixture_model(const std::string& name) {
  return testing::data_dir() / "fixtures" / "ch1.5" / name;
}
fs::path tiny_qwen2() {
  return testing::data_dir() / "models" / "tiny-qwen2";
}

// A slice [begin, end) of the sequence axis of a B x H x S x D fixture tensor.
Tensor seq_slice(const Tensor& t, int64_t begin, int64_t end) {
  const Tensor moved = t.transpose(2, 3);  // B x H x D x S: slice the last axis row by row
  const int64_t S = t.dim(2), n = end - begin;
  Tensor out({t.dim(0), t.dim(1), t.dim(3), n});
  for (int64_t r = 0; r < moved.numel() / S; ++r) {
    std::copy_n(moved.data() + r * S + begin, n, out.data() + r * n);
  }
  return out.transpose(2, 3);
}

// ---- Task 1: KvCache ----

TEST(KvCache, Task1_AppendsEqualTorchCat) {
  const Fixture f("ch2.1/kv_cache.safetensors");
  KvCache cache(2, 3, 4, 16);
  EXPECT_EQ(cache.offset(), 0);
  const int64_t expected_offsets[] = {3, 4, 6};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const std::string n = std::to_string(i);
    const KvFetch kv = cache.update_and_fetch(f.tensor("keys_" + n), f.tensor("values_" + n));
    EXPECT_EQ(cache.offset(), expected_offsets[i]);
    EXPECT_TENSOR_NEAR(kv.keys, f.tensor("keys_after_" + n), 0.0, 0.0);
    EXPECT_TENSOR_NEAR(kv.values, f.tensor("values_after_" + n), 0.0, 0.0);
  }
  // The zero-copy views show the same rows: batch row 1, KV head 2.
  const Tensor all = f.tensor("keys_after_2");
  EXPECT_EQ(cache.keys_of(1, 2).rows(), 6);
  EXPECT_TRUE(cache.keys_of(1, 2).isApprox(all.matrix(1 * 3 + 2), 0.0f));
  EXPECT_TRUE(cache.values_of(0, 0).isApprox(f.tensor("values_after_2").matrix(0), 0.0f));
}

TEST(KvCache, Task1_GrowsOnePositionAtATimeUpToMaxSeqLen) {
  const Fixture f("ch2.1/kv_cache.safetensors");
  const Tensor keys = f.tensor("long_keys"), values = f.tensor("long_values");  // 1 x 2 x 40 x 4
  KvCache cache(1, 2, 4, 40);
  for (int64_t s = 0; s < 40; ++s) {
    const KvFetch kv =
        cache.update_and_fetch(seq_slice(keys, s, s + 1), seq_slice(values, s, s + 1));
    ASSERT_EQ(cache.offset(), s + 1);
    ASSERT_GE(cache.capacity(), s + 1);
    ASSERT_LE(cache.capacity(), 40);
    ASSERT_TENSOR_NEAR(kv.keys, seq_slice(keys, 0, s + 1), 0.0, 0.0);
    ASSERT_TENSOR_NEAR(kv.values, seq_slice(values, 0, s + 1), 0.0, 0.0);
  }
}

TEST(KvCache, Task1_CapacityGrowsGeometrically) {
  // 200 appends of one position: geometric growth reallocates O(log 200) times, not 200 times.
  KvCache cache(1, 1, 2, 1000);
  int64_t reallocations = 0, capacity = cache.capacity();
  for (int i = 0; i < 200; ++i) {
    cache.update_and_fetch(Tensor::full({1, 1, 1, 2}, static_cast<float>(i)),
                           Tensor::full({1, 1, 1, 2}, 1.0f));
    if (cache.capacity() != capacity) ++reallocations;
    capacity = cache.capacity();
  }
  EXPECT_LE(reallocations, 10);
  EXPECT_EQ(cache.keys_of(0, 0)(199, 1), 199.0f);
}

TEST(KvCache, Task1_RewindThenAppendOverwritesTheNewest) {
  const Fixture f("ch2.1/kv_cache.safetensors");
  KvCache cache(2, 3, 4, 16);
  for (const char* n : {"0", "1", "2"}) {
    cache.update_and_fetch(f.tensor(std::string("keys_") + n),
                           f.tensor(std::string("values_") + n));
  }
  cache.rewind(0);
  EXPECT_EQ(cache.offset(), 6);
  cache.rewind(2);
  EXPECT_EQ(cache.offset(), 4);
  const KvFetch kv = cache.update_and_fetch(f.tensor("keys_3"), f.tensor("values_3"));
  EXPECT_EQ(cache.offset(), 5);
  EXPECT_TENSOR_NEAR(kv.keys, f.tensor("rewound_keys"), 0.0, 0.0);
  EXPECT_TENSOR_NEAR(kv.values, f.tensor("rewound_values"), 0.0, 0.0);
  cache.rewind(5);
  EXPECT_EQ(cache.offset(), 0);
}

TEST(KvCache, Task1_RewindTooFarIsInvalidArgument) {
  KvCache cache(1, 2, 4, 8);
  cache.update_and_fetch(Tensor::full({1, 2, 3, 4}, 1.0f), Tensor::full({1, 2, 3, 4}, 2.0f));
  EXPECT_THROW(cache.rewind(4), InvalidArgument);
  EXPECT_THROW(cache.rewind(-1), InvalidArgument);
  EXPECT_EQ(cache.offset(), 3);
}

TEST(KvCache, Task1_WrongShapesAreShapeErrors) {
  KvCache cache(2, 2, 4, 8);
  const Tensor ok = Tensor::full({2, 2, 1, 4}, 1.0f);
  cache.update_and_fetch(ok, ok);
  EXPECT_THROW(cache.update_and_fetch(Tensor::full({2, 1, 4}, 1.0f), Tensor::full({2, 1, 4}, 1.0f)),
               ShapeError);  // rank 3
  for (const Shape& bad :
       {Shape{1, 2, 1, 4}, Shape{2, 3, 1, 4}, Shape{2, 2, 1, 5}, Shape{2, 2, 0, 4}}) {
    SCOPED_TRACE(shape_to_string(bad));
    EXPECT_THROW(cache.update_and_fetch(Tensor::full(bad, 1.0f), Tensor::full(bad, 1.0f)),
                 ShapeError);
  }
  EXPECT_THROW(cache.update_and_fetch(ok, Tensor::full({2, 2, 2, 4}, 1.0f)), ShapeError);
  EXPECT_EQ(cache.offset(), 1);  // nothing was appended
}

TEST(KvCache, Task1_OverflowIsContextLengthErrorAndKeepsTheCache) {
  KvCache cache(1, 1, 2, 5);
  cache.update_and_fetch(Tensor::full({1, 1, 3, 2}, 1.0f), Tensor::full({1, 1, 3, 2}, 1.0f));
  EXPECT_THROW(
      cache.update_and_fetch(Tensor::full({1, 1, 3, 2}, 2.0f), Tensor::full({1, 1, 3, 2}, 2.0f)),
      ContextLengthError);
  EXPECT_EQ(cache.offset(), 3);
  const KvFetch kv =
      cache.update_and_fetch(Tensor::full({1, 1, 2, 2}, 2.0f), Tensor::full({1, 1, 2, 2}, 2.0f));
  EXPECT_EQ(cache.offset(), 5);
  EXPECT_EQ(kv.keys.at({0, 0, 2, 1}), 1.0f);
  EXPECT_EQ(kv.keys.at({0, 0, 3, 0}), 2.0f);
}

// ---- Task 2: the model with caches ----

TEST(ModelWeek2, Task2_CreateKvCachesOnePerLayer) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(fixture_model(kCheckpoints[1]));
  const std::vector<KvCache> caches = model.create_kv_caches(2);
  ASSERT_EQ(static_cast<int64_t>(caches.size()), model.config().num_hidden_layers);
  for (const KvCache& c : caches) {
    EXPECT_EQ(c.offset(), 0);
    EXPECT_EQ(c.batch(), 2);
    EXPECT_EQ(c.num_heads(), model.config().num_key_value_heads);
    EXPECT_EQ(c.head_dim(), model.config().head_dim);
    EXPECT_EQ(c.max_seq_len(), model.config().max_position_embeddings);
  }
}

// A random checkpoint of chapter 1.5 with HF's logits of its 2 x 7 batch.
struct HfBatch {
  Qwen2ModelWeek2 model;
  std::vector<TokenIds> ids;  // B x L
  Tensor logits;              // B x L x V
};

HfBatch hf_batch(const std::string& name) {
  const Fixture f("ch1.5/" + name + ".safetensors");
  return {load_qwen2_week2(fixture_model(name)), id_rows(f, "ids_b2l7"), f.tensor("logits_b2l7")};
}

// Feeds positions [bounds[i], bounds[i+1]) of every row in one call each, on `caches`, and compares
// every call's logits with HF's at those positions.
void expect_chunks_match_hf(const HfBatch& hf, const std::vector<int64_t>& bounds,
                            std::vector<KvCache>& caches) {
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    const int64_t begin = bounds[i], end = bounds[i + 1];
    SCOPED_TRACE("positions " + std::to_string(begin) + ".." + std::to_string(end - 1));
    EXPECT_TENSOR_NEAR(hf.model.forward(columns(hf.ids, begin, end), begin, caches),
                       positions(hf.logits, begin, end), kLogitAtol, kLogitRtol);
    EXPECT_EQ(caches.back().offset(), end);
  }
}

TEST(ModelWeek2, Task2_DecodeOnePositionAtATimeMatchesHfLogits) {
  // Batch of two rows, seven tokens each, fed one position per call: every step's logits equal
  // HF's full-sequence logits at that position.
  for (const std::string name : kCheckpoints) {
    SCOPED_TRACE(name);
    const HfBatch hf = hf_batch(name);
    std::vector<KvCache> caches = hf.model.create_kv_caches(2);
    expect_chunks_match_hf(hf, {0, 1, 2, 3, 4, 5, 6, 7}, caches);
  }
}

TEST(ModelWeek2, Task2_PrefillInTwoChunksMatchesHfLogits) {
  // 3 + 4 tokens: the second chunk's 4 queries see 7 keys (the bottom-right causal mask of 4 x 7).
  for (const std::string name : kCheckpoints) {
    SCOPED_TRACE(name);
    const HfBatch hf = hf_batch(name);
    std::vector<KvCache> caches = hf.model.create_kv_caches(2);
    expect_chunks_match_hf(hf, {0, 3, 7}, caches);
    // A single-token prompt is a prefill of one position.
    const Fixture f("ch1.5/" + name + ".safetensors");
    std::vector<KvCache> fresh = hf.model.create_kv_caches(1);
    EXPECT_TENSOR_NEAR(hf.model.forward(id_rows(f, "ids_b1l1"), 0, fresh), f.tensor("logits_b1l1"),
                       kLogitAtol, kLogitRtol);
  }
}

TEST(ModelWeek2, Task2_TinyQwen2DecodeMatchesHfLogits) {
  // The trained model (8 layers, E = 256, V = 4096): prefill half the prompt, decode the rest one
  // token at a time, and compare every position with HF's logits.
  testing::expect_tiny_qwen2_prompts_match(load_qwen2_week2(tiny_qwen2()), kLogitAtol, kLogitRtol);
}

TEST(ModelWeek2, Task2_RewindThenRedecodeGivesTheSameLogits) {
  const HfBatch hf = hf_batch(kCheckpoints[0]);
  std::vector<KvCache> caches = hf.model.create_kv_caches(2);
  hf.model.forward(hf.ids, 0, caches);
  // Drop the last three positions of every layer (what speculative decoding does on rejection),
  // then feed a wrong token at position 4 and drop it again: the cache must not remember it.
  for (KvCache& c : caches) c.rewind(3);
  const std::vector<TokenIds> wrong = {{1}, {2}};
  hf.model.forward(wrong, 4, caches);
  for (KvCache& c : caches) c.rewind(1);
  expect_chunks_match_hf(hf, {4, 5, 6, 7}, caches);
}

TEST(ModelWeek2, Task2_OffsetMustMatchTheCaches) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(fixture_model(kCheckpoints[0]));
  std::vector<KvCache> caches = model.create_kv_caches();
  model.forward({{1, 2, 3}}, 0, caches);
  EXPECT_THROW(model.forward({{4}}, 4, caches), InvalidArgument);  // off by one (course PR #46)
  EXPECT_THROW(model.forward({{4}}, 0, caches), InvalidArgument);
  EXPECT_EQ(caches[0].offset(), 3);
}

TEST(ModelWeek2, Task2_BadCachesAndContextOverflowAreErrors) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(fixture_model(kCheckpoints[0]));
  ASSERT_EQ(model.config().max_position_embeddings, 128);
  std::vector<KvCache> caches = model.create_kv_caches();
  model.forward({TokenIds(120, 5)}, 0, caches);
  EXPECT_THROW(model.forward({TokenIds(9, 5)}, 120, caches), ContextLengthError);
  EXPECT_EQ(caches[0].offset(), 120);
  std::vector<KvCache> too_few(caches.begin(), caches.end() - 1);
  EXPECT_THROW(model.forward({{5}}, 120, too_few), InvalidArgument);
  EXPECT_THROW(model.forward({{5}, {6}}, 120, caches), ShapeError);  // 2 rows, caches of 1
  EXPECT_EQ(caches[0].offset(), 120);
}

// ---- Task 3: generation with a cache ----

// Row b, position l of a B x L x V tensor as [V].
Tensor logits_of(const Tensor& t, int64_t b, int64_t l) {
  const int64_t L = t.dim(1), V = t.dim(2);
  return Tensor({V},
                std::vector<float>(t.data() + (b * L + l) * V, t.data() + (b * L + l + 1) * V));
}

TEST(GenerateWithKvCache, Task3_DecodeStepPrefillsThenDecodes) {
  for (const std::string name : kCheckpoints) {
    SCOPED_TRACE(name);
    const HfBatch hf = hf_batch(name);
    const TokenIds& row = hf.ids[1];
    std::vector<KvCache> caches = hf.model.create_kv_caches();
    EXPECT_TENSOR_NEAR(decode_step(hf.model, TokenIds(row.begin(), row.begin() + 5), caches),
                       logits_of(hf.logits, 1, 4), kLogitAtol, kLogitRtol);
    EXPECT_EQ(caches[0].offset(), 5);
    for (int64_t l = 5; l < 7; ++l) {
      EXPECT_TENSOR_NEAR(decode_step(hf.model, {row[static_cast<size_t>(l)]}, caches),
                         logits_of(hf.logits, 1, l), kLogitAtol, kLogitRtol);
    }
    EXPECT_EQ(caches.back().offset(), 7);
    EXPECT_THROW(decode_step(hf.model, {}, caches), InvalidArgument);
  }
}

TEST(GenerateWithKvCache, Task3_GreedyIdsMatchHf) {
  // HF's 16 greedy ids (generate(do_sample=False)) after a 5-token prompt, on both checkpoints.
  for (const std::string name : kCheckpoints) {
    SCOPED_TRACE(name);
    const Fixture f("ch1.5/" + name + ".safetensors");
    const Qwen2ModelWeek2 model = load_qwen2_week2(fixture_model(name));
    TokenIds streamed;
    const Generation out =
        generate_tokens_with_kv_cache(model, id_rows(f, "greedy_prompt")[0],
                                      GenerationOptions{.max_new_tokens = 16, .stop_ids = {}},
                                      greedy_pick, [&](TokenId id) { streamed.push_back(id); });
    const std::vector<int64_t> expected = f.ints("greedy_ids");
    EXPECT_EQ(out.tokens, TokenIds(expected.begin(), expected.end()));
    EXPECT_EQ(out.stop_reason, StopReason::MaxTokens);
    EXPECT_EQ(streamed, out.tokens);
  }
}

struct Golden {
  std::string prompt;
  TokenIds input_ids, greedy_ids;
  size_t comparable = 0;  // greedy ids before the first near tie (margin < 0.05)
};

Golden golden(const std::string& prompt_name) {
  const Fixture f("models/tiny-qwen2." + prompt_name + ".safetensors");
  const std::vector<int64_t> input = f.ints("input_ids"), greedy = f.ints("greedy_ids");
  Golden g{f.meta("prompt"), TokenIds(input.begin(), input.end()),
           TokenIds(greedy.begin(), greedy.end())};
  const Tensor margin = f.tensor("greedy_margin");
  while (g.comparable < g.greedy_ids.size() && margin.data()[g.comparable] >= 0.05f) ++g.comparable;
  return g;
}

TEST(GenerateWithKvCache, Task3_TinyQwen2GreedyIdsMatchHf) {
  // Every prompt of the trained model's fixtures, greedy without stop ids, up to the first near
  // tie.
  const Qwen2ModelWeek2 model = load_qwen2_week2(tiny_qwen2());
  size_t compared = 0;
  for (const char* name : {"chat_add", "chat_capital", "chat_multiturn", "chat_reading",
                           "raw_story", "tool_weather"}) {
    SCOPED_TRACE(name);
    const Golden g = golden(name);
    const Generation out = generate_tokens_with_kv_cache(
        model, g.input_ids,
        GenerationOptions{.max_new_tokens = static_cast<int64_t>(g.comparable), .stop_ids = {}});
    EXPECT_EQ(out.tokens,
              TokenIds(g.greedy_ids.begin(),
                       g.greedy_ids.begin() + static_cast<std::ptrdiff_t>(g.comparable)));
    compared += g.comparable;
  }
  EXPECT_GE(compared, 60u) << "the fixtures' margins leave too few comparable ids";
}

TEST(GenerateWithKvCache, Task3_StopsAtAStopTokenWithoutAppendingIt) {
  const std::string name = kCheckpoints[0];
  const Fixture f("ch1.5/" + name + ".safetensors");
  const Qwen2ModelWeek2 model = load_qwen2_week2(fixture_model(name));
  const std::vector<int64_t> expected = f.ints("greedy_ids");
  const auto stop = static_cast<TokenId>(expected[3]);
  const auto first = static_cast<size_t>(std::find(expected.begin(), expected.end(), expected[3]) -
                                         expected.begin());
  const Generation out =
      generate_tokens_with_kv_cache(model, id_rows(f, "greedy_prompt")[0],
                                    GenerationOptions{.max_new_tokens = 16, .stop_ids = {stop}});
  EXPECT_EQ(out.stop_reason, StopReason::StopToken);
  EXPECT_EQ(out.stop_token, std::optional<TokenId>(stop));
  EXPECT_EQ(out.tokens,
            TokenIds(expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(first)));
}

TEST(GenerateWithKvCache, Task3_GoldenChatAnswerOfTheEmbeddedModel) {
  // Text in, text out: HF's greedy answer up to <|im_end|> (a default stop id), streamed.
  const Qwen2ModelWeek2 model = load_qwen2_week2(tiny_qwen2());
  const Tokenizer tokenizer = Tokenizer::from_model_dir(tiny_qwen2());
  for (const char* name : {"chat_add", "chat_capital"}) {
    SCOPED_TRACE(name);
    const Golden g = golden(name);
    const auto im_end =
        std::find(g.greedy_ids.begin(), g.greedy_ids.end(), *tokenizer.token_to_id("<|im_end|>"));
    ASSERT_LT(static_cast<size_t>(im_end - g.greedy_ids.begin()), g.comparable);
    std::string streamed;
    const TextGeneration out = simple_generate_with_kv_cache(
        model, tokenizer, g.prompt, GenerationOptions{.max_new_tokens = 32, .stop_ids = {}},
        greedy_pick, [&](std::string_view piece) { streamed += piece; });
    EXPECT_EQ(out.generation.tokens, TokenIds(g.greedy_ids.begin(), im_end));
    EXPECT_EQ(out.generation.stop_token, std::optional<TokenId>(*im_end));
    EXPECT_EQ(out.prompt_tokens, static_cast<int64_t>(g.input_ids.size()));
    EXPECT_EQ(streamed, tokenizer.decode(out.generation.tokens));
    EXPECT_EQ(out.text, streamed);
  }
}

TEST(GenerateWithKvCache, Task3_PromptTooLongIsContextLengthError) {
  const Qwen2ModelWeek2 model = load_qwen2_week2(fixture_model(kCheckpoints[0]));
  ASSERT_EQ(model.config().max_position_embeddings, 128);
  // A request that fits runs (and fills the context exactly) ...
  const Generation fits = generate_tokens_with_kv_cache(
      model, TokenIds(120, 7), GenerationOptions{.max_new_tokens = 8, .stop_ids = {}});
  EXPECT_EQ(fits.tokens.size(), 8u);
  // ... one that does not is refused before any work, naming the numbers.
  try {
    generate_tokens_with_kv_cache(model, TokenIds(120, 7),
                                  GenerationOptions{.max_new_tokens = 9, .stop_ids = {}});
    FAIL() << "120 + 9 tokens do not fit into a context of 128";
  } catch (const ContextLengthError& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("129 in all"));
  }
  EXPECT_THROW(generate_tokens_with_kv_cache(
                   model, TokenIds(130, 7), GenerationOptions{.max_new_tokens = 0, .stop_ids = {}}),
               ContextLengthError);
  EXPECT_THROW(generate_tokens_with_kv_cache(model, {}, GenerationOptions{}), InvalidArgument);
}

}  // namespace
}  // namespace tinyllm
