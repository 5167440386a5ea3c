// Internal: the UTF-8 and Unicode helpers of the tokenizer (UTF-8 validation and decoding, NFC,
// lossy conversion). Not part of the public API.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tinyllm::unicode {

/// Byte offset of the first byte that does not start a valid UTF-8 sequence (overlong forms,
/// surrogates, code points above U+10FFFF and truncated sequences are invalid), or nullopt when the
/// whole text is valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view text);

/// Decodes the code point starting at text[pos] (text must be valid UTF-8) and advances pos past
/// it.
char32_t next_code_point(std::string_view text, std::size_t& pos);

/// Appends the UTF-8 encoding of cp.
void append_utf8(std::string& out, char32_t cp);

/// The canonical combining class of cp (0 for starters).
int combining_class(char32_t cp);

/// True when NFC(text) == text is certain from the quick check (NFC_Quick_Check and combining class
/// order).
bool is_nfc_quick(std::string_view text);

/// Unicode Normalization Form C of valid UTF-8 text.
std::string nfc(std::string_view text);

/// Unicode White_Space (the code points HF's regexes call \s).
bool is_white_space(char32_t cp);

/// Length of the longest prefix of `bytes` that is decided: every complete sequence and every
/// invalid byte run. What remains is a proper prefix of a valid sequence that more bytes could
/// still complete.
std::size_t decided_prefix_length(std::string_view bytes);

/// Converts bytes to valid UTF-8, replacing each maximal invalid subpart by U+FFFD (Rust's
/// from_utf8_lossy, the Unicode "best practice"), so an incomplete sequence at the end becomes one
/// U+FFFD.
std::string to_valid_utf8_lossy(std::string_view bytes);

/// The Unicode version of the NFC tables.
const char* nfc_unicode_version();

}  // namespace tinyllm::unicode
