#include "kvtransfer/congestion.h"

#include <algorithm>
#include <cmath>

namespace pd::kvtransfer {
namespace {

// Exponentially weighted smoothed RTT shared by the algorithms.
class SrttFilter {
 public:
  void Add(int64_t rtt_ns) {
    srtt_ns_ = srtt_ns_ == 0 ? rtt_ns : (7 * srtt_ns_ + rtt_ns) / 8;
    min_rtt_ns_ = min_rtt_ns_ == 0 ? rtt_ns : std::min(min_rtt_ns_, rtt_ns);
  }
  int64_t srtt() const { return srtt_ns_; }
  int64_t min_rtt() const { return min_rtt_ns_; }

 private:
  int64_t srtt_ns_ = 0;
  int64_t min_rtt_ns_ = 0;
};

class SwiftCc final : public CongestionControl {
 public:
  SwiftCc(const CcParams& p, uint64_t chunk, const Clock& clock)
      : p_(p), chunk_(static_cast<double>(chunk)), clock_(clock),
        target_ns_(SwiftTargetNs(p, chunk)), cwnd_(p.init_cwnd_chunks * chunk_) {}

  void OnSend(uint64_t bytes) override { last_send_ns_ = clock_.NowNs(); }

  void OnAck(uint64_t bytes, int64_t rtt_ns) override {
    if (rtt_ns <= 0) rtt_ns = 1;
    rtt_.Add(rtt_ns);
    const int64_t now = clock_.NowNs();
    const double acked = static_cast<double>(bytes);
    const int64_t target = EffectiveTarget();
    if (rtt_ns < target) {
      // Additive increase: ai chunks per window's worth of ACKs (per ACK when below one chunk).
      if (cwnd_ >= chunk_) {
        cwnd_ += p_.additive_increase * chunk_ * acked / cwnd_;
      } else {
        cwnd_ += p_.additive_increase * acked * (cwnd_ / chunk_);
      }
    } else if (now - last_decrease_ns_ >= rtt_.srtt()) {
      const double excess = static_cast<double>(rtt_ns - target) / static_cast<double>(rtt_ns);
      const double factor = std::max(1.0 - p_.beta * excess, 1.0 - p_.max_mdf);
      cwnd_ *= factor;
      last_decrease_ns_ = now;
    }
    cwnd_ = std::clamp(cwnd_, p_.min_cwnd_chunks * chunk_, p_.max_cwnd_chunks * chunk_);
  }

  bool CanSend(uint64_t inflight, uint64_t bytes) const override {
    if (cwnd_ >= chunk_) return static_cast<double>(inflight + bytes) <= cwnd_ + 1;
    if (inflight > 0) return false;
    return clock_.NowNs() >= NextSendNs();
  }

  int64_t NextSendNs() const override {
    if (cwnd_ >= chunk_ || last_send_ns_ == 0) return 0;
    const double srtt = static_cast<double>(std::max<int64_t>(rtt_.srtt(), target_ns_));
    return last_send_ns_ + static_cast<int64_t>(srtt * chunk_ / cwnd_);
  }

  double cwnd_bytes() const override { return cwnd_; }
  int64_t srtt_ns() const override { return rtt_.srtt(); }

 private:
  int64_t EffectiveTarget() const {
    if (p_.relative_target_factor <= 0 || reference_ns_ <= 0) return target_ns_;
    return std::max(target_ns_,
                    static_cast<int64_t>(p_.relative_target_factor * static_cast<double>(reference_ns_)));
  }
  CcParams p_;
  double chunk_;
  const Clock& clock_;
  int64_t target_ns_;
  double cwnd_;
  SrttFilter rtt_;
  int64_t last_decrease_ns_ = INT64_MIN / 2;
  int64_t last_send_ns_ = 0;
};

// Timely (Mittal et al., SIGCOMM'15): rate from the RTT gradient; the window is rate * srtt.
class TimelyCc final : public CongestionControl {
 public:
  TimelyCc(const CcParams& p, uint64_t chunk, const Clock& clock)
      : p_(p), chunk_(static_cast<double>(chunk)), clock_(clock),
        line_rate_(p.link_gbps * 1e9 / 8), rate_(line_rate_ / 2), delta_(line_rate_ / 50),
        t_low_(static_cast<double>(SwiftTargetNs(p, chunk))),
        t_high_(t_low_ + p.timely_t_high_us * 1e3) {}

  void OnSend(uint64_t bytes) override { last_send_ns_ = clock_.NowNs(); }

