// Deeply nested documents in the loaders that read files we do not write ourselves
// (config.json, tokenizer.json, the deployment YAML): each is refused with an error, no stack
// overflow. Depth 100,000 is far past any recursion a thread stack survives.
#include <gtest/gtest.h>

#include <string>

#include "common/deploy_config.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

namespace pd {
namespace {

constexpr int kDepth = 100000;

std::string Nested(const std::string& open, const std::string& close, const std::string& leaf) {
  std::string s;
  s.reserve((open.size() + close.size()) * kDepth + leaf.size());
  for (int i = 0; i < kDepth; ++i) s += open;
  s += leaf;
  for (int i = 0; i < kDepth; ++i) s += close;
  return s;
}

TEST(Nesting, ModelConfigJson) {
  for (const std::string& doc :
       {Nested("[", "]", "1"), Nested("{\"a\":", "}", "1"),
        "{\"vocab_size\": " + Nested("[", "]", "") + "}",
        "{\"rope_scaling\": " + Nested("{\"x\":", "}", "0") + "}"}) {
    auto c = ParseModelConfig(doc);
    EXPECT_FALSE(c.ok());
    EXPECT_FALSE(c.status().message().empty());
  }
}

TEST(Nesting, TokenizerJson) {
  for (const std::string& doc :
       {Nested("[", "]", "1"), Nested("{\"model\":", "}", "{}"),
        "{\"model\": {\"type\": \"BPE\", \"vocab\": " + Nested("{\"a\":", "}", "1") + "}}"}) {
    auto t = Tokenizer::FromJson(doc);
    EXPECT_FALSE(t.ok());
    EXPECT_FALSE(t.status().message().empty());
  }
}

TEST(Nesting, DeployYaml) {
  for (const std::string& doc :
       {Nested("[", "]", "1"), Nested("{a: ", "}", "1"), "router: " + Nested("[", "]", ""),
        "router:\n  scorers: " + Nested("{x: ", "}", "1") + "\n"}) {
    auto c = ParseDeployConfig(doc);
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status().ToString();
  }
}

}  // namespace
}  // namespace pd
