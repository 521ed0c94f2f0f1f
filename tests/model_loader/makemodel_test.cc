// pd-makemodel: presets, overrides, tokenizer vocab, determinism, round trip through the loader,
// and the command line.
#include "model/makemodel.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "model/weights.h"
#include "test_util.h"

namespace pd {
namespace {

using testing::json;

struct Moments {
  double mean = 0, stddev = 0;
};

Moments Stats(const TensorView& v) {
  std::vector<float> f(v.numel());
  ToF32(v.dtype, v.data, f.data(), f.size());
  double s = 0, s2 = 0;
  for (float x : f) {
    s += x;
    s2 += double{x} * x;
  }
  Moments m;
  m.mean = s / f.size();
  m.stddev = std::sqrt(s2 / f.size() - m.mean * m.mean);
  return m;
}

TEST(MakeModelTest, TinyRoundTripsThroughTheLoader) {
  testing::TempDir dir;
  MakeModelOptions o;
  o.out_dir = dir.path();
  o.seed = 7;
  ASSERT_TRUE(WriteRandomModel(o).ok());
  auto w = LoadModelWeights(dir.path());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const ModelConfig& c = (*w)->config;
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.intermediate_size, 384);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ((*w)->embed.dtype, DType::kBF16);
  const auto size = std::filesystem::file_size(dir / "model.safetensors");
  EXPECT_GT(size, 2u << 20);
  EXPECT_LT(size, 8u << 20);  // "a few MB"
  // Scales documented in makemodel.h.
  Moments q = Stats((*w)->layers[0].q_proj);
  EXPECT_NEAR(q.mean, 0.0, 0.01);
  EXPECT_NEAR(q.stddev, 1.0 / std::sqrt(128.0), 0.01);
  Moments e = Stats((*w)->embed);
  EXPECT_NEAR(e.stddev, 2.0 / std::sqrt(128.0), 0.01);
  Moments n = Stats((*w)->layers[3].post_norm);
  EXPECT_NEAR(n.mean, 1.0, 0.05);
  EXPECT_NEAR(n.stddev, 0.1, 0.03);
  // Nothing but the model files is left behind.
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(f.path().string().find(".tmp"), std::string::npos) << f.path();
    ++files;
  }
  EXPECT_EQ(files, 2);
}

TEST(MakeModelTest, DeterministicPerSeed) {
  testing::TempDir a, b, c;
  MakeModelOptions o;
  o.layers = 1;
  o.out_dir = a.path();
  ASSERT_TRUE(WriteRandomModel(o).ok());
  o.out_dir = b.path();
  ASSERT_TRUE(WriteRandomModel(o).ok());
  o.out_dir = c.path();
  o.seed = 1;
  ASSERT_TRUE(WriteRandomModel(o).ok());
  const std::string wa = testing::ReadBytes(a / "model.safetensors");
  EXPECT_EQ(wa, testing::ReadBytes(b / "model.safetensors"));
  EXPECT_NE(wa, testing::ReadBytes(c / "model.safetensors"));
  EXPECT_EQ(testing::ReadBytes(a / "config.json"), testing::ReadBytes(c / "config.json"));
}

TEST(MakeModelTest, EveryArchAndDtypeLoads) {
  struct Case {
    const char* arch;
    DType dtype;
    bool attention_bias, mlp_bias;
    int window;
  };
  for (const Case& k :
       {Case{"llama", DType::kF32, true, true, -1}, Case{"mistral", DType::kF16, false, false, 16},
        Case{"qwen2", DType::kBF16, false, false, -1},
        Case{"qwen3", DType::kBF16, true, false, -1}}) {
    SCOPED_TRACE(k.arch);
    testing::TempDir dir;
    MakeModelOptions o;
    o.out_dir = dir.path();
    o.arch = k.arch;
    o.dtype = k.dtype;
    o.attention_bias = k.attention_bias;
    o.mlp_bias = k.mlp_bias;
    o.sliding_window = k.window;
    o.layers = 2;
    o.tie = 1;
    ASSERT_TRUE(WriteRandomModel(o).ok());
    auto want = MakeModelConfig(o);
    ASSERT_TRUE(want.ok());
    auto w = LoadModelWeights(dir.path());
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const ModelConfig& c = (*w)->config;
    EXPECT_EQ(c.arch, want->arch);
    EXPECT_EQ(c.dtype, k.dtype);
    EXPECT_EQ((*w)->embed.dtype, k.dtype);
    EXPECT_EQ(c.qkv_bias, want->qkv_bias);
    EXPECT_EQ(c.o_bias, want->o_bias);
    EXPECT_EQ(c.mlp_bias, k.mlp_bias);
    EXPECT_EQ(c.qk_norm, std::string(k.arch) == "qwen3");
    EXPECT_EQ(c.sliding_window, std::max(k.window, 0));
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ((*w)->lm_head.data, (*w)->embed.data);
    EXPECT_EQ((*w)->layers[1].q_bias.present(), want->qkv_bias);
  }
}

TEST(MakeModelTest, RealPresetShapes) {
  MakeModelOptions o;
  o.preset = "llama-3.2-1b";
  auto c = MakeModelConfig(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->num_layers, 16);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->intermediate_size, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 32.0);
  o.preset = "llama-3.1-8b";
  c = MakeModelConfig(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->num_layers, 32);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  // The written config.json (5.x spelling) parses back to the same config.
  auto back = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(back->rope_scaling.factor, 8.0);
  EXPECT_EQ(back->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(back->rope_theta, 500000.0);
  EXPECT_EQ(back->eos_token_ids, c->eos_token_ids);
  EXPECT_EQ(back->bos_token_id, 128000);
  EXPECT_EQ(back->max_position_embeddings, 131072);
  json j = json::parse(ModelConfigToJson(*c));
  EXPECT_TRUE(j.contains("rope_parameters"));
  EXPECT_TRUE(j.contains("dtype"));
  EXPECT_FALSE(j.contains("torch_dtype"));
}

