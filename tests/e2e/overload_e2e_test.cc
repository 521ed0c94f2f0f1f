// Overload tests (label e2e; issue 10 item 2): offered load far above the configured limits.
// The router admits at most router.max_inflight_requests and sheds the rest at once with
// RESOURCE_EXHAUSTED + trailing metadata `retry-after-ms` (also in the message); a decode
// instance refuses work beyond its max_queue (or a full KV pool) and the router passes that on
// as the same shed answer. Admitted requests all complete with the full output, and the
// router's RSS stays bounded.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "chaos_util.h"
#include "pdserve.grpc.pb.h"

namespace pd::e2e {
namespace {

namespace v1 = ::pdserve::v1;

struct FloodResult {
  int ok = 0, shed = 0, other = 0;
  std::vector<double> ttft_ms;  // admitted requests
  int64_t rss0_kib = 0, rss_max_kib = 0;
};

// `n` concurrent clients, one request each, 4 distinct prompts; samples the router's RSS.
FloodResult Flood(const Deployment& d, int n, int max_tokens) {
  std::vector<std::vector<int32_t>> prompts = ChaosPrompts(4, 40);
  for (auto& p : prompts) p.resize(64);
  for (const auto& p : prompts) ReferenceIds(p, max_tokens);
  FloodResult r;
  const pid_t router = d.pid("router");
  r.rss0_kib = r.rss_max_kib = RssKiB(router);
  std::vector<client::GenerateResult> res(n);
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      r.rss_max_kib = std::max(r.rss_max_kib, RssKiB(router));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      client::Client c(d.endpoint());
      client::GenerateParams p;
      p.ids = prompts[i % 4];
      p.max_tokens = max_tokens;
      p.ignore_eos = true;
      res[i] = c.Generate(p, {}, 120000);
    });
  }
  for (auto& t : ts) t.join();
  done = true;
  sampler.join();
  for (int i = 0; i < n; ++i) {
    const client::GenerateResult& g = res[i];
    if (g.status.ok()) {
      ++r.ok;
      r.ttft_ms.push_back(g.ttft_ms);
      EXPECT_EQ(g.ids, ReferenceIds(prompts[i % 4], max_tokens)) << "request " << i;
    } else if (g.status.code() == StatusCode::kResourceExhausted) {
      ++r.shed;
      EXPECT_NE(g.status.message().find("retry after"), std::string::npos) << g.status.ToString();
    } else {
      ++r.other;
      ADD_FAILURE() << "request " << i << ": " << g.status.ToString();
    }
  }
  std::sort(r.ttft_ms.begin(), r.ttft_ms.end());
  auto pct = [&](double q) {
    return r.ttft_ms.empty() ? 0.0 : r.ttft_ms[std::min(r.ttft_ms.size() - 1,
                                                        size_t(q * r.ttft_ms.size()))];
  };
  std::printf("flood %d: %d ok, %d shed (%.0f%%), %d other; admitted TTFT p50 %.0f ms, p99 %.0f "
              "ms; router RSS %lld -> max %lld KiB\n",
              n, r.ok, r.shed, 100.0 * r.shed / n, r.other, pct(0.5), pct(0.99),
              static_cast<long long>(r.rss0_kib), static_cast<long long>(r.rss_max_kib));
  return r;
}

// One raw Generate while the router is saturated: RESOURCE_EXHAUSTED with `retry-after-ms`.
void ExpectRetryHint(const Deployment& d, const std::string& want_ms) {
  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel(d.endpoint(), grpc::InsecureChannelCredentials()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GenerateRequest req;
    for (int i = 0; i < 64; ++i) req.mutable_token_ids()->add_ids(5 + i);
    req.set_max_tokens(64);
    req.set_ignore_eos(true);
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
    }
    const grpc::Status s = reader->Finish();
    if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
      if (!s.ok()) std::printf("hint probe: %d %s\n", s.error_code(), s.error_message().c_str());
      continue;
    }
    const auto& md = ctx.GetServerTrailingMetadata();
    auto it = md.find("retry-after-ms");
    ASSERT_NE(it, md.end()) << "no retry-after-ms trailer: " << s.error_message();
    EXPECT_EQ(std::string(it->second.data(), it->second.size()), want_ms);
    EXPECT_NE(s.error_message().find("retry after " + want_ms + " ms"), std::string::npos)
        << s.error_message();
    return;
  }
  ADD_FAILURE() << "never saw RESOURCE_EXHAUSTED while saturated";
}

TEST(OverloadE2E, RouterShedsBeyondMaxInflightWithARetryHint) {
  DeploySpec spec;
  spec.disagg_threshold = 0;
  spec.kv_blocks = 512;
  spec.extra_router = "  max_inflight_requests: 8\n  retry_after_ms: 750\n";
  spec.metrics = true;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  const auto start = FreeBlocksOf(**dep, {"prefill-0", "decode-0"});
  // 8 long requests fill the router's limit; meanwhile every further call is shed with the hint.
  std::vector<std::thread> holders;
  std::atomic<int> holders_ok{0};
  for (int i = 0; i < 8; ++i) {
    holders.emplace_back([&, i] {
      client::Client c((*dep)->endpoint());
      client::GenerateParams p;
      p.ids = std::vector<int32_t>(48, 100 + i);
      p.max_tokens = 480;
      p.ignore_eos = true;
      holders_ok += c.Generate(p, {}, 120000).status.ok() ? 1 : 0;
    });
  }
  // Saturated once the router reports 8 in flight (metrics), so the probe itself is never admitted.
  for (int i = 0; i < 600; ++i) {
    if (MetricSum(ScrapeMetrics((*dep)->metrics_port("router")), "pd_router_inflight_requests") >= 8)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ExpectRetryHint(**dep, "750");
  const FloodResult r = Flood(**dep, 160, 32);
  for (auto& t : holders) t.join();
  EXPECT_EQ(holders_ok.load(), 8);
  EXPECT_GT(r.shed, 0) << "160 concurrent requests against a limit of 8 were all admitted";
  EXPECT_EQ(r.other, 0);
  // Bounded memory: shed requests cost nothing lasting (generous bound: thread stacks).
  EXPECT_LT(r.rss_max_kib - r.rss0_kib, 128 * 1024);
  EXPECT_TRUE(WaitPoolsBack(**dep, start, {"prefill-0", "decode-0"}, 30).empty());
}

TEST(OverloadE2E, DecodeQueueBoundIsPassedOnAsShedding) {
  DeploySpec spec;
  spec.disagg_threshold = 0;
  spec.kv_blocks = 48;  // ~9 requests of 64 + 32 tokens fit
  spec.extra_defaults = "  max_queue: 4\n";
  spec.extra_router = "  max_inflight_requests: 0\n  retry_after_ms: 300\n";
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  const auto start = FreeBlocksOf(**dep, {"prefill-0", "decode-0"});
  const FloodResult r = Flood(**dep, 80, 32);
  EXPECT_GT(r.shed, 0) << "decode's max_queue / KV pool never refused work";
  EXPECT_GT(r.ok, 0);
  EXPECT_EQ(r.other, 0);
  EXPECT_TRUE(WaitPoolsBack(**dep, start, {"prefill-0", "decode-0"}, 30).empty());
}

}  // namespace
}  // namespace pd::e2e
