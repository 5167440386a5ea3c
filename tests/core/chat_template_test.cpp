// Tests of the Qwen2 ChatML chat template. Expected texts come from transformers'
// apply_chat_template with Qwen2.5's Jinja template (tools/tokenizer/make_tokenizer_fixtures.py,
// data/fixtures/tokenizer/chat_template.json).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tinyllm/chat_template.hpp"
#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace {

using nlohmann::json;
using tinyllm::ChatMessage;

json load_fixture() {
  const auto path = tinyllm::testing::data_dir() / "fixtures" / "tokenizer" / "chat_template.json";
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "missing " << path
                  << "; regenerate it with tools/tokenizer/make_tokenizer_fixtures.py";
    return json::object({{"cases", json::array()}});
  }
  return json::parse(in);
}

std::vector<ChatMessage> messages_of(const json& c) {
  std::vector<ChatMessage> messages;
  for (const json& m : c.at("messages")) messages.push_back({m.at("role"), m.at("content")});
  return messages;
}

TEST(ChatTemplate, MatchesTransformersQwen25Template) {
  const json fixture = load_fixture();
  ASSERT_GE(fixture.at("cases").size(), 10u);
  for (const json& c : fixture.at("cases")) {
    const bool gen = c.at("add_generation_prompt").get<bool>();
    EXPECT_EQ(tinyllm::apply_chat_template(messages_of(c), gen), c.at("text").get<std::string>())
        << "case " << c.at("name") << ", add_generation_prompt=" << gen;
  }
}

TEST(ChatTemplate, DefaultSystemPromptOnlyWhenFirstMessageIsNotSystem) {
  EXPECT_EQ(
      tinyllm::apply_chat_template({{"user", "hi"}}),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
      "<|im_start|>assistant\n");
  EXPECT_EQ(tinyllm::apply_chat_template({{"system", "S"}, {"user", "hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
  EXPECT_EQ(tinyllm::apply_chat_template({{"user", "hi"}}, false, "You are Qwen."),
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
}

TEST(ChatTemplate, UnknownRoleOrEmptyConversationIsInvalidArgument) {
  EXPECT_THROW(tinyllm::apply_chat_template({{"user", "hi"}, {"tool", "{}"}}),
               tinyllm::InvalidArgument);
  EXPECT_THROW(tinyllm::apply_chat_template({{"User", "hi"}}), tinyllm::InvalidArgument);
  EXPECT_THROW(tinyllm::apply_chat_template({}), tinyllm::InvalidArgument);
  try {
    tinyllm::apply_chat_template({{"user", "a"}, {"robot", "b"}});
  } catch (const tinyllm::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'robot'"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, EncodesToChatMLSpecialTokens) {
  // The rendered prompt goes through the tokenizer: <|im_start|> / <|im_end|> become their special
  // ids, the same ids HF gives the same text (fixture case special_chatml_full of the test BPE).
  const auto data = tinyllm::testing::data_dir();
  const auto tok =
      tinyllm::Tokenizer::from_file(data / "tokenizers" / "test-bpe" / "tokenizer.json");
  const std::string prompt = tinyllm::apply_chat_template({{"user", "Hello!"}});
  std::ifstream in(data / "fixtures" / "tokenizer" / "test_bpe_ids.json");
  ASSERT_TRUE(in) << "missing test_bpe_ids.json";
  const json fixture = json::parse(in);
  bool found = false;
  for (const json& c : fixture.at("cases")) {
    if (c.at("name") != "special_chatml_full") continue;
    found = true;
    EXPECT_EQ(prompt, c.at("text").get<std::string>());
    EXPECT_EQ(tok.encode(prompt), c.at("ids").get<tinyllm::TokenIds>());
  }
  EXPECT_TRUE(found);
  const auto ids = tok.encode(prompt);
  EXPECT_EQ(ids.front(), tok.im_start_id());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.im_end_id()), 2);
}

}  // namespace
