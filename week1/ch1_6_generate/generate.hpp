// Chapter 1.6: generating text. The model of chapter 1.5 maps L token ids to L x V logits;
// generation calls it again and again, each time on the whole sequence so far (no KV cache yet:
// week 2 adds one), picks the next token from the logits of the last position, appends it, and
// stops at an end-of-sequence token or after max_new_tokens. The text is streamed to the caller
// token by token, never as half a UTF-8 character.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tinyllm/ch1_5_qwen2_model/qwen2_model.hpp>

#include "tinyllm/config.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tensor.hpp"
#include "tinyllm/todo.hpp"
#include "tinyllm/token.hpp"
#include "tinyllm/tokenizer.hpp"

namespace tinyllm {

/// Chooses the next token from the logits of the last position, a [V] tensor. greedy_pick below is
/// the default; chapter 1.7's Sampler is one too (pass it as std::ref(sampler): it keeps RNG state
/// between calls).
using TokenPicker = std::function<TokenId(const Tensor& logits)>;
/// Receives each generated token id as soon as it is picked (not called for the stop token).
using TokenCallback = std::function<void(TokenId id)>;
/// Receives the generated text in pieces; every piece is complete UTF-8, and the pieces concatenate
/// to the text.
using TextCallback = std::function<void(std::string_view piece)>;

struct GenerationOptions {
  int64_t max_new_tokens = 256;  // at most this many new tokens (the stop token is not counted)
  TokenIds stop_ids;  // generation ends when one of these is picked; see default_stop_ids
};

enum class StopReason { StopToken, MaxTokens };

struct Generation {
  TokenIds tokens;  // the new tokens, without the prompt and without the stop token
  StopReason stop_reason = StopReason::MaxTokens;
  std::optional<TokenId> stop_token;  // the stop id that ended generation, if one did
};

struct TextGeneration {
  Generation generation;
  std::string text;  // the generated text: exactly the concatenation of the pieces on_text received
  int64_t prompt_tokens = 0;
};

/// Task 1. Greedy decoding: the id of the largest of the V logits; among equal maxima the lowest
/// id. logits: [V] (ShapeError for another rank or V == 0).
inline TokenId greedy_pick(const Tensor& logits) {
  TINYLLM_TODO("ch1.6", "Task 1");
}

/// Task 1. One generation step by full recompute: runs the model on all L tokens of `tokens` (a
/// batch of one, 1 x L -> logits 1 x L x V) and returns the logits of the last position as a [V]
/// tensor. Throws InvalidArgument if `tokens` is empty.
inline Tensor next_token_logits(const Qwen2ModelWeek1& model, const TokenIds& tokens) {
  TINYLLM_TODO("ch1.6", "Task 1");
}

/// The ids that end a generation (given): the model's eos ids from config.json /
/// generation_config.json plus, when a tokenizer is given, its stop tokens (eos, "<|im_end|>" which
/// ends a chat turn, "<|endoftext|>").
inline TokenIds default_stop_ids(const Qwen2Config& config, const Tokenizer* tokenizer = nullptr) {
  TokenIds ids;
  auto add = [&ids](TokenId id) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (int64_t id : config.eos_token_ids) add(static_cast<TokenId>(id));
  if (tokenizer != nullptr) {
    for (TokenId id : tokenizer->stop_token_ids()) add(id);
  }
  return ids;
}

/// Task 2. The generation loop on token ids. Starting from `prompt` (P ids), repeatedly: logits of
/// the whole sequence so far (next_token_logits), id = pick(logits); if id is in options.stop_ids
/// stop (StopToken, the id goes to stop_token, not to tokens); otherwise append it, call
/// on_token(id) if set, and stop after options.max_new_tokens new tokens (MaxTokens). Errors,
/// checked before the model runs:
///   InvalidArgument if the prompt is empty or max_new_tokens < 0;
///   ContextLengthError if P + max_new_tokens > config.max_position_embeddings, with all three
///   numbers in the message.
inline Generation generate_tokens(const Qwen2ModelWeek1& model, const TokenIds& prompt,
                                  const GenerationOptions& options,
                                  const TokenPicker& pick = greedy_pick,
                                  const TokenCallback& on_token = {}) {
  TINYLLM_TODO("ch1.6", "Task 2");
}

/// Task 3. Text in, text out. Encodes `prompt` (already chat-templated if it is a chat; special
/// tokens in it are recognised), runs generate_tokens (stop ids: options.stop_ids, or
/// default_stop_ids(model config, tokenizer) if empty), and streams the text: every new id goes
/// through one StreamingDecoder, each non-empty piece it returns goes to on_text, and so does the
/// non-empty rest from finish() at the end. The stop token is never decoded. Returns the ids, the
/// whole text (the concatenated pieces) and the prompt's length in tokens.
inline TextGeneration simple_generate(const Qwen2ModelWeek1& model, const Tokenizer& tokenizer,
                                      std::string_view prompt, GenerationOptions options,
                                      const TokenPicker& pick = greedy_pick,
                                      const TextCallback& on_text = {}) {
  TINYLLM_TODO("ch1.6", "Task 3");
}

}  // namespace tinyllm