  void OnAck(uint64_t bytes, int64_t rtt_ns) override {
    if (rtt_ns <= 0) rtt_ns = 1;
    rtt_.Add(rtt_ns);
    double t_low = t_low_;
    if (p_.relative_target_factor > 0 && reference_ns_ > 0) {
      t_low = std::max(t_low, p_.relative_target_factor * static_cast<double>(reference_ns_));
    }
    const double t_high = t_low + (t_high_ - t_low_);
    const double rtt = static_cast<double>(rtt_ns);
    if (prev_rtt_ > 0) {
      const double diff = rtt - prev_rtt_;
      rtt_diff_ = (1 - kAlpha) * rtt_diff_ + kAlpha * diff;
    }
    prev_rtt_ = rtt;
    const double min_rtt = static_cast<double>(std::max<int64_t>(rtt_.min_rtt(), 1000));
    const double gradient = rtt_diff_ / min_rtt;
    // Multiplicative decreases at most once per smoothed RTT (as Swift): the paper updates
    // once per completion of a 16-64 KB segment, about once per RTT at 10 Gbit/s; here every
    // chunk of a window (several per path, several paths) reports the same queue build-up, and
    // cutting on each compounded into a collapse (the incast starvation in docs/kvtransfer.md).
    const int64_t now = clock_.NowNs();
    const bool may_cut = now - last_decrease_ns_ >= rtt_.srtt();
    if (rtt < t_low) {
      rate_ += delta_;
      hai_count_ = 0;
    } else if (rtt > t_high) {
      if (may_cut) {
        rate_ *= 1 - kBeta * (1 - t_high / rtt);
        last_decrease_ns_ = now;
      }
      hai_count_ = 0;
    } else if (gradient <= 0) {
      hai_count_++;
      rate_ += (hai_count_ >= 5 ? 5 : 1) * delta_;
    } else {
      if (may_cut) {
        rate_ *= 1 - kBeta * std::min(gradient, 1.0);
        last_decrease_ns_ = now;
      }
      hai_count_ = 0;
    }
    rate_ = std::clamp(rate_, line_rate_ / 1000, line_rate_);
  }

  bool CanSend(uint64_t inflight, uint64_t bytes) const override {
    if (static_cast<double>(inflight) > cwnd_bytes()) return false;
    return clock_.NowNs() >= NextSendNs();
  }
  int64_t NextSendNs() const override {
    if (last_send_ns_ == 0) return 0;
    return last_send_ns_ + static_cast<int64_t>(chunk_ / rate_ * 1e9);
  }
  double cwnd_bytes() const override {
    const double srtt = static_cast<double>(std::max<int64_t>(rtt_.srtt(), 100000));
    return std::max(chunk_, 2 * rate_ * srtt / 1e9);
  }
  int64_t srtt_ns() const override { return rtt_.srtt(); }
  double rate_bytes_per_s() const { return rate_; }

 private:
  static constexpr double kAlpha = 0.875;
  static constexpr double kBeta = 0.8;
  CcParams p_;
  double chunk_;
  const Clock& clock_;
  double line_rate_, rate_, delta_;
  double t_low_, t_high_;  // thresholds include the chunk's serialisation time, as Swift's target
  double prev_rtt_ = 0, rtt_diff_ = 0;
  int hai_count_ = 0;
  int64_t last_decrease_ns_ = INT64_MIN / 2;
  SrttFilter rtt_;
  int64_t last_send_ns_ = 0;
};

class NoCc final : public CongestionControl {
 public:
  void OnSend(uint64_t) override {}
  void OnAck(uint64_t, int64_t rtt_ns) override { rtt_.Add(std::max<int64_t>(rtt_ns, 1)); }
  bool CanSend(uint64_t, uint64_t) const override { return true; }
  int64_t NextSendNs() const override { return 0; }
  double cwnd_bytes() const override { return 1e18; }
  int64_t srtt_ns() const override { return rtt_.srtt(); }

 private:
  SrttFilter rtt_;
};

}  // namespace

int64_t SwiftTargetNs(const CcParams& p, uint64_t chunk_bytes) {
  const double ser_ns = static_cast<double>(chunk_bytes) * 8.0 / p.link_gbps;  // bits / (Gb/s)
  return static_cast<int64_t>(p.base_target_us * 1e3 + p.target_chunk_factor * ser_ns);
}

std::unique_ptr<CongestionControl> MakeCongestionControl(const CcParams& params,
                                                         uint64_t chunk_bytes, const Clock& clock) {
  switch (params.algorithm) {
    case CcAlgorithm::kSwift:
      return std::make_unique<SwiftCc>(params, chunk_bytes, clock);
    case CcAlgorithm::kTimely:
      return std::make_unique<TimelyCc>(params, chunk_bytes, clock);
    case CcAlgorithm::kNone:
      break;
  }
  return std::make_unique<NoCc>();
}

}  // namespace pd::kvtransfer
