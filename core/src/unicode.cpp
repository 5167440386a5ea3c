// UTF-8 and Unicode helpers of the tokenizer: validation, decoding, NFC (table driven, Hangul
// algorithmic), lossy conversion.
#include "unicode.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "unicode_nfc_tables.hpp"

namespace tinyllm::unicode {
namespace {

enum class SeqStatus { kValid, kInvalid, kIncomplete };

/// Classifies the sequence starting at bytes[pos] (Unicode Table 3-7). `len` receives the length of
/// the valid sequence, or of the maximal invalid subpart (at least 1), or of the incomplete prefix.
SeqStatus classify(std::string_view bytes, std::size_t pos, std::size_t& len) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char b0 = at(pos);
  if (b0 < 0x80) {
    len = 1;
    return SeqStatus::kValid;
  }
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    len = 1;
    return SeqStatus::kInvalid;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (pos + k >= bytes.size()) {
      len = k;
      return SeqStatus::kIncomplete;
    }
    const unsigned char b = at(pos + k);
    const unsigned char l = k == 1 ? lo : 0x80;
    const unsigned char h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      len = k;
      return SeqStatus::kInvalid;
    }
  }
  len = need + 1;
  return SeqStatus::kValid;
}

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

bool in_ranges(const tables::CodePointRange* table, std::size_t size, char32_t cp) {
  const auto* end = table + size;
  const auto* it = std::upper_bound(
      table, end, cp, [](char32_t c, const tables::CodePointRange& r) { return c < r.first; });
  return it != table && cp <= (it - 1)->last;
}

const tables::Decomposition* find_decomposition(char32_t cp) {
  const auto* begin = tables::kDecomposition;
  const auto* end = begin + tables::kDecompositionSize;
  const auto* it = std::lower_bound(
      begin, end, cp, [](const tables::Decomposition& d, char32_t c) { return d.code_point < c; });
  return it != end && it->code_point == cp ? it : nullptr;
}

void decompose_into(std::u32string& out, char32_t cp) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp < 0xC0) {
    out.push_back(cp);
    return;
  }
  if (const auto* d = find_decomposition(cp)) {
    out.append(tables::kDecompositionData + d->offset, d->length);
  } else {
    out.push_back(cp);
  }
}

bool compose_pair(char32_t first, char32_t second, char32_t& composite) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount) {
    composite = kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
    return true;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 &&
      second > kTBase && second < kTBase + kTCount) {
    composite = first + (second - kTBase);
    return true;
  }
  const auto* begin = tables::kComposition;
  const auto* end = begin + tables::kCompositionSize;
  const auto* it = std::lower_bound(
      begin, end, std::make_pair(first, second),
      [](const tables::Composition& c, const std::pair<char32_t, char32_t>& key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  if (it != end && it->first == first && it->second == second) {
    composite = it->composite;
    return true;
  }
  return false;
}

}  // namespace

std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    std::size_t len = 0;
    if (classify(text, pos, len) != SeqStatus::kValid) return pos;
    pos += len;
  }
  return std::nullopt;
}

char32_t next_code_point(std::string_view text, std::size_t& pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int extra = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
  char32_t cp = b0 & (0x3F >> extra);
  ++pos;
  for (int k = 0; k < extra; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[pos++]) & 0x3F);
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* begin = tables::kCombiningClass;
  const auto* end = begin + tables::kCombiningClassSize;
  const auto* it = std::upper_bound(
      begin, end, cp, [](char32_t c, const tables::CombiningClassRange& r) { return c < r.first; });
  if (it != begin && cp <= (it - 1)->last) return (it - 1)->ccc;
  return 0;
}

bool is_nfc_quick(std::string_view text) {
  int last_ccc = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {  // ASCII run
      ++pos;
      last_ccc = 0;
      continue;
    }
    const char32_t cp = next_code_point(text, pos);
    if (cp < 0x300) {
      last_ccc = 0;
      continue;
    }
    const int ccc = combining_class(cp);
    if (ccc != 0 && last_ccc > ccc) return false;
    if (in_ranges(tables::kNfcQuickCheckNo, tables::kNfcQuickCheckNoSize, cp) ||
        in_ranges(tables::kNfcQuickCheckMaybe, tables::kNfcQuickCheckMaybeSize, cp)) {
      return false;
    }
    last_ccc = ccc;
  }
  return true;
}

std::string nfc(std::string_view text) {
  if (is_nfc_quick(text)) return std::string(text);
  // 1. Full canonical decomposition.
  std::u32string d;
  d.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) decompose_into(d, next_code_point(text, pos));
  // 2. Canonical ordering: stable sort of every run of non-starters by combining class.
  std::vector<int> ccc(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) ccc[i] = combining_class(d[i]);
  for (std::size_t i = 1; i < d.size(); ++i) {
    if (ccc[i] == 0) continue;
    for (std::size_t j = i; j > 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(d[j - 1], d[j]);
      std::swap(ccc[j - 1], ccc[j]);
    }
  }
  // 3. Canonical composition.
  std::u32string out;
  out.reserve(d.size());
  std::vector<int> out_ccc;
  out_ccc.reserve(d.size());
  std::size_t starter = std::u32string::npos;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const char32_t cp = d[i];
    const int cls = ccc[i];
    if (starter != std::u32string::npos) {
      const bool adjacent = out.size() == starter + 1;
      const int prev = adjacent ? 0 : out_ccc.back();
      const bool blocked = !adjacent && (prev == 0 || prev >= cls);
      char32_t composite = 0;
      if (!blocked && compose_pair(out[starter], cp, composite)) {
        out[starter] = composite;
        continue;
      }
    }
    if (cls == 0) starter = out.size();
    out.push_back(cp);
    out_ccc.push_back(cls);
  }
  std::string result;
  result.reserve(text.size());
  for (char32_t cp : out) append_utf8(result, cp);
  return result;
}

bool is_white_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::size_t decided_prefix_length(std::string_view bytes) {
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t len = 0;
    if (classify(bytes, pos, len) == SeqStatus::kIncomplete) return pos;
    pos += len;
  }
  return pos;
}

std::string to_valid_utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t len = 0;
    const SeqStatus status = classify(bytes, pos, len);
    if (status == SeqStatus::kValid) {
      out.append(bytes.substr(pos, len));
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
    }
    pos += len;
  }
  return out;
}

const char* nfc_unicode_version() {
  return tables::kUnicodeVersion;
}

}  // namespace tinyllm::unicode
