// PathSelector: picks the path for the next chunk among the paths that may send now.
//   kPowerOfTwo: sample two eligible paths at random, take the one with the lower smoothed RTT.
//     A path whose last sample is older than `stale_ns` counts as its best (minimum) RTT, so a
//     path that once looked slow is probed again instead of being starved of samples forever.
//   kRoundRobin: strict rotation (naive spraying): chunk k goes to path k mod N; when that path
//     may not send yet, nothing is sent (Pick returns -1) - the baseline that waits for the
//     slowest path.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kvtransfer/clock.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer {

class PathSelector {
 public:
  PathSelector(PathPolicy policy, int num_paths, const Clock& clock, uint64_t seed = 1,
               int64_t stale_ns = 50'000'000);
  // Feeds one RTT sample of `path`.
  void OnRtt(int path, int64_t rtt_ns);
  // Index of the chosen path among those with eligible[i] == true; -1 if none.
  int Pick(const std::vector<bool>& eligible);
  // Smoothed RTT as the selector sees it now (the min RTT if stale); 0 before any sample.
  int64_t EffectiveRttNs(int path) const;
  int num_paths() const { return static_cast<int>(paths_.size()); }

 private:
  struct PathRtt {
    int64_t srtt_ns = 0;
    int64_t min_ns = 0;
    int64_t last_sample_ns = 0;
  };
  PathPolicy policy_;
  const Clock& clock_;
  int64_t stale_ns_;
  std::vector<PathRtt> paths_;
  std::mt19937_64 rng_;
  int rr_next_ = 0;
};

}  // namespace pd::kvtransfer
