// Hostile-input limits of the request checks (serving/request_check.h, router/generate_check.h):
// each refusal is INVALID_ARGUMENT with a message naming the field and the limit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "router/generate_check.h"
#include "serving/request_check.h"

namespace pd {
namespace {

namespace v1 = ::pdserve::v1;
using serving::RequestLimits;

const RequestLimits kL = {/*vocab=*/100, /*max_model_len=*/64, /*max_tokens_limit=*/32,
                          /*block_size=*/16};

void ExpectInvalid(const Status& s, const std::string& needle) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

v1::DecodeRequest GoodDecode() {
  v1::DecodeRequest r;
  r.set_request_id("r-1");
  r.set_prefill_locally(true);
  for (int i = 1; i <= 10; ++i) r.add_prompt_ids(i);
  r.set_max_tokens(8);
  r.set_first_token(-1);
  return r;
}

TEST(RequestCheck, GoodDecodeIsAccepted) { EXPECT_TRUE(serving::ValidateDecodeRequest(GoodDecode(), kL).ok()); }

TEST(RequestCheck, HugeMaxTokensAndContext) {
  auto r = GoodDecode();
  r.set_max_tokens(std::numeric_limits<int32_t>::max());
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "max_tokens 2147483647 is above the limit 32");
  r.set_max_tokens(0);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "max_tokens must be > 0");
  r.set_max_tokens(30);
  for (int i = 0; i < 40; ++i) r.add_prompt_ids(1);  // 50 + 30 > 64
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "exceeds the context of 64 tokens");
}

TEST(RequestCheck, TokenIdsOutOfVocab) {
  auto r = GoodDecode();
  r.set_prompt_ids(3, 100);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "prompt token id 100 at position 3");
  r = GoodDecode();
  r.set_prompt_ids(0, -7);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "outside the vocabulary [0, 100)");
  r = GoodDecode();
  r.set_first_token(100);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "first_token 100");
}

TEST(RequestCheck, StopTokenFlood) {
  auto r = GoodDecode();
  for (int i = 0; i < serving::kMaxStopTokenIds; ++i) r.add_stop_token_ids(i % 100);
  EXPECT_TRUE(serving::ValidateDecodeRequest(r, kL).ok());
  r.add_stop_token_ids(1);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "stop_token_ids has 257 entries; the limit is 256");
  r.clear_stop_token_ids();
  r.add_stop_token_ids(5000);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "stop_token_ids[0] = 5000");
}

TEST(RequestCheck, StopStrings) {
  EXPECT_TRUE(serving::CheckStopStrings({"\n\n", "</s>", "h\xc3\xa9"}).ok());
  ExpectInvalid(serving::CheckStopStrings(std::vector<std::string>(17, "x")), "the limit is 16");
  ExpectInvalid(serving::CheckStopStrings({std::string(257, 'x')}), "stop[0] is 257 bytes");
  ExpectInvalid(serving::CheckStopStrings({"ok", ""}), "stop[1] is empty");
  ExpectInvalid(serving::CheckStopStrings({"\xff"}), "stop[0] is not valid UTF-8");
}

TEST(RequestCheck, Sampling) {
  auto r = GoodDecode();
  r.mutable_sampling()->set_temperature(std::nanf(""));
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "sampling.temperature");
  r.mutable_sampling()->set_temperature(std::numeric_limits<float>::infinity());
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "sampling.temperature");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "sampling.top_p must be in [0, 1]");
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_top_k(-1);
  ExpectInvalid(serving::ValidateDecodeRequest(r, kL), "sampling.top_k must be >= 0");
}

TEST(RequestCheck, RequestIds) {
  EXPECT_TRUE(serving::CheckRequestId("", true).ok());
  ExpectInvalid(serving::CheckRequestId("", false), "request_id is empty");
  ExpectInvalid(serving::CheckRequestId(std::string(257, 'a'), true), "request_id is 257 bytes");
  ExpectInvalid(serving::CheckRequestId("a\nb", true), "non-printable");
}

TEST(RequestCheck, Utf8) {
  EXPECT_EQ(serving::FirstInvalidUtf8("plain h\xc3\xa9 \xf0\x9f\x98\x80"), -1);
  EXPECT_EQ(serving::FirstInvalidUtf8("ab\xff"), 2);
  EXPECT_EQ(serving::FirstInvalidUtf8("\xc0\xaf"), 0);          // overlong '/'
  EXPECT_EQ(serving::FirstInvalidUtf8("x\xed\xa0\x80"), 1);     // surrogate U+D800
  EXPECT_EQ(serving::FirstInvalidUtf8("\xf4\x90\x80\x80"), 0);  // above U+10FFFF
  EXPECT_EQ(serving::FirstInvalidUtf8("\xe2\x82"), 0);          // truncated
}

TEST(RequestCheck, PrefillTarget) {
  v1::PrefillRequest r;
  r.set_request_id("r-1");
  for (int i = 0; i < 20; ++i) r.add_prompt_ids(i);
  v1::TransferTarget t;
  t.set_compat_hash(9);
  t.set_block_size(16);
  t.add_block_ids(3);
  t.add_block_ids(4);
  t.set_num_blocks(8);
  r.set_target(t.SerializeAsString());
  v1::TransferTarget out;
  EXPECT_TRUE(serving::ValidatePrefillRequest(r, kL, &out).ok());
  t.set_block_ids(1, 8);
  r.set_target(t.SerializeAsString());
  ExpectInvalid(serving::ValidatePrefillRequest(r, kL, &out), "block_ids[1] = 8 is outside");
  r.set_target("\xff\xff\xff");
  ExpectInvalid(serving::ValidatePrefillRequest(r, kL, &out), "not a serialized TransferTarget");
}

TEST(RequestCheck, GenerateLimits) {
  std::vector<router::ServedModel> models(1);
  models[0].name = "m";
  models[0].config.vocab_size = 100;
  models[0].max_model_len = 64;
  v1::GenerateRequest g;
  for (int i = 1; i <= 4; ++i) g.mutable_token_ids()->add_ids(i);
  g.set_max_tokens(4);
  EXPECT_TRUE(router::PrepareGenerate(models, g, 32).ok());
  g.set_max_tokens(1 << 30);
  ExpectInvalid(router::PrepareGenerate(models, g, 32).status(), "above the limit 32");
  g.set_max_tokens(4);
  for (int i = 0; i < 300; ++i) g.add_stop_token_ids(1);
  ExpectInvalid(router::PrepareGenerate(models, g, 32).status(), "stop_token_ids has 300");
  g.clear_stop_token_ids();
  g.set_model(std::string(1000, 'm'));
  ExpectInvalid(router::PrepareGenerate(models, g, 32).status(), "model name is 1000 bytes");
  g.set_model("");
  g.mutable_sampling()->set_top_p(-0.5f);
  ExpectInvalid(router::PrepareGenerate(models, g, 32).status(), "sampling.top_p");
  g.mutable_sampling()->set_top_p(0);
  g.set_text(std::string(64 * 64 + 1, 'a'));  // without a tokenizer: refused either way
  EXPECT_EQ(router::PrepareGenerate(models, g, 32).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pd
