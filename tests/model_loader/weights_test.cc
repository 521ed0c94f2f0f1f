// LoadModelWeights: golden models bind every tensor with the right values; every mismatch between
// config and checkpoint is a clear error.
#include "model/weights.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_util.h"

namespace pd {
namespace {

using testing::json;
using testing::RawTensor;

void ExpectMessage(const Status& s, StatusCode code, const std::vector<std::string>& needles) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  for (const auto& n : needles) {
    EXPECT_NE(s.message().find(n), std::string::npos) << "'" << n << "' not in: " << s.message();
  }
}

// Checks a view against the raw bytes of the same tensor, element by element as floats too.
void ExpectSame(const TensorView& v, const RawTensor& r, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_TRUE(v.present());
  EXPECT_EQ(v.shape, r.shape);
  ASSERT_EQ(v.nbytes(), r.bytes.size());
  EXPECT_EQ(std::memcmp(v.data, r.bytes.data(), r.bytes.size()), 0);
  std::vector<float> f(v.numel());
  ToF32(v.dtype, v.data, f.data(), f.size());
  for (size_t i = 0; i < f.size(); i += 7) ASSERT_EQ(f[i], testing::RawElement(r, i)) << i;
}

TEST(WeightsTest, GoldenModelsBindEveryTensor) {
  for (const std::string& name : testing::GoldenNames()) {
    SCOPED_TRACE(name);
    const std::string dir = testing::GoldenDir(name);
    auto w = LoadModelWeights(dir);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const ModelWeights& m = **w;
    auto raw = testing::ReadRaw(dir + "/model.safetensors").Tensors();
    const ModelConfig& c = m.config;
    ASSERT_EQ(static_cast<int>(m.layers.size()), c.num_layers);
    ExpectSame(m.embed, raw.at("model.embed_tokens.weight"), "embed");
    ExpectSame(m.final_norm, raw.at("model.norm.weight"), "norm");
    if (c.tie_word_embeddings) {
      EXPECT_EQ(raw.count("lm_head.weight"), 0u);
      EXPECT_EQ(m.lm_head.data, m.embed.data);
    } else {
      ExpectSame(m.lm_head, raw.at("lm_head.weight"), "lm_head");
      EXPECT_NE(m.lm_head.data, m.embed.data);
    }
    for (int l = 0; l < c.num_layers; ++l) {
      const LayerWeights& L = m.layers[l];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      ExpectSame(L.q_proj, raw.at(p + "self_attn.q_proj.weight"), p + "q");
      ExpectSame(L.k_proj, raw.at(p + "self_attn.k_proj.weight"), p + "k");
      ExpectSame(L.v_proj, raw.at(p + "self_attn.v_proj.weight"), p + "v");
      ExpectSame(L.o_proj, raw.at(p + "self_attn.o_proj.weight"), p + "o");
      ExpectSame(L.down_proj, raw.at(p + "mlp.down_proj.weight"), p + "down");
      ExpectSame(L.input_norm, raw.at(p + "input_layernorm.weight"), p + "in_norm");
      ExpectSame(L.post_norm, raw.at(p + "post_attention_layernorm.weight"), p + "post_norm");
      EXPECT_EQ(L.q_bias.present(), c.qkv_bias);
      EXPECT_EQ(L.v_bias.present(), c.qkv_bias);
      EXPECT_EQ(L.o_bias.present(), c.o_bias);
      EXPECT_EQ(L.q_norm.present(), c.qk_norm);
      EXPECT_EQ(L.k_norm.present(), c.qk_norm);
      EXPECT_EQ(L.up_bias.present(), c.mlp_bias);
      if (c.qkv_bias) ExpectSame(L.k_bias, raw.at(p + "self_attn.k_proj.bias"), p + "k_bias");
      if (c.qk_norm) ExpectSame(L.k_norm, raw.at(p + "self_attn.k_norm.weight"), p + "k_norm");
      if (c.mlp_bias) ExpectSame(L.gate_bias, raw.at(p + "mlp.gate_proj.bias"), p + "gate_bias");
    }
    EXPECT_FALSE(m.storage.empty());
  }
}

TEST(WeightsTest, Qwen3ShapesFollowExplicitHeadDim) {
  auto w = LoadModelWeights(testing::GoldenDir("qwen3_qknorm"));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const LayerWeights& L = (*w)->layers[1];
  EXPECT_EQ(L.q_proj.shape, (std::vector<int64_t>{4 * 32, 64}));
  EXPECT_EQ(L.k_proj.shape, (std::vector<int64_t>{2 * 32, 64}));
  EXPECT_EQ(L.o_proj.shape, (std::vector<int64_t>{64, 4 * 32}));
  EXPECT_EQ(L.q_norm.shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(L.q_norm.dtype, DType::kBF16);
}

TEST(WeightsTest, MappingOutlivesTheLoaderCall) {
  std::shared_ptr<ModelWeights> w;
  {
    auto r = LoadModelWeights(testing::GoldenDir("mistral_window"));
    ASSERT_TRUE(r.ok());
    w = *r;
  }
  std::vector<float> f(w->embed.numel());
  ToF32(w->embed.dtype, w->embed.data, f.data(), f.size());
  EXPECT_EQ(w->embed.dtype, DType::kF16);
}

// Copies a golden model into a temp dir so each test can break one thing.
class BrokenModelTest : public ::testing::Test {
 protected:
  void Use(const std::string& golden) {
    testing::CopyDir(testing::GoldenDir(golden), dir_.path());
    tensors_ = testing::ReadRaw(dir_ / "model.safetensors").Tensors();
  }
  void Rewrite() { testing::WriteRaw(file(), tensors_); }
  std::string file() const { return dir_ / "model.safetensors"; }
  Status LoadStatus() {
    auto w = LoadModelWeights(dir_.path());
    return w.ok() ? OkStatus() : w.status();
  }
  testing::TempDir dir_;
  std::map<std::string, RawTensor> tensors_;
};

TEST_F(BrokenModelTest, RewrittenCopyLoads) {
  Use("llama_bias_linear");
  Rewrite();
  EXPECT_TRUE(LoadStatus().ok()) << LoadStatus().ToString();
}

TEST_F(BrokenModelTest, MissingTensor) {
  Use("llama_gqa_tied");
  tensors_.erase("model.layers.1.mlp.up_proj.weight");
  tensors_.erase("model.layers.0.self_attn.v_proj.weight");
  Rewrite();
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"missing tensor 'model.layers.0.self_attn.v_proj.weight'", "[32, 64]", file(),
                 "1 more missing"});
}

