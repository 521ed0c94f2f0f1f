// /metrics and grpc.health.v1 on a real local deployment (label e2e): pd-up starts pd-router,
// pd-prefill and pd-decode (CPU backend, tiny model) with a metrics_port each; the test sends
// requests through the router, scrapes the three endpoints, runs `promtool check metrics` on each
// page and checks that the counters agree with what the test did and with independent sources
// (the responses' usage, the daemons' Stats RPC, the model's KV geometry).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "../e2e/e2e_harness.h"
#include "common/dtype.h"
#include "health_check.h"
#include "model/model_config.h"
#include "tools/grpc_util.h"
#include "util/run_shell.h"

namespace pd::e2e {
namespace {

using Samples = std::map<std::string, double>;  // "name{labels}" -> value

StatusOr<std::string> Scrape(int port) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(5, 0);
  auto res = cli.Get("/metrics");
  if (!res) return Unavailable("no answer from 127.0.0.1:" + std::to_string(port));
  if (res->status != 200) return Internal("HTTP " + std::to_string(res->status));
  return res->body;
}

Samples Parse(const std::string& text) {
  Samples s;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    s[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return s;
}

// The sample's value; fails the test (and returns NaN) if the page has no such sample.
double V(const Samples& s, const std::string& key) {
  auto it = s.find(key);
  EXPECT_NE(it, s.end()) << "no sample " << key;
  return it == s.end() ? std::nan("") : it->second;
}

// `promtool check metrics` on the page: exit 0 and no lint output.
void ExpectPromtoolClean(const std::string& text, const std::string& what) {
  const std::string path = ::testing::TempDir() + "/metrics-" + what + ".txt";
  std::ofstream(path) << text;
  std::string out;
  const int rc = testutil::RunShell("promtool check metrics < " + path, &out);
  EXPECT_EQ(rc, 0) << what << ": promtool failed:\n" << out;
  EXPECT_EQ(out, "") << what << ": promtool reported problems:\n" << out;
}

std::vector<int32_t> Prompt(int len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(3, 2000);
  std::vector<int32_t> p(len);
  for (auto& t : p) t = tok(rng);
  return p;
}

std::string Q(const std::string& name, const std::string& labels) {
  return name + "{" + labels + "}";
}

constexpr int kPromptLen = 40, kMaxTokens = 8, kBlock = 16;

TEST(MetricsE2eTest, CountersMatchTheTrafficAndPromtoolAccepts) {
  DeploySpec spec;
  spec.metrics = true;
  spec.disagg_threshold = 0;  // every prompt goes through the prefill instance
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const int rport = d.metrics_port("router"), pport = d.metrics_port("prefill-0"),
            dport = d.metrics_port("decode-0");
  ASSERT_TRUE(rport > 0 && pport > 0 && dport > 0);
  auto d0 = Scrape(dport);
  ASSERT_TRUE(d0.ok()) << d0.status().ToString();
  const double used0 = V(Parse(*d0), Q("pd_kv_blocks", "state=\"used\""));

  // 4 distinct prompts, then prompt 0 again (prefix-cache hit on D and P), then one invalid.
  client::Client c(d.endpoint());
  std::vector<client::GenerateResult> results;
  for (uint32_t i = 0; i < 5; ++i) {
    client::GenerateParams p;
    p.ids = Prompt(kPromptLen, i % 4 + 1);
    p.max_tokens = kMaxTokens;
    p.ignore_eos = true;
    results.push_back(c.Generate(p, {}, 60000));
    ASSERT_TRUE(results.back().status.ok()) << results.back().status.ToString();
    ASSERT_EQ(results.back().completion_tokens, kMaxTokens);
  }
  client::GenerateParams bad;
  bad.ids = Prompt(kPromptLen, 9);
  bad.max_tokens = 100000;  // above max_tokens_limit (512)
  EXPECT_EQ(c.Generate(bad, {}, 10000).status.code(), StatusCode::kInvalidArgument);
  const int ok = static_cast<int>(results.size());
  double ttft_sum = 0;
  int cached = 0;
  for (const auto& r : results) {
    ttft_sum += r.server_ttft_ms / 1e3;
    cached += r.cached_tokens;
  }
  EXPECT_EQ(cached, 2 * kBlock) << "the repeat reuses its 2 full blocks on D";

  // Blocks are released asynchronously after the last token: wait until D is back at the start.
  Samples r, p, dm;
  std::string rt, pt, dt;
  for (int i = 0; i < 100; ++i) {
    auto a = Scrape(rport), b = Scrape(pport), e = Scrape(dport);
    ASSERT_TRUE(a.ok() && b.ok() && e.ok());
    rt = *a, pt = *b, dt = *e;
    r = Parse(rt), p = Parse(pt), dm = Parse(dt);
    // (the router counts a request just after its last write, the client may be faster)
    if (V(dm, Q("pd_kv_blocks", "state=\"used\"")) == used0 &&
        V(r, Q("pd_router_requests_total", "outcome=\"ok\"")) == ok &&
        V(r, "pd_router_inflight_requests") == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ExpectPromtoolClean(rt, "router");
  ExpectPromtoolClean(pt, "prefill");
  ExpectPromtoolClean(dt, "decode");

  // Router: outcomes, latency histograms (TTFT is the same measurement the usage reports),
  // placement decisions, health view.
  EXPECT_EQ(V(r, Q("pd_router_requests_total", "outcome=\"ok\"")), ok);
  EXPECT_EQ(V(r, Q("pd_router_requests_total", "outcome=\"invalid_argument\"")), 1);
  EXPECT_EQ(V(r, Q("pd_router_requests_total", "outcome=\"unavailable\"")), 0);
  EXPECT_EQ(V(r, "pd_router_ttft_seconds_count"), ok);
  EXPECT_NEAR(V(r, "pd_router_ttft_seconds_sum"), ttft_sum, 1e-6 * ok);
  EXPECT_EQ(V(r, Q("pd_router_ttft_seconds_bucket", "le=\"+Inf\"")), ok);
  EXPECT_EQ(V(r, "pd_router_tpot_seconds_count"), ok);
  EXPECT_EQ(V(r, "pd_router_e2e_latency_seconds_count"), ok);
  EXPECT_GE(V(r, "pd_router_e2e_latency_seconds_sum"), V(r, "pd_router_ttft_seconds_sum"));
  EXPECT_EQ(V(r, "pd_router_inflight_requests"), 0);
  EXPECT_EQ(V(r, Q("pd_router_prefill_decisions_total", "path=\"disaggregated\"")), ok);
  EXPECT_EQ(V(r, Q("pd_router_prefill_decisions_total", "path=\"local\"")), 0);
  EXPECT_EQ(V(r, "pd_router_prefill_retries_total"), 0);
  EXPECT_EQ(V(r, "pd_router_decode_retries_total"), 0);
  EXPECT_EQ(V(r, Q("pd_router_prefill_fallbacks_total", "reason=\"retries_exhausted\"")), 0);
  EXPECT_EQ(V(r, Q("pd_router_instance_up", "instance=\"decode-0\",role=\"decode\"")), 1);
  EXPECT_EQ(V(r, Q("pd_router_instance_up", "instance=\"prefill-0\",role=\"prefill\"")), 1);

  // Engines: every sequence finished ok; prefix-cache counters equal what the responses said;
  // every uncached prompt token was computed exactly once on P.
  EXPECT_EQ(V(p, Q("pd_engine_requests_total", "outcome=\"ok\"")), ok);
  EXPECT_EQ(V(dm, Q("pd_engine_requests_total", "outcome=\"ok\"")), ok);
  EXPECT_EQ(V(dm, "pd_prefix_cache_hit_tokens_total"), cached);
  EXPECT_EQ(V(dm, "pd_prefix_cache_query_tokens_total"), ok * kPromptLen);
  EXPECT_EQ(V(p, "pd_engine_batch_tokens_sum"),
            V(p, "pd_prefix_cache_query_tokens_total") - V(p, "pd_prefix_cache_hit_tokens_total"));
  EXPECT_EQ(V(p, "pd_prefix_cache_query_tokens_total"), ok * kPromptLen);
  // D gets the first token from P and feeds tokens 1 .. max_tokens-1 back through its forwards.
  EXPECT_EQ(V(dm, "pd_engine_batch_tokens_sum"), ok * (kMaxTokens - 1));
  EXPECT_EQ(V(dm, "pd_engine_queue_depth"), 0);
  EXPECT_EQ(V(dm, "pd_engine_running_seqs"), 0);
  EXPECT_EQ(V(dm, Q("pd_kv_blocks", "state=\"used\"")), used0) << "D's blocks not released";
  auto stats = GetDaemonStats(d.InstanceAddress("decode-0"), true);
  ASSERT_TRUE(stats.ok());
  double pool = 0;
  for (const char* state : {"free", "used", "cached"}) {
    pool += V(dm, Q("pd_kv_blocks", std::string("state=\"") + state + "\""));
  }
  EXPECT_EQ(pool, stats->total_blocks);

  // KV transfer: P's wire bytes are D's, and at least the KV payload of the blocks D lacked
  // (3 blocks per fresh 40-token prompt, 1 for the repeat) in every layer.
  auto model = LoadModelConfig(TinyModelDir());
  ASSERT_TRUE(model.ok());
  const double block_layer_bytes =
      2.0 * model->num_kv_heads * kBlock * model->head_dim * DTypeSize(model->dtype);
  const double payload = (4 * 3 + 1) * model->num_layers * block_layer_bytes;
  const double sent = V(p, Q("pd_kv_transfer_bytes_total", "direction=\"sent\""));
  EXPECT_GE(sent, payload);
  EXPECT_LT(sent, payload * 1.1) << "framing overhead above 10%";
  EXPECT_EQ(sent, V(dm, Q("pd_kv_transfer_bytes_total", "direction=\"received\"")));
  EXPECT_EQ(V(dm, Q("pd_kv_transfer_bytes_total", "direction=\"sent\"")),
            V(p, Q("pd_kv_transfer_bytes_total", "direction=\"received\"")));
  EXPECT_EQ(V(p, "pd_kv_transfer_seconds_count"), ok * model->num_layers);  // one post per layer
  for (const char* why : {"timeout", "peer_error", "cancelled"}) {
    EXPECT_EQ(V(p, Q("pd_kv_transfer_failures_total", std::string("reason=\"") + why + "\"")), 0);
  }
  int paths = 0;
  for (const auto& [key, value] : p) {
    if (key.rfind("pd_kv_transfer_path_cwnd_bytes{peer=\"decode-0\"", 0) == 0) {
      ++paths;
      EXPECT_GT(value, 0) << key;
    }
  }
  EXPECT_GE(paths, 1) << "no per-path congestion window for decode-0";
  EXPECT_EQ(dt.find("pd_kv_transfer_path_cwnd_bytes{"), std::string::npos)
      << "D sends no KV, so it has no outgoing paths";

  // D goes away: P's paths to it are no longer connected and read NaN, not their last window.
  d.Kill("decode-0");
  bool stale = false;
  std::string last;
  for (int i = 0; i < 100 && !stale; ++i) {
    auto b = Scrape(pport);
    ASSERT_TRUE(b.ok());
    last = *b;
    int n = 0;
    stale = true;
    for (const auto& [key, value] : Parse(last)) {
      if (key.rfind("pd_kv_transfer_path_cwnd_bytes{peer=\"decode-0\"", 0) != 0) continue;
      ++n;
      stale = stale && std::isnan(value);
    }
    stale = stale && n > 0;
    if (!stale) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(stale) << "paths to the dead decode-0 still report a window:\n" << last;
  ExpectPromtoolClean(last, "prefill-after-decode-died");
}

// The prefill daemon is gone: the request is prefilled on D and the router counts exactly one
// fallback (which reason depends on whether a health poll noticed first: `no_healthy_prefill`,
// or a failed remote attempt: `retries_exhausted`), and D's forwards computed the whole prompt.
TEST(MetricsE2eTest, FallbackToDecodeIsCounted) {
  DeploySpec spec;
  spec.metrics = true;
  spec.disagg_threshold = 0;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  d.Kill("prefill-0");
  client::Client c(d.endpoint());
  client::GenerateParams p;
  p.ids = Prompt(kPromptLen, 5);
  p.max_tokens = kMaxTokens;
  p.ignore_eos = true;
  const client::GenerateResult res = c.Generate(p, {}, 60000);
  ASSERT_TRUE(res.status.ok()) << res.status.ToString();
  Samples r, dm;
  for (int i = 0; i < 100; ++i) {
    auto a = Scrape(d.metrics_port("router")), e = Scrape(d.metrics_port("decode-0"));
    ASSERT_TRUE(a.ok() && e.ok());
    r = Parse(*a), dm = Parse(*e);
    if (V(r, Q("pd_router_requests_total", "outcome=\"ok\"")) == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(V(r, Q("pd_router_requests_total", "outcome=\"ok\"")), 1);
  EXPECT_EQ(V(r, Q("pd_router_prefill_fallbacks_total", "reason=\"retries_exhausted\"")) +
                V(r, Q("pd_router_prefill_fallbacks_total", "reason=\"no_healthy_prefill\"")),
            1);
  EXPECT_EQ(V(r, Q("pd_router_prefill_decisions_total", "path=\"disaggregated\"")) +
                V(r, Q("pd_router_prefill_decisions_total", "path=\"local\"")),
            1);
  EXPECT_EQ(V(r, Q("pd_router_instance_up", "instance=\"prefill-0\",role=\"prefill\"")), 0);
  EXPECT_EQ(V(dm, "pd_engine_batch_tokens_sum"), kPromptLen + kMaxTokens - 1);
  EXPECT_EQ(V(dm, "pd_kv_transfer_bytes_total{direction=\"received\"}"), 0);
}

TEST(MetricsE2eTest, GrpcHealthServiceOnEveryProcess) {
  DeploySpec spec;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  using health::ServingStatus;
  const std::vector<std::pair<std::string, std::string>> probes = {
      {d.endpoint(), ""},
      {d.endpoint(), "pdserve.v1.Inference"},
      {d.InstanceAddress("prefill-0"), ""},
      {d.InstanceAddress("prefill-0"), "pdserve.v1.PrefillService"},
      {d.InstanceAddress("decode-0"), ""},
      {d.InstanceAddress("decode-0"), "pdserve.v1.DecodeService"}};
  for (const auto& [addr, service] : probes) {
    auto s = health::Check(addr, service);
    ASSERT_TRUE(s.ok()) << addr << " '" << service << "': " << s.status().ToString();
    EXPECT_EQ(*s, ServingStatus::kServing) << addr << " '" << service << "'";
  }
  auto unknown = health::Check(d.endpoint(), "no.such.Service");
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);

  // Without a decode instance the router stays alive ("") but is not ready to serve inference.
  d.Kill("decode-0");
  StatusOr<ServingStatus> s = ServingStatus::kServing;
  for (int i = 0; i < 100 && s.ok() && *s == ServingStatus::kServing; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = health::Check(d.endpoint(), "pdserve.v1.Inference");
  }
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*s, ServingStatus::kNotServing);
  auto live = health::Check(d.endpoint(), "");
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(*live, ServingStatus::kServing);
}

}  // namespace
}  // namespace pd::e2e
