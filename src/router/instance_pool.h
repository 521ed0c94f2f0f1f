// InstancePool: the router's view of the prefill or decode instances of a deployment — health
// (from periodic Stats polls), load (last Stats + the router's own in-flight count), and a prefix
// index per instance. Thread-safe. No gRPC here; the router's poller feeds it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/deploy_config.h"
#include "router/scheduler.h"

namespace pd::router {

// One poll's answer, as the pool needs it.
struct LoadSnapshot {
  int waiting = 0;           // queued requests
  int running = 0;           // requests in the running batch / being prefilled
  int64_t total_blocks = 0;  // KV pool size
  int64_t free_blocks = 0;   // free + evictable cached blocks
  uint64_t incarnation = 0;  // changes when the process restarts (its prefix cache is empty)
};

class InstancePool {
 public:
  InstancePool(const std::vector<InstanceConfig>& instances, int prefix_history_blocks);

  size_t size() const { return instances_.size(); }
  const InstanceConfig& config(int i) const { return instances_[i]; }

  // A successful poll: marks the instance up (logs the transition) and stores its load. A new
  // incarnation clears the instance's prefix index.
  void ReportUp(int i, const LoadSnapshot& s);
  // A failed poll or RPC: marks the instance down until the next successful poll.
  void ReportDown(int i, const std::string& why);
  bool healthy(int i) const;
  int num_healthy() const;
  // Healthy instances serving `model`, minus `exclude` (indices).
  std::vector<int> Candidates(const std::string& model, std::span<const int> exclude) const;

  // Picks among Candidates(model, exclude) with `picker`; -1 if there is none. `chain` is the
  // prompt's block hash chain (prefix affinity); the chosen instance's in-flight count is not
  // changed (use InflightGuard).
  int Pick(Picker& picker, const std::string& model, int num_tokens,
           std::span<const uint64_t> chain, std::span<const int> exclude) const;
  // Leading blocks of `chain` recently routed to instance i.
  int PrefixMatch(int i, std::span<const uint64_t> chain) const;
  // Records that instance i now (likely) holds `chain` in its prefix cache.
  void RecordPrefix(int i, std::span<const uint64_t> chain);

  void AddInflight(int i, int delta);

  // One line per instance for logs and Health: "decode-0 up q=3 kv=0.42".
  std::vector<std::string> Describe() const;

 private:
  struct State {
    bool healthy = false;
    bool ever_polled = false;
    LoadSnapshot last;
    int inflight = 0;
    std::unique_ptr<PrefixIndex> prefix;
  };

  std::vector<InstanceConfig> instances_;
  mutable std::mutex mu_;
  std::vector<State> state_;  // GUARDED_BY(mu_) except the PrefixIndex (own lock)
};

}  // namespace pd::router
