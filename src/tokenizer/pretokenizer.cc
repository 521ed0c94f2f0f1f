#include "tokenizer/pretokenizer.h"

#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/unicode_tables.h"

namespace pd::tok {

const char kLlama3Pattern[] =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const char kQwenPattern[] =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const char kGpt2Pattern[] =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

namespace {

using unicode::CharClass;

struct Ch {
  uint32_t cp;
  uint32_t len;
  CharClass cls;
};

inline Ch At(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, 1, unicode::ClassOf(b)};
  size_t j = i;
  uint32_t cp = unicode::NextCodepoint(s, j);
  return {cp, static_cast<uint32_t>(j - i), unicode::ClassOf(cp)};
}

inline size_t SkipClass(std::string_view s, size_t i, CharClass cls) {
  while (i < s.size()) {
    Ch c = At(s, i);
    if (c.cls != cls) break;
    i += c.len;
  }
  return i;
}

// Case-insensitive letter test for the contraction alternatives; 's' also matches U+017F
// (LATIN SMALL LETTER LONG S), whose simple case fold is 's'.
inline bool IsFold(std::string_view s, size_t i, char lower, size_t* len) {
  if (i >= s.size()) return false;
  char c = s[i];
  if (c == lower || c == lower - 32) {
    *len = 1;
    return true;
  }
  if (lower == 's' && s.substr(i, 2) == "\xC5\xBF") {
    *len = 2;
    return true;
  }
  return false;
}

// Bytes matched by (?i:s|t|re|ve|m|ll|d) at s[i], or 0.
size_t ContractionLen(std::string_view s, size_t i) {
  size_t a = 0, b = 0;
  if (IsFold(s, i, 's', &a) || IsFold(s, i, 't', &a)) return a;
  if ((IsFold(s, i, 'r', &a) || IsFold(s, i, 'v', &a)) && IsFold(s, i + a, 'e', &b)) return a + b;
  if (IsFold(s, i, 'm', &a)) return a;
  if (IsFold(s, i, 'l', &a) && IsFold(s, i + a, 'l', &b)) return a + b;
  if (IsFold(s, i, 'd', &a)) return a;
  return 0;
}

inline bool IsCrLf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

}  // namespace

size_t MatchLlamaFamily(std::string_view s, size_t i, int max_digits) {
  const size_t n = s.size();
  const Ch c = At(s, i);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c.cp == '\'') {
    size_t k = ContractionLen(s, i + 1);
    if (k) return i + 1 + k;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c.cls == unicode::kLetter) return SkipClass(s, i + c.len, unicode::kLetter);
  if (c.cls != unicode::kNumber && !IsCrLf(c.cp) && i + c.len < n) {
    Ch d = At(s, i + c.len);
    if (d.cls == unicode::kLetter) return SkipClass(s, i + c.len + d.len, unicode::kLetter);
  }
  // \p{N}{1,max_digits}
  if (c.cls == unicode::kNumber) {
    size_t j = i + c.len;
    for (int count = 1; count < max_digits && j < n; ++count) {
      Ch d = At(s, j);
      if (d.cls != unicode::kNumber) break;
      j += d.len;
    }
    return j;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  size_t j = i;
  if (c.cp == ' ' && i + 1 < n && At(s, i + 1).cls == unicode::kOther) j = i + 1;
  if (j > i || c.cls == unicode::kOther) {
    j = SkipClass(s, j, unicode::kOther);
    while (j < n && (s[j] == '\r' || s[j] == '\n')) ++j;
    return j;
  }
  // c is whitespace. \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run.
  size_t end = i, last_crlf = std::string_view::npos, last_start = i;
  while (end < n) {
    Ch d = At(s, end);
    if (d.cls != unicode::kSpace) break;
    if (IsCrLf(d.cp)) last_crlf = end;
    last_start = end;
    end += d.len;
  }
  if (last_crlf != std::string_view::npos) return last_crlf + 1;
  // \s+(?!\S) : the whole run at the end of input, else all but its last character.
  if (end == n) return end;
  if (last_start > i) return last_start;
  return end;  // \s+
}

SplitPattern::~SplitPattern() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

