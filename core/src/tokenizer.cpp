// Byte-level BPE tokenizer driven by a HuggingFace tokenizer.json (see tokenizer.hpp for the
// pipeline).
#include "tinyllm/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "tinyllm/errors.hpp"
#include "tokenizer_regex.hpp"
#include "unicode.hpp"

namespace tinyllm {
namespace {

using nlohmann::json;
using namespace tokenizer_detail;

// ---------------------------------------------------------------------------------------------------------------
// Added tokens: leftmost-longest matching as HF's AddedVocabulary::find_matches (aho-corasick
// LeftmostLongest).

struct Piece {
  std::size_t start;
  std::size_t end;
  int token;  // index into Impl::added, -1 for text
};

class AddedTokenMatcher {
 public:
  void add(const std::string& pattern, int index) {
    if (pattern.empty()) return;
    first_byte_[static_cast<unsigned char>(pattern[0])] = true;
    patterns_.push_back({pattern, index});
  }
  bool empty() const { return patterns_.empty(); }

  /// Leftmost-longest match at or after `from`: {start, length, index}; length 0 if none.
  std::array<std::size_t, 3> find(std::string_view text, std::size_t from) const {
    for (std::size_t i = from; i < text.size(); ++i) {
      if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
      std::size_t best_len = 0, best_index = 0;
      for (const auto& [pattern, index] : patterns_) {
        if (pattern.size() > best_len && text.compare(i, pattern.size(), pattern) == 0) {
          best_len = pattern.size();
          best_index = static_cast<std::size_t>(index);
        }
      }
      if (best_len > 0) return {i, best_len, best_index};
    }
    return {text.size(), 0, 0};
  }