TEST(MakeModelTest, OverridesAndBadOptions) {
  MakeModelOptions o;
  o.hidden = 64;
  o.heads = 2;
  o.kv_heads = 1;
  auto c = MakeModelConfig(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->head_dim, 32);  // follows hidden / heads
  o.head_dim = 16;
  EXPECT_EQ(MakeModelConfig(o)->head_dim, 16);

  auto expect_bad = [](const MakeModelOptions& m, const std::string& needle) {
    auto r = MakeModelConfig(m);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  MakeModelOptions b;
  b.preset = "gpt-5";
  expect_bad(b, "gpt-5");
  b = MakeModelOptions();
  b.arch = "falcon";
  expect_bad(b, "falcon");
  b = MakeModelOptions();
  b.kv_heads = 3;
  expect_bad(b, "num_key_value_heads");
  b = MakeModelOptions();
  b.head_dim = 7;
  expect_bad(b, "head_dim");
  b = MakeModelOptions();
  b.mlp_bias = true;
  b.arch = "qwen2";
  expect_bad(b, "--mlp-bias");
}

TEST(MakeModelTest, NoOutputDir) {
  MakeModelOptions o;
  Status s = WriteRandomModel(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--out"), std::string::npos);
}

TEST(MakeModelTest, TokenizerSetsVocabAndSpecialIds) {
  testing::TempDir dir;
  json tok = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"zz", 290}}}}},
              {"added_tokens",
               {{{"id", 300}, {"content", "<|begin_of_text|>"}},
                {{"id", 301}, {"content", "<|end_of_text|>"}},
                {{"id", 302}, {"content", "<|eot_id|>"}}}}};
  testing::WriteBytes(dir / "tok.json", tok.dump());
  auto n = TokenizerVocabSize(dir / "tok.json");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 303);
  MakeModelOptions o;
  o.out_dir = dir / "model";
  o.tokenizer_path = dir / "tok.json";
  o.layers = 1;
  ASSERT_TRUE(WriteRandomModel(o).ok());
  auto c = LoadModelConfig(o.out_dir);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->vocab_size, 303);
  EXPECT_EQ(c->bos_token_id, 300);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{301, 302}));
  EXPECT_EQ(testing::ReadBytes(o.out_dir + "/tokenizer.json"), tok.dump());
  EXPECT_TRUE(LoadModelWeights(o.out_dir).ok());
  // Unigram vocab (array) counts by position; --vocab may only grow it.
  json uni = {{"model",
               {{"type", "Unigram"},
                {"vocab", json::array({json::array({"a", -1.0}), json::array({"b", -2.0})})}}}};
  testing::WriteBytes(dir / "uni.json", uni.dump());
  auto un = TokenizerVocabSize(dir / "uni.json");
  ASSERT_TRUE(un.ok()) << un.status().ToString();
  EXPECT_EQ(*un, 2);
  o.vocab = 100;
  auto small = MakeModelConfig(o);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("smaller"), std::string::npos);
  testing::WriteBytes(dir / "bad.json", "{nope");
  EXPECT_FALSE(TokenizerVocabSize(dir / "bad.json").ok());
  EXPECT_EQ(TokenizerVocabSize(dir / "missing.json").status().code(), StatusCode::kNotFound);
}

int RunCli(const std::string& args) {
  const std::string cmd = std::string(PD_MAKEMODEL_BIN) + " " + args + " >/dev/null 2>&1";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(MakeModelCliTest, FlagsAndExitCodes) {
  if (!std::filesystem::exists(PD_MAKEMODEL_BIN)) GTEST_SKIP() << "pd-makemodel not built";
  testing::TempDir dir;
  EXPECT_EQ(RunCli("--help"), 0);
  EXPECT_EQ(RunCli("--bogus"), 2);
  EXPECT_EQ(RunCli("--out " + dir.path() + " --layers abc"), 2);
  EXPECT_EQ(RunCli("--out " + dir.path() + " --layers"), 2);
  EXPECT_EQ(RunCli("--out " + dir.path() + " --dtype int4"), 2);
  EXPECT_EQ(RunCli("--out " + dir.path() + " --kv-heads 3"), 2);
  EXPECT_EQ(RunCli("--layers 2"), 2);  // no --out
  EXPECT_FALSE(std::filesystem::exists(dir / "config.json"));
  EXPECT_EQ(RunCli("--out " + (dir / "m") + " --arch qwen3 --layers 2 --hidden 64 --heads 4 " +
                   "--kv-heads 2 --head-dim 32 --vocab 300 --dtype fp16 --seed 3 --no-tie"),
            0);
  auto w = LoadModelWeights(dir / "m");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->config.arch, Arch::kQwen3);
  EXPECT_EQ((*w)->config.head_dim, 32);
  EXPECT_EQ((*w)->config.vocab_size, 300);
  EXPECT_EQ((*w)->embed.dtype, DType::kF16);
  EXPECT_FALSE((*w)->config.tie_word_embeddings);
}

}  // namespace
}  // namespace pd
