// Internal to the tokenizer (not a public header): GPT-2's byte-level alphabet, the PCRE2 regex
// wrapper used by the pre-tokenizer and the added-token matcher, and whitespace / word-character
// helpers that mirror Hugging Face's rules.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tinyllm/errors.hpp"
#include "unicode.hpp"

namespace tinyllm::tokenizer_detail {

// GPT-2's bytes_to_unicode: every byte gets a printable code point (printable Latin-1 bytes map to
// themselves, the others to U+0100 and up, in byte order).

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_utf8;  // UTF-8 of the printable character of each byte
  std::array<int, 324> cp_to_byte;            // inverse, -1 where no byte maps

  ByteLevelTables() {
    cp_to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const int cp = printable ? b : next++;
      byte_to_utf8[b].clear();
      unicode::append_utf8(byte_to_utf8[b], static_cast<char32_t>(cp));
      cp_to_byte[cp] = b;
    }
  }
};

/// The tables, built once.
const ByteLevelTables& byte_level();

/// Bytes -> GPT-2's printable byte-level string, and back.
std::string byte_level_encode(std::string_view bytes);
std::string byte_level_decode(std::string_view token);

/// A tokenizer.json regex rewritten for PCRE2 (\s and \S spelled out as Unicode White_Space).
/// Throws TokenizerError naming `field` for constructs PCRE2 cannot take.
std::string to_pcre2_pattern(std::string_view pattern, const std::string& field);

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& field)
      : pattern_(to_pcre2_pattern(pattern, field)) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                          PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (code_ == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error, message.data(), message.size());
      throw TokenizerError(field + ": cannot compile regex '" + pattern +
                           "': " + reinterpret_cast<const char*>(message.data()) + " at offset " +
                           std::to_string(offset));
    }
    pcre2_jit_compile(code_,
                      PCRE2_JIT_COMPLETE);  // optional: pcre2_match falls back to the interpreter
  }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex() { pcre2_code_free(code_); }

  /// Calls f(start, end) for each successive non-overlapping match in text (valid UTF-8).
  template <typename F>
  void for_each_match(std::string_view text, F&& f) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (md == nullptr) throw std::bad_alloc();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t pos = 0;
    uint32_t options = PCRE2_NO_UTF_CHECK;
    try {
      while (pos <= text.size()) {
        int rc = pcre2_match(code_, subject, text.size(), pos, options, md, nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // very long input: retry with the interpreter
          rc = pcre2_match(code_, subject, text.size(), pos, options | PCRE2_NO_JIT, md, nullptr);
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          std::array<PCRE2_UCHAR, 256> message{};
          pcre2_get_error_message(rc, message.data(), message.size());
          throw TokenizerError(std::string("regex match failed: ") +
                               reinterpret_cast<const char*>(message.data()));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const std::size_t start = ov[0], end = ov[1];
        if (end == start) {  // empty match: skip one character
          if (start >= text.size()) break;
          pos = start;
          unicode::next_code_point(text, pos);
          continue;
        }
        f(start, end);
        pos = end;
      }
    } catch (...) {
      pcre2_match_data_free(md);
      throw;
    }
    pcre2_match_data_free(md);
  }

  /// True when the pattern matches at the very start of text.
  bool matches_at_start(std::string_view text) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (md == nullptr) throw std::bad_alloc();
    const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                               PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, md, nullptr);
    pcre2_match_data_free(md);
    return rc >= 0;
  }

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
};

/// Rust regex's Unicode \w at byte offset pos of text (what HF's single_word checks).
bool is_word_char_at(std::string_view text, std::size_t pos);
bool ends_with_word_char(std::string_view text);
/// Start of the run of White_Space at the end of text.
std::size_t trailing_space_start(std::string_view text);
/// Length of the run of White_Space at the start of text.
std::size_t leading_space_length(std::string_view text);

}  // namespace tinyllm::tokenizer_detail
