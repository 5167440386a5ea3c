// Test helpers for models with a KV cache (chapter 2.1's Qwen2ModelWeek2, the engine, ...): the
// id rows of a fixture, slices of ids and logits by position, and the prefill-then-decode check
// against Hugging Face's logits that chapter 2.1's and the engine's tests share.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tinyllm/tensor.hpp"
#include "tinyllm/token.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm::testing {

/// n prompts of random ids with lengths in [min_len, max_len] (invariance tests need no meaning).
inline std::vector<TokenIds> random_prompts(int n, int64_t vocab, int64_t min_len, int64_t max_len,
                                            uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> length(min_len, max_len), id(0, vocab - 1);
  std::vector<TokenIds> prompts(static_cast<size_t>(n));
  for (TokenIds& p : prompts) {
    p.resize(static_cast<size_t>(length(rng)));
    for (TokenId& t : p) t = static_cast<TokenId>(id(rng));
  }
  return prompts;
}

/// The rows of an int64 B x L fixture tensor (token ids).
inline std::vector<TokenIds> id_rows(const Fixture& f, const std::string& name) {
  const int64_t L = f.file().info(name).shape.back();
  const std::vector<int64_t> flat = f.ints(name);
  std::vector<TokenIds> rows;
  for (size_t i = 0; i < flat.size(); i += static_cast<size_t>(L)) {
    rows.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(i),
                      flat.begin() + static_cast<std::ptrdiff_t>(i) + L);
  }
  return rows;
}

/// Positions [begin, end) of every row of ids (B x L).
inline std::vector<TokenIds> columns(const std::vector<TokenIds>& rows, int64_t begin,
                                     int64_t end) {
  std::vector<TokenIds> out;
  for (const TokenIds& r : rows) out.emplace_back(r.begin() + begin, r.begin() + end);
  return out;
}

/// Positions [begin, end) of every row of a B x L x V tensor: B x (end - begin) x V.
inline Tensor positions(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t B = t.dim(0), L = t.dim(1), V = t.dim(2), n = end - begin;
  Tensor out({B, n, V});
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(t.data() + (b * L + begin) * V, n * V, out.data() + b * n * V);
  }
  return out;
}

/// Feeds ids (B x L) to `model` (anything with create_kv_caches(B) and forward(ids, offset,
/// caches)): positions [0, split) in one call, then one position per call, and compares each
/// call's logits with `expected` (B x L x V, HF's) at those positions.
template <typename Model>
void expect_prefill_then_decode_match(const Model& model, const std::vector<TokenIds>& ids,
                                      const Tensor& expected, int64_t split, double atol,
                                      double rtol) {
  const auto B = static_cast<int64_t>(ids.size()), L = static_cast<int64_t>(ids.front().size());
  auto caches = model.create_kv_caches(B);
  EXPECT_TENSOR_NEAR(model.forward(columns(ids, 0, split), 0, caches),
                     positions(expected, 0, split), atol, rtol);
  for (int64_t l = split; l < L; ++l) {
    SCOPED_TRACE("position " + std::to_string(l));
    EXPECT_TENSOR_NEAR(model.forward(columns(ids, l, l + 1), l, caches),
                       positions(expected, l, l + 1), atol, rtol);
  }
}

/// The trained tiny-qwen2's fixtures (data/fixtures/models/tiny-qwen2.<prompt>.safetensors, whole
/// prompts with HF's logits): half of each prompt prefilled, the rest decoded one by one.
template <typename Model>
void expect_tiny_qwen2_prompts_match(const Model& model, double atol, double rtol) {
  for (const char* prompt : {"raw_story", "chat_add"}) {
    SCOPED_TRACE(prompt);
    const Fixture f(std::string("models/tiny-qwen2.") + prompt + ".safetensors");
    ASSERT_EQ(f.meta("logits_start"), "0");
    const std::vector<int64_t> flat = f.ints("input_ids");
    const auto T = static_cast<int64_t>(flat.size());
    expect_prefill_then_decode_match(model, {TokenIds(flat.begin(), flat.end())},
                                     f.tensor("logits").reshape({1, T, -1}), T / 2, atol, rtol);
  }
}

}  // namespace tinyllm::testing