 private:
  std::array<bool, 256> first_byte_{};
  std::vector<std::pair<std::string, int>> patterns_;
};

// ---------------------------------------------------------------------------------------------------------------
// JSON helpers: every error names the field.

[[noreturn]] void fail(const std::string& source, const std::string& message) {
  throw TokenizerError(source + ": " + message);
}

const json& require(const json& obj, const char* key, const std::string& source,
                    const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) fail(source, "missing field " + where + key);
  return obj.at(key);
}

std::string type_of(const json& obj, const std::string& source, const std::string& field) {
  if (!obj.is_object()) fail(source, field + " must be an object");
  if (!obj.contains("type") || !obj.at("type").is_string())
    fail(source, field + ".type is missing");
  return obj.at("type").get<std::string>();
}

bool bool_field(const json& obj, const char* key, bool fallback, const std::string& source,
                const std::string& field) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  if (!obj.at(key).is_boolean()) fail(source, field + "." + key + " must be true or false");
  return obj.at(key).get<bool>();
}

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw FormatError(std::string(what) + " not found: " + path.string());
  if (std::filesystem::is_directory(path, ec)) {
    throw FormatError(std::string(what) + " is a directory, expected a file: " + path.string());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(std::string("cannot open ") + what + ": " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw FormatError(source + ": invalid JSON: " + e.what());
  }
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string source;
  // Model.
  std::unordered_map<std::string, TokenId> vocab;  // byte-level string -> id (BPE model)
  std::unordered_map<uint64_t, std::pair<int32_t, TokenId>>
      merges;                           // (left, right) -> (rank, merged id)
  std::array<TokenId, 256> byte_ids{};  // id of each single byte
  bool ignore_merges = false;
  // Pipeline.
  bool nfc = false;
  std::vector<std::unique_ptr<Regex>> splits;  // applied in order, behaviour Isolated
  std::vector<AddedToken> added;
  std::unordered_map<std::string, TokenId> added_by_content;
  AddedTokenMatcher raw_matcher;         // normalized == false
  AddedTokenMatcher normalized_matcher;  // normalized == true (contents NFC'd)
  // Id tables.
  std::vector<std::string> id_to_token;  // "" and !present for holes
  std::vector<std::string> id_bytes;     // decoded bytes of each id
  std::vector<uint8_t> present;
  std::vector<uint8_t> special;
  std::optional<TokenId> eos;
  // Cache of BPE results per pre-token (keyed by raw bytes).
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, TokenIds> cache;
  static constexpr std::size_t kCacheCapacity = 100000;
  static constexpr std::size_t kCacheMaxWordBytes = 128;

  void check_id(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= present.size() ||
        !present[static_cast<std::size_t>(id)]) {
      throw TokenizerError("token id " + std::to_string(id) + " is not in the vocabulary (" +
                           source + ", " + std::to_string(present.size()) + " ids)");
    }
  }

  /// HF's find_matches on one piece `sentence` (offsets relative to it).
  std::vector<Piece> find_added(std::string_view sentence, const AddedTokenMatcher& matcher) const {
    std::vector<Piece> pieces;
    if (matcher.empty()) {
      if (!sentence.empty()) pieces.push_back({0, sentence.size(), -1});
      return pieces;
    }
    std::size_t start_offset = 0, search = 0;
    while (search < sentence.size()) {
      const auto [mstart, mlen, index] = matcher.find(sentence, search);
      if (mlen == 0) break;
      search = mstart + mlen;
      std::size_t start = mstart, stop = mstart + mlen;
      const AddedToken& token = added[index];
      if (token.single_word) {
        const bool start_space = start == 0 || !ends_with_word_char(sentence.substr(0, start));
        const bool stop_space = stop == sentence.size() || !is_word_char_at(sentence, stop);
        if (!start_space || !stop_space) continue;
      }
      if (token.lstrip)
        start = std::max(trailing_space_start(sentence.substr(0, start)), start_offset);
      if (token.rstrip) stop += leading_space_length(sentence.substr(stop));
      if (start < start_offset)
        start = start_offset;  // cannot happen for tokens not starting with spaces
      if (start_offset < start) pieces.push_back({start_offset, start, -1});
      pieces.push_back({start, stop, static_cast<int>(index)});
      start_offset = stop;
    }
    if (start_offset < sentence.size()) pieces.push_back({start_offset, sentence.size(), -1});
    return pieces;
  }

  void bpe(std::string_view word, TokenIds& out) const {
    if (word.size() == 1) {
      out.push_back(byte_ids[static_cast<unsigned char>(word[0])]);
      return;
    }
    const bool cacheable = word.size() <= kCacheMaxWordBytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (auto it = cache.find(std::string(word)); it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    TokenIds result;
    if (ignore_merges) {
      if (auto it = vocab.find(byte_level_encode(word)); it != vocab.end())
        result.push_back(it->second);
    }
    if (result.empty()) result = merge_word(word);
    out.insert(out.end(), result.begin(), result.end());
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() < kCacheCapacity) cache.emplace(std::string(word), std::move(result));
    }
  }

  /// BPE as HF's Word::merge_all: repeatedly merge the adjacent pair of lowest rank (leftmost on
  /// ties).
  TokenIds merge_word(std::string_view word) const {
    struct Symbol {
      TokenId id;
      int prev;
      int next;
      bool alive;
    };
    const int n = static_cast<int>(word.size());
    std::vector<Symbol> sym(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      sym[static_cast<std::size_t>(i)] = {
          byte_ids[static_cast<unsigned char>(word[static_cast<std::size_t>(i)])], i - 1,
          i + 1 < n ? i + 1 : -1, true};
    }
    struct Candidate {
      int32_t rank;
      int pos;
      TokenId merged;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    const auto key = [](TokenId a, TokenId b) {
      return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    };
    const auto push_pair = [&](int pos) {
      const int next = sym[static_cast<std::size_t>(pos)].next;
      if (next < 0) return;
      auto it = merges.find(
          key(sym[static_cast<std::size_t>(pos)].id, sym[static_cast<std::size_t>(next)].id));
      if (it != merges.end()) queue.push({it->second.first, pos, it->second.second});
    };
    for (int i = 0; i + 1 < n; ++i) push_pair(i);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = sym[static_cast<std::size_t>(top.pos)];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = sym[static_cast<std::size_t>(left.next)];
      auto it = merges.find(key(left.id, right.id));
      if (it == merges.end() || it->second.second != top.merged) continue;  // stale entry
      left.id = top.merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) sym[static_cast<std::size_t>(right.next)].prev = top.pos;
      if (left.prev >= 0) push_pair(left.prev);
      push_pair(top.pos);
    }
    TokenIds ids;
    for (int i = 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next)
      ids.push_back(sym[static_cast<std::size_t>(i)].id);
    return ids;
  }

  /// Pre-tokenizer (Split regexes, Isolated) and BPE of one normalized piece without added tokens.
  void encode_plain(std::string_view text, TokenIds& out) const {
    if (text.empty()) return;
    split_and_encode(text, 0, out);
  }

  void split_and_encode(std::string_view text, std::size_t step, TokenIds& out) const {
    for_each_pre_token(text, step, [&](std::string_view piece) { bpe(piece, out); });
  }

  /// Calls f(piece) for each piece of the Split steps from `step` on (behaviour Isolated: matches
  /// and the gaps between them are pieces).
  template <typename F>
  void for_each_pre_token(std::string_view text, std::size_t step, F&& f) const {
    if (step == splits.size()) {
      f(text);
      return;
    }
    std::size_t last = 0;
    splits[step]->for_each_match(text, [&](std::size_t start, std::size_t end) {
      if (start > last) for_each_pre_token(text.substr(last, start - last), step + 1, f);
      for_each_pre_token(text.substr(start, end - start), step + 1, f);
      last = end;
    });
    if (last < text.size()) for_each_pre_token(text.substr(last), step + 1, f);
  }

  TokenIds encode(std::string_view text) const {
    if (auto bad = unicode::find_invalid_utf8(text)) {
      const auto byte = static_cast<unsigned>(static_cast<unsigned char>(text[*bad]));
      std::ostringstream msg;
      msg << "encode: invalid UTF-8 at byte offset " << *bad << " (byte 0x" << std::hex << byte
          << ")";
      throw TokenizerError(msg.str());
    }
    TokenIds out;
    out.reserve(text.size() / 3 + 4);
    for (const Piece& raw : find_added(text, raw_matcher)) {
      if (raw.token >= 0) {
        out.push_back(added[static_cast<std::size_t>(raw.token)].id);
        continue;
      }
      const std::string_view piece = text.substr(raw.start, raw.end - raw.start);
      std::string normalized_storage;
      std::string_view normalized = piece;
      if (nfc && !unicode::is_nfc_quick(piece)) {
        normalized_storage = unicode::nfc(piece);
        normalized = normalized_storage;
      }
      for (const Piece& sub : find_added(normalized, normalized_matcher)) {
        if (sub.token >= 0) {
          out.push_back(added[static_cast<std::size_t>(sub.token)].id);
        } else {
          encode_plain(normalized.substr(sub.start, sub.end - sub.start), out);
        }
      }
    }
    return out;
  }

  // --- loading
  // ---------------------------------------------------------------------------------------------------

  void load_normalizer(const json& root) {
    if (!root.contains("normalizer") || root.at("normalizer").is_null()) return;
    const json& n = root.at("normalizer");
    const std::string type = type_of(n, source, "normalizer");
    if (type == "NFC") {
      nfc = true;
    } else if (type == "Sequence") {
      const json& list = require(n, "normalizers", source, "normalizer.");
      if (!list.is_array()) fail(source, "normalizer.normalizers must be an array");
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string t =
            type_of(list[i], source, "normalizer.normalizers[" + std::to_string(i) + "]");
        if (t != "NFC") {
          fail(source, "normalizer.normalizers[" + std::to_string(i) + "].type '" + t +
                           "' is not supported (only NFC)");
        }
        nfc = true;
      }
    } else {
      fail(source, "normalizer.type '" + type +
                       "' is not supported (supported: null, NFC, Sequence of NFC)");
    }
  }

  void load_byte_level(const json& bl, const std::string& field, bool is_pre_tokenizer) {
    if (bool_field(bl, "add_prefix_space", false, source, field)) {
      fail(source, field + ".add_prefix_space = true is not supported");
    }
    if (is_pre_tokenizer && bool_field(bl, "use_regex", true, source, field)) {
      splits.push_back(std::make_unique<Regex>(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
          field + " (GPT-2 regex)"));
    }
  }

  void load_split(const json& s, const std::string& field) {
    const json& pattern = require(s, "pattern", source, field + ".");
    std::string regex;
    if (pattern.is_object() && pattern.contains("Regex") && pattern.at("Regex").is_string()) {
      regex = pattern.at("Regex").get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String") &&
               pattern.at("String").is_string()) {
      for (char c : pattern.at("String").get<std::string>()) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x80 && std::isalnum(u) == 0) regex += '\\';
        regex += c;
      }
    } else {
      fail(source, field + ".pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
    const json& behavior = require(s, "behavior", source, field + ".");
    if (!behavior.is_string() || behavior.get<std::string>() != "Isolated") {
      fail(source, field + ".behavior " + behavior.dump() + " is not supported (only Isolated)");
    }
    if (bool_field(s, "invert", false, source, field))
      fail(source, field + ".invert = true is not supported");
    splits.push_back(std::make_unique<Regex>(regex, field + ".pattern"));
  }

  void load_pre_tokenizer(const json& root) {
    const json& p = require(root, "pre_tokenizer", source, "");
    if (p.is_null()) fail(source, "pre_tokenizer is null; a byte-level BPE needs ByteLevel");
    const std::string type = type_of(p, source, "pre_tokenizer");
    if (type == "ByteLevel") {
      load_byte_level(p, "pre_tokenizer", true);
      return;
    }
    if (type != "Sequence") {
      fail(source, "pre_tokenizer.type '" + type +
                       "' is not supported (supported: ByteLevel, Sequence of Split + "
                       "ByteLevel)");
    }
    const json& list = require(p, "pretokenizers", source, "pre_tokenizer.");
    if (!list.is_array() || list.empty())
      fail(source, "pre_tokenizer.pretokenizers must be a non-empty array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string field = "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]";
      const std::string t = type_of(list[i], source, field);
      if (t == "Split" && i + 1 < list.size()) {
        load_split(list[i], field);
      } else if (t == "ByteLevel" && i + 1 == list.size()) {
        load_byte_level(list[i], field, true);
      } else {
        fail(source, field + ".type '" + t +
                         "' is not supported here (supported: Split steps followed by one "
                         "ByteLevel)");
      }
    }
  }

  void load_model(const json& root) {
    const json& m = require(root, "model", source, "");
    if (!m.is_object()) fail(source, "model must be an object");
    if (m.contains("type") &&
        !(m.at("type").is_string() && m.at("type").get<std::string>() == "BPE")) {
      fail(source, "model.type " + m.at("type").dump() + " is not supported (only BPE)");
    }
    if (m.contains("dropout") && !m.at("dropout").is_null() &&
        !(m.at("dropout").is_number() && m.at("dropout").get<double>() == 0.0)) {
      fail(source, "model.dropout is not supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (m.contains(key) && !m.at(key).is_null() &&
          !(m.at(key).is_string() && m.at(key).get<std::string>().empty())) {
        fail(source, std::string("model.") + key + " is not supported");
      }
    }
    if (bool_field(m, "byte_fallback", false, source, "model"))
      fail(source, "model.byte_fallback is not supported");
    ignore_merges = bool_field(m, "ignore_merges", false, source, "model");

    const json& v = require(m, "vocab", source, "model.");
    if (!v.is_object()) fail(source, "model.vocab must be an object {token: id}");
    vocab.reserve(v.size());
    TokenId max_id = -1;
    for (const auto& [token, id] : v.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        fail(source, "model.vocab['" + token + "'] must be a non-negative integer id");
      }
      vocab.emplace(token, id.get<TokenId>());
      max_id = std::max(max_id, id.get<TokenId>());
    }
    grow(max_id + 1);
    for (const auto& [token, id] : vocab) {
      const auto i = static_cast<std::size_t>(id);
      if (present[i]) fail(source, "model.vocab: id " + std::to_string(id) + " is used twice");
      present[i] = 1;
      id_to_token[i] = token;
    }
    const auto& bl = byte_level();
    for (int b = 0; b < 256; ++b) {
      auto it = vocab.find(bl.byte_to_utf8[static_cast<std::size_t>(b)]);
      if (it == vocab.end()) {
        fail(source, "model.vocab lacks the byte-level symbol '" +
                         bl.byte_to_utf8[static_cast<std::size_t>(b)] + "' of byte " +
                         std::to_string(b) + " (not a byte-level BPE vocabulary)");
      }
      byte_ids[static_cast<std::size_t>(b)] = it->second;
    }

    const json& mg = require(m, "merges", source, "model.");
    if (!mg.is_array()) fail(source, "model.merges must be an array");
    merges.reserve(mg.size());
    for (std::size_t r = 0; r < mg.size(); ++r) {
      const json& e = mg[r];
      std::string a, b;
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const auto space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          fail(source,
               "model.merges[" + std::to_string(r) + "] \"" + s + "\" is not of the form \"a b\"");
        }
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        fail(source, "model.merges[" + std::to_string(r) + "] must be \"a b\" or [\"a\", \"b\"]");
      }
      const auto ia = vocab.find(a), ib = vocab.find(b), im = vocab.find(a + b);
      if (ia == vocab.end() || ib == vocab.end() || im == vocab.end()) {
        const std::string missing = ia == vocab.end() ? a : ib == vocab.end() ? b : a + b;
        fail(source, "model.merges[" + std::to_string(r) + "] (" + a + ", " + b + "): '" + missing +
                         "' is not in model.vocab");
      }
      const uint64_t k = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                         static_cast<uint32_t>(ib->second);
      merges[k] = {static_cast<int32_t>(r), im->second};
    }
  }

  void load_added_tokens(const json& root) {
    if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return;
    const json& list = root.at("added_tokens");
    if (!list.is_array()) fail(source, "added_tokens must be an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      const json& t = list[i];
      if (!t.is_object()) fail(source, field + " must be an object");
      const json& id = require(t, "id", source, field + ".");
      const json& content = require(t, "content", source, field + ".");
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        fail(source, field + ".id must be a non-negative integer");
      }
      if (!content.is_string() || content.get<std::string>().empty()) {
        fail(source, field + ".content must be a non-empty string");
      }
      AddedToken token;
      token.id = id.get<TokenId>();
      token.content = content.get<std::string>();
      if (unicode::find_invalid_utf8(token.content))
        fail(source, field + ".content is not valid UTF-8");
      token.special = bool_field(t, "special", false, source, field);
      token.lstrip = bool_field(t, "lstrip", false, source, field);
      token.rstrip = bool_field(t, "rstrip", false, source, field);
      token.normalized = bool_field(t, "normalized", !token.special, source, field);
      token.single_word = bool_field(t, "single_word", false, source, field);
      const auto idx = static_cast<std::size_t>(token.id);
      if (idx >= present.size()) grow(token.id + 1);
      // An added token may reuse a vocabulary id; as in HF, its content wins for id_to_token and
      // decoding.
      present[idx] = 1;
      special[idx] = token.special ? 1 : 0;
      id_to_token[idx] = token.content;
      added_by_content[token.content] = token.id;
      const int index = static_cast<int>(added.size());
      if (token.normalized) {
        normalized_matcher.add(nfc ? unicode::nfc(token.content) : token.content, index);
      } else {
        raw_matcher.add(token.content, index);
      }
      added.push_back(std::move(token));
    }
  }

  void check_decoder_and_post_processor(const json& root) {
    const json& d = require(root, "decoder", source, "");
    if (d.is_null()) fail(source, "decoder is null; a byte-level BPE needs the ByteLevel decoder");
    const std::string type = type_of(d, source, "decoder");
    if (type != "ByteLevel")
      fail(source, "decoder.type '" + type + "' is not supported (only ByteLevel)");
    if (root.contains("post_processor") && !root.at("post_processor").is_null()) {
      const std::string p = type_of(root.at("post_processor"), source, "post_processor");
      if (p != "ByteLevel") {
        fail(source, "post_processor.type '" + p +
                         "' is not supported (null or ByteLevel; no BOS/EOS is added)");
      }
    }
  }

  void grow(TokenId size) {
    const auto n = static_cast<std::size_t>(size);
    if (n <= present.size()) return;
    present.resize(n, 0);
    special.resize(n, 0);
    id_to_token.resize(n);
  }

  void finish() {
    id_bytes.resize(present.size());
    for (std::size_t i = 0; i < present.size(); ++i) {
      if (present[i]) id_bytes[i] = byte_level_decode(id_to_token[i]);
    }
    if (auto it = added_by_content.find("<|endoftext|>"); it != added_by_content.end())
      eos = it->second;
  }
};

