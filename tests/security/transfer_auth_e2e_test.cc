// Transfer-engine peer authentication in a real deployment (label e2e): pd-prefill and pd-decode
// read `transport.auth_secret_file`; with the same secret KV moves P -> D, with different secrets
// D refuses P's handshake, nothing lands in D's arena, and the router's fallback (D prefills the
// prompt itself) still returns the reference output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "chaos_util.h"
#include "e2e_harness.h"
#include "tools/grpc_util.h"

namespace pd::e2e {
namespace {

using client::Client;
using client::GenerateParams;

std::string WriteSecret(const std::string& name, const std::string& secret) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("pd-xfer-" + std::to_string(getpid()) + "-" + name)).string();
  std::ofstream(path) << secret << "\n";
  return path;
}

struct Outcome {
  bool started = false;
  std::string start_error;
  std::vector<int32_t> ids;
  // decode-0's pd_kv_transfer_bytes_total{direction="received"}: every byte read from its
  // transfer sockets, handshake frames included.
  double bytes_received = -1;
  double fallbacks = -1;  // router's pd_router_prefill_fallbacks_total
  std::string prefill_log;
};

Outcome RunDeployment(const std::string& prefill_secret_file, const std::string& decode_secret_file,
            int start_timeout_s = 90) {
  DeploySpec spec;
  spec.disagg_threshold = 0;  // every prompt goes through P
  spec.metrics = true;
  spec.extra_instance["prefill-0"] = ", transport: {auth_secret_file: " + prefill_secret_file + "}";
  spec.extra_instance["decode-0"] = ", transport: {auth_secret_file: " + decode_secret_file + "}";
  Outcome o;
  auto dep = Deployment::Start(spec, start_timeout_s);
  if (!dep.ok()) {
    o.start_error = dep.status().ToString();
    return o;
  }
  o.started = true;
  Client c((*dep)->endpoint());
  GenerateParams p;
  p.ids = {5, 9, 14, 3, 27, 8, 11, 2, 40, 17, 6, 33};
  p.max_tokens = 6;
  p.ignore_eos = true;
  const auto r = c.Generate(p, {}, 60000);
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  o.ids = r.ids;
  const std::string page = ScrapeMetrics((*dep)->metrics_port("decode-0"));
  o.bytes_received = MetricSum(page, "pd_kv_transfer_bytes_total", "received");
  o.fallbacks = MetricSum(ScrapeMetrics((*dep)->metrics_port("router")),
                          "pd_router_prefill_fallbacks_total");
  o.prefill_log = ReadFile((*dep)->LogPath("prefill-0"));
  return o;
}

TEST(TransferAuthE2E, SameSecretMovesKvDifferentSecretIsRefusedAndFallsBack) {
  const std::string a = WriteSecret("a", "0123456789abcdef-shared-secret-A");
  const std::string b = WriteSecret("b", "fedcba9876543210-other-secret-B");
  const std::vector<int32_t> prompt = {5, 9, 14, 3, 27, 8, 11, 2, 40, 17, 6, 33};
  const std::vector<int32_t>& ref = ReferenceIds(prompt, 6);
  ASSERT_FALSE(ref.empty());

  Outcome same = RunDeployment(a, a);
  ASSERT_TRUE(same.started) << same.start_error;
  EXPECT_EQ(same.ids, ref);
  EXPECT_GT(same.bytes_received, 0) << "KV did not move between authenticated peers";
  EXPECT_EQ(same.fallbacks, 0);

  Outcome diff = RunDeployment(a, b);
  ASSERT_TRUE(diff.started) << diff.start_error;
  EXPECT_EQ(diff.ids, ref) << "fallback to local prefill must still give the reference output";
  // Only the refused handshakes reach D's sockets: far fewer bytes than the KV itself.
  EXPECT_LT(diff.bytes_received, same.bytes_received / 4)
      << "KV bytes reached D from a peer with the wrong secret";
  EXPECT_GE(diff.fallbacks, 1) << "the router did not fall back to D's local prefill";
  EXPECT_NE(diff.prefill_log.find("UNAUTHENTICATED"), std::string::npos)
      << "prefill log does not name the refused handshake";
  // The secret never appears in a log.
  EXPECT_EQ(same.prefill_log.find("shared-secret-A"), std::string::npos);
  EXPECT_EQ(diff.prefill_log.find("shared-secret-A"), std::string::npos);
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST(TransferAuthE2E, UnreadableOrShortSecretFileStopsTheDaemonWithAClearError) {
  const std::string shortf = WriteSecret("short", "tooshort");
  Outcome o = RunDeployment(shortf, shortf, 30);
  EXPECT_FALSE(o.started) << "a daemon started with an 8-byte transfer secret";
  Outcome missing = RunDeployment("/nonexistent/pd-secret", "/nonexistent/pd-secret", 30);
  EXPECT_FALSE(missing.started) << "a daemon started without its transfer secret file";
  std::filesystem::remove(shortf);
}

}  // namespace
}  // namespace pd::e2e
