#include "kvtransfer/path_selector.h"

#include <algorithm>

namespace pd::kvtransfer {

PathSelector::PathSelector(PathPolicy policy, int num_paths, const Clock& clock, uint64_t seed,
                           int64_t stale_ns)
    : policy_(policy), clock_(clock), stale_ns_(stale_ns),
      paths_(static_cast<size_t>(std::max(num_paths, 0))), rng_(seed) {}

void PathSelector::OnRtt(int path, int64_t rtt_ns) {
  if (path < 0 || path >= num_paths()) return;
  PathRtt& p = paths_[static_cast<size_t>(path)];
  p.srtt_ns = p.srtt_ns == 0 ? rtt_ns : (7 * p.srtt_ns + rtt_ns) / 8;
  p.min_ns = p.min_ns == 0 ? rtt_ns : std::min(p.min_ns, rtt_ns);
  p.last_sample_ns = clock_.NowNs();
}

int64_t PathSelector::EffectiveRttNs(int path) const {
  const PathRtt& p = paths_[static_cast<size_t>(path)];
  if (p.srtt_ns == 0) return 0;
  if (clock_.NowNs() - p.last_sample_ns > stale_ns_) return p.min_ns;
  return p.srtt_ns;
}

int PathSelector::Pick(const std::vector<bool>& eligible) {
  std::vector<int> cand;
  for (int i = 0; i < num_paths() && i < static_cast<int>(eligible.size()); ++i) {
    if (eligible[static_cast<size_t>(i)]) cand.push_back(i);
  }
  if (cand.empty()) return -1;
  if (policy_ == PathPolicy::kRoundRobin) {  // strict rotation: wait for the path whose turn it is
    if (!eligible[static_cast<size_t>(rr_next_)]) return -1;
    const int i = rr_next_;
    rr_next_ = (rr_next_ + 1) % num_paths();
    return i;
  }
  if (cand.size() == 1) return cand[0];
  std::uniform_int_distribution<size_t> d(0, cand.size() - 1);
  const size_t a = d(rng_);
  size_t b = d(rng_);
  if (b == a) b = (a + 1) % cand.size();
  const int pa = cand[a], pb = cand[b];
  return EffectiveRttNs(pb) < EffectiveRttNs(pa) ? pb : pa;
}

}  // namespace pd::kvtransfer
