// ApiKeySet: loading (inline + file), Bearer parsing, accept/reject, secrets never in messages.
#include "common/api_keys.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace pd {
namespace {

std::string TempFile(const std::string& text) {
  char path[] = "/tmp/pd_api_keys_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(ApiKeys, DisabledAllowsEverything) {
  ApiKeySet none;
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(none.Allows(""));
  EXPECT_TRUE(CheckApiKey(none, "").ok());
  auto loaded = ApiKeySet::Load({}, "");
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->enabled());
}

TEST(ApiKeys, InlineAndFileKeysAreUnited) {
  const std::string f = TempFile("# comment\n\n  key-from-file-1  \r\nkey-from-file-2\ninline-a\n");
  auto keys = ApiKeySet::Load({"inline-a", "inline-b"}, f);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_TRUE(keys->enabled());
  EXPECT_EQ(keys->size(), 4u);  // inline-a once
  for (const char* k : {"inline-a", "inline-b", "key-from-file-1", "key-from-file-2"}) {
    EXPECT_TRUE(keys->Allows(k)) << k;
  }
  for (const char* k : {"", "inline", "inline-a ", "inline-aa", "INLINE-A", "# comment",
                        "key-from-file-1  "}) {
    EXPECT_FALSE(keys->Allows(k)) << k;
  }
  EXPECT_FALSE(keys->Allows(std::string(ApiKeySet::kMaxKeyBytes + 1, 'a')));
  std::remove(f.c_str());
}

TEST(ApiKeys, LongestKeyAndPrefixesDiffer) {
  const std::string k(ApiKeySet::kMaxKeyBytes, 'z');
  auto keys = ApiKeySet::Load({k}, "");
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->Allows(k));
  EXPECT_FALSE(keys->Allows(k.substr(1)));
  EXPECT_FALSE(keys->Allows(std::string_view(k).substr(0, k.size() - 1)));
}

TEST(ApiKeys, BadKeysAreRefusedWithoutEchoingThem) {
  auto sp = ApiKeySet::Load({"ok-key", "secret with space"}, "");
  ASSERT_FALSE(sp.ok());
  EXPECT_EQ(sp.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(sp.status().message().find("router.api_keys[1]"), std::string::npos);
  EXPECT_EQ(sp.status().message().find("secret"), std::string::npos);
  EXPECT_FALSE(ApiKeySet::Load({""}, "").ok());
  EXPECT_FALSE(ApiKeySet::Load({std::string(300, 'x')}, "").ok());
  EXPECT_FALSE(ApiKeySet::Load({std::string("ctl\x01key")}, "").ok());

  const std::string f = TempFile("good-key\nsecret\x7fvalue\n");
  auto bad = ApiKeySet::Load({}, f);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(f + ":2"), std::string::npos) << bad.status().ToString();
  EXPECT_EQ(bad.status().message().find("secret"), std::string::npos);
  std::remove(f.c_str());

  const std::string empty = TempFile("# only a comment\n\n");
  EXPECT_EQ(ApiKeySet::Load({}, empty).status().code(), StatusCode::kInvalidArgument);
  std::remove(empty.c_str());
  EXPECT_EQ(ApiKeySet::Load({}, "/nonexistent/keys").status().code(), StatusCode::kNotFound);
}

TEST(ApiKeys, BearerParsing) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer abc"), "abc");
  EXPECT_EQ(BearerToken("  BEARER \t abc  "), "abc");
  EXPECT_EQ(BearerToken("Bearer"), "");
  EXPECT_EQ(BearerToken("Bearer "), "");
  EXPECT_EQ(BearerToken("Bearerabc"), "");
  EXPECT_EQ(BearerToken("Basic abc"), "");
  EXPECT_EQ(BearerToken("abc"), "");
  EXPECT_EQ(BearerToken(""), "");
}

TEST(ApiKeys, CheckApiKeyCodesAndMessages) {
  auto keys = ApiKeySet::Load({"sk-right"}, "");
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(CheckApiKey(*keys, "Bearer sk-right").ok());
  const Status missing = CheckApiKey(*keys, "");
  EXPECT_EQ(missing.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(missing.message().find("missing API key"), std::string::npos);
  EXPECT_EQ(CheckApiKey(*keys, "sk-right").code(), StatusCode::kUnauthenticated);  // no scheme
  const Status wrong = CheckApiKey(*keys, "Bearer sk-wrong");
  EXPECT_EQ(wrong.code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong.message(), "invalid API key");
  EXPECT_EQ(wrong.message().find("sk-"), std::string::npos);
}

}  // namespace
}  // namespace pd
