// Congestion control and path selection against a manual clock.
#include <gtest/gtest.h>

#include "kvtransfer/congestion.h"
#include "kvtransfer/path_selector.h"

namespace pd::kvtransfer {
namespace {

constexpr uint64_t kChunk = 256 * 1024;

CcParams SwiftParams() {
  CcParams p;
  p.algorithm = CcAlgorithm::kSwift;
  p.base_target_us = 300;
  p.target_chunk_factor = 1.5;
  p.link_gbps = 1;  // chunk serialisation 2.1 ms -> target ~3.45 ms
  p.init_cwnd_chunks = 4;
  return p;
}

TEST(SwiftTest, TargetIncludesChunkSerialisation) {
  const CcParams p = SwiftParams();
  const int64_t t = SwiftTargetNs(p, kChunk);
  EXPECT_NEAR(static_cast<double>(t), 300e3 + 1.5 * kChunk * 8.0, 1e3);
  EXPECT_GT(SwiftTargetNs(p, 4 * kChunk), t);
}

TEST(SwiftTest, WindowGrowsBelowTarget) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(SwiftParams(), kChunk, clock);
  const double w0 = cc->cwnd_bytes();
  for (int i = 0; i < 8; ++i) {
    clock.AdvanceUs(500);
    cc->OnAck(kChunk, 1'000'000);  // 1 ms < target
  }
  // ~1 chunk per window of ACKs: 8 ACKs at cwnd 4..6 chunks -> +1.5 chunks or so.
  EXPECT_GT(cc->cwnd_bytes(), w0 + kChunk);
  EXPECT_LT(cc->cwnd_bytes(), w0 + 3 * kChunk);
}

TEST(SwiftTest, WindowShrinksAboveTargetAtMostOncePerRtt) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(SwiftParams(), kChunk, clock);
  const double w0 = cc->cwnd_bytes();
  cc->OnAck(kChunk, 10'000'000);  // 10 ms >> target: decrease
  const double w1 = cc->cwnd_bytes();
  EXPECT_LT(w1, w0);
  EXPECT_GE(w1, w0 * 0.5 - 1);  // bounded by max_mdf
  // More high samples within the same RTT: no further decrease.
  for (int i = 0; i < 5; ++i) {
    clock.AdvanceUs(100);
    cc->OnAck(kChunk, 10'000'000);
  }
  EXPECT_DOUBLE_EQ(cc->cwnd_bytes(), w1);
  // After one smoothed RTT (10 ms) has passed, it may decrease again.
  clock.AdvanceUs(11'000);
  cc->OnAck(kChunk, 10'000'000);
  EXPECT_LT(cc->cwnd_bytes(), w1);
}

TEST(SwiftTest, DecreaseScalesWithExcessDelay) {
  ManualClock clock(1'000'000);
  auto a = MakeCongestionControl(SwiftParams(), kChunk, clock);
  auto b = MakeCongestionControl(SwiftParams(), kChunk, clock);
  a->OnAck(kChunk, 4'000'000);   // slightly above target
  b->OnAck(kChunk, 40'000'000);  // far above
  EXPECT_GT(a->cwnd_bytes(), b->cwnd_bytes());
}

TEST(SwiftTest, WindowGateAndPacingBelowOneChunk) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(SwiftParams(), kChunk, clock);
  EXPECT_TRUE(cc->CanSend(0, kChunk));
  EXPECT_TRUE(cc->CanSend(3 * kChunk, kChunk));
  EXPECT_FALSE(cc->CanSend(4 * kChunk, kChunk));
  // Drive the window below one chunk with repeated heavy delay, one decrease per RTT.
  for (int i = 0; i < 20; ++i) {
    clock.AdvanceUs(50'000);
    cc->OnAck(kChunk, 40'000'000);
  }
  ASSERT_LT(cc->cwnd_bytes(), static_cast<double>(kChunk));
  EXPECT_FALSE(cc->CanSend(kChunk, kChunk));  // something in flight: wait for it
  cc->OnSend(kChunk);
  const int64_t sent = clock.NowNs();
  const int64_t next = cc->NextSendNs();
  // One chunk per srtt * chunk / cwnd.
  const double expect = static_cast<double>(cc->srtt_ns()) * kChunk / cc->cwnd_bytes();
  EXPECT_NEAR(static_cast<double>(next - sent), expect, expect * 0.01 + 1000);
  EXPECT_FALSE(cc->CanSend(0, kChunk));
  clock.SetNs(next);
  EXPECT_TRUE(cc->CanSend(0, kChunk));
}

TEST(SwiftTest, RecoversAfterCongestionClears) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(SwiftParams(), kChunk, clock);
  for (int i = 0; i < 20; ++i) {
    clock.AdvanceUs(50'000);
    cc->OnAck(kChunk, 40'000'000);
  }
  const double low = cc->cwnd_bytes();
  for (int i = 0; i < 200; ++i) {
    clock.AdvanceUs(1'000);
    cc->OnAck(kChunk, 1'000'000);
  }
  EXPECT_GT(cc->cwnd_bytes(), 4 * low);
  EXPECT_GE(cc->cwnd_bytes(), static_cast<double>(kChunk));
}

TEST(SwiftTest, RelativeTargetHoldsShareWhenEveryPathIsCongested) {
  ManualClock clock(1'000'000);
  CcParams p = SwiftParams();
  p.relative_target_factor = 1.5;
  auto shared = MakeCongestionControl(p, kChunk, clock);
  shared->SetReferenceRttNs(6'000'000);  // the best path is as slow: 6 ms
  const double w0 = shared->cwnd_bytes();
  shared->OnAck(kChunk, 7'000'000);  // 7 ms: above the 3.45 ms target, below 1.5 x 6 ms
  EXPECT_GT(shared->cwnd_bytes(), w0);
  // A path much slower than the best one still backs off.
  auto slow = MakeCongestionControl(p, kChunk, clock);
  slow->SetReferenceRttNs(2'000'000);
  slow->OnAck(kChunk, 7'000'000);
  EXPECT_LT(slow->cwnd_bytes(), w0);
  // factor 0: absolute target only.
  p.relative_target_factor = 0;
  auto abs = MakeCongestionControl(p, kChunk, clock);
  abs->SetReferenceRttNs(6'000'000);
  abs->OnAck(kChunk, 7'000'000);
  EXPECT_LT(abs->cwnd_bytes(), w0);
}

TEST(TimelyTest, RateRisesOnFallingRttAndFallsAboveHighThreshold) {
  ManualClock clock(1'000'000);
  CcParams p = SwiftParams();
  p.algorithm = CcAlgorithm::kTimely;
  auto cc = MakeCongestionControl(p, kChunk, clock);
  cc->OnSend(kChunk);
  const int64_t gap0 = cc->NextSendNs() - clock.NowNs();
  for (int i = 0; i < 10; ++i) cc->OnAck(kChunk, 100'000);  // below t_low: additive increase
  const int64_t gap1 = cc->NextSendNs() - clock.NowNs();
  EXPECT_LT(gap1, gap0);
  for (int i = 0; i < 10; ++i) cc->OnAck(kChunk, 20'000'000);  // above t_high: decrease
  const int64_t gap2 = cc->NextSendNs() - clock.NowNs();
  EXPECT_GT(gap2, gap1);
}

// Timely's rate as its pacing interval shows it (bytes/s).
double TimelyRate(CongestionControl& cc, const ManualClock& clock) {
  cc.OnSend(kChunk);
  return static_cast<double>(kChunk) / (static_cast<double>(cc.NextSendNs() - clock.NowNs()) / 1e9);
}

CcParams TimelyParams() {  // 1 Gbit/s: t_low ~3.45 ms (Swift's target), t_high = t_low + 3 ms
  CcParams p = SwiftParams();
  p.algorithm = CcAlgorithm::kTimely;
  p.relative_target_factor = 0;
  return p;
}

// Between the thresholds the sign of the RTT gradient decides: rising RTT -> the rate falls,
// falling RTT -> it rises.
TEST(TimelyTest, GradientSignDecidesBetweenThresholds) {
  ManualClock clock(1'000'000);
  auto up = MakeCongestionControl(TimelyParams(), kChunk, clock);
  auto down = MakeCongestionControl(TimelyParams(), kChunk, clock);
  const double r0 = TimelyRate(*up, clock);
  for (int i = 0; i < 4; ++i) {
    clock.AdvanceUs(10'000);  // one decrease per RTT at most: space the samples out
    up->OnAck(kChunk, 4'000'000 + i * 400'000);    // 4.0 -> 5.2 ms, in the band
    down->OnAck(kChunk, 6'000'000 - i * 400'000);  // 6.0 -> 4.8 ms
  }
  EXPECT_LT(TimelyRate(*up, clock), r0 * 0.9);
  EXPECT_GT(TimelyRate(*down, clock), r0);
}

// Non-positive gradient: additive steps of delta (2% of line rate), five times that (HAI)
// from the fifth consecutive such sample on.
TEST(TimelyTest, HyperactiveIncreaseAfterFiveSteps) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(TimelyParams(), kChunk, clock);
  const double delta = 1e9 / 8 / 50;
  std::vector<double> r = {TimelyRate(*cc, clock)};
  for (int i = 0; i < 7; ++i) {
    cc->OnAck(kChunk, 5'000'000);  // flat, inside the band
    r.push_back(TimelyRate(*cc, clock));
  }
  for (int i = 1; i <= 4; ++i) EXPECT_NEAR(r[i] - r[i - 1], delta, delta * 0.01) << i;
  for (int i = 5; i <= 7; ++i) EXPECT_NEAR(r[i] - r[i - 1], 5 * delta, delta * 0.05) << i;
}

// A decrease scales with the normalised gradient, never below (1 - beta) of the rate, and
// happens at most once per smoothed RTT (a burst of ACKs carrying one queue build-up must not
// compound into a collapse: every chunk of a window sees the same rise).
TEST(TimelyTest, DecreaseIsBoundedAndAtMostOncePerRtt) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(TimelyParams(), kChunk, clock);
  cc->OnAck(kChunk, 4'000'000);
  const double r0 = TimelyRate(*cc, clock);
  clock.AdvanceUs(10'000);
  cc->OnAck(kChunk, 6'000'000);  // +2 ms on a 4 ms min RTT: gradient 0.44 -> x(1 - 0.8*0.44)
  const double r1 = TimelyRate(*cc, clock);
  EXPECT_LT(r1, r0 * 0.7);
  EXPECT_GE(r1, r0 * 0.2 - 1);
  for (int i = 0; i < 5; ++i) {  // more rising samples within the same RTT: no further cut
    clock.AdvanceUs(100);
    cc->OnAck(kChunk, 6'300'000 + i * 10'000);
  }
  EXPECT_DOUBLE_EQ(TimelyRate(*cc, clock), r1);
  clock.AdvanceUs(10'000);  // a smoothed RTT later it may cut again
  cc->OnAck(kChunk, 6'400'000);
  EXPECT_LT(TimelyRate(*cc, clock), r1);
}

// Rate stays within [line / 1000, line]; the relative target lifts the low threshold.
TEST(TimelyTest, RateBoundsAndRelativeTarget) {
  ManualClock clock(1'000'000);
  auto cc = MakeCongestionControl(TimelyParams(), kChunk, clock);
  const double line = 1e9 / 8;
  for (int i = 0; i < 200; ++i) cc->OnAck(kChunk, 100'000);  // far below t_low
  EXPECT_NEAR(TimelyRate(*cc, clock), line, line * 0.001);
  for (int i = 0; i < 200; ++i) {
    clock.AdvanceUs(100'000);
    cc->OnAck(kChunk, 90'000'000);  // far above t_high
  }
  EXPECT_NEAR(TimelyRate(*cc, clock), line / 1000, line / 1000 * 0.01);
  CcParams rel = TimelyParams();
  rel.relative_target_factor = 1.5;
  auto r = MakeCongestionControl(rel, kChunk, clock);
  r->SetReferenceRttNs(6'000'000);  // every path ~6 ms: t_low 9 ms, t_high 12 ms
  const double before = TimelyRate(*r, clock);
  clock.AdvanceUs(10'000);
  r->OnAck(kChunk, 7'000'000);  // above the absolute t_high (6.45 ms), below the relative t_low
  EXPECT_GT(TimelyRate(*r, clock), before);
}

TEST(NoCcTest, NeverLimits) {
  ManualClock clock;
  CcParams p;
  p.algorithm = CcAlgorithm::kNone;
  auto cc = MakeCongestionControl(p, kChunk, clock);
  cc->OnAck(kChunk, 1'000'000'000);
  EXPECT_TRUE(cc->CanSend(1ull << 40, kChunk));
  EXPECT_EQ(cc->NextSendNs(), 0);
}

TEST(PathSelectorTest, PowerOfTwoPrefersLowerRtt) {
  ManualClock clock(1'000'000);
  PathSelector sel(PathPolicy::kPowerOfTwo, 4, clock, 42);
  sel.OnRtt(0, 10'000'000);  // slow path
  for (int i = 1; i < 4; ++i) sel.OnRtt(i, 1'000'000);
  std::vector<int> hits(4);
  const std::vector<bool> all(4, true);
  for (int i = 0; i < 3000; ++i) hits[static_cast<size_t>(sel.Pick(all))]++;
  // Path 0 wins only when both samples are path 0, which p2c avoids: never.
  EXPECT_EQ(hits[0], 0);
  for (int i = 1; i < 4; ++i) EXPECT_GT(hits[static_cast<size_t>(i)], 700);
}

TEST(PathSelectorTest, OnlyEligiblePathsAndStaleProbe) {
  ManualClock clock(1'000'000);
  PathSelector sel(PathPolicy::kPowerOfTwo, 3, clock, 7, /*stale_ns=*/5'000'000);
  sel.OnRtt(0, 9'000'000);
  sel.OnRtt(0, 1'000'000);  // min 1 ms, srtt ~8 ms
  sel.OnRtt(1, 2'000'000);
  EXPECT_EQ(sel.Pick({false, false, false}), -1);
  EXPECT_EQ(sel.Pick({false, false, true}), 2);
  EXPECT_EQ(sel.Pick({true, true, false}), 1);   // fresh: 8 ms vs 2 ms
  EXPECT_GT(sel.EffectiveRttNs(0), 7'000'000);
  clock.AdvanceNs(6'000'000);  // both stale: each counts at its minimum
  EXPECT_EQ(sel.EffectiveRttNs(0), 1'000'000);
  EXPECT_EQ(sel.Pick({true, true, false}), 0);   // path 0 gets probed again
}

TEST(PathSelectorTest, RoundRobinWaitsForThePathWhoseTurnItIs) {
  ManualClock clock;
  PathSelector sel(PathPolicy::kRoundRobin, 4, clock);
  EXPECT_EQ(sel.Pick({true, true, true, true}), 0);
  EXPECT_EQ(sel.Pick({true, true, true, true}), 1);
  EXPECT_EQ(sel.Pick({true, false, false, true}), -1);  // path 2's turn, not ready: wait
  EXPECT_EQ(sel.Pick({false, false, true, false}), 2);
  EXPECT_EQ(sel.Pick({true, true, true, true}), 3);
  EXPECT_EQ(sel.Pick({true, true, true, true}), 0);
}

}  // namespace
}  // namespace pd::kvtransfer
