// DeployConfig: parsing, defaults, replica expansion, and errors that name the field.
#include "common/deploy_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace pd {
namespace {

constexpr const char* kBase = R"(
version: 1
name: t
defaults:
  model: /m/tiny
  backend: cpu
  kv: {blocks: 64, block_size: 16}
router:
  port: 9000
  disagg_threshold_tokens: 32
  scorers: {prefix_affinity: 3.5, round_robin: 0}
prefill:
  - {name: p, port: 9100, replicas: 2, transport: {port: 9300}}
decode:
  - {port: 9200, kv: {blocks: 128}, lease_ms: 777}
  - {port: 9201, max_seqs: 8}
)";

std::string ErrorOf(const std::string& yaml) {
  auto c = ParseDeployConfig(yaml);
  return c.ok() ? "OK" : c.status().message();
}

TEST(DeployConfig, ParsesDefaultsAndReplicas) {
  auto c = ParseDeployConfig(kBase);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "t");
  EXPECT_EQ(c->router.port, 9000);
  EXPECT_EQ(c->router.disagg_threshold_tokens, 32);
  EXPECT_DOUBLE_EQ(c->router.scorers.prefix_affinity, 3.5);
  EXPECT_DOUBLE_EQ(c->router.scorers.round_robin, 0.0);
  EXPECT_DOUBLE_EQ(c->router.scorers.queue_depth, 1.0);  // default kept
  ASSERT_EQ(c->prefill.size(), 2u);
  EXPECT_EQ(c->prefill[0].name, "p-0");
  EXPECT_EQ(c->prefill[1].name, "p-1");
  EXPECT_EQ(c->prefill[1].port, 9101);
  EXPECT_EQ(c->prefill[1].transport.port, 9301);
  EXPECT_EQ(c->prefill[0].role, InstanceRole::kPrefill);
  EXPECT_EQ(c->prefill[0].kv.blocks, 64);  // from defaults
  EXPECT_EQ(c->prefill[0].model_name, "tiny");
  ASSERT_EQ(c->decode.size(), 2u);
  EXPECT_EQ(c->decode[0].name, "decode-0");
  EXPECT_EQ(c->decode[1].name, "decode-1");
  EXPECT_EQ(c->decode[0].kv.blocks, 128);     // entry overrides one kv field...
  EXPECT_EQ(c->decode[0].kv.block_size, 16);  // ...and keeps the other defaults
  EXPECT_EQ(c->decode[0].lease_ms, 777);
  EXPECT_EQ(c->decode[1].max_seqs, 8);
  EXPECT_EQ(c->decode[1].Address(), "127.0.0.1:9201");
  EXPECT_EQ(c->ModelNames(), std::vector<std::string>{"tiny"});
  ASSERT_NE(c->FindInstance("p-1"), nullptr);
  EXPECT_EQ(c->FindInstance("nope"), nullptr);
  auto missing = c->GetInstance("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("decode-1"), std::string::npos);
}

TEST(DeployConfig, UnknownKeysAreNamed) {
  EXPECT_EQ(ErrorOf(std::string(kBase) + "extra: 1\n"), "extra: unknown key");
  std::string y = kBase;
  y.replace(y.find("round_robin: 0"), 14, "round_robn: 0");
  EXPECT_EQ(ErrorOf(y), "router.scorers.round_robn: unknown key");
  y = kBase;
  y.replace(y.find("lease_ms"), 8, "leese_ms");
  EXPECT_EQ(ErrorOf(y), "decode[0].leese_ms: unknown key");
  y = kBase;
  y.replace(y.find("block_size: 16"), 14, "blocksize: 16");
  EXPECT_EQ(ErrorOf(y), "defaults.kv.blocksize: unknown key");
}

