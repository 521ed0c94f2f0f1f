// InstancePool: health transitions, candidate filtering, load-based picks, prefix reset on restart.
#include "router/instance_pool.h"

#include <gtest/gtest.h>

#include <numeric>

#include "kvcache/block_manager.h"

namespace pd::router {
namespace {

std::vector<InstanceConfig> ThreeInstances() {
  std::vector<InstanceConfig> v(3);
  for (int i = 0; i < 3; ++i) {
    v[i].name = "decode-" + std::to_string(i);
    v[i].model_name = i < 2 ? "tiny" : "other";
    v[i].port = 9000 + i;
  }
  return v;
}

TEST(InstancePool, HealthAndCandidates) {
  InstancePool pool(ThreeInstances(), 100);
  EXPECT_EQ(pool.num_healthy(), 0);  // nothing polled yet
  EXPECT_TRUE(pool.Candidates("tiny", {}).empty());
  pool.ReportUp(0, {});
  pool.ReportUp(1, {});
  pool.ReportUp(2, {});
  EXPECT_EQ(pool.Candidates("tiny", {}), (std::vector<int>{0, 1}));
  EXPECT_EQ(pool.Candidates("other", {}), (std::vector<int>{2}));
  const std::vector<int> ex = {0};
  EXPECT_EQ(pool.Candidates("tiny", ex), (std::vector<int>{1}));
  pool.ReportDown(1, "connection refused");
  EXPECT_FALSE(pool.healthy(1));
  EXPECT_EQ(pool.Candidates("tiny", ex), (std::vector<int>{}));
  pool.ReportUp(1, {});  // recovered instances come back
  EXPECT_EQ(pool.Candidates("tiny", ex), (std::vector<int>{1}));
  EXPECT_EQ(pool.Candidates("nope", {}), (std::vector<int>{}));
}

TEST(InstancePool, PicksByLoadAndAffinity) {
  InstancePool pool(ThreeInstances(), 100);
  pool.ReportUp(0, {2, 2, 100, 10, 1});  // busy, KV 90% used
  pool.ReportUp(1, {0, 0, 100, 100, 1});
  pool.ReportUp(2, {});
  Picker load(ScorerWeights{1, 1, 0, 0});
  EXPECT_EQ(pool.Pick(load, "tiny", 10, {}, {}), 1);
  EXPECT_EQ(pool.Pick(load, "other", 10, {}, {}), 2);
  pool.AddInflight(1, 10);  // the router's own in-flight count makes 1 the busier one
  Picker queue_only(ScorerWeights{1, 0, 0, 0});
  EXPECT_EQ(pool.Pick(queue_only, "tiny", 10, {}, {}), 0);
  pool.AddInflight(1, -10);

  std::vector<int32_t> toks(64);
  std::iota(toks.begin(), toks.end(), 5);
  auto chain = PrefixBlockHashes(toks.data(), toks.size(), 16);
  pool.RecordPrefix(0, chain);
  Picker affinity(ScorerWeights{1, 1, 5, 0});
  EXPECT_EQ(pool.Pick(affinity, "tiny", 64, chain, {}), 0);
  EXPECT_EQ(pool.PrefixMatch(0, chain), 4);
  pool.ReportUp(0, {2, 2, 100, 10, 1});  // same incarnation: index kept
  EXPECT_EQ(pool.PrefixMatch(0, chain), 4);
  pool.ReportUp(0, {0, 0, 100, 100, 2});  // restarted: its cache is empty
  EXPECT_EQ(pool.PrefixMatch(0, chain), 0);
  EXPECT_EQ(pool.Describe().size(), 3u);
}

}  // namespace
}  // namespace pd::router
