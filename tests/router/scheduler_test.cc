// Router placement logic: scorers, weighted picking, prefix index, disaggregation decider.
#include "router/scheduler.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "kvcache/block_manager.h"

namespace pd::router {
namespace {

std::vector<double> Scores(Scorer& s, const RequestInfo& r, const std::vector<InstanceLoad>& c) {
  std::vector<double> out(c.size(), -1.0);
  s.Score(r, c, out);
  return out;
}

TEST(Scorers, QueueDepthNormalizesBetweenMinAndMax) {
  QueueDepthScorer s;
  std::vector<InstanceLoad> c(3);
  c[0].queue_depth = 4;
  c[1].queue_depth = 0;
  c[2].queue_depth = 2;
  EXPECT_EQ(Scores(s, {}, c), (std::vector<double>{0.0, 1.0, 0.5}));
  for (auto& x : c) x.queue_depth = 7;
  EXPECT_EQ(Scores(s, {}, c), (std::vector<double>{1.0, 1.0, 1.0}));
}

TEST(Scorers, KvUsageAndPrefixAffinity) {
  KvUsageScorer kv;
  std::vector<InstanceLoad> c(2);
  c[0].kv_usage = 0.75;
  c[1].kv_usage = 1.5;  // clamped
  EXPECT_EQ(Scores(kv, {}, c), (std::vector<double>{0.25, 0.0}));
  PrefixAffinityScorer pa;
  c[0].prefix_blocks = 3;
  c[1].prefix_blocks = 0;
  EXPECT_EQ(Scores(pa, {64, 4}, c), (std::vector<double>{0.75, 0.0}));
  EXPECT_EQ(Scores(pa, {10, 0}, c), (std::vector<double>{0.0, 0.0}));
}

TEST(Scorers, RoundRobinRotates) {
  RoundRobinScorer rr;
  std::vector<InstanceLoad> c(3);
  Picker p(ScorerWeights{0, 0, 0, 1.0});
  std::vector<int> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(p.Pick({}, c));
  EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 0, 1, 2}));
  auto s = Scores(rr, {}, c);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 2.0 / 3);
}

TEST(Picker, WeightsDecide) {
  std::vector<InstanceLoad> c(2);
  c[0].queue_depth = 5;  // busy but holds the prefix
  c[0].prefix_blocks = 4;
  c[1].queue_depth = 0;
  RequestInfo r{64, 4};
  Picker affinity(ScorerWeights{1.0, 0, 3.0, 0});
  EXPECT_EQ(affinity.Pick(r, c), 0);
  EXPECT_EQ(affinity.last_totals(), (std::vector<double>{3.0, 1.0}));
  Picker load(ScorerWeights{1.0, 0, 0.5, 0});
  EXPECT_EQ(load.Pick(r, c), 1);
  Picker none(ScorerWeights{0, 0, 0, 0});
  EXPECT_EQ(none.Pick(r, c), 0);  // tie -> lowest index
  EXPECT_EQ(none.Pick(r, {}), -1);
}

TEST(PrefixIndex, MatchesLeadingChainAndEvictsOldest) {
  std::vector<int32_t> a(64), b(64);
  std::iota(a.begin(), a.end(), 1);
  b = a;
  b[40] = 999;  // differs in block 2 (block size 16)
  auto ha = PrefixBlockHashes(a.data(), a.size(), 16);
  auto hb = PrefixBlockHashes(b.data(), b.size(), 16);
  ASSERT_EQ(ha.size(), 4u);
  PrefixIndex idx(6);
  EXPECT_EQ(idx.Match(ha), 0);
  idx.Record(ha);
  EXPECT_EQ(idx.Match(ha), 4);
  EXPECT_EQ(idx.Match(hb), 2);  // shares blocks 0 and 1 only
  idx.Record(hb);               // adds 2 new hashes -> 6
  EXPECT_EQ(idx.size(), 6u);
  std::vector<int32_t> c(32, 7);
  idx.Record(PrefixBlockHashes(c.data(), c.size(), 16));  // 2 more: evicts a's tail blocks
  EXPECT_EQ(idx.size(), 6u);
  EXPECT_EQ(idx.Match(hb), 4);  // recent
  EXPECT_EQ(idx.Match(ha), 2);  // tail evicted, shared head kept
  idx.Clear();
  EXPECT_EQ(idx.Match(hb), 0);
}

TEST(Decider, ThresholdOnUncachedTokens) {
  EXPECT_EQ(DecidePrefill(100, 0, 64, true).place, PrefillPlace::kRemote);
  EXPECT_EQ(DecidePrefill(100, 48, 64, true).place, PrefillPlace::kLocal);   // 52 uncached
  EXPECT_EQ(DecidePrefill(100, 36, 64, true).place, PrefillPlace::kRemote);  // 64 uncached
  EXPECT_EQ(DecidePrefill(10, 0, 64, true).place, PrefillPlace::kLocal);
  EXPECT_EQ(DecidePrefill(1000, 0, 64, false).place, PrefillPlace::kLocal);
  EXPECT_EQ(DecidePrefill(1, 0, 0, true).place, PrefillPlace::kRemote);  // threshold 0: always P
}

}  // namespace
}  // namespace pd::router
