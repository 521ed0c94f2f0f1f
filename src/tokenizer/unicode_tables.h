// Unicode property tables (generated into unicode_tables.cc) and the helpers built on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pd::unicode {

// Pre-tokenizer character classes: \p{L}, \p{N}, White_Space (\s), everything else.
enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct ClassRange {
  uint32_t first, last;
  uint8_t cls;
};
struct CccRange {
  uint32_t first, last;
  uint8_t ccc;
};
struct Decomp {
  uint32_t cp;
  uint32_t offset;  // into kDecompPool
  uint32_t length;
};
struct Composition {
  uint32_t first, second, composite;
};

extern const uint32_t kUnidataMajor;
extern const ClassRange kClassRanges[];
extern const size_t kNumClassRanges;
extern const CccRange kCccRanges[];
extern const size_t kNumCccRanges;
extern const uint32_t kDecompPool[];
extern const Decomp kDecomps[];
extern const size_t kNumDecomps;
extern const Composition kCompositions[];
extern const size_t kNumCompositions;

// Class of a code point (ASCII via a fast table).
CharClass ClassOf(uint32_t cp);
// Canonical combining class.
uint8_t CombiningClass(uint32_t cp);

// Decodes one UTF-8 scalar at s[i] (s must be valid UTF-8); returns it and advances i.
inline uint32_t NextCodepoint(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  uint32_t c = p[0];
  if (c < 0x80) {
    i += 1;
    return c;
  }
  if (c < 0xE0) {
    i += 2;
    return ((c & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (c < 0xF0) {
    i += 3;
    return ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  i += 4;
  return ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

// Appends the UTF-8 encoding of cp.
void AppendUtf8(uint32_t cp, std::string& out);

// Offset of the first invalid UTF-8 sequence in s, or npos if s is valid.
size_t FindInvalidUtf8(std::string_view s);

// Appends s to out with invalid sequences replaced by U+FFFD, one per maximal invalid
// subpart (Rust's String::from_utf8_lossy / WHATWG rule).
void AppendUtf8Lossy(std::string_view s, std::string& out);

// Length of the longest suffix of s that is an incomplete-but-possibly-valid UTF-8 sequence
// (0..3). Streaming decoders hold these bytes back.
size_t IncompleteUtf8Suffix(std::string_view s);

// True if NFC(s) == s is certain without work (no code point >= U+0300).
bool NfcQuickYes(std::string_view s);
// Unicode Normalization Form C of valid UTF-8 s.
std::string Nfc(std::string_view s);

}  // namespace pd::unicode