TEST(DeployConfig, BadValuesNameTheField) {
  std::string y = kBase;
  y.replace(y.find("port: 9201"), 10, "port: 0");
  EXPECT_EQ(ErrorOf(y), "decode[1].port: 0 is not a valid port");
  y = kBase;
  y.replace(y.find("port: 9201"), 10, "port: abc");
  EXPECT_EQ(ErrorOf(y), "decode[1].port: expected an integer, got 'abc'");
  y = kBase;
  y.replace(y.find("backend: cpu"), 12, "backend: tpu");
  EXPECT_EQ(ErrorOf(y), "defaults.backend: 'tpu' is not a backend (cpu | cuda)");
  y = kBase;
  y.replace(y.find("port: 9201"), 10, "port: 9200");
  EXPECT_EQ(ErrorOf(y), "decode[1].port: 9200 is already used by decode[0].port");
  y = kBase;
  y.replace(y.find("max_seqs: 8"), 11, "max_seqs: -1");
  EXPECT_EQ(ErrorOf(y), "decode[1].max_seqs: -1 is not in [1, 1048576]");
  y = kBase;
  y.replace(y.find("{name: p,"), 9, "{name: decode-1,");
  y.replace(y.find("replicas: 2"), 11, "replicas: 1");
  EXPECT_EQ(ErrorOf(y), "decode[1].name: 'decode-1' is used twice");
  EXPECT_EQ(ErrorOf("version: 1\ndecode: []\n"),
            "decode: at least one decode instance is required");
  EXPECT_EQ(ErrorOf("version: 2\n"), "version: 2 is not supported (use 1)");
  EXPECT_EQ(ErrorOf("decode:\n  - {port: 1}\n"),
            "decode[0].model: is required (HF model directory)");
  EXPECT_EQ(ErrorOf(""), "config is empty");
  EXPECT_NE(ErrorOf("router: [1, 2\n").find("YAML error at line"), std::string::npos);
}

TEST(DeployConfig, PrefillNeedsADecodeOfItsModelAndBlockSizesAgree) {
  std::string y = kBase;
  y.replace(y.find("{name: p,"), 9, "{name: p, model: /m/other,");
  EXPECT_EQ(ErrorOf(y), "prefill[0].model_name: no decode instance serves model 'other'");
  y = kBase;
  y.replace(y.find("max_seqs: 8"), 11, "kv: {block_size: 32}");
  EXPECT_EQ(ErrorOf(y),
            "decode[1].kv.block_size: 32 differs from decode-0's 16 (same model must agree)");
}

TEST(DeployConfig, MetricsPorts) {
  auto c = ParseDeployConfig(kBase);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->router.metrics_port, 0);  // default: /metrics not served
  EXPECT_EQ(c->prefill[0].metrics_port, 0);
  std::string y = kBase;
  y.replace(y.find("  disagg_threshold_tokens"), 0, "  metrics_port: 9400\n");
  y.replace(y.find("replicas: 2,"), 12, "replicas: 2, metrics_port: 9410,");
  c = ParseDeployConfig(y);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->router.metrics_port, 9400);
  EXPECT_EQ(c->prefill[0].metrics_port, 9410);
  EXPECT_EQ(c->prefill[1].metrics_port, 9411);  // stepped per replica like `port`
  std::string clash = y;
  clash.replace(clash.find("lease_ms: 777"), 13, "lease_ms: 777, metrics_port: 9411");
  EXPECT_EQ(ErrorOf(clash),
            "decode[0].metrics_port: 9411 is already used by prefill[1].metrics_port");
  clash = y;
  clash.replace(clash.find("lease_ms: 777"), 13, "lease_ms: 777, metrics_port: 9200");
  EXPECT_EQ(ErrorOf(clash), "decode[0].metrics_port: 9200 is already used by decode[0].port");
  clash = y;
  clash.replace(clash.find("metrics_port: 9400"), 18, "metrics_port: 70000");
  EXPECT_EQ(ErrorOf(clash), "router.metrics_port: 70000 is not a valid port");
}

TEST(DeployConfig, GpuKvModeDefaultsToAutoAndIsChecked) {
  auto c = ParseDeployConfig(kBase);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->prefill[0].transport.gpu_kv, "auto");
  std::string y = kBase;
  y.replace(y.find("transport: {port: 9300}"), 23, "transport: {port: 9300, gpu_kv: mirror}");
  c = ParseDeployConfig(y);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->prefill[1].transport.gpu_kv, "mirror");
  EXPECT_EQ(c->decode[0].transport.gpu_kv, "auto");
  y.replace(y.find("gpu_kv: mirror"), 14, "gpu_kv: always");
  EXPECT_EQ(ErrorOf(y), "prefill[0].transport.gpu_kv: 'always' is not auto | direct | mirror");
}

TEST(DeployConfig, LoadsFileAndShippedConfigs) {
  auto missing = LoadDeployConfig("/nonexistent/x.yaml");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  const std::filesystem::path dir =
      std::filesystem::path(PD_TEST_DATA_DIR) / ".." / ".." / "configs";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    auto c = LoadDeployConfig(e.path().string());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    ++n;
  }
  EXPECT_GE(n, 3);
}

}  // namespace
}  // namespace pd
