// The Qwen2 / Qwen2.5 ChatML chat template, implemented in C++ (no Jinja). For plain messages it
// renders exactly what transformers' apply_chat_template renders with Qwen2.5's template:
//
//   <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n  (unless the first message is
//                                                                 "system")
//   <|im_start|>{role}\n{content}<|im_end|>\n                     (every message, in order)
//   <|im_start|>assistant\n                                       (add_generation_prompt)
//
// Tool calls and multimodal content are not supported.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tinyllm {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

/// The system prompt inserted when the conversation does not start with a system message.
inline constexpr std::string_view kDefaultSystemPrompt = "You are a helpful assistant.";

/// Renders a conversation in ChatML. An empty conversation or a role other than
/// system/user/assistant: InvalidArgument. The result is meant for Tokenizer::encode, which turns
/// <|im_start|> / <|im_end|> into their special-token ids.
std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt = true);

/// Same, with another default system prompt (e.g. Qwen2.5-Instruct's "You are Qwen, created by
/// Alibaba Cloud. You are a helpful assistant.").
std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, std::string_view default_system_prompt);

}  // namespace tinyllm
