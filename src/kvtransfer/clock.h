// Clock: the time source of congestion control and path selection. Injected so that the same
// objects run on the real engine (SteadyClock), in unit tests and in the discrete-event
// simulator (ManualClock).
#pragma once

#include <chrono>
#include <cstdint>

namespace pd::kvtransfer {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds.
  virtual int64_t NowNs() const = 0;
};

class SteadyClock final : public Clock {
 public:
  int64_t NowNs() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static const SteadyClock& Get() {
    static const SteadyClock clock;
    return clock;
  }
};

// A clock that only moves when told to (tests, simulator).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 0) : now_ns_(start_ns) {}
  int64_t NowNs() const override { return now_ns_; }
  void AdvanceNs(int64_t ns) { now_ns_ += ns; }
  void AdvanceUs(double us) { now_ns_ += static_cast<int64_t>(us * 1e3); }
  void SetNs(int64_t ns) { now_ns_ = ns; }

 private:
  int64_t now_ns_;
};

}  // namespace pd::kvtransfer
