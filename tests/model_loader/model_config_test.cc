// config.json parsing: the golden configs (4.x and 5.x spellings) and every rejection path.
#include "model/model_config.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace pd {
namespace {

using testing::json;

ModelConfig MustLoad(const std::string& name) {
  auto c = LoadModelConfig(testing::GoldenDir(name));
  EXPECT_TRUE(c.ok()) << name << ": " << c.status().ToString();
  return c.ok() ? *c : ModelConfig();
}

TEST(ModelConfigTest, Llama3ScalingFromTransformers4Spelling) {
  ModelConfig c = MustLoad("llama3_scaled_mqa_v4cfg");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32);
  EXPECT_EQ(c.dtype, DType::kF32);  // torch_dtype
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(c.max_position_embeddings, 256);
}

TEST(ModelConfigTest, LlamaBiasesAndLinearRope) {
  ModelConfig c = MustLoad("llama_bias_linear");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.num_heads, 3);
  EXPECT_EQ(c.hidden_size, 48);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
}

TEST(ModelConfigTest, LlamaTiedDefaultRope) {
  ModelConfig c = MustLoad("llama_gqa_tied");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.intermediate_size, 160);
}

TEST(ModelConfigTest, MistralWindow) {
  ModelConfig c = MustLoad("mistral_window");
  EXPECT_EQ(c.arch, Arch::kMistral);
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.dtype, DType::kF16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_FALSE(c.qkv_bias);
}

TEST(ModelConfigTest, Qwen2BiasHeadDimDefault) {
  ModelConfig c = MustLoad("qwen2_bias_tied");
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 16);  // no head_dim in config: hidden 64 / 4 heads
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(ModelConfigTest, Qwen3QkNormExplicitHeadDim) {
  ModelConfig c = MustLoad("qwen3_qknorm");
  EXPECT_EQ(c.arch, Arch::kQwen3);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.KvBytesPerToken(2), 2u * 2 * 2 * 32 * 2);
}

// A minimal valid 5.x config to mutate.
json Base() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "hidden_act": "silu", "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2})");
}

StatusOr<ModelConfig> Parse(const json& j) { return ParseModelConfig(j.dump()); }

// Expects `j` to fail with `code` and a message containing every string of `needles`.
void ExpectError(const json& j, StatusCode code, const std::vector<std::string>& needles) {
  auto c = Parse(j);
  ASSERT_FALSE(c.ok()) << j.dump();
  EXPECT_EQ(c.status().code(), code) << c.status().ToString();
  for (const auto& n : needles) {
    EXPECT_NE(c.status().message().find(n), std::string::npos)
        << "'" << n << "' not in: " << c.status().message();
  }
}

TEST(ModelConfigTest, BaseIsValidAndDefaultsHeadDim) {
  auto c = Parse(Base());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(ModelConfigTest, EosIntOrListOrNull) {
  json j = Base();
  j["eos_token_id"] = {2, 7, 9};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{2, 7, 9}));
  j["eos_token_id"] = nullptr;
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->eos_token_ids.empty());
  j["eos_token_id"] = {2, "x"};
  ExpectError(j, StatusCode::kInvalidArgument, {"eos_token_id[1]"});
  j["eos_token_id"] = 100;  // == vocab_size
  ExpectError(j, StatusCode::kInvalidArgument, {"eos_token_id", "100"});
}

TEST(ModelConfigTest, Transformers4RopeSpellings) {
  json j = Base();
  j.erase("rope_parameters");
  j["rope_theta"] = 123.0;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};  // oldest spelling: "type"
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->rope_theta, 123.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 4.0);
  j["rope_scaling"] = nullptr;
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  ExpectError(j, StatusCode::kUnimplemented, {"rope_scaling.rope_type", "dynamic"});
}

TEST(ModelConfigTest, Llama3RopeParameters5x) {
  json j = Base();
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                          {"factor", 32.0},          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  j["rope_parameters"].erase("low_freq_factor");
  ExpectError(j, StatusCode::kInvalidArgument, {"rope_parameters.low_freq_factor"});
}

TEST(ModelConfigTest, UnsupportedRopeTypes) {
  for (const char* t : {"yarn", "dynamic", "longrope", "ntk"}) {
    json j = Base();
    j["rope_parameters"]["rope_type"] = t;
    j["rope_parameters"]["factor"] = 4.0;
    ExpectError(j, StatusCode::kUnimplemented, {"rope_parameters.rope_type", t});
  }
}

