// Internal: the Unicode tables of the NFC normalizer, generated into unicode_nfc_tables.cpp by
// tools/tokenizer/gen_unicode_tables.py. Every table is sorted by code point.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tinyllm::unicode::tables {

struct CombiningClassRange {
  char32_t first;
  char32_t last;
  uint8_t ccc;
};
struct Decomposition {
  char32_t code_point;
  uint16_t offset;  // into kDecompositionData
  uint8_t length;
};
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};
struct CodePointRange {
  char32_t first;
  char32_t last;
};

extern const char* const kUnicodeVersion;
extern const CombiningClassRange kCombiningClass[];
extern const std::size_t kCombiningClassSize;
extern const char32_t kDecompositionData[];
extern const std::size_t kDecompositionDataSize;
extern const Decomposition kDecomposition[];
extern const std::size_t kDecompositionSize;
extern const Composition kComposition[];
extern const std::size_t kCompositionSize;
extern const CodePointRange kNfcQuickCheckNo[];
extern const std::size_t kNfcQuickCheckNoSize;
extern const CodePointRange kNfcQuickCheckMaybe[];
extern const std::size_t kNfcQuickCheckMaybeSize;

}  // namespace tinyllm::unicode::tables
