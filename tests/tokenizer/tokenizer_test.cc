// Tokenizer tests against the real Llama 3 and Qwen3 tokenizer.json files (fetched by
// scripts/fetch_tokenizers.sh, a ctest fixture) and against reference encodings produced by
// Hugging Face `tokenizers` (tests/data/tokenizer/reference.json, from make_reference.py).
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_tables.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>

namespace pd {
namespace {

using Ids = std::vector<int32_t>;
using nlohmann::json;

std::string TokenizerDir() {
  if (const char* d = std::getenv("PD_TOKENIZER_DIR")) return d;
  std::string cache;
  if (const char* c = std::getenv("PD_CACHE")) {
    cache = c;
  } else {
    const char* home = std::getenv("HOME");
    cache = std::string(home ? home : "/root") + "/.cache/pdserve";
  }
  return cache + "/tokenizers";
}

// Loads (once) the named tokenizer; fails the test if the file is missing.
const Tokenizer* Get(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto it = loaded.find(name);
  if (it != loaded.end()) return it->second.get();
  const std::string path = TokenizerDir() + "/" + name + "/tokenizer.json";
  auto t = Tokenizer::FromFile(path);
  EXPECT_TRUE(t.ok()) << t.status().ToString()
                      << " (run scripts/fetch_tokenizers.sh; ctest runs it as a fixture)";
  if (!t.ok()) return nullptr;
  return (loaded[name] = std::move(*t)).get();
}

const json* Reference() {
  static const json ref = [] {
    std::ifstream in(std::string(PD_TEST_DATA_DIR) + "/tokenizer/reference.json");
    return in ? json::parse(in) : json();
  }();
  return ref.is_null() ? nullptr : &ref;
}

std::vector<std::string> Texts() {
  if (const json* ref = Reference()) return (*ref)["texts"].get<std::vector<std::string>>();
  return {"", "Hello world", "I'm sure they'll say it's fine", "Caf\xC3\xA9 na\xC3\xAFve",
          "Cafe\xCC\x81", "\xE4\xBB\x8A\xE5\xA4\xA9\xE5\xA4\xA9\xE6\xB0\x94",
          "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 emoji",
          "  spaces\t\ttabs\n\nnewlines\r\n", "123456789 3.14", "<|im_start|>user\nhi<|im_end|>",
          "<|begin_of_text|>x<|eot_id|>", "def f(x):\n    return x\n"};
}

Ids Enc(const Tokenizer* t, std::string_view s, bool special = false) {
  auto r = t->Encode(s, special);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Ids{};
}

std::string Dec(const Tokenizer* t, const Ids& ids, bool skip = false) {
  auto r = t->Decode(ids, skip);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::string();
}

class RealTokenizer : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    tok_ = Get(GetParam());
    ASSERT_NE(tok_, nullptr);
  }
  const Tokenizer* tok_ = nullptr;
};

TEST_P(RealTokenizer, MatchesHuggingFaceReferenceByteForByte) {
  const json* ref = Reference();
  ASSERT_NE(ref, nullptr) << "tests/data/tokenizer/reference.json missing (make_reference.py)";
  const json& enc = (*ref)["encodings"][GetParam()];
  const auto texts = Texts();
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE("text #" + std::to_string(i) + ": " + texts[i]);
    EXPECT_EQ(Enc(tok_, texts[i], false), enc["plain"][i].get<Ids>());
    EXPECT_EQ(Enc(tok_, texts[i], true), enc["special"][i].get<Ids>());
    const Ids plain = enc["plain"][i].get<Ids>();
    EXPECT_EQ(Dec(tok_, plain, false), enc["decoded"][i].get<std::string>());
    EXPECT_EQ(Dec(tok_, plain, true), enc["decoded_skip"][i].get<std::string>());
  }
  for (const json& c : enc["prefix_decodes"]) {
    EXPECT_EQ(Dec(tok_, c["ids"].get<Ids>()), c["text"].get<std::string>()) << c["ids"].dump();
  }
}

TEST_P(RealTokenizer, RoundTripsEveryText) {
  // Qwen normalizes to NFC, so its round trip gives the NFC form of the text.
  const bool nfc = GetParam() == "qwen3";
  for (const std::string& s : Texts()) {
    EXPECT_EQ(Dec(tok_, Enc(tok_, s)), nfc ? unicode::Nfc(s) : s);
  }
}

TEST_P(RealTokenizer, StreamingEqualsWholeDecode) {
  std::mt19937 rng(3);
  std::vector<Ids> seqs;
  for (const std::string& s : Texts()) seqs.push_back(Enc(tok_, s, true));
  for (int i = 0; i < 200; ++i) {  // random ids, incl. lone bytes of multi-byte characters
    std::uniform_int_distribution<int32_t> id(0, tok_->vocab_size() - 1), len(0, 30);
    Ids ids;
    for (int n = len(rng); n > 0; --n) ids.push_back(id(rng));
    seqs.push_back(ids);
  }
  for (bool skip : {false, true}) {
    for (const Ids& ids : seqs) {
      IncrementalDecoder dec(*tok_, skip);
      std::string streamed;
      for (int32_t id : ids) {
        auto piece = dec.Push(id);
        ASSERT_TRUE(piece.ok());
        streamed += *piece;
      }
      streamed += dec.Finish();
      EXPECT_EQ(streamed, Dec(tok_, ids, skip));
    }
  }
}

