// The byte-level BPE tokenizer of Qwen2 (and GPT-2 style models), driven by a HuggingFace
// `tokenizer.json`, and a streaming detokenizer that never emits half a UTF-8 character.
//
// Pipeline of encode(), exactly as HuggingFace tokenizers runs it:
//   1. added tokens whose `normalized` flag is false (Qwen's <|im_start|>, <|im_end|>, ...) are
//      matched in the raw text (leftmost, then longest; honouring lstrip / rstrip / single_word);
//   2. every piece between them is normalized (NFC), then added tokens with `normalized: true`
//      are matched;
//   3. the remaining pieces are split by the pre-tokenizer's regex (Qwen2's split regex, or
//      GPT-2's), each piece's bytes are mapped to printable characters (GPT-2's
//      bytes_to_unicode) and merged by BPE ranks.
// Supported tokenizer.json: model BPE (merges as "a b" strings or [a, b] pairs), normalizer null /
// NFC / Sequence of NFC, pre_tokenizer ByteLevel or Sequence[Split..., ByteLevel], decoder
// ByteLevel, post_processor null / ByteLevel. Anything else is a TokenizerError naming the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tinyllm/token.hpp"

namespace tinyllm {

/// One entry of tokenizer.json's `added_tokens` (special tokens such as <|im_end|> and plain added
/// tokens).
struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched against the normalized (NFC) text instead of the raw text
  bool single_word = false;  // only matched when not touching a word character on either side
};

class Tokenizer {
 public:
  /// Reads a HuggingFace tokenizer.json. Missing / unreadable file or invalid JSON: FormatError; a
  /// valid JSON that describes something wrong or unsupported: TokenizerError naming the field.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  /// Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (eos_token; the Jinja
  /// chat_template there is informational only: the ChatML template is implemented in C++, see
  /// chat_template.hpp).
  static Tokenizer from_model_dir(const std::filesystem::path& dir);
  /// Parses the text of a tokenizer.json (`source` names it in error messages).
  static Tokenizer from_json_string(std::string_view json_text,
                                    const std::string& source = "<tokenizer.json>");

  /// Token ids of `text` (valid UTF-8, else TokenizerError naming the byte offset). Special and
  /// added tokens written in the text are recognised. No BOS/EOS is added (Qwen adds none).
  TokenIds encode(std::string_view text) const;
  /// The bytes of the tokens, joined. Special tokens are included unless skip_special_tokens. The
  /// result can be invalid UTF-8 when the ids end inside a character (use StreamingDecoder for
  /// incremental output). An id outside the vocabulary: TokenizerError. As in HF's ByteLevel
  /// decoder, added tokens go through the byte table too, so a non-ASCII added token made of table
  /// characters (the test BPE's "café") decodes to raw table bytes; Qwen's added tokens are ASCII.
  std::string decode(const TokenIds& ids, bool skip_special_tokens = false) const;
  /// The pre-tokenizer alone (regex splits, then the byte-level mapping) on already normalized
  /// text, without added-token matching: the pieces BPE works on, as HF's
  /// `pre_tokenizer.pre_tokenize_str` returns them.
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  /// The bytes of one token (what decode({id}) returns).
  std::string decode_token(TokenId id) const;

  /// Number of ids: the BPE vocabulary plus the added tokens (max id + 1); 151,669 for Qwen3's
  /// tokenizer.
  int64_t vocab_size() const;
  /// Id of a token given by its vocabulary string (byte-level form, e.g. "Ġthe") or an added
  /// token's content.
  std::optional<TokenId> token_to_id(std::string_view token) const;
  /// The vocabulary string of an id (byte-level form; added tokens: their content). Out of range:
  /// TokenizerError.
  std::string id_to_token(TokenId id) const;
  /// True for added tokens marked `special` (<|endoftext|>, <|im_start|>, <|im_end|>, ...).
  bool is_special(TokenId id) const;
  const std::vector<AddedToken>& added_tokens() const;

  /// End-of-sequence id: tokenizer_config.json's eos_token when read by from_model_dir, else
  /// <|endoftext|>.
  std::optional<TokenId> eos_token_id() const;
  std::optional<TokenId> im_start_id() const;  // <|im_start|>
  std::optional<TokenId> im_end_id() const;    // <|im_end|>
  /// Ids that end a generated reply: eos, <|im_end|> and <|endoftext|>, those that exist, without
  /// duplicates.
  TokenIds stop_token_ids() const;

  /// Unicode version of the NFC tables (HF tokenizers may use a slightly different one).
  static const char* unicode_version();

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // shared: copies are cheap; encode/decode are thread-safe
};

/// Turns a stream of token ids into text, emitting only complete UTF-8 characters: bytes of a
/// character split across tokens (emoji, CJK in small vocabularies) are held back until the
/// character is complete. Bytes that can never form a valid character are replaced by U+FFFD, so
/// the concatenated output is always valid UTF-8 and equals HF's decode (which is lossy) of all
/// ids.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  /// The text that became complete with this token (possibly empty). Out-of-vocabulary id:
  /// TokenizerError.
  std::string push(TokenId id);
  /// Flushes what is held back; a dangling incomplete sequence becomes U+FFFD. The decoder can be
  /// reused after.
  std::string finish();

 private:
  Tokenizer tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace tinyllm