StatusOr<std::unique_ptr<SplitPattern>> SplitPattern::Create(const std::string& pattern,
                                                              bool literal,
                                                              bool allow_hand_matcher) {
  std::unique_ptr<SplitPattern> p(new SplitPattern());
  if (!literal && allow_hand_matcher && pattern == kLlama3Pattern) {
    p->hand_digits_ = 3;
    return p;
  }
  if (!literal && allow_hand_matcher && pattern == kQwenPattern) {
    p->hand_digits_ = 1;
    return p;
  }
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t opts = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   opts, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return InvalidArgument("Split pattern '" + pattern + "' does not compile at offset " +
                           std::to_string(off) + ": " + reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  p->code_ = code;
  return p;
}

void SplitPattern::FindAll(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  if (hand_digits_ > 0) {
    for (size_t i = 0; i < s.size();) {
      size_t e = MatchLlamaFamily(s, i, hand_digits_);
      out.emplace_back(i, e);
      i = e;
    }
    return;
  }
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    int rc = pcre2_match(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      pos = ov[1];
    } else {  // empty match: step over one character
      if (ov[1] >= s.size()) break;
      pos = ov[1] + 1;
      while (pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  pcre2_match_data_free(md);
}

namespace {

struct Segment {
  size_t begin, end;
  bool is_match;
};

// Turns matches into the pieces kept by `behavior` (HF SplitDelimiterBehavior semantics).
void ApplyBehavior(const PreTokStep& step, std::string_view s,
                   const std::vector<std::pair<size_t, size_t>>& matches,
                   std::vector<Segment>& pieces) {
  std::vector<Segment> segs;
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b != prev) segs.push_back({prev, b, step.invert});
    segs.push_back({b, e, !step.invert});
    prev = e;
  }
  if (prev != s.size()) segs.push_back({prev, s.size(), step.invert});
  bool prev_match = false;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      pieces = segs;
      return;
    case SplitBehavior::kRemoved:
      for (const Segment& g : segs) {
        if (!g.is_match) pieces.push_back(g);
      }
      return;
    case SplitBehavior::kMergedWithPrevious:
      for (const Segment& g : segs) {
        if (g.is_match && !prev_match && !pieces.empty()) pieces.back().end = g.end;
        else pieces.push_back(g);
        prev_match = g.is_match;
      }
      return;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = segs.size(); k-- > 0;) {
        const Segment& g = segs[k];
        if (g.is_match && !prev_match && !pieces.empty()) pieces.back().begin = g.begin;
        else pieces.push_back(g);
        prev_match = g.is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      return;
    case SplitBehavior::kContiguous:
      for (size_t k = 0; k < segs.size(); ++k) {
        if (k > 0 && segs[k].is_match == prev_match) pieces.back().end = segs[k].end;
        else pieces.push_back(segs[k]);
        prev_match = segs[k].is_match;
      }
      return;
  }
}

void RunFrom(const std::vector<PreTokStep>& steps, size_t k, std::string_view s, PieceFn fn,
             void* ctx) {
  if (s.empty()) return;
  if (k == steps.size()) {
    fn(ctx, s);
    return;
  }
  const PreTokStep& step = steps[k];
  if (step.kind == PreTokStep::Kind::kByteLevel) {
    std::string prefixed;
    if (step.add_prefix_space && s[0] != ' ') {
      prefixed.reserve(s.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(s);
      s = prefixed;
    }
    if (!step.pattern) {
      RunFrom(steps, k + 1, s, fn, ctx);
      return;
    }
    std::vector<std::pair<size_t, size_t>> matches;
    step.pattern->FindAll(s, matches);
    std::vector<Segment> pieces;
    ApplyBehavior(step, s, matches, pieces);
    for (const Segment& g : pieces) RunFrom(steps, k + 1, s.substr(g.begin, g.end - g.begin), fn, ctx);
    return;
  }
  // Fast path: the hand matcher with Isolated behaviour streams pieces without buffering.
  if (step.pattern->hand_digits() > 0 && step.behavior == SplitBehavior::kIsolated &&
      !step.invert) {
    const int digits = step.pattern->hand_digits();
    for (size_t i = 0; i < s.size();) {
      size_t e = MatchLlamaFamily(s, i, digits);
      RunFrom(steps, k + 1, s.substr(i, e - i), fn, ctx);
      i = e;
    }
    return;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  step.pattern->FindAll(s, matches);
  std::vector<Segment> pieces;
  ApplyBehavior(step, s, matches, pieces);
  for (const Segment& g : pieces) RunFrom(steps, k + 1, s.substr(g.begin, g.end - g.begin), fn, ctx);
}

}  // namespace

void PreTokenize(const std::vector<PreTokStep>& steps, std::string_view s, PieceFn fn, void* ctx) {
  RunFrom(steps, 0, s, fn, ctx);
}

}  // namespace pd::tok