Tokenizer::Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_json_string(std::string_view json_text, const std::string& source) {
  const json root = parse_json(json_text, source);
  if (!root.is_object()) throw TokenizerError(source + ": the top level must be a JSON object");
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->load_normalizer(root);
  impl->load_pre_tokenizer(root);
  impl->load_model(root);
  impl->load_added_tokens(root);
  impl->check_decoder_and_post_processor(root);
  impl->finish();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  return from_json_string(read_file(tokenizer_json, "tokenizer.json"), tokenizer_json.string());
}

Tokenizer Tokenizer::from_model_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw FormatError("model directory not found: " + dir.string());
  Tokenizer tok = from_file(dir / "tokenizer.json");
  const auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path, ec)) {
    const std::string source = config_path.string();
    const json config = parse_json(read_file(config_path, "tokenizer_config.json"), source);
    if (!config.is_object()) throw TokenizerError(source + ": the top level must be a JSON object");
    if (config.contains("eos_token") && !config.at("eos_token").is_null()) {
      const json& e = config.at("eos_token");
      std::string content;
      if (e.is_string()) {
        content = e.get<std::string>();
      } else if (e.is_object() && e.contains("content") && e.at("content").is_string()) {
        content = e.at("content").get<std::string>();
      } else {
        throw TokenizerError(source + ": eos_token must be a string or {\"content\": ...}");
      }
      const auto id = tok.token_to_id(content);
      if (!id)
        throw TokenizerError(source + ": eos_token '" + content + "' is not in the vocabulary");
      tok.impl_->eos = *id;
    }
  }
  return tok;
}

