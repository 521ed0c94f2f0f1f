// Host-side congestion control, one object per path. Every chunk sent on the path yields an RTT
// sample (the receiver's ACK echoes the sender's timestamp); the algorithm turns the samples into
// a window of bytes in flight and, below one chunk, a pacing interval.
//
//   Swift (default): delay-based AIMD. target = base_target + chunk_factor * chunk serialisation
//     time at link_gbps. rtt < target: +additive_increase chunks per RTT (per ACK when paced);
//     rtt >= target: cwnd *= max(1 - beta * (rtt - target) / rtt, 1 - max_mdf), at most once
//     per smoothed RTT. Below one chunk the path sends one chunk every srtt * chunk / cwnd.
//   Timely: rate-based on the RTT gradient (low/high thresholds, HAI), paced.
//   None: unlimited window, no pacing (the kernel's TCP CC alone).
// Both delay-based algorithms use a relative target as well (see SetReferenceRttNs).
#pragma once

#include <cstdint>
#include <memory>

#include "kvtransfer/clock.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer {

class CongestionControl {
 public:
  virtual ~CongestionControl() = default;
  // A chunk of `bytes` was handed to the path.
  virtual void OnSend(uint64_t bytes) = 0;
  // A chunk of `bytes` was acknowledged after `rtt_ns`.
  virtual void OnAck(uint64_t bytes, int64_t rtt_ns) = 0;
  // Whether a chunk of `bytes` may go now with `inflight` bytes unacknowledged on the path.
  virtual bool CanSend(uint64_t inflight, uint64_t bytes) const = 0;
  // Earliest time (clock ns) at which pacing allows the next chunk; 0 when not pacing.
  virtual int64_t NextSendNs() const = 0;
  // Current window in bytes (for stats and tests).
  virtual double cwnd_bytes() const = 0;
  // Smoothed RTT in ns (0 before the first sample).
  virtual int64_t srtt_ns() const = 0;
  // The smoothed RTT of the peer's best path. With relative_target_factor f > 0 the delay
  // target becomes max(target, f * reference): congestion that every path shares (incast)
  // cannot be routed around, so the path keeps its share (the kernel's CC arbitrates) instead
  // of yielding to loss-based flows until it starves.
  virtual void SetReferenceRttNs(int64_t ref_ns) { reference_ns_ = ref_ns; }

 protected:
  int64_t reference_ns_ = 0;
};

// Factory: `chunk_bytes` is the path's chunk size (the unit of windows and serialisation term).
std::unique_ptr<CongestionControl> MakeCongestionControl(const CcParams& params,
                                                         uint64_t chunk_bytes, const Clock& clock);

// Swift's target delay for a chunk size (exposed for tests and the docs).
int64_t SwiftTargetNs(const CcParams& params, uint64_t chunk_bytes);

}  // namespace pd::kvtransfer
