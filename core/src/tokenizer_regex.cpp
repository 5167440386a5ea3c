// GPT-2's byte-level alphabet, PCRE2 pattern translation and whitespace helpers of the tokenizer.
#include "tokenizer_regex.hpp"

#include <cctype>

#include "unicode.hpp"

namespace tinyllm::tokenizer_detail {
namespace {

// ---------------------------------------------------------------------------------------------------------------

/// The code points of Unicode White_Space, which HF's regex engines (Oniguruma, Rust regex) use for
/// \s. PCRE2's \s with UCP also matches U+180E (MONGOLIAN VOWEL SEPARATOR, White_Space only before
/// Unicode 6.3), which HF does not (checked by Tokenizer.QwenPreTokenizerMatchesHF), so \s and \S
/// are spelled out explicitly.
constexpr std::string_view kWhiteSpaceClass =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{"
    "205F}\\x{3000}";

/// Word characters of Rust regex's Unicode \w (what HF's single_word checks): Alphabetic, marks,
/// decimal digits, connector punctuation, join controls.
const Regex& word_char_regex() {
  static const Regex re("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]",
                        "word character class");
  return re;
}

}  // namespace

const ByteLevelTables& byte_level() {
  static const ByteLevelTables tables;
  return tables;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& t = byte_level();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.byte_to_utf8[static_cast<unsigned char>(c)];
  return out;
}

/// HF's ByteLevel decoder on one token: every character back to its byte; a token with a character
/// outside the mapping (possible for added tokens) is kept as its own UTF-8 bytes.
std::string byte_level_decode(std::string_view token) {
  const auto& t = byte_level();
  std::string out;
  out.reserve(token.size());
  std::size_t pos = 0;
  while (pos < token.size()) {
    const char32_t cp = unicode::next_code_point(token, pos);
    if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return std::string(token);
    out.push_back(static_cast<char>(t.cp_to_byte[cp]));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Regexes (PCRE2, UTF + UCP, JIT when available).

std::string to_pcre2_pattern(std::string_view pattern, const std::string& field) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  std::size_t class_start = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      if (e == 's' || e == 'S') {
        if (in_class) {
          if (e == 'S')
            throw TokenizerError(field + ": \\S inside a character class is not supported");
          out += kWhiteSpaceClass;
        } else {
          out += e == 's' ? "[" : "[^";
          out += kWhiteSpaceClass;
          out += "]";
        }
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = out.size() + 1;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') {
        out += '^';
        ++i;
        class_start = out.size();
      }
      continue;
    }
    if (in_class && c == ']' && out.size() > class_start) in_class = false;
    out += c;
  }
  return out;
}

bool is_word_char_at(std::string_view text, std::size_t pos) {
  if (pos >= text.size()) return false;
  const auto b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) return std::isalnum(b) != 0 || b == '_';
  return word_char_regex().matches_at_start(text.substr(pos));
}

bool ends_with_word_char(std::string_view text) {
  if (text.empty()) return false;
  std::size_t pos = text.size() - 1;
  while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
  return is_word_char_at(text, pos);
}

/// Start of the run of White_Space at the end of text.
std::size_t trailing_space_start(std::string_view text) {
  std::size_t start = text.size();
  while (start > 0) {
    std::size_t pos = start - 1;
    while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
    std::size_t p = pos;
    if (!unicode::is_white_space(unicode::next_code_point(text, p))) break;
    start = pos;
  }
  return start;
}

/// Length of the run of White_Space at the start of text.
std::size_t leading_space_length(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t p = pos;
    if (!unicode::is_white_space(unicode::next_code_point(text, p))) break;
    pos = p;
  }
  return pos;
}

}  // namespace tinyllm::tokenizer_detail
