// Chaos/overload test helpers (label e2e): a fixed-count load generator that keeps one outcome
// per request id, a user-space fault-injecting TCP proxy, /metrics scraping and pool checks.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "e2e_harness.h"
#include "tools/grpc_util.h"

namespace pd::e2e {

// One request of a load run and how it ended.
struct LoadItem {
  std::string id;               // unique request id (sent to the router)
  std::vector<int32_t> prompt;
  int max_tokens = 8;
  client::GenerateResult result;
  int finished = 0;             // times a final status was recorded (must be exactly 1)
  double end_ms = 0;            // since the run started
};

// Runs `items` through the router with `concurrency` client threads (greedy, ignore_eos,
// client deadline `timeout_ms`). Start() returns at once; Join() waits for every request.
class LoadRun {
 public:
  LoadRun(std::string endpoint, std::vector<LoadItem> items, int concurrency, int timeout_ms);
  ~LoadRun();
  void Start();
  void Join();
  // Requests finished so far.
  int done() const { return done_.load(); }
  std::vector<LoadItem>& items() { return items_; }

 private:
  std::string endpoint_;
  std::vector<LoadItem> items_;
  int concurrency_, timeout_ms_;
  std::atomic<int> next_{0}, done_{0};
  std::vector<std::thread> threads_;
};

// `n` distinct prompts of 160..260 tokens (long enough that every prefill goes through P and
// its KV crosses the transfer path in several layers' writes).
std::vector<std::vector<int32_t>> ChaosPrompts(int n, uint32_t seed);
// Greedy reference ids from pd-generate, computed once per (prompt, max_tokens) per process.
const std::vector<int32_t>& ReferenceIds(const std::vector<int32_t>& prompt, int max_tokens);

// Free KV blocks (free + evictable) of every instance, from its Stats RPC.
std::map<std::string, int64_t> FreeBlocksOf(const Deployment& d,
                                            const std::vector<std::string>& names);
// Waits up to timeout_s for each named instance's free blocks to equal `start`; returns the
// instances that did not ("name: now X, start Y").
std::vector<std::string> WaitPoolsBack(const Deployment& d,
                                       const std::map<std::string, int64_t>& start,
                                       const std::vector<std::string>& names, int timeout_s);

// GET http://127.0.0.1:port/metrics (plain socket). Empty on failure.
std::string ScrapeMetrics(int port);
// Sum of every sample of `family` whose label text contains `label_filter` ("" = all).
double MetricSum(const std::string& page, const std::string& family,
                 const std::string& label_filter = "");
// Whole file as a string ("" if unreadable).
std::string ReadFile(const std::string& path);
// Resident set size of a process in KiB (VmRSS), -1 if unknown.
int64_t RssKiB(pid_t pid);

// A TCP proxy on listen_host:listen_port forwarding to target_host:target_port. SetBlackhole
// stops moving bytes in both directions (connections stay open, data waits: a cut link);
// Reset() closes every proxied connection (a cut that the endpoints see as resets).
class FaultProxy {
 public:
  FaultProxy(std::string listen_host, int listen_port, std::string target_host, int target_port);
  ~FaultProxy();
  Status Start();
  void SetBlackhole(bool on) { blackhole_ = on; }
  void Reset();
  int connections() const { return conns_.load(); }
  int64_t bytes() const { return bytes_.load(); }

 private:
  void AcceptLoop();
  void Pump(int from, int to, std::shared_ptr<std::atomic<bool>> dead);

  std::string listen_host_, target_host_;
  int listen_port_, target_port_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false}, blackhole_{false};
  std::atomic<int> conns_{0};
  std::atomic<int64_t> bytes_{0};
  std::atomic<uint64_t> reset_gen_{0};
  std::thread accept_;
  std::vector<std::thread> pumps_;
  std::mutex mu_;
};

}  // namespace pd::e2e
