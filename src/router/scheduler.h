// Router placement: weighted scorers (like llm-d's scheduler), a per-instance prefix index and
// the conditional-disaggregation decider. No gRPC here: pure logic, unit-tested in tests/router.
//
// Picking an instance: every enabled scorer gives each candidate a score in [0, 1]; the
// candidate with the largest weighted sum wins (ties: the lowest candidate index).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/deploy_config.h"

namespace pd::router {

// What the router knows about one instance when it places a request.
struct InstanceLoad {
  int queue_depth = 0;    // waiting + running requests (last Stats + router's own in-flight)
  double kv_usage = 0.0;  // used / total KV blocks in [0, 1] (last Stats)
  int prefix_blocks = 0;  // leading prompt blocks this instance likely has cached
};

// The request as the scorers see it.
struct RequestInfo {
  int num_tokens = 0;       // prompt length
  int num_full_blocks = 0;  // prompt blocks that can be cached (hash chain length)
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual const char* name() const = 0;
  // Writes one score in [0, 1] per candidate into scores (same size as candidates).
  virtual void Score(const RequestInfo& req, std::span<const InstanceLoad> candidates,
                     std::span<double> scores) = 0;
};

// Fewer queued + running requests is better: (max - q) / (max - min); all equal -> 1.
class QueueDepthScorer : public Scorer {
 public:
  const char* name() const override { return "queue_depth"; }
  void Score(const RequestInfo&, std::span<const InstanceLoad> c, std::span<double> s) override;
};

// Lower KV usage is better: 1 - usage.
class KvUsageScorer : public Scorer {
 public:
  const char* name() const override { return "kv_usage"; }
  void Score(const RequestInfo&, std::span<const InstanceLoad> c, std::span<double> s) override;
};

// More of the prompt likely cached is better: prefix_blocks / num_full_blocks (0 without full
// blocks).
class PrefixAffinityScorer : public Scorer {
 public:
  const char* name() const override { return "prefix_affinity"; }
  void Score(const RequestInfo& r, std::span<const InstanceLoad> c, std::span<double> s) override;
};

// Rotates: the candidate at the rotating position scores 1, the next (n-1)/n, ... Each call
// advances the position, so equal candidates are used in turn.
class RoundRobinScorer : public Scorer {
 public:
  const char* name() const override { return "round_robin"; }
  void Score(const RequestInfo&, std::span<const InstanceLoad> c, std::span<double> s) override;

 private:
  uint64_t next_ = 0;
};

// A weighted set of scorers. Thread-safe (Pick serializes on an internal mutex).
class Picker {
 public:
  // Scorers with weight 0 are left out.
  explicit Picker(const ScorerWeights& w);
  // Adds a scorer (for tests and new policies).
  void Add(std::unique_ptr<Scorer> s, double weight);
  // Index of the best candidate, or -1 if candidates is empty.
  int Pick(const RequestInfo& req, std::span<const InstanceLoad> candidates);
  // Weighted sums of the last Pick (for logs and tests).
  std::vector<double> last_totals() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::unique_ptr<Scorer>, double>> scorers_;
  std::vector<double> totals_;
};

// A bounded record of the block hashes recently routed to one instance (LRU over hashes). It
// estimates that instance's prefix cache without asking it. Thread-safe.
class PrefixIndex {
 public:
  explicit PrefixIndex(int capacity_blocks) : capacity_(capacity_blocks) {}
  // Number of leading hashes of `chain` present (a chain stops at its first miss).
  int Match(std::span<const uint64_t> chain) const;
  // Records the chain as cached here (most recently used); evicts the oldest beyond capacity.
  void Record(std::span<const uint64_t> chain);
  // Forgets everything (the instance restarted: its cache is empty).
  void Clear();
  size_t size() const;

 private:
  mutable std::mutex mu_;
  int capacity_;
  std::list<uint64_t> lru_;  // front = most recent
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> map_;
};

// Conditional disaggregation: where to run a prompt's prefill.
enum class PrefillPlace { kRemote, kLocal };

struct DisaggDecision {
  PrefillPlace place = PrefillPlace::kLocal;
  const char* reason = "";  // "short uncached part", "no prefill instance", "long prompt"
};

// uncached = num_tokens - cached_tokens. Local (D prefills itself) if uncached < threshold, or
// no P is available; else remote.
DisaggDecision DecidePrefill(int num_tokens, int cached_tokens, int threshold,
                             bool prefill_available);

}  // namespace pd::router