TokenIds Tokenizer::encode(std::string_view text) const {
  return impl_->encode(text);
}

std::string Tokenizer::decode(const TokenIds& ids, bool skip_special_tokens) const {
  std::string out;
  for (TokenId id : ids) {
    impl_->check_id(id);
    const auto i = static_cast<std::size_t>(id);
    if (skip_special_tokens && impl_->special[i]) continue;
    out += impl_->id_bytes[i];
  }
  return out;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  if (auto bad = unicode::find_invalid_utf8(text)) {
    throw TokenizerError("pre_tokenize: invalid UTF-8 at byte offset " + std::to_string(*bad));
  }
  std::vector<std::string> pieces;
  if (!text.empty()) {
    impl_->for_each_pre_token(
        text, 0, [&](std::string_view piece) { pieces.push_back(byte_level_encode(piece)); });
  }
  return pieces;
}

std::string Tokenizer::decode_token(TokenId id) const {
  impl_->check_id(id);
  return impl_->id_bytes[static_cast<std::size_t>(id)];
}

int64_t Tokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->present.size());
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (auto it = impl_->added_by_content.find(key); it != impl_->added_by_content.end())
    return it->second;
  if (auto it = impl_->vocab.find(key); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(TokenId id) const {
  impl_->check_id(id);
  return impl_->id_to_token[static_cast<std::size_t>(id)];
}

bool Tokenizer::is_special(TokenId id) const {
  impl_->check_id(id);
  return impl_->special[static_cast<std::size_t>(id)] != 0;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added;
}

std::optional<TokenId> Tokenizer::eos_token_id() const {
  return impl_->eos;
}
std::optional<TokenId> Tokenizer::im_start_id() const {
  return token_to_id("<|im_start|>");
}
std::optional<TokenId> Tokenizer::im_end_id() const {
  return token_to_id("<|im_end|>");
}

TokenIds Tokenizer::stop_token_ids() const {
  TokenIds ids;
  for (const auto& id : {eos_token_id(), im_end_id(), token_to_id("<|endoftext|>")}) {
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  }
  return ids;
}

const char* Tokenizer::unicode_version() {
  return unicode::nfc_unicode_version();
}

// -----------------------------------------------------------------------------------------------------------------

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamingDecoder::push(TokenId id) {
  if (skip_special_tokens_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.decode_token(id);
  const std::size_t n = unicode::decided_prefix_length(pending_);
  std::string out = unicode::to_valid_utf8_lossy(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamingDecoder::finish() {
  std::string out = unicode::to_valid_utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace tinyllm
