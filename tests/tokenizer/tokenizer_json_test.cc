// tokenizer.json parsing on small synthetic files: supported components and clear errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

namespace pd {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

// A byte-level BPE over the 256 byte tokens plus "Ġt" "he" "Ġthe" (merges in both spellings).
json TinyTokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  vocab["\xC4\xA0t"] = 256;
  vocab["he"] = 257;
  vocab["\xC4\xA0the"] = 258;
  json j;
  j["version"] = "1.0";
  j["normalizer"] = nullptr;
  j["added_tokens"] = json::array(
      {{{"id", 259}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
       {{"id", 260}, {"content", "<s>x"}, {"special", false}, {"normalized", false}}});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true},
                        {"trim_offsets", true}, {"use_regex", true}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {259}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                {"vocab", vocab},
                {"merges", json::array({"\xC4\xA0 t", json::array({"h", "e"}),
                                        json::array({"\xC4\xA0t", "he"})})}};
  return j;
}

std::unique_ptr<Tokenizer> Make(const json& j) {
  auto t = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(TokenizerJson, TinyByteLevelBpeWithTemplate) {
  auto t = Make(TinyTokenizer());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 261);
  // add_prefix_space makes "the" into "Ġthe"; the template adds <s> in front.
  EXPECT_EQ(*t->Encode("the", false), (Ids{258}));
  EXPECT_EQ(*t->Encode("the", true), (Ids{259, 258}));
  EXPECT_EQ(*t->Encode("tthe", false), (Ids{256, 116, 257}));  // " tthe": Ġt t he
  // Leftmost-longest added token: "<s>x" beats "<s>".
  EXPECT_EQ(*t->Encode("<s>x<s>", false), (Ids{260, 259}));
  EXPECT_EQ(*t->Decode(Ids{259, 258}, true), " the");
  EXPECT_EQ(*t->Decode(Ids{259, 258}, false), "<s> the");
}

Status LoadError(const std::function<void(json&)>& edit) {
  json j = TinyTokenizer();
  edit(j);
  auto t = Tokenizer::FromJson(j.dump());
  return t.ok() ? OkStatus() : t.status();
}

void ExpectUnsupported(const Status& s, const std::string& name) {
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented) << s.ToString();
  EXPECT_NE(s.message().find(name), std::string::npos) << s.ToString();
}

TEST(TokenizerJson, UnsupportedComponentsAreNamed) {
  ExpectUnsupported(LoadError([](json& j) { j["model"]["type"] = "Unigram"; }), "'Unigram'");
  ExpectUnsupported(LoadError([](json& j) { j["model"]["type"] = "WordPiece"; }), "'WordPiece'");
  ExpectUnsupported(LoadError([](json& j) { j["model"]["byte_fallback"] = true; }),
                    "byte_fallback");
  ExpectUnsupported(LoadError([](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }), "'NFKC'");
  ExpectUnsupported(LoadError([](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }),
                    "'Metaspace'");
  ExpectUnsupported(LoadError([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }),
                    "'WordPiece'");
  ExpectUnsupported(
      LoadError([](json& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; }),
      "'RobertaProcessing'");
  ExpectUnsupported(LoadError([](json& j) { j["added_tokens"][0]["lstrip"] = true; }), "lstrip");
  ExpectUnsupported(LoadError([](json& j) { j["pre_tokenizer"] = nullptr; }), "pre_tokenizer");
}

TEST(TokenizerJson, MalformedInputsAreInvalidArgument) {
  EXPECT_EQ(Tokenizer::FromJson("{not json").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Tokenizer::FromJson("[]").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadError([](json& j) { j["model"]["merges"].push_back("x y"); }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadError([](json& j) { j["model"].erase("vocab"); }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Tokenizer::FromFile("/nonexistent/tokenizer.json").status().code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace pd
