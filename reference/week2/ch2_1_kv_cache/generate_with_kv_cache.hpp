// Chapter 2.1, Task 3: generation with a KV cache. Chapter 1.6 ran the model on the whole sequence
// for every new token (O(t) work for token t, O(T^2) for T tokens); with one cache per layer the
// prompt is run once (prefill, offset 0) and then every step feeds only the newest token at offset
// = the number of positions already cached (decode, L' = 1). Same options, pickers, callbacks and
// results as chapter 1.6 (GenerationOptions, TokenPicker, Generation, TextGeneration), so chapter
// 1.7's Sampler and the streaming decoder work unchanged.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <tinyllm/ch1_6_generate/generate.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>

#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"
#include "tinyllm/tokenizer.hpp"

namespace tinyllm {

/// Provided. The checks of chapter 1.6's generate_tokens, before any model work: InvalidArgument
/// for an empty prompt or max_new_tokens < 0; ContextLengthError naming the three numbers if the
/// P prompt tokens plus max_new_tokens do not fit into `context` positions.
inline void check_generation_request(int64_t prompt_tokens, const GenerationOptions& options,
                                     int64_t context) {
  if (prompt_tokens == 0) throw InvalidArgument("generate: the prompt has no tokens");
  if (options.max_new_tokens < 0) {
    throw InvalidArgument("generate: max_new_tokens must be >= 0, got " +
                          std::to_string(options.max_new_tokens));
  }
  const int64_t total = prompt_tokens + options.max_new_tokens;
  if (total > context) {
    throw ContextLengthError("the prompt has " + std::to_string(prompt_tokens) +
                             " tokens and up to " + std::to_string(options.max_new_tokens) +
                             " new tokens were asked for (" + std::to_string(total) +
                             " in all), but the model's context is " + std::to_string(context) +
                             " tokens (max_position_embeddings)");
  }
}

/// Task 3. One step: runs the model on `tokens` (1 x L' new ids) at offset caches[0].offset(),
/// appending to the caches, and returns the logits of the last new position as [V]
/// (model.forward_last, 1 x V, which lets a fast model skip the head for the other positions).
/// Prefill is decode_step(model, prompt, caches) on empty caches; each decode step passes one
/// token. Throws InvalidArgument if `tokens` or `caches` is empty; the model's errors otherwise.
/// `model` is any LanguageModel: your Qwen2ModelWeek2 or the engine's.
inline Tensor decode_step(const LanguageModel& model, const TokenIds& tokens,
                          std::vector<KvCache>& caches) {
  // SOLUTION BEGIN ch2.1 Task 3
  if (tokens.empty()) throw InvalidArgument("decode_step: no tokens to run");
  if (caches.empty()) throw InvalidArgument("decode_step: no caches");
  const Tensor last = model.forward_last({tokens}, caches[0].offset(), caches);  // 1 x V
  return last.reshape({last.dim(1)});
  // SOLUTION END
}

/// Task 3. Chapter 1.6's generate_tokens with a KV cache: fresh caches (create_kv_caches), prefill
/// the P prompt ids once, then repeatedly id = pick(logits); if id is a stop id stop (StopToken,
/// stop_token = id, not appended); else append it, call on_token(id), and stop after
/// max_new_tokens (MaxTokens); otherwise decode_step({id}) at offset P + (tokens so far) - 1.
/// Errors, checked before the model runs (as in chapter 1.6): InvalidArgument for an empty prompt
/// or max_new_tokens < 0; ContextLengthError if P + max_new_tokens > max_position_embeddings.
/// With greedy_pick the ids equal chapter 1.6's (the logits agree to float rounding).
inline Generation generate_tokens_with_kv_cache(const LanguageModel& model, const TokenIds& prompt,
                                                const GenerationOptions& options,
                                                const TokenPicker& pick = greedy_pick,
                                                const TokenCallback& on_token = {}) {
  check_generation_request(static_cast<int64_t>(prompt.size()), options,
                           model.config().max_position_embeddings);
  // SOLUTION BEGIN ch2.1 Task 3
  Generation result;
  if (options.max_new_tokens == 0) return result;
  std::vector<KvCache> caches = model.create_kv_caches();
  Tensor logits = decode_step(model, prompt, caches);  // prefill
  while (true) {
    const TokenId id = pick(logits);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end()) {
      result.stop_reason = StopReason::StopToken;
      result.stop_token = id;
      return result;
    }
    result.tokens.push_back(id);
    if (on_token) on_token(id);
    if (static_cast<int64_t>(result.tokens.size()) >= options.max_new_tokens) break;
    logits = decode_step(model, {id}, caches);  // decode: one token at offset caches[0].offset()
  }
  result.stop_reason = StopReason::MaxTokens;
  return result;
  // SOLUTION END
}

/// Task 3. Chapter 1.6's simple_generate on generate_tokens_with_kv_cache: encode the prompt, stop
/// ids = options.stop_ids or default_stop_ids(config, &tokenizer), stream every new id through one
/// StreamingDecoder to on_text (non-empty pieces only, then finish()'s rest). Returns ids, text and
/// the prompt's length in tokens.
inline TextGeneration simple_generate_with_kv_cache(const LanguageModel& model,
                                                    const Tokenizer& tokenizer,
                                                    std::string_view prompt,
                                                    GenerationOptions options,
                                                    const TokenPicker& pick = greedy_pick,
                                                    const TextCallback& on_text = {}) {
  // SOLUTION BEGIN ch2.1 Task 3
  const TokenIds prompt_ids = tokenizer.encode(prompt);
  if (options.stop_ids.empty()) options.stop_ids = default_stop_ids(model.config(), &tokenizer);
  TextGeneration result;
  result.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  StreamingDecoder decoder(tokenizer);
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return;
    result.text += piece;
    if (on_text) on_text(piece);
  };
  result.generation = generate_tokens_with_kv_cache(model, prompt_ids, options, pick,
                                                    [&](TokenId id) { emit(decoder.push(id)); });
  emit(decoder.finish());
  return result;
  // SOLUTION END
}

}  // namespace tinyllm
