// The /metrics endpoint: serves the registry over HTTP on loopback, and what it serves passes
// `promtool check metrics` (the Prometheus project's own parser and linter) without problems.
#include "common/metrics_http.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/pd_metrics.h"
#include "util/run_shell.h"

namespace pd::metrics {
namespace {

using testutil::RunShell;

// A registry with every standard pdserve metric and some samples in each.
void Populate(Registry* reg) {
  auto r = RegisterRouterMetrics(reg);
  auto e = RegisterEngineMetrics(reg);
  auto t = RegisterTransferMetrics(reg);
  ASSERT_TRUE(r.ok() && e.ok() && t.ok());
  r->requests->WithLabels({kOutcomeOk})->Inc(10);
  r->requests->WithLabels({kOutcomeCancelled})->Inc();
  r->ttft->Get()->Observe(0.042);
  r->tpot->Get()->Observe(0.008);
  r->e2e->Get()->Observe(1.3);
  r->inflight->Get()->Set(3);
  r->prefill_decisions->WithLabels({kPrefillDisaggregated})->Inc(7);
  r->prefill_decisions->WithLabels({kPrefillLocal})->Inc(4);
  r->prefill_retries->Get()->Inc();
  r->prefill_fallbacks->WithLabels({kFallbackRetriesExhausted})->Inc();
  r->instance_up->WithLabels({"prefill-0", "prefill"})->Set(1);
  r->instance_up->WithLabels({"decode-0", "decode"})->Set(1);
  e->requests->WithLabels({kOutcomeOk})->Inc(10);
  e->queue_depth->Get()->Set(2);
  e->running_seqs->Get()->Set(5);
  e->batch_tokens->Get()->Observe(517);
  e->kv_blocks->WithLabels({kBlocksFree})->Set(900);
  e->kv_blocks->WithLabels({kBlocksUsed})->Set(80);
  e->kv_blocks->WithLabels({kBlocksCached})->Set(20);
  e->prefix_hit_tokens->Get()->Inc(256);
  e->prefix_query_tokens->Get()->Inc(1024);
  t->bytes->WithLabels({kDirectionSent})->Inc(1 << 30);
  t->seconds->Get()->Observe(0.0123);
  t->failures->WithLabels({kTransferTimeout})->Inc();
  t->path_cwnd->WithLabels({"decode-0", "0"})->Set(262144);
  t->path_rtt->WithLabels({"decode-0", "0"})->Set(35e-6);
  // Label values that need escaping must survive promtool's parser.
  auto odd = reg->AddGauge("pd_test_odd_labels", "Odd \\ help\nwith a newline.", {"v"});
  ASSERT_TRUE(odd.ok());
  (*odd)->WithLabels({"quote\" backslash\\ newline\n"})->Set(1);
}

TEST(MetricsHttp, ServesRegistryThatPromtoolAccepts) {
  Registry reg;
  ASSERT_NO_FATAL_FAILURE(Populate(&reg));
  auto srv = StartMetricsServer("127.0.0.1", 0, &reg);
  ASSERT_TRUE(srv.ok()) << srv.status().ToString();
  const int port = (*srv)->port();
  ASSERT_GT(port, 0);

  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res) << "GET /metrics failed: " << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), kTextContentType);
  EXPECT_EQ(res->body, reg.Render());
  EXPECT_NE(res->body.find("pd_router_ttft_seconds_bucket{le=\"0.08\"} 1\n"), std::string::npos);
  auto health = cli.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto missing = cli.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  char path[] = "/tmp/pd_metrics_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << res->body;
  std::string out;
  const int rc = RunShell(std::string("promtool check metrics < ") + path, &out);
  unlink(path);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "") << "promtool reported problems:\n" << out;

  (*srv)->Stop();
  (*srv)->Stop();  // idempotent
  EXPECT_FALSE(httplib::Client("127.0.0.1", port).Get("/metrics"));
}

TEST(MetricsHttp, PromtoolCatchesBrokenExposition) {
  // Guards the check above: promtool must actually reject bad text.
  char path[] = "/tmp/pd_metrics_bad_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << "# TYPE requests counter\nrequests{a=\"x} 1\n";
  std::string out;
  const int rc = RunShell(std::string("promtool check metrics < ") + path, &out);
  unlink(path);
  EXPECT_NE(rc, 0) << out;
}

TEST(MetricsHttp, ErrorsAreStatuses) {
  Registry reg;
  EXPECT_EQ(StartMetricsServer("127.0.0.1", 0, nullptr).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(StartMetricsServer("127.0.0.1", 70000, &reg).status().code(),
            StatusCode::kInvalidArgument);
  auto a = StartMetricsServer("127.0.0.1", 0, &reg);
  ASSERT_TRUE(a.ok());
  auto b = StartMetricsServer("127.0.0.1", (*a)->port(), &reg);  // port taken
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pd::metrics
