#include "router/scheduler.h"

#include <algorithm>

namespace pd::router {

void QueueDepthScorer::Score(const RequestInfo&, std::span<const InstanceLoad> c,
                             std::span<double> s) {
  if (c.empty()) return;
  int lo = c[0].queue_depth, hi = c[0].queue_depth;
  for (const InstanceLoad& x : c) {
    lo = std::min(lo, x.queue_depth);
    hi = std::max(hi, x.queue_depth);
  }
  for (size_t i = 0; i < c.size(); ++i) {
    s[i] = hi == lo ? 1.0 : static_cast<double>(hi - c[i].queue_depth) / (hi - lo);
  }
}

void KvUsageScorer::Score(const RequestInfo&, std::span<const InstanceLoad> c,
                          std::span<double> s) {
  for (size_t i = 0; i < c.size(); ++i) s[i] = 1.0 - std::clamp(c[i].kv_usage, 0.0, 1.0);
}

void PrefixAffinityScorer::Score(const RequestInfo& r, std::span<const InstanceLoad> c,
                                 std::span<double> s) {
  for (size_t i = 0; i < c.size(); ++i) {
    s[i] = r.num_full_blocks <= 0
               ? 0.0
               : std::min(1.0, static_cast<double>(c[i].prefix_blocks) / r.num_full_blocks);
  }
}

void RoundRobinScorer::Score(const RequestInfo&, std::span<const InstanceLoad> c,
                             std::span<double> s) {
  const size_t n = c.size();
  if (n == 0) return;
  const size_t start = next_++ % n;
  for (size_t i = 0; i < n; ++i) {
    const size_t dist = (i + n - start) % n;
    s[i] = 1.0 - static_cast<double>(dist) / n;
  }
}

Picker::Picker(const ScorerWeights& w) {
  Add(std::make_unique<QueueDepthScorer>(), w.queue_depth);
  Add(std::make_unique<KvUsageScorer>(), w.kv_usage);
  Add(std::make_unique<PrefixAffinityScorer>(), w.prefix_affinity);
  Add(std::make_unique<RoundRobinScorer>(), w.round_robin);
}

void Picker::Add(std::unique_ptr<Scorer> s, double weight) {
  if (weight <= 0) return;
  std::lock_guard<std::mutex> l(mu_);
  scorers_.emplace_back(std::move(s), weight);
}

int Picker::Pick(const RequestInfo& req, std::span<const InstanceLoad> candidates) {
  if (candidates.empty()) return -1;
  std::lock_guard<std::mutex> l(mu_);
  totals_.assign(candidates.size(), 0.0);
  std::vector<double> s(candidates.size());
  for (auto& [scorer, weight] : scorers_) {
    std::fill(s.begin(), s.end(), 0.0);
    scorer->Score(req, candidates, s);
    for (size_t i = 0; i < s.size(); ++i) totals_[i] += weight * s[i];
  }
  int best = 0;
  for (size_t i = 1; i < totals_.size(); ++i) {
    if (totals_[i] > totals_[best] + 1e-12) best = static_cast<int>(i);
  }
  return best;
}

std::vector<double> Picker::last_totals() const {
  std::lock_guard<std::mutex> l(mu_);
  return totals_;
}

int PrefixIndex::Match(std::span<const uint64_t> chain) const {
  std::lock_guard<std::mutex> l(mu_);
  int n = 0;
  for (uint64_t h : chain) {
    if (!map_.count(h)) break;
    ++n;
  }
  return n;
}

void PrefixIndex::Record(std::span<const uint64_t> chain) {
  if (capacity_ <= 0) return;
  std::lock_guard<std::mutex> l(mu_);
  // Insert tail blocks first so that head blocks (shared by more prompts) end up most recent.
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    auto f = map_.find(*it);
    if (f != map_.end()) {
      lru_.splice(lru_.begin(), lru_, f->second);
    } else {
      lru_.push_front(*it);
      map_[*it] = lru_.begin();
    }
  }
  while (static_cast<int>(lru_.size()) > capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
}

void PrefixIndex::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  lru_.clear();
  map_.clear();
}

size_t PrefixIndex::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return lru_.size();
}

DisaggDecision DecidePrefill(int num_tokens, int cached_tokens, int threshold,
                             bool prefill_available) {
  if (!prefill_available) return {PrefillPlace::kLocal, "no prefill instance"};
  const int uncached = std::max(0, num_tokens - cached_tokens);
  if (uncached < threshold) return {PrefillPlace::kLocal, "short uncached part"};
  return {PrefillPlace::kRemote, "long uncached part"};
}

}  // namespace pd::router
