// Unicode helpers for the tokenizer: classes, UTF-8 validation/lossy decoding, NFC.
#include <algorithm>
#include <array>

#include "tokenizer/unicode_tables.h"

namespace pd::unicode {
namespace {

constexpr uint32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr uint32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr uint32_t kHangulNCount = kHangulVCount * kHangulTCount;
constexpr uint32_t kHangulSCount = kHangulLCount * kHangulNCount;

std::array<uint8_t, 128> MakeAsciiClasses() {
  std::array<uint8_t, 128> t{};
  for (uint32_t c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) t[c] = kLetter;
    else if (c >= '0' && c <= '9') t[c] = kNumber;
    else if (c == ' ' || (c >= 0x09 && c <= 0x0D)) t[c] = kSpace;
    else t[c] = kOther;
  }
  return t;
}
const std::array<uint8_t, 128> kAscii = MakeAsciiClasses();

template <typename Range>
const Range* FindRange(const Range* ranges, size_t n, uint32_t cp) {
  const Range* end = ranges + n;
  const Range* it =
      std::upper_bound(ranges, end, cp, [](uint32_t v, const Range& r) { return v < r.first; });
  if (it == ranges) return nullptr;
  --it;
  return cp <= it->last ? it : nullptr;
}

// Allowed range of the second byte after lead byte b (UTF-8 well-formed table); {0,0} if b
// is not a lead byte. Later continuation bytes are always 0x80..0xBF.
inline void SecondRange(unsigned char b, unsigned char* lo, unsigned char* hi, int* len) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) *len = 2;
  else if (b == 0xE0) { *len = 3; *lo = 0xA0; }
  else if (b >= 0xE1 && b <= 0xEC) *len = 3;
  else if (b == 0xED) { *len = 3; *hi = 0x9F; }
  else if (b >= 0xEE && b <= 0xEF) *len = 3;
  else if (b == 0xF0) { *len = 4; *lo = 0x90; }
  else if (b >= 0xF1 && b <= 0xF3) *len = 4;
  else if (b == 0xF4) { *len = 4; *hi = 0x8F; }
  else *len = 0;
}

// Number of bytes of the well-formed prefix of a sequence starting at s[i] (its maximal
// subpart); sets *complete when it is a whole scalar.
size_t ValidPrefix(std::string_view s, size_t i, bool* complete) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  unsigned char b = p[i];
  *complete = false;
  if (b < 0x80) {
    *complete = true;
    return 1;
  }
  unsigned char lo, hi;
  int len;
  SecondRange(b, &lo, &hi, &len);
  if (len == 0) return 0;
  size_t k = 1;
  for (; k < static_cast<size_t>(len); ++k) {
    if (i + k >= s.size()) return k;
    unsigned char c = p[i + k];
    bool ok = (k == 1) ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) return k;
  }
  *complete = true;
  return k;
}

}  // namespace

CharClass ClassOf(uint32_t cp) {
  if (cp < 128) return static_cast<CharClass>(kAscii[cp]);
  const ClassRange* r = FindRange(kClassRanges, kNumClassRanges, cp);
  return r ? static_cast<CharClass>(r->cls) : kOther;
}

uint8_t CombiningClass(uint32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* r = FindRange(kCccRanges, kNumCccRanges, cp);
  return r ? r->ccc : 0;
}

void AppendUtf8(uint32_t cp, std::string& out) {
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

size_t FindInvalidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    bool complete;
    size_t k = ValidPrefix(s, i, &complete);
    if (!complete) return i;
    i += k;
  }
  return std::string_view::npos;
}

void AppendUtf8Lossy(std::string_view s, std::string& out) {
  size_t i = 0;
  while (i < s.size()) {
    bool complete;
    size_t k = ValidPrefix(s, i, &complete);
    if (complete) {
      out.append(s.data() + i, k);
      i += k;
    } else {
      out.append("\xEF\xBF\xBD");
      i += std::max<size_t>(k, 1);
    }
  }
}

size_t IncompleteUtf8Suffix(std::string_view s) {
  const size_t n = s.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    auto b = static_cast<unsigned char>(s[n - k]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation byte: look further back
    bool complete;
    size_t prefix = ValidPrefix(s, n - k, &complete);
    return (!complete && prefix == k) ? k : 0;
  }
  return 0;
}

bool NfcQuickYes(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0xCC) return false;
  }
  return true;
}

namespace {

void Decompose(uint32_t cp, std::u32string& out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    uint32_t s = cp - kHangulSBase;
    out.push_back(kHangulLBase + s / kHangulNCount);
    out.push_back(kHangulVBase + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount != 0) out.push_back(kHangulTBase + s % kHangulTCount);
    return;
  }
  if (cp >= 0xC0) {
    const Decomp* end = kDecomps + kNumDecomps;
    const Decomp* it = std::lower_bound(kDecomps, end, cp,
                                        [](const Decomp& d, uint32_t v) { return d.cp < v; });
    if (it != end && it->cp == cp) {
      out.append(reinterpret_cast<const char32_t*>(kDecompPool + it->offset), it->length);
      return;
    }
  }
  out.push_back(cp);
}

// Primary composite of (a, b), or 0.
uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kHangulLBase && a < kHangulLBase + kHangulLCount && b >= kHangulVBase &&
      b < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((a - kHangulLBase) * kHangulVCount + (b - kHangulVBase)) * kHangulTCount;
  }
  if (a >= kHangulSBase && a < kHangulSBase + kHangulSCount && (a - kHangulSBase) % kHangulTCount == 0 &&
      b > kHangulTBase && b < kHangulTBase + kHangulTCount) {
    return a + (b - kHangulTBase);
  }
  const Composition* end = kCompositions + kNumCompositions;
  const Composition* it = std::lower_bound(
      kCompositions, end, std::pair<uint32_t, uint32_t>(a, b),
      [](const Composition& c, const std::pair<uint32_t, uint32_t>& v) {
        return c.first != v.first ? c.first < v.first : c.second < v.second;
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

std::string Nfc(std::string_view s) {
  std::u32string buf;
  buf.reserve(s.size());
  for (size_t i = 0; i < s.size();) Decompose(NextCodepoint(s, i), buf);
  // Canonical ordering: stable sort each run of non-starters by combining class.
  for (size_t i = 0; i < buf.size();) {
    if (CombiningClass(buf[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < buf.size() && CombiningClass(buf[j]) != 0) ++j;
    std::stable_sort(buf.begin() + i, buf.begin() + j, [](char32_t x, char32_t y) {
      return CombiningClass(x) < CombiningClass(y);
    });
    i = j;
  }
  // Canonical composition.
  std::string out;
  out.reserve(s.size());
  if (buf.empty()) return out;
  size_t starter = 0, w = 1;
  bool have_starter = CombiningClass(buf[0]) == 0;
  int last_ccc = have_starter ? 0 : 256;
  for (size_t r = 1; r < buf.size(); ++r) {
    uint32_t ch = buf[r];
    int ccc = CombiningClass(ch);
    if (have_starter && (last_ccc == 0 || last_ccc < ccc)) {
      uint32_t comp = Compose(buf[starter], ch);
      if (comp != 0) {
        buf[starter] = comp;
        continue;
      }
    }
    if (ccc == 0) {
      starter = w;
      have_starter = true;
    }
    last_ccc = ccc;
    buf[w++] = ch;
  }
  for (size_t i = 0; i < w; ++i) AppendUtf8(buf[i], out);
  return out;
}

}  // namespace pd::unicode
