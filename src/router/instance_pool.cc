#include "router/instance_pool.h"

#include <algorithm>
#include <cstdio>

#include "common/logging.h"

namespace pd::router {

InstancePool::InstancePool(const std::vector<InstanceConfig>& instances, int prefix_history_blocks)
    : instances_(instances), state_(instances.size()) {
  for (State& s : state_) s.prefix = std::make_unique<PrefixIndex>(prefix_history_blocks);
}

void InstancePool::ReportUp(int i, const LoadSnapshot& s) {
  bool clear = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    State& st = state_[i];
    if (!st.healthy) {
      PD_LOG_INFO("{} {} is up (incarnation {:x})", RoleName(instances_[i].role),
                  instances_[i].name, s.incarnation);
    }
    clear = st.ever_polled && st.last.incarnation != s.incarnation;
    st.healthy = true;
    st.ever_polled = true;
    st.last = s;
  }
  if (clear) state_[i].prefix->Clear();
}

void InstancePool::ReportDown(int i, const std::string& why) {
  std::lock_guard<std::mutex> l(mu_);
  State& st = state_[i];
  if (st.healthy) {
    PD_LOG_WARN("{} {} is down: {}", RoleName(instances_[i].role), instances_[i].name, why);
  } else if (!st.ever_polled) {
    PD_LOG_INFO("{} {} not reachable yet: {}", RoleName(instances_[i].role), instances_[i].name,
                why);
  }
  st.healthy = false;
  st.ever_polled = true;
}

bool InstancePool::healthy(int i) const {
  std::lock_guard<std::mutex> l(mu_);
  return state_[i].healthy;
}

int InstancePool::num_healthy() const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<int>(
      std::count_if(state_.begin(), state_.end(), [](const State& s) { return s.healthy; }));
}

std::vector<int> InstancePool::Candidates(const std::string& model,
                                          std::span<const int> exclude) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<int> out;
  for (size_t i = 0; i < instances_.size(); ++i) {
    if (!state_[i].healthy || instances_[i].model_name != model) continue;
    if (std::find(exclude.begin(), exclude.end(), static_cast<int>(i)) != exclude.end()) continue;
    out.push_back(static_cast<int>(i));
  }
  return out;
}

int InstancePool::Pick(Picker& picker, const std::string& model, int num_tokens,
                       std::span<const uint64_t> chain, std::span<const int> exclude) const {
  const std::vector<int> cand = Candidates(model, exclude);
  if (cand.empty()) return -1;
  std::vector<InstanceLoad> loads(cand.size());
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t k = 0; k < cand.size(); ++k) {
      const State& st = state_[cand[k]];
      loads[k].queue_depth = st.last.waiting + st.last.running + st.inflight;
      loads[k].kv_usage =
          st.last.total_blocks > 0
              ? 1.0 - static_cast<double>(st.last.free_blocks) / st.last.total_blocks
              : 0.0;
    }
  }
  for (size_t k = 0; k < cand.size(); ++k) loads[k].prefix_blocks = PrefixMatch(cand[k], chain);
  RequestInfo req{num_tokens, static_cast<int>(chain.size())};
  const int best = picker.Pick(req, loads);
  return best < 0 ? -1 : cand[best];
}

int InstancePool::PrefixMatch(int i, std::span<const uint64_t> chain) const {
  return state_[i].prefix->Match(chain);
}

void InstancePool::RecordPrefix(int i, std::span<const uint64_t> chain) {
  state_[i].prefix->Record(chain);
}

void InstancePool::AddInflight(int i, int delta) {
  std::lock_guard<std::mutex> l(mu_);
  state_[i].inflight += delta;
}

std::vector<std::string> InstancePool::Describe() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (size_t i = 0; i < instances_.size(); ++i) {
    const State& s = state_[i];
    char buf[256];
    std::snprintf(
        buf, sizeof buf, "%s %s q=%d inflight=%d free=%lld/%lld", instances_[i].name.c_str(),
        s.healthy ? "up" : "down", s.last.waiting + s.last.running, s.inflight,
        static_cast<long long>(s.last.free_blocks), static_cast<long long>(s.last.total_blocks));
    out.push_back(buf);
  }
  return out;
}

}  // namespace pd::router
