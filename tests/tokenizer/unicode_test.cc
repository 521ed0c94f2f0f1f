#include <gtest/gtest.h>

#include "tokenizer/unicode_tables.h"

namespace pd::unicode {
namespace {

TEST(Utf8, FindInvalid) {
  EXPECT_EQ(FindInvalidUtf8(""), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("plain ascii text, long enough for the fast path"),
            std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("caf\xC3\xA9 \xF0\x9F\x98\x80"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("abc\xC3"), 3u);                 // truncated
  EXPECT_EQ(FindInvalidUtf8("abcdefghij\x80"), 10u);         // lone continuation
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);                // overlong
  EXPECT_EQ(FindInvalidUtf8("x\xED\xA0\x80"), 1u);           // surrogate
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);        // > U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("ok\xFF"), 2u);
}

std::string Lossy(std::string_view s) {
  std::string out;
  AppendUtf8Lossy(s, out);
  return out;
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(Lossy("a\xE2\x82z"), "a" + r + "z");         // one U+FFFD for E2 82
  EXPECT_EQ(Lossy("\xF0\x9F\x98"), r);                  // truncated at end: one
  EXPECT_EQ(Lossy("\x80\x80"), r + r);                  // each lone continuation
  EXPECT_EQ(Lossy("\xED\xA0\x80"), r + r + r);          // surrogate: ED invalid after lead
  EXPECT_EQ(Lossy("\xC3\xA9"), "\xC3\xA9");
}

TEST(Utf8, IncompleteSuffix) {
  EXPECT_EQ(IncompleteUtf8Suffix(""), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xF0"), 1u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xF0\x9F"), 2u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xF0\x9F\x98\x80"), 0u);  // complete
  EXPECT_EQ(IncompleteUtf8Suffix("a\xE0\x80"), 0u);          // already invalid: emit now
  EXPECT_EQ(IncompleteUtf8Suffix("a\x80"), 0u);
}

TEST(Classes, LettersNumbersSpaces) {
  EXPECT_EQ(ClassOf('a'), kLetter);
  EXPECT_EQ(ClassOf('7'), kNumber);
  EXPECT_EQ(ClassOf(' '), kSpace);
  EXPECT_EQ(ClassOf('\n'), kSpace);
  EXPECT_EQ(ClassOf('\''), kOther);
  EXPECT_EQ(ClassOf(0xE9), kLetter);     // é
  EXPECT_EQ(ClassOf(0x4E2D), kLetter);   // 中
  EXPECT_EQ(ClassOf(0x0661), kNumber);   // Arabic-Indic one
  EXPECT_EQ(ClassOf(0x00BD), kNumber);   // ½ (No)
  EXPECT_EQ(ClassOf(0x2163), kNumber);   // Ⅳ (Nl)
  EXPECT_EQ(ClassOf(0x3000), kSpace);
  EXPECT_EQ(ClassOf(0x0085), kSpace);
  EXPECT_EQ(ClassOf(0x180E), kOther);    // not White_Space since Unicode 6.3
  EXPECT_EQ(ClassOf(0x200B), kOther);    // zero width space is Cf
  EXPECT_EQ(ClassOf(0x0301), kOther);    // combining acute (Mn)
  EXPECT_EQ(ClassOf(0x1F600), kOther);   // emoji (So)
}

TEST(Nfc, ComposesAndReorders) {
  EXPECT_TRUE(NfcQuickYes("plain ascii and caf\xC3\xA9"));
  EXPECT_FALSE(NfcQuickYes("e\xCC\x81"));
  EXPECT_EQ(Nfc("Cafe\xCC\x81"), "Caf\xC3\xA9");                          // e + U+0301 -> é
  EXPECT_EQ(Nfc("\xE2\x84\xAB"), "\xC3\x85");                             // Å (U+212B) -> U+00C5
  EXPECT_EQ(Nfc("\xE2\x84\xA6"), "\xCE\xA9");                             // Ω ohm -> omega
  EXPECT_EQ(Nfc("\xE1\xBA\x9B\xCC\xA3"), "\xE1\xBA\x9B\xCC\xA3");         // ẛ̣ (UAX15 example)
  EXPECT_EQ(Nfc("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");               // reorder 230/220
  EXPECT_EQ(Nfc("a\xCC\x88\xCC\x81"), "\xC3\xA4\xCC\x81");                // ä + acute
  EXPECT_EQ(Nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> 각
  EXPECT_EQ(Nfc("\xEA\xB0\x81"), "\xEA\xB0\x81");
  EXPECT_EQ(Nfc("\xCC\x81" "a"), "\xCC\x81" "a");                         // leading mark
  EXPECT_EQ(Nfc("\xE0\xA4\xA8\xE0\xA4\xBC"), "\xE0\xA4\xA9");             // न + nukta -> ऩ
  EXPECT_EQ(Nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");             // क़ is excluded
  EXPECT_EQ(Nfc("\xE4\xB8\xAD\xE6\x96\x87"), "\xE4\xB8\xAD\xE6\x96\x87");  // CJK unchanged
}

}  // namespace
}  // namespace pd::unicode