TEST_F(BrokenModelTest, MissingBiasTheConfigAsksFor) {
  Use("qwen2_bias_tied");
  tensors_.erase("model.layers.1.self_attn.q_proj.bias");
  Rewrite();
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"model.layers.1.self_attn.q_proj.bias", "missing"});
}

TEST_F(BrokenModelTest, ExtraTensor) {
  Use("llama_gqa_tied");
  tensors_["model.layers.0.self_attn.foo.weight"] = {"BF16", {2}, std::string(4, '\0')};
  Rewrite();
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"unexpected tensor 'model.layers.0.self_attn.foo.weight'", file()});
}

TEST_F(BrokenModelTest, ExtraLayer) {
  Use("mistral_window");
  tensors_["model.layers.2.input_layernorm.weight"] =
      tensors_.at("model.layers.0.input_layernorm.weight");
  Rewrite();
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"model.layers.2.input_layernorm.weight", "num_hidden_layers=2"});
}

TEST_F(BrokenModelTest, RotaryInvFreqIsIgnored) {
  Use("llama_gqa_tied");
  tensors_["model.layers.0.self_attn.rotary_emb.inv_freq"] = {"F32", {8}, std::string(32, '\0')};
  tensors_["model.rotary_emb.inv_freq"] = {"F32", {8}, std::string(32, '\0')};
  Rewrite();
  EXPECT_TRUE(LoadStatus().ok()) << LoadStatus().ToString();
}

