// Qwen2.5's ChatML template for plain messages (see chat_template.hpp).
#include "tinyllm/chat_template.hpp"

#include "tinyllm/errors.hpp"

namespace tinyllm {

std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt,
                                std::string_view default_system_prompt) {
  if (messages.empty())
    throw InvalidArgument("apply_chat_template: the conversation has no messages");
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      throw InvalidArgument("apply_chat_template: message " + std::to_string(i) + " has role '" +
                            role + "'; expected system, user or assistant");
    }
  }
  if (messages.front().role != "system") {
    out += "<|im_start|>system\n";
    out += default_system_prompt;
    out += "<|im_end|>\n";
  }
  for (const ChatMessage& message : messages) {
    out += "<|im_start|>";
    out += message.role;
    out += '\n';
    out += message.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  return apply_chat_template(messages, add_generation_prompt, kDefaultSystemPrompt);
}

}  // namespace tinyllm
