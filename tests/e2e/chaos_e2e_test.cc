// Chaos tests (label e2e; issue 10 item 1): real pd-up / pd-router / pd-prefill / pd-decode on
// loopback, CPU backend, tiny model, under a steady fixed-count load. Faults: SIGKILL a prefill
// mid-transfer, SIGKILL a decode, restart a prefill and a decode (new incarnations), cut the
// P->D transfer path (fault-injecting TCP proxy), SIGSTOP a prefill / a decode past the
// deadlines. For each: every request ends exactly once, with its full output (== pd-generate)
// or an explicit error status, within a bounded time; the surviving pools' free blocks return
// to their start values (Stats RPC); the router's decisions show in its log and /metrics.
//
// Deployment shapes: a fault on a prefill needs a second P (retry) or the fallback to D's own
// prefill (1P1D); a fault on a decode needs a second D (requests that have not streamed yet are
// retried there; streaming ones end with an error, since the client already has tokens).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "chaos_util.h"

namespace pd::e2e {
namespace {

using Clock = std::chrono::steady_clock;

int TimeScale() {
  const char* env = std::getenv("PD_TEST_TIME_SCALE");
  return env != nullptr ? std::max(1, std::atoi(env)) : 1;
}

constexpr int kMaxTokens = 8;
constexpr int kPrefillMs = 4000, kTransferMs = 2000;
// Fence of an abandoned lease on D: prefill_ms + transfer_ms + 1 s (daemon default).
constexpr int kFenceS = (kPrefillMs + kTransferMs + 1000) / 1000;

DeploySpec ChaosSpec(int np, int nd) {
  DeploySpec s;
  s.num_prefill = np;
  s.num_decode = nd;
  s.disagg_threshold = 0;  // every prompt is prefilled on P when one is healthy
  s.kv_blocks = 512;
  s.metrics = true;
  s.lease_ms = 3000;
  s.rpc_ms = 2000;
  s.prefill_ms = kPrefillMs;
  s.transfer_ms = kTransferMs;
  s.extra_router = "  decode_idle_timeout_ms: " + std::to_string(3000 * TimeScale()) + "\n";
  return s;
}

std::vector<LoadItem> Items(const std::string& tag, int n, uint32_t seed) {
  const auto prompts = ChaosPrompts(n, seed);
  std::vector<LoadItem> v;
  for (int i = 0; i < n; ++i) {
    LoadItem it;
    it.id = tag + "-" + std::to_string(i);
    it.prompt = prompts[i];
    it.max_tokens = kMaxTokens;
    ReferenceIds(it.prompt, kMaxTokens);  // before the load: pd-generate is not timed
    v.push_back(std::move(it));
  }
  return v;
}

struct Tally {
  int ok = 0, failed = 0;
};

// Every request finished exactly once within `bound_s`; OK = the full reference output;
// errors carry a code and a message. Returns the counts.
Tally CheckRun(LoadRun& run, int bound_s) {
  Tally t;
  for (LoadItem& it : run.items()) {
    EXPECT_EQ(it.finished, 1) << it.id << " finished " << it.finished << " times";
    EXPECT_LT(it.end_ms, bound_s * 1000.0 * TimeScale()) << it.id << " took too long";
    if (it.result.status.ok()) {
      ++t.ok;
      EXPECT_EQ(it.result.ids, ReferenceIds(it.prompt, kMaxTokens)) << it.id;
      EXPECT_EQ(it.result.completion_tokens, kMaxTokens) << it.id;
    } else {
      ++t.failed;
      EXPECT_NE(it.result.status.code(), StatusCode::kOk);
      EXPECT_FALSE(it.result.status.message().empty()) << it.id;
      EXPECT_NE(it.result.status.code(), StatusCode::kInvalidArgument) << it.id;
      std::printf("  %s: %s\n", it.id.c_str(), it.result.status.ToString().c_str());
    }
  }
  std::printf("%d ok, %d failed\n", t.ok, t.failed);
  return t;
}

// Waits (bounded) until `name` reports work in flight of the kind `pred` looks for.
template <typename Pred>
bool WaitBusy(const Deployment& d, const std::string& name, Pred pred, int timeout_s = 20) {
  const auto until = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < until) {
    auto s = GetDaemonStats(d.InstanceAddress(name), name.rfind("decode", 0) == 0);
    if (s.ok() && pred(*s)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Waits until the router's Health lists every instance up.
bool WaitAllUp(const Deployment& d, int timeout_s) {
  client::Client c(d.endpoint());
  const auto until = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < until) {
    auto h = c.Health(1000);
    if (h.ok() && h->serving) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

double Metric(const Deployment& d, const std::string& family, const std::string& filter = "") {
  return MetricSum(ScrapeMetrics(d.metrics_port("router")), family, filter);
}

void ExpectPoolsBack(const Deployment& d, const std::map<std::string, int64_t>& start,
                     const std::vector<std::string>& names) {
  const auto bad = WaitPoolsBack(d, start, names, (kFenceS + 15) * TimeScale());
  EXPECT_TRUE(bad.empty()) << "leaked KV blocks: " << ::testing::PrintToString(bad);
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

TEST(ChaosE2E, KillPrefillMidTransferRetriesOnTheOtherPrefill) {
  auto dep = Deployment::Start(ChaosSpec(2, 1));
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const auto start = FreeBlocksOf(d, {"prefill-0", "prefill-1", "decode-0"});
  LoadRun run(d.endpoint(), Items("kp", 24, 11), 6, 60000);
  run.Start();
  ASSERT_TRUE(WaitBusy(d, "prefill-0", [](const DaemonStats& s) { return s.awaiting_kv > 0; }));
  d.Kill("prefill-0");
  run.Join();
  const Tally t = CheckRun(run, 40);
  EXPECT_EQ(t.ok, 24) << "retry on prefill-1 (or D's own prefill) must save every request";
  EXPECT_EQ(Metric(d, "pd_router_requests_total"), 24);
  EXPECT_GE(Metric(d, "pd_router_prefill_retries_total") +
                Metric(d, "pd_router_prefill_fallbacks_total"),
            1);
  const std::string log = ReadFile(d.LogPath("router"));
  EXPECT_NE(log.find("prefill prefill-0 is down"), std::string::npos) << log;
  EXPECT_NE(log.find("prefill attempt 1 failed"), std::string::npos) << log;
  ExpectPoolsBack(d, start, {"prefill-1", "decode-0"});
}

TEST(ChaosE2E, KillDecodeRetriesUnstreamedRequestsOnTheOtherDecode) {
  auto dep = Deployment::Start(ChaosSpec(1, 2));
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const auto start = FreeBlocksOf(d, {"prefill-0", "decode-0", "decode-1"});
  LoadRun run(d.endpoint(), Items("kd", 24, 12), 6, 60000);
  run.Start();
  ASSERT_TRUE(WaitBusy(d, "decode-0", [](const DaemonStats& s) { return s.running > 0; }));
  d.Kill("decode-0");
  const auto t_kill = Clock::now();
  run.Join();
  const Tally t = CheckRun(run, 40);
  EXPECT_EQ(t.ok + t.failed, 24);
  EXPECT_GE(t.ok, 12) << "requests not yet streaming must move to decode-1";
  EXPECT_EQ(Metric(d, "pd_router_requests_total"), 24);
  const std::string log = ReadFile(d.LogPath("router"));
  EXPECT_NE(log.find("decode decode-0 is down"), std::string::npos) << log;
  // Requests started after the router noticed go to decode-1 and succeed.
  const auto since_kill = std::chrono::duration<double>(Clock::now() - t_kill).count();
  std::printf("load ended %.1f s after the kill; decode retries %.0f\n", since_kill,
              Metric(d, "pd_router_decode_retries_total"));
  LoadRun after(d.endpoint(), Items("kd2", 6, 13), 3, 60000);
  after.Start();
  after.Join();
  EXPECT_EQ(CheckRun(after, 40).ok, 6);
  ExpectPoolsBack(d, start, {"prefill-0", "decode-1"});
}

TEST(ChaosE2E, RestartedPrefillAndDecodeAreNewIncarnationsAndServeAgain) {
  DeploySpec spec = ChaosSpec(1, 1);
  spec.restart = true;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const auto start = FreeBlocksOf(d, {"prefill-0", "decode-0"});
  // 1. Restart P under load: D's prefill covers the gap, then the new P serves.
  LoadRun run(d.endpoint(), Items("rp", 16, 14), 4, 60000);
  run.Start();
  ASSERT_TRUE(WaitBusy(d, "prefill-0", [](const DaemonStats& s) { return s.awaiting_kv > 0; }));
  const pid_t p_old = d.pid("prefill-0");
  d.Kill("prefill-0");
  run.Join();
  EXPECT_EQ(CheckRun(run, 40).ok, 16) << "fallback to decode's prefill must cover the restart";
  ASSERT_TRUE(d.WaitRestarted("prefill-0", p_old, 20 * TimeScale()));
  ASSERT_TRUE(WaitAllUp(d, 60 * TimeScale()));
  const double fallbacks0 = Metric(d, "pd_router_prefill_fallbacks_total");
  LoadRun after_p(d.endpoint(), Items("rp2", 6, 15), 3, 60000);
  after_p.Start();
  after_p.Join();
  EXPECT_EQ(CheckRun(after_p, 40).ok, 6);
  EXPECT_EQ(Metric(d, "pd_router_prefill_fallbacks_total"), fallbacks0)
      << "the new prefill incarnation must take the prompts again";
  auto ps = GetDaemonStats(d.InstanceAddress("prefill-0"), false);
  ASSERT_TRUE(ps.ok());
  EXPECT_GT(ps->steps, 0) << "the restarted prefill computed nothing";
  // 2. Restart D: P holds D's old transfer metadata; the new incarnation must replace it.
  const pid_t d_old = d.pid("decode-0");
  d.Kill("decode-0");
  ASSERT_TRUE(d.WaitRestarted("decode-0", d_old, 20 * TimeScale()));
  ASSERT_TRUE(WaitAllUp(d, 60 * TimeScale()));
  const double fallbacks1 = Metric(d, "pd_router_prefill_fallbacks_total");
  LoadRun after_d(d.endpoint(), Items("rd", 6, 16), 3, 60000);
  after_d.Start();
  after_d.Join();
  EXPECT_EQ(CheckRun(after_d, 40).ok, 6);
  EXPECT_EQ(Metric(d, "pd_router_prefill_fallbacks_total"), fallbacks1)
      << "P must reconnect to the new decode incarnation, not fall back";
  const std::string log = ReadFile(d.LogPath("router"));
  EXPECT_GE(CountOf(log, "prefill prefill-0 is up (incarnation"), 2) << log;
  EXPECT_GE(CountOf(log, "decode decode-0 is up (incarnation"), 2) << log;
  ExpectPoolsBack(d, start, {"prefill-0", "decode-0"});
}

TEST(ChaosE2E, CutTransferPathFallsBackToDecodeAndRecovers) {
  // P reaches D's transfer port only through a proxy on 127.0.0.2 (D advertises that host):
  // network namespaces need root and are missing on CI runners; a user-space proxy that stops
  // moving bytes is the same fault as a dead link for both transfer engines.
  DeploySpec spec = ChaosSpec(1, 1);
  const int xport = FreePort();
  spec.extra_instance["decode-0"] =
      ", transport: {port: " + std::to_string(xport) + ", advertise: [127.0.0.2]}";
  FaultProxy proxy("127.0.0.2", xport, "127.0.0.1", xport);
  ASSERT_TRUE(proxy.Start().ok());
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const auto start = FreeBlocksOf(d, {"prefill-0", "decode-0"});
  LoadRun run(d.endpoint(), Items("cut", 20, 17), 4, 60000);
  run.Start();
  ASSERT_TRUE(WaitBusy(d, "prefill-0", [](const DaemonStats& s) { return s.awaiting_kv > 0; }));
  proxy.SetBlackhole(true);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  proxy.SetBlackhole(false);
  run.Join();
  EXPECT_EQ(CheckRun(run, 45).ok, 20) << "D's own prefill must cover the cut";
  EXPECT_GE(Metric(d, "pd_router_prefill_fallbacks_total"), 1);
  EXPECT_NE(ReadFile(d.LogPath("router")).find("remote prefill failed"), std::string::npos);
  // Healed: transfers flow through the proxy again, no more fallbacks.
  ASSERT_TRUE(WaitAllUp(d, 30 * TimeScale()));
  const double fallbacks = Metric(d, "pd_router_prefill_fallbacks_total");
  const int64_t bytes = proxy.bytes();
  LoadRun after(d.endpoint(), Items("cut2", 6, 18), 3, 60000);
  after.Start();
  after.Join();
  EXPECT_EQ(CheckRun(after, 40).ok, 6);
  EXPECT_EQ(Metric(d, "pd_router_prefill_fallbacks_total"), fallbacks);
  EXPECT_GT(proxy.bytes(), bytes) << "KV no longer crosses the healed path";
  ExpectPoolsBack(d, start, {"prefill-0", "decode-0"});
}

TEST(ChaosE2E, StalledPrefillPastTheDeadlineIsRetriedAndReadmitted) {
  auto dep = Deployment::Start(ChaosSpec(2, 1));
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const auto start = FreeBlocksOf(d, {"prefill-0", "prefill-1", "decode-0"});
  LoadRun run(d.endpoint(), Items("sp", 24, 19), 6, 60000);
  run.Start();
  ASSERT_TRUE(WaitBusy(d, "prefill-0", [](const DaemonStats& s) { return s.awaiting_kv > 0; }));
  d.Signal("prefill-0", SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(kPrefillMs * TimeScale() + 1500));
  d.Signal("prefill-0", SIGCONT);
  run.Join();
  EXPECT_EQ(CheckRun(run, 45).ok, 24);
  EXPECT_GE(Metric(d, "pd_router_prefill_retries_total") +
                Metric(d, "pd_router_prefill_fallbacks_total"),
            1);
  // Re-admitted after SIGCONT: the router lists it up again.
  ASSERT_TRUE(WaitAllUp(d, 30 * TimeScale()));
  const std::string log = ReadFile(d.LogPath("router"));
  const size_t down = log.find("prefill prefill-0 is down");
  ASSERT_NE(down, std::string::npos) << log;
  EXPECT_NE(log.find("prefill prefill-0 is up", down), std::string::npos) << log;
  // The stalled P's late writes went into fenced blocks only: every pool comes back.
  ExpectPoolsBack(d, start, {"prefill-0", "prefill-1", "decode-0"});
}

TEST(ChaosE2E, StalledDecodeFailsOrMovesItsRequestsWithinTheIdleTimeout) {
  auto dep = Deployment::Start(ChaosSpec(1, 2));
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Deployment& d = **dep;
  const auto start = FreeBlocksOf(d, {"prefill-0", "decode-0", "decode-1"});
  LoadRun run(d.endpoint(), Items("sd", 24, 20), 6, 60000);
  run.Start();
  ASSERT_TRUE(WaitBusy(d, "decode-0", [](const DaemonStats& s) { return s.running > 0; }));
  d.Signal("decode-0", SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(6 * TimeScale()));
  d.Signal("decode-0", SIGCONT);
  run.Join();
  const Tally t = CheckRun(run, 45);
  EXPECT_EQ(t.ok + t.failed, 24);
  EXPECT_GE(t.ok, 12);
  for (LoadItem& it : run.items()) {
    if (!it.result.status.ok()) {
      EXPECT_EQ(it.result.status.code(), StatusCode::kDeadlineExceeded)
          << it.id << ": " << it.result.status.ToString();
    }
  }
  ASSERT_TRUE(WaitAllUp(d, 30 * TimeScale()));
  const std::string log = ReadFile(d.LogPath("router"));
  const size_t down = log.find("decode decode-0 is down");
  ASSERT_NE(down, std::string::npos) << log;
  EXPECT_NE(log.find("decode decode-0 is up", down), std::string::npos) << log;
  ExpectPoolsBack(d, start, {"prefill-0", "decode-0", "decode-1"});
}

}  // namespace
}  // namespace pd::e2e