TEST_F(BrokenModelTest, WrongShape) {
  Use("llama3_scaled_mqa_v4cfg");
  RawTensor& t = tensors_.at("model.layers.2.self_attn.k_proj.weight");  // [16, 64] F32
  t.shape = {32, 64};
  t.bytes += t.bytes;
  Rewrite();
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"model.layers.2.self_attn.k_proj.weight", file(), "[32, 64]", "expected [16, 64]",
                 "num_key_value_heads=1"});
}

TEST_F(BrokenModelTest, ConfigDisagreesWithShapes) {
  Use("llama_gqa_tied");
  testing::EditConfig(dir_.path(), [](json& j) { j["intermediate_size"] = 100; });
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"mlp.", "expected [", "intermediate_size=100"});
}

TEST_F(BrokenModelTest, BadDtype) {
  Use("llama_gqa_tied");
  tensors_.at("model.norm.weight").dtype = "I16";
  Rewrite();
  ExpectMessage(LoadStatus(), StatusCode::kUnimplemented, {"model.norm.weight", "I16", file()});
}

TEST_F(BrokenModelTest, TruncatedFile) {
  Use("qwen3_qknorm");
  std::string bytes = testing::ReadBytes(file());
  testing::WriteBytes(file(), bytes.substr(0, bytes.size() / 2));
  ExpectMessage(LoadStatus(), StatusCode::kDataLoss, {file(), "truncated"});
}

TEST_F(BrokenModelTest, UntiedConfigNeedsLmHead) {
  Use("llama_gqa_tied");
  testing::EditConfig(dir_.path(), [](json& j) { j["tie_word_embeddings"] = false; });
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument, {"missing tensor 'lm_head.weight'"});
}

TEST_F(BrokenModelTest, TiedConfigWithLmHeadUsesIt) {
  Use("qwen3_qknorm");
  testing::EditConfig(dir_.path(), [](json& j) { j["tie_word_embeddings"] = true; });
  auto w = LoadModelWeights(dir_.path());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_NE((*w)->lm_head.data, (*w)->embed.data);
  ExpectSame((*w)->lm_head, tensors_.at("lm_head.weight"), "lm_head");
}

TEST_F(BrokenModelTest, BiasTheConfigTurnsOff) {
  Use("llama_bias_linear");
  testing::EditConfig(dir_.path(), [](json& j) { j["attention_bias"] = false; });
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"unexpected tensor", "_proj.bias", "attention_bias"});
}

TEST_F(BrokenModelTest, UnsupportedArchitecture) {
  Use("llama_gqa_tied");
  testing::EditConfig(dir_.path(), [](json& j) { j["architectures"] = {"PhiForCausalLM"}; });
  ExpectMessage(LoadStatus(), StatusCode::kUnimplemented, {"PhiForCausalLM", dir_ / "config.json"});
}

TEST_F(BrokenModelTest, OutOfRangeConfigField) {
  Use("llama_gqa_tied");
  testing::EditConfig(dir_.path(), [](json& j) { j["num_key_value_heads"] = 3; });
  ExpectMessage(LoadStatus(), StatusCode::kInvalidArgument,
                {"num_key_value_heads", dir_ / "config.json"});
}

TEST_F(BrokenModelTest, NoWeightsFile) {
  Use("llama_gqa_tied");
  std::remove(file().c_str());
  ExpectMessage(LoadStatus(), StatusCode::kNotFound, {"model.safetensors", dir_.path()});
}

TEST_F(BrokenModelTest, DtypeDifferentFromConfigIsAccepted) {
  Use("llama_gqa_tied");  // BF16 tensors; say float32 in config
  testing::EditConfig(dir_.path(), [](json& j) { j["dtype"] = "float32"; });
  auto w = LoadModelWeights(dir_.path());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->config.dtype, DType::kF32);
  EXPECT_EQ((*w)->embed.dtype, DType::kBF16);
}

}  // namespace
}  // namespace pd
