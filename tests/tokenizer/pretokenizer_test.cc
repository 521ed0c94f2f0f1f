#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>

namespace pd::tok {
namespace {

std::vector<std::string> Pieces(const SplitPattern& p, std::string_view s) {
  std::vector<std::pair<size_t, size_t>> m;
  p.FindAll(s, m);
  std::vector<std::string> out;
  for (auto [b, e] : m) out.emplace_back(s.substr(b, e - b));
  return out;
}

using V = std::vector<std::string>;

TEST(HandMatcher, Llama3Examples) {
  auto p = SplitPattern::Create(kLlama3Pattern, false);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ((*p)->hand_digits(), 3);
  EXPECT_EQ(Pieces(**p, "Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(Pieces(**p, "I'm you'LL 'sup"), (V{"I", "'m", " you", "'LL", " '", "sup"}));
  EXPECT_EQ(Pieces(**p, "12345"), (V{"123", "45"}));
  EXPECT_EQ(Pieces(**p, "a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(Pieces(**p, "x \n\n y  "), (V{"x", " \n\n", " y", "  "}));
  EXPECT_EQ(Pieces(**p, "f(x);\n\treturn"), (V{"f", "(x", ");\n", "\treturn"}));
  EXPECT_EQ(Pieces(**p, " ..."), (V{" ..."}));
}

TEST(HandMatcher, QwenSplitsDigitsSingly) {
  auto p = SplitPattern::Create(kQwenPattern, false);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ((*p)->hand_digits(), 1);
  EXPECT_EQ(Pieces(**p, "x12 3"), (V{"x", "1", "2", " ", "3"}));
}

// Random strings over characters that exercise every branch of the pattern.
std::string RandomText(std::mt19937& rng) {
  static const std::vector<std::string> atoms = {
      "a", "Z", "q", "\xC3\xA9", "\xE4\xB8\xAD", "\xC5\xBF", "\xCC\x81", "1", "9",
      "\xD9\xA1", "\xC2\xBD", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\xC2\xA0",
      "\xE3\x80\x80", "\xC2\x85", "\xE2\x80\xA8", "\x0B", "'", "'", "s", "S", "t", "re", "RE",
      "ve", "m", "ll", "LL", "d", "D", ".", ",", "!", "(", "\"", "-", "_", "\xF0\x9F\x98\x80",
      "\xE2\x80\x8D", "\xEF\xB8\x8F", "\xE2\x80\x8B"};
  std::uniform_int_distribution<size_t> len(0, 40), pick(0, atoms.size() - 1);
  std::string s;
  for (size_t n = len(rng); n > 0; --n) s += atoms[pick(rng)];
  return s;
}

// The hand matcher must agree with PCRE2 running the very same regex.
TEST(HandMatcher, AgreesWithPcre2OnRandomText) {
  for (const char* pattern : {kLlama3Pattern, kQwenPattern}) {
    auto hand = SplitPattern::Create(pattern, false);
    auto pcre = SplitPattern::Create(pattern, false, /*allow_hand_matcher=*/false);
    ASSERT_TRUE(hand.ok() && pcre.ok());
    ASSERT_GT((*hand)->hand_digits(), 0);
    ASSERT_EQ((*pcre)->hand_digits(), 0);
    std::mt19937 rng(42);
    for (int i = 0; i < 20000; ++i) {
      std::string s = RandomText(rng);
      ASSERT_EQ(Pieces(**hand, s), Pieces(**pcre, s)) << "text: " << s;
    }
  }
}

void Collect(void* ctx, std::string_view piece) {
  static_cast<std::vector<std::string>*>(ctx)->emplace_back(piece);
}

TEST(PreTokenize, BehaviorsAndByteLevelRegex) {
  auto comma = SplitPattern::Create(",", true);
  ASSERT_TRUE(comma.ok());
  std::shared_ptr<const SplitPattern> pat(std::move(*comma));
  auto run = [&](SplitBehavior b, std::string_view s) {
    std::vector<PreTokStep> steps(1);
    steps[0].pattern = pat;
    steps[0].behavior = b;
    V out;
    PreTokenize(steps, s, &Collect, &out);
    return out;
  };
  EXPECT_EQ(run(SplitBehavior::kIsolated, "a,b,,c"), (V{"a", ",", "b", ",", ",", "c"}));
  EXPECT_EQ(run(SplitBehavior::kRemoved, "a,b,,c"), (V{"a", "b", "c"}));
  EXPECT_EQ(run(SplitBehavior::kMergedWithPrevious, "a,b,,c"), (V{"a,", "b,", ",", "c"}));
  EXPECT_EQ(run(SplitBehavior::kMergedWithNext, "a,b,,c"), (V{"a", ",b", ",", ",c"}));
  EXPECT_EQ(run(SplitBehavior::kContiguous, "a,b,,c"), (V{"a", ",", "b", ",,", "c"}));

  auto gpt2 = SplitPattern::Create(kGpt2Pattern, false);
  ASSERT_TRUE(gpt2.ok());
  std::vector<PreTokStep> steps(1);
  steps[0].kind = PreTokStep::Kind::kByteLevel;
  steps[0].add_prefix_space = true;
  steps[0].pattern = std::move(*gpt2);
  V out;
  PreTokenize(steps, "Hello there  dear", &Collect, &out);
  EXPECT_EQ(out, (V{" Hello", " there", " ", " dear"}));
}

}  // namespace
}  // namespace pd::tok
