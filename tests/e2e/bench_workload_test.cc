// pd-bench building blocks: length parsing, presets, synthetic prompts, arrivals, summaries.
#include "tools/bench_workload.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <numeric>

namespace pd::bench {
namespace {

TEST(BenchWorkload, LengthsAndPresets) {
  auto r = ParseLengthRange("128");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->lo, 128);
  EXPECT_EQ(r->hi, 128);
  r = ParseLengthRange("1k:2k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->lo, 1000);
  EXPECT_EQ(r->hi, 2000);
  EXPECT_FALSE(ParseLengthRange("0").ok());
  EXPECT_FALSE(ParseLengthRange("9:3").ok());
  EXPECT_FALSE(ParseLengthRange("x").ok());
  EXPECT_EQ(*ParsePreset("10k/1k"), (std::pair<int, int>{10000, 1000}));
  EXPECT_EQ(*ParsePreset("1k/1k"), (std::pair<int, int>{1000, 1000}));
  EXPECT_FALSE(ParsePreset("2k/1k").ok());
}

TEST(BenchWorkload, SyntheticPromptsRespectRangesVocabAndSharedPrefix) {
  SyntheticWorkload w{{10, 20}, {3, 3}, 50, 1, 8};
  auto reqs = MakeSynthetic(w, 100, 7);
  ASSERT_EQ(reqs.size(), 100u);
  for (const auto& r : reqs) {
    ASSERT_GE(r.prompt_ids.size(), 10u);
    ASSERT_LE(r.prompt_ids.size(), 20u);
    EXPECT_EQ(r.output_len, 3);
    for (int32_t t : r.prompt_ids) ASSERT_TRUE(t >= 1 && t < 50);
    EXPECT_TRUE(
        std::equal(r.prompt_ids.begin(), r.prompt_ids.begin() + 8, reqs[0].prompt_ids.begin()));
  }
  EXPECT_EQ(MakeSynthetic(w, 5, 7)[4].prompt_ids, reqs[4].prompt_ids);  // deterministic
}

TEST(BenchWorkload, Jsonl) {
  const std::string path = ::testing::TempDir() + "/bench.jsonl";
  {
    std::ofstream f(path);
    f << R"({"prompt": "hello", "output_len": 4})"
      << "\n\n"
      << R"({"prompt_ids": [1, 2, 3], "max_tokens": 2})"
      << "\n"
      << R"({"prompt_len": 5, "output_len": 1})"
      << "\n";
  }
  auto reqs = LoadJsonl(path, 100, 1);
  ASSERT_TRUE(reqs.ok()) << reqs.status().ToString();
  ASSERT_EQ(reqs->size(), 3u);
  EXPECT_EQ((*reqs)[0].prompt_text, "hello");
  EXPECT_EQ((*reqs)[1].prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ((*reqs)[1].output_len, 2);
  EXPECT_EQ((*reqs)[2].prompt_ids.size(), 5u);
  {
    std::ofstream f(path);
    f << R"({"prompt": "x", "output_len": 1})"
      << "\n"
      << "{bad\n";
  }
  auto bad = LoadJsonl(path, 100, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bench.jsonl:2:"), std::string::npos);
}

TEST(BenchWorkload, PoissonArrivalsHaveTheRequestedRate) {
  auto t = PoissonArrivals(20000, 50.0, 3);
  ASSERT_EQ(t.size(), 20000u);
  EXPECT_EQ(t[0], 0.0);
  for (size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
  EXPECT_NEAR(t.back() / t.size(), 1.0 / 50, 0.001);  // mean gap 20 ms (+-5%)
  EXPECT_EQ(PoissonArrivals(3, 0, 1), (std::vector<double>{0, 0, 0}));
}

TEST(BenchWorkload, SummaryAndReport) {
  std::vector<double> v(100);
  std::iota(v.begin(), v.end(), 1.0);  // 1..100
  Summary s = Summarize(v);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
  EXPECT_DOUBLE_EQ(s.p50, 50);
  EXPECT_DOUBLE_EQ(s.p90, 90);
  EXPECT_DOUBLE_EQ(s.p99, 99);
  std::vector<RequestResult> res(3);
  res[0] = {true, "", 10, 0, 5, 100, 500, {100, 100, 100, 100}};  // tpot 100
  res[1] = {true, "", 10, 8, 3, 300, 400, {50, 50}};              // tpot 50
  res[2] = {false, "UNAVAILABLE: x", 0, 0, 0, 0, 0, {}};
  Report r = MakeReport(res, 2.0, 200, 80);
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.failed, 1);
  EXPECT_EQ(r.good, 0);  // first misses TPOT, second misses TTFT
  EXPECT_DOUBLE_EQ(r.output_throughput, 4.0);
  EXPECT_DOUBLE_EQ(r.total_throughput, 14.0);
  EXPECT_DOUBLE_EQ(r.tpot.mean, 75);
  EXPECT_EQ(r.itl.count, 6u);
  EXPECT_EQ(MakeReport(res, 2.0, 400, 120).good, 2);
  EXPECT_NE(ReportJson(r).find("\"goodput\""), std::string::npos);
  EXPECT_NE(ReportText(r).find("UNAVAILABLE: x"), std::string::npos);
}

}  // namespace
}  // namespace pd::bench
