// Pre-tokenization: regex Split and ByteLevel steps of a tokenizer.json pre_tokenizer.
// The Llama 3 and Qwen2/3 Split patterns run on a hand-written matcher; other patterns on PCRE2.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pd::tok {

// The Split regex of Llama 3 (digits in runs of up to 3) and Qwen2/Qwen3 (single digits).
extern const char kLlama3Pattern[];
extern const char kQwenPattern[];
// The GPT-2 regex used by the ByteLevel pre-tokenizer when use_regex is true.
extern const char kGpt2Pattern[];

// End of the leftmost-first match at s[pos] of the Llama 3 pattern (max_digits = 3) or the Qwen
// pattern (max_digits = 1). Those patterns match every non-empty position, so the result is
// always > pos for pos < s.size(). s must be valid UTF-8.
size_t MatchLlamaFamily(std::string_view s, size_t pos, int max_digits);

// A compiled Split pattern: the hand matcher for the two known regexes, PCRE2 (JIT, UTF, UCP)
// otherwise. Immutable and thread-safe after creation.
class SplitPattern {
 public:
  // literal: pattern is a plain string ({"String": ...}) rather than a regex.
  static StatusOr<std::unique_ptr<SplitPattern>> Create(const std::string& pattern, bool literal,
                                                        bool allow_hand_matcher = true);
  ~SplitPattern();
  SplitPattern(const SplitPattern&) = delete;
  SplitPattern& operator=(const SplitPattern&) = delete;

  // Appends [begin, end) of all non-overlapping matches in s, left to right (empty matches
  // advance by one character, as Oniguruma's find_iter does).
  void FindAll(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  // 0 when PCRE2 is used, else the hand matcher's max_digits.
  int hand_digits() const { return hand_digits_; }

 private:
  SplitPattern() = default;
  int hand_digits_ = 0;
  void* code_ = nullptr;  // pcre2_code_8*
};

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext,
                           kContiguous };

struct PreTokStep {
  enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
  std::shared_ptr<const SplitPattern> pattern;  // kSplit, or kByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // kByteLevel
};

// Callback for each final piece (raw UTF-8 bytes; the byte-level mapping is implicit).
using PieceFn = void (*)(void* ctx, std::string_view piece);

// Runs the steps over s and calls fn for every resulting non-empty piece, in order.
void PreTokenize(const std::vector<PreTokStep>& steps, std::string_view s, PieceFn fn, void* ctx);

}  // namespace pd::tok