TEST(ModelConfigTest, UnsupportedArchitectureActivationDtype) {
  json j = Base();
  j["architectures"] = {"GPT2LMHeadModel"};
  ExpectError(j, StatusCode::kUnimplemented, {"architectures", "GPT2LMHeadModel"});
  j = Base();
  j.erase("architectures");
  ExpectError(j, StatusCode::kInvalidArgument, {"architectures"});
  j = Base();
  j["hidden_act"] = "gelu";
  ExpectError(j, StatusCode::kUnimplemented, {"hidden_act", "gelu"});
  j = Base();
  j.erase("dtype");
  j["torch_dtype"] = "int8";
  ExpectError(j, StatusCode::kUnimplemented, {"torch_dtype", "int8"});
  j = Base();
  j["quantization_config"] = {{"quant_method", "gptq"}};
  ExpectError(j, StatusCode::kUnimplemented, {"quantization_config"});
}

TEST(ModelConfigTest, SlidingWindowVariants) {
  json j = Base();
  j["architectures"] = {"MistralForCausalLM"};
  j["sliding_window"] = nullptr;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sliding_window, 0);
  j["sliding_window"] = 4096;
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sliding_window, 4096);
  j["sliding_window"] = -3;
  ExpectError(j, StatusCode::kInvalidArgument, {"sliding_window"});

  j = Base();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["sliding_window"] = 4096;
  j["use_sliding_window"] = false;
  c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sliding_window, 0);
  EXPECT_TRUE(c->qkv_bias);
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 0;  // every layer slides
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->sliding_window, 4096);
  j["max_window_layers"] = 1;  // layer 0 full, layer 1 sliding
  ExpectError(j, StatusCode::kUnimplemented, {"max_window_layers"});
  j.erase("max_window_layers");
  j["layer_types"] = {"full_attention", "sliding_attention"};
  ExpectError(j, StatusCode::kUnimplemented, {"layer_types", "mixed"});
  j["layer_types"] = {"sliding_attention", "sliding_attention"};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->sliding_window, 4096);
  j["layer_types"] = {"full_attention"};
  ExpectError(j, StatusCode::kInvalidArgument, {"layer_types", "num_hidden_layers"});
}

TEST(ModelConfigTest, Qwen3AttentionBiasFlag) {
  json j = Base();
  j["architectures"] = {"Qwen3ForCausalLM"};
  j["head_dim"] = 32;
  j["attention_bias"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->qk_norm);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->o_bias);
  EXPECT_EQ(c->head_dim, 32);
}

TEST(ModelConfigTest, OutOfRangeFieldsAreNamed) {
  struct Case {
    const char* field;
    json value;
  };
  const std::vector<Case> cases = {
      {"hidden_size", 0},          {"vocab_size", -5},
      {"num_hidden_layers", 0},    {"num_attention_heads", 0},
      {"num_key_value_heads", 3},  {"head_dim", 15},
      {"rms_norm_eps", -1.0},      {"rms_norm_eps", 0.0},
      {"intermediate_size", 0},    {"max_position_embeddings", 0},
      {"num_hidden_layers", 1e12}, {"vocab_size", "abc"},
      {"hidden_size", 64.5},       {"tie_word_embeddings", "yes"},
      {"num_key_value_heads", 8},
  };
  for (const Case& k : cases) {
    json j = Base();
    j[k.field] = k.value;
    SCOPED_TRACE(std::string(k.field) + "=" + k.value.dump());
    ExpectError(j, StatusCode::kInvalidArgument, {k.field});
  }
  json j = Base();
  j.erase("hidden_size");
  ExpectError(j, StatusCode::kInvalidArgument, {"missing field hidden_size"});
  j = Base();
  j["rope_parameters"]["rope_theta"] = -1.0;
  ExpectError(j, StatusCode::kInvalidArgument, {"rope_theta"});
}

TEST(ModelConfigTest, ValidateDirectly) {
  auto c = Parse(Base());
  ASSERT_TRUE(c.ok());
  ModelConfig m = *c;
  EXPECT_TRUE(m.Validate().ok());
  m.num_kv_heads = 3;
  Status s = m.Validate();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("num_key_value_heads"), std::string::npos) << s.message();
}

TEST(ModelConfigTest, BadJsonAndMissingFile) {
  auto c = ParseModelConfig("{\"architectures\": [");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  c = ParseModelConfig("[1, 2]");
  ASSERT_FALSE(c.ok());
  c = LoadModelConfig("/nonexistent/model");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/model/config.json"), std::string::npos);
}

TEST(ModelConfigTest, LoadErrorNamesFile) {
  testing::TempDir dir;
  testing::WriteBytes(dir / "config.json", R"({"architectures": ["BertModel"]})");
  auto c = LoadModelConfig(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(c.status().message().find(dir / "config.json"), std::string::npos);
  EXPECT_NE(c.status().message().find("BertModel"), std::string::npos);
}

}  // namespace
}  // namespace pd
