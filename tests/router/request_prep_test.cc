// Router request checks: every bad request is INVALID_ARGUMENT with a message naming the problem.
#include "router/request_prep.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kvcache/block_manager.h"
#include "model/makemodel.h"

namespace pd::router {
namespace {

std::vector<ServedModel> TinyModels() {
  const std::string dir = ::testing::TempDir() + "/prep-tiny";
  std::filesystem::create_directories(dir);
  MakeModelOptions o;
  o.preset = "tiny";
  auto cfg = MakeModelConfig(o);
  EXPECT_TRUE(cfg.ok());
  std::ofstream(dir + "/config.json") << ModelConfigToJson(*cfg);
  InstanceConfig inst;
  inst.model = dir;
  inst.model_name = "tiny";
  inst.max_model_len = 100;
  auto m = LoadServedModel(inst);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return {*m};
}

std::string Err(const std::vector<ServedModel>& m, const PromptInput& in) {
  auto r = PrepareRequest(m, in, 64);
  if (r.ok()) return "OK";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  return r.status().message();
}

TEST(RequestPrep, AcceptsAndHashes) {
  auto models = TinyModels();
  ASSERT_EQ(models[0].max_model_len, 100);
  EXPECT_EQ(models[0].tokenizer, nullptr);
  PromptInput in;
  in.ids.assign(40, 7);
  in.max_tokens = 10;
  auto r = PrepareRequest(models, in, 64);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model->name, "tiny");
  EXPECT_EQ(r->chain, PrefixBlockHashes(in.ids.data(), 40, 16));
  EXPECT_EQ(r->chain.size(), 2u);
}

TEST(RequestPrep, RejectsBadRequests) {
  auto models = TinyModels();
  PromptInput ok;
  ok.ids = {1, 2, 3};
  ok.max_tokens = 5;
  PromptInput in = ok;
  in.model = "llama";
  EXPECT_EQ(Err(models, in), "unknown model 'llama' (served: tiny)");
  in = ok;
  in.ids.clear();
  EXPECT_EQ(Err(models, in), "prompt is empty");
  in = ok;
  in.ids[1] = 2048;
  EXPECT_EQ(Err(models, in),
            "prompt token id 2048 at position 1 is outside the vocabulary [0, 2048)");
  in.ids[1] = -1;
  EXPECT_NE(Err(models, in).find("outside the vocabulary"), std::string::npos);
  in = ok;
  in.max_tokens = 0;
  EXPECT_EQ(Err(models, in), "max_tokens must be > 0, got 0");
  in.max_tokens = 65;
  EXPECT_EQ(Err(models, in), "max_tokens 65 is above the limit 64");
  in = ok;
  in.ids.assign(90, 1);
  in.max_tokens = 11;
  EXPECT_EQ(Err(models, in),
            "prompt (90 tokens) + max_tokens (11) exceeds the context of 100 tokens");
  in = ok;
  in.is_text = true;
  in.text = "hello";
  EXPECT_EQ(Err(models, in), "model 'tiny' has no tokenizer.json; send token ids");
  in.text = "";
  EXPECT_EQ(Err(models, in), "prompt is empty");
}

}  // namespace
}  // namespace pd::router