TEST_P(RealTokenizer, StreamingHoldsBackIncompleteCharacters) {
  // "👨‍👩‍👧" is split over several byte-level tokens; no piece may end mid-character.
  const Ids ids = Enc(tok_, "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7");
  ASSERT_GT(ids.size(), 1u);
  IncrementalDecoder dec(*tok_, false);
  std::string all;
  for (int32_t id : ids) {
    auto piece = dec.Push(id);
    ASSERT_TRUE(piece.ok());
    EXPECT_EQ(piece->find("\xEF\xBF\xBD"), std::string::npos);
    all += *piece;
  }
  EXPECT_EQ(dec.Finish(), "");
  EXPECT_EQ(all, "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7");
}

TEST_P(RealTokenizer, RejectsInvalidUtf8AndBadIds) {
  auto r = tok_->Encode("ok \xC3(", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("offset 3"), std::string::npos);
  EXPECT_EQ(tok_->Decode(Ids{tok_->vocab_size()}, false).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(tok_->Decode(Ids{-1}, false).status().code(), StatusCode::kOutOfRange);
  IncrementalDecoder dec(*tok_, false);
  EXPECT_FALSE(dec.Push(-5).ok());
}

TEST_P(RealTokenizer, ConcurrentEncodesAgree) {
  const auto texts = Texts();
  std::vector<Ids> expected;
  for (const auto& s : texts) expected.push_back(Enc(tok_, s));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i) {
          size_t k = (i + t * 7 + rep) % texts.size();
          auto r = tok_->Encode(texts[k], false);
          if (!r.ok() || *r != expected[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Files, RealTokenizer, ::testing::Values("llama3", "qwen3"));

// Character classes and NFC of every Unicode scalar value, as HF's Oniguruma regex and NFC
// normalizer see them (the "unicode" section of reference.json, make_reference.py).
const json* UnicodeReference() {
  const json* ref = Reference();
  return ref && ref->contains("unicode") ? &(*ref)["unicode"] : nullptr;
}

TEST(UnicodeReference, ClassesMatchHuggingFace) {
  const json* u = UnicodeReference();
  if (!u) GTEST_SKIP() << "reference.json has no unicode sweep yet (rerun make_reference.py)";
  std::vector<uint8_t> want(0x110000, 0);
  for (const json& r : (*u)["classes"]) {
    for (uint32_t cp = r[0]; cp <= r[1].get<uint32_t>(); ++cp) want[cp] = r[2].get<uint8_t>();
  }
  int bad = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    if (unicode::ClassOf(cp) != want[cp] && ++bad <= 20) {
      ADD_FAILURE() << "U+" << std::hex << cp << ": ours " << int(unicode::ClassOf(cp))
                    << ", HF " << int(want[cp]);
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(UnicodeReference, NfcMatchesHuggingFace) {
  const json* u = UnicodeReference();
  if (!u) GTEST_SKIP() << "reference.json has no unicode sweep yet (rerun make_reference.py)";
  std::unordered_map<uint32_t, std::string> changed;
  for (const json& c : (*u)["nfc_changes"]) changed[c[0].get<uint32_t>()] = c[1];
  int bad = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    unicode::AppendUtf8(cp, s);
    auto it = changed.find(cp);
    const std::string want = it == changed.end() ? s : it->second;
    if (unicode::Nfc(s) != want && ++bad <= 20) ADD_FAILURE() << "U+" << std::hex << cp;
  }
  EXPECT_EQ(bad, 0);
}

// Hand-verified ids (published examples for these vocabularies).
TEST(Llama3, KnownIds) {
  const Tokenizer* t = Get("llama3");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 128256);
  EXPECT_EQ(Enc(t, "Hello world"), (Ids{9906, 1917}));
  EXPECT_EQ(Enc(t, "<|begin_of_text|>Hi<|eot_id|>"), (Ids{128000, 13347, 128009}));
  EXPECT_EQ(t->TokenToId("<|begin_of_text|>"), 128000);
  EXPECT_EQ(t->TokenToId("\xC4\xA0the"), 279);  // "Ġthe"
  EXPECT_EQ(Enc(t, " the"), (Ids{279}));
  EXPECT_TRUE(t->IsSpecial(128000));
  EXPECT_FALSE(t->IsSpecial(279));
  EXPECT_EQ(Dec(t, Ids{128000, 9906}, /*skip=*/true), "Hello");
  EXPECT_EQ(Dec(t, Ids{128000, 9906}, /*skip=*/false), "<|begin_of_text|>Hello");
  // Digits group in threes; no NFC, so a decomposed accent stays decomposed.
  EXPECT_EQ(Enc(t, "1234").size(), 2u);
  EXPECT_NE(Enc(t, "Cafe\xCC\x81"), Enc(t, "Caf\xC3\xA9"));
}

TEST(Qwen3, KnownIds) {
  const Tokenizer* t = Get("qwen3");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 151669);
  EXPECT_EQ(Enc(t, "Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(Enc(t, "<|im_start|>user<|im_end|>"), (Ids{151644, 872, 151645}));
  EXPECT_EQ(Enc(t, "<think>"), (Ids{151667}));  // non-special added token
  EXPECT_FALSE(t->IsSpecial(151667));
  EXPECT_EQ(Dec(t, Ids{151644, 151667}, /*skip=*/true), "<think>");
  // Single digits; NFC folds the decomposed accent.
  EXPECT_EQ(Enc(t, "1234").size(), 4u);
  EXPECT_EQ(Enc(t, "Cafe\xCC\x81"), Enc(t, "Caf\xC3\xA9"));
  EXPECT_EQ(Dec(t, Enc(t, "Cafe\xCC\x81")), "Caf\xC3\xA9");
}

}  // namespace
}  // namespace pd
