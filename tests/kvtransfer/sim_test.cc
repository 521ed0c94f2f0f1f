// The discrete-event fabric simulator runs the engine's CC objects; sanity against closed forms.
#include <gtest/gtest.h>

#include "kvtransfer/sim/fabric_sim.h"

namespace pd::kvtransfer::sim {
namespace {

FabricConfig Fabric() {
  FabricConfig f;
  f.spines = 4;
  f.link_gbps = 10;
  f.base_rtt_us = 10;
  f.mark_kb = 256;
  return f;
}

Arm MakeArm(int paths, CcAlgorithm cc, PathPolicy policy) {
  Arm a;
  a.paths = paths;
  a.policy = policy;
  a.cc.algorithm = cc;
  a.cc.link_gbps = 10;
  a.cc.base_target_us = 20;
  return a;
}

TEST(FabricSimTest, IdleTransferRunsAtLineRate) {
  const uint64_t payload = 64ull << 20;
  const double ideal_us = payload * 8.0 / (4 * 10e9) * 1e6;
  for (CcAlgorithm cc : {CcAlgorithm::kNone, CcAlgorithm::kSwift}) {
    const auto r = SimulateTransfer(Fabric(), MakeArm(4, cc, PathPolicy::kPowerOfTwo), payload,
                                    1000, 1);
    EXPECT_GE(r.completion_us, ideal_us);
    EXPECT_LT(r.completion_us, ideal_us * 1.08) << static_cast<int>(cc);
  }
  const auto one = SimulateTransfer(Fabric(), MakeArm(1, CcAlgorithm::kNone, PathPolicy::kPowerOfTwo),
                                    payload, 1000, 1);
  EXPECT_NEAR(one.completion_us, 4 * ideal_us, 0.08 * 4 * ideal_us);
}

TEST(FabricSimTest, CollisionHurtsRoundRobinMoreThanSwift) {
  FabricConfig f = Fabric();
  f.background = {{0, 0}, {0, 0}};  // two bulk flows on spine 0
  const uint64_t payload = 64ull << 20;
  const auto rr = SimulateTransfer(f, MakeArm(4, CcAlgorithm::kNone, PathPolicy::kRoundRobin),
                                   payload, 20000, 2);
  const auto swift = SimulateTransfer(f, MakeArm(4, CcAlgorithm::kSwift, PathPolicy::kPowerOfTwo),
                                      payload, 20000, 2);
  const double idle_us = payload * 8.0 / (4 * 10e9) * 1e6;
  // Floor: 3 1/3 of 4 paths left -> +20%. RR waits for the shared path (~3x slower).
  EXPECT_GT(rr.completion_us, 2.0 * idle_us);
  EXPECT_LT(swift.completion_us, 1.45 * idle_us);
  EXPECT_GT(swift.completion_us, 1.15 * idle_us);
  EXPECT_GT(swift.bg_goodput_gbps, 3.0);  // the background is not starved
}

}  // namespace
}  // namespace pd::kvtransfer::sim
