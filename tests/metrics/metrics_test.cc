// Golden rendering of the text exposition format, validation errors, and exact totals under
// concurrent updates.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "common/pd_metrics.h"

namespace pd::metrics {
namespace {

TEST(MetricsFormat, Values) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatValue(0.0 / 0.0), "NaN");
}

TEST(MetricsFormat, Escaping) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("x \"q\" \\ \n y"), "x \"q\" \\\\ \\n y");
}

TEST(MetricsRender, GoldenCounterGaugeHistogram) {
  Registry reg;
  auto c = reg.AddCounter("pd_test_requests_total", "Requests by outcome.", {"outcome", "model"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  (*c)->WithLabels({"ok", "tiny"})->Inc(3);
  (*c)->WithLabels({"cancelled", "we\"ird\\name\n"})->Inc();
  auto g = reg.AddGauge("pd_test_queue_depth", "Waiting\nsequences \\ now.");
  ASSERT_TRUE(g.ok());
  (*g)->Get()->Set(7);
  (*g)->Get()->Dec();
  auto h = reg.AddHistogram("pd_test_latency_seconds", "Latency.", {0.25, 0.5, 1});
  ASSERT_TRUE(h.ok());
  Histogram* hh = (*h)->Get();
  for (double v : {0.125, 0.25, 0.375, 0.75, 2.0}) hh->Observe(v);

  const std::string want =
      "# HELP pd_test_requests_total Requests by outcome.\n"
      "# TYPE pd_test_requests_total counter\n"
      "pd_test_requests_total{outcome=\"cancelled\",model=\"we\\\"ird\\\\name\\n\"} 1\n"
      "pd_test_requests_total{outcome=\"ok\",model=\"tiny\"} 3\n"
      "# HELP pd_test_queue_depth Waiting\\nsequences \\\\ now.\n"
      "# TYPE pd_test_queue_depth gauge\n"
      "pd_test_queue_depth 6\n"
      "# HELP pd_test_latency_seconds Latency.\n"
      "# TYPE pd_test_latency_seconds histogram\n"
      "pd_test_latency_seconds_bucket{le=\"0.25\"} 2\n"
      "pd_test_latency_seconds_bucket{le=\"0.5\"} 3\n"
      "pd_test_latency_seconds_bucket{le=\"1\"} 4\n"
      "pd_test_latency_seconds_bucket{le=\"+Inf\"} 5\n"
      "pd_test_latency_seconds_sum 3.5\n"
      "pd_test_latency_seconds_count 5\n";
  EXPECT_EQ(reg.Render(), want);
}

TEST(MetricsRender, LabelledHistogramAndEmptyFamily) {
  Registry reg;
  auto h = reg.AddHistogram("x_seconds", "X.", {1}, {"peer"});
  ASSERT_TRUE(h.ok());
  // A labelled family without children renders only its header.
  EXPECT_EQ(reg.Render(), "# HELP x_seconds X.\n# TYPE x_seconds histogram\n");
  (*h)->WithLabels({"d0"})->Observe(0.5);
  EXPECT_EQ(reg.Render(),
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{peer=\"d0\",le=\"1\"} 1\n"
            "x_seconds_bucket{peer=\"d0\",le=\"+Inf\"} 1\n"
            "x_seconds_sum{peer=\"d0\"} 0.5\n"
            "x_seconds_count{peer=\"d0\"} 1\n");
}

TEST(MetricsRender, CollectorRunsAtScrape) {
  Registry reg;
  auto g = reg.AddGauge("pd_kv_blocks_test", "Blocks.", {"state"});
  ASSERT_TRUE(g.ok());
  auto c = reg.AddCounter("pd_hits_test_total", "Hits.");
  ASSERT_TRUE(c.ok());
  int calls = 0;
  reg.AddCollector([&] {
    ++calls;
    (*g)->WithLabels({"free"})->Set(calls * 10);
    (*c)->Get()->SetTotal(calls * 100);  // mirrored cumulative source
  });
  reg.Render();
  const std::string text = reg.Render();
  EXPECT_NE(text.find("pd_kv_blocks_test{state=\"free\"} 20\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pd_hits_test_total 200\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, RejectsBadNames) {
  Registry reg;
  EXPECT_FALSE(reg.AddCounter("9bad", "x").ok());
  EXPECT_FALSE(reg.AddCounter("bad-name", "x").ok());
  EXPECT_FALSE(reg.AddCounter("ok_total", "x", {"__reserved"}).ok());
  EXPECT_FALSE(reg.AddCounter("ok_total", "x", {"a", "a"}).ok());
  EXPECT_FALSE(reg.AddHistogram("h", "x", {1}, {"le"}).ok());
  EXPECT_FALSE(reg.AddHistogram("h", "x", {}).ok());
  EXPECT_FALSE(reg.AddHistogram("h", "x", {1, 1}).ok());
  ASSERT_TRUE(reg.AddCounter("ok_total", "x").ok());
  auto dup = reg.AddGauge("ok_total", "x");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("already registered"), std::string::npos);
  auto f = reg.AddCounter("two_total", "x", {"a", "b"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->WithLabels({"only-one"}), nullptr);
  EXPECT_EQ((*f)->WithLabels({"1", "2"}), (*f)->WithLabels({"1", "2"}));  // stable child
}

TEST(MetricsHistogram, BucketBoundariesAreInclusive) {
  Histogram h({1, 2});
  h.Observe(1);    // le=1
  h.Observe(1.5);  // le=2
  h.Observe(2);    // le=2
  h.Observe(3);    // +Inf
  EXPECT_EQ(h.BucketCount(0), 1u);
  EXPECT_EQ(h.BucketCount(1), 2u);
  EXPECT_EQ(h.BucketCount(2), 1u);
  EXPECT_EQ(h.Count(), 4u);
  EXPECT_DOUBLE_EQ(h.Sum(), 7.5);
  Histogram n({1});
  n.Observe(0.0 / 0.0);  // NaN counts in +Inf, not the first bucket
  EXPECT_EQ(n.BucketCount(0), 0u);
  EXPECT_EQ(n.BucketCount(1), 1u);
  EXPECT_EQ(ExponentialBuckets(0.001, 2, 3), (std::vector<double>{0.001, 0.002, 0.004}));
  EXPECT_EQ(LinearBuckets(1, 2, 3), (std::vector<double>{1, 3, 5}));
}

TEST(MetricsConcurrency, TotalsAreExact) {
  Registry reg;
  auto c = reg.AddCounter("c_total", "C.", {"worker"});
  auto g = reg.AddGauge("g", "G.");
  auto h = reg.AddHistogram("h_seconds", "H.", {0.5, 1.5});
  ASSERT_TRUE(c.ok() && g.ok() && h.ok());
  constexpr int kThreads = 8, kIters = 100000;
  Counter* shared = (*c)->WithLabels({"shared"});
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      Counter* own = (*c)->WithLabels({std::to_string(t)});  // concurrent child creation
      Gauge* gg = (*g)->Get();
      Histogram* hh = (*h)->Get();
      for (int i = 0; i < kIters; ++i) {
        shared->Inc();
        own->Inc(2);
        gg->Inc();
        hh->Observe(i % 2);  // 0 -> le=0.5, 1 -> le=1.5; sums are exact in double
        if (i % 1000 == 0) (void)reg.Render();  // scrapes race with updates
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(shared->Value(), 1.0 * kThreads * kIters);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ((*c)->WithLabels({std::to_string(t)})->Value(), 2.0 * kIters);
  }
  EXPECT_EQ((*g)->Get()->Value(), 1.0 * kThreads * kIters);
  Histogram* hh = (*h)->Get();
  EXPECT_EQ(hh->Count(), uint64_t{kThreads} * kIters);
  EXPECT_EQ(hh->BucketCount(0), uint64_t{kThreads} * kIters / 2);
  EXPECT_EQ(hh->BucketCount(1), uint64_t{kThreads} * kIters / 2);
  EXPECT_EQ(hh->BucketCount(2), 0u);
  EXPECT_EQ(hh->Sum(), 1.0 * kThreads * kIters / 2);
  const std::string text = reg.Render();
  EXPECT_NE(text.find("c_total{worker=\"shared\"} 800000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_seconds_count 800000\n"), std::string::npos) << text;
}

TEST(PdMetrics, StandardGroupsRegisterOnceWithoutConflicts) {
  Registry reg;
  auto r = RegisterRouterMetrics(&reg);
  auto e = RegisterEngineMetrics(&reg);
  auto t = RegisterTransferMetrics(&reg);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_FALSE(RegisterRouterMetrics(&reg).ok());  // names are unique per registry
  r->requests->WithLabels({kOutcomeOk})->Inc();
  e->kv_blocks->WithLabels({kBlocksFree})->Set(100);
  t->path_rtt->WithLabels({"decode-0", "1"})->Set(25e-6);
  const std::string text = reg.Render();
  EXPECT_NE(text.find("pd_router_requests_total{outcome=\"ok\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("pd_kv_blocks{state=\"free\"} 100\n"), std::string::npos);
  EXPECT_NE(text.find("pd_kv_transfer_path_rtt_seconds{peer=\"decode-0\",path=\"1\"} 2.5e-05\n"),
            std::string::npos);
}

}  // namespace
}  // namespace pd::metrics
