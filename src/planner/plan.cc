#include "planner/plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace pd::planner {
namespace {

double MeanOf(const bench::LengthRange& r) { return (r.lo + r.hi) / 2.0; }

Deployment MakeDeployment(const PlanSpec& s, const Profile* p, const Profile& d, int x, int y) {
  Deployment dep;
  dep.num_prefill = x;
  dep.num_decode = y;
  dep.prefill_profile = p ? *p : d;
  dep.decode_profile = d;
  dep.prefill = s.prefill;
  dep.decode = s.decode;
  dep.link = s.link;
  dep.disagg_threshold_tokens = s.disagg_threshold_tokens;
  return dep;
}

// Requests/s the deployment can at most sustain, from the profile alone (a starting point for
// the search, not an answer).
double CapacityGuess(const Deployment& d, double isl, double osl) {
  const CostModel pc(d.prefill_profile), dc(d.decode_profile);
  const double b = std::min<double>(d.decode.max_seqs,
                                    d.decode_profile.kv_pool_tokens / std::max(1.0, isl + osl));
  const double per_d = std::max(1.0, b) / (osl * dc.DecodeMs(std::max(1.0, b), isl + osl / 2) /
                                           1e3);
  if (d.num_prefill == 0) {
    const double pre = pc.PrefillMs(isl) / 1e3;
    return d.num_decode / (pre + 1.0 / per_d);
  }
  const double per_p = 1e3 / pc.PrefillMs(isl);
  return std::min(d.num_prefill * per_p, d.num_decode * per_d);
}

// Seconds of arrivals that reach steady state: several lifetimes of one request.
double Horizon(const Deployment& d, const PlanSpec& s) {
  if (s.horizon_s > 0) return s.horizon_s;
  const CostModel dc(d.decode_profile), pc(d.prefill_profile);
  const double isl = MeanOf(s.input), osl = MeanOf(s.output);
  const double life =
      (pc.PrefillMs(isl) + osl * dc.DecodeMs(d.decode.max_seqs / 2.0, isl + osl / 2)) / 1e3;
  return std::max(30.0, 4 * life);
}

SimResult RunAt(const Deployment& d, const PlanSpec& s, double rate, int* warmup) {
  WorkloadSpec w;
  w.input = s.input;
  w.output = s.output;
  w.rate = rate;
  w.num_requests = static_cast<int>(std::clamp(rate * Horizon(d, s), 1.0 * s.num_requests,
                                               1.0 * std::max(s.num_requests, s.max_requests)));
  w.seed = s.seed;
  SimOptions o;
  o.warmup = w.num_requests / 4;
  o.slo_ttft_ms = s.slo_ttft_ms;
  o.slo_tpot_ms = s.slo_tpot_ms;
  *warmup = o.warmup;
  return Simulate(d, MakeRequests(w), o);
}

}  // namespace

double Attainment(const SimResult& r, double slo_ttft_ms, double slo_tpot_ms, int warmup) {
  if (static_cast<int>(r.requests.size()) <= warmup) return 0;
  int good = 0;
  for (size_t i = std::max(0, warmup); i < r.requests.size(); ++i) {
    const RequestOutcome& x = r.requests[i];
    if (!x.ok) continue;
    const double tpot = x.output > 1 ? (x.e2e_ms - x.ttft_ms) / (x.output - 1) : 0;
    if ((slo_ttft_ms <= 0 || x.ttft_ms <= slo_ttft_ms) &&
        (slo_tpot_ms <= 0 || tpot <= slo_tpot_ms)) {
      ++good;
    }
  }
  return static_cast<double>(good) / (r.requests.size() - std::max(0, warmup));
}

double FindGoodput(const Deployment& d, const PlanSpec& s, SimResult* at) {
  auto ok = [&](double rate, SimResult* out) {
    int warmup = 0;
    SimResult r = RunAt(d, s, rate, &warmup);
    const bool pass = Attainment(r, s.slo_ttft_ms, s.slo_tpot_ms, warmup) >= s.attainment;
    if (pass && out) *out = std::move(r);
    return pass;
  };
  double hi = 2 * CapacityGuess(d, MeanOf(s.input), MeanOf(s.output));
  for (int i = 0; i < 4 && ok(hi, nullptr); ++i) hi *= 2;
  double lo = hi / 64;
  if (!ok(lo, at)) return 0;
  for (int i = 0; i < s.rate_iters + 5; ++i) {  // 5 extra halvings cover the /64 start
    const double mid = std::sqrt(lo * hi);      // geometric: the range spans decades
    if (ok(mid, at)) lo = mid; else hi = mid;
    if (hi / lo < 1.02) break;
  }
  return lo;
}

std::string Candidate::Name() const {
  if (x == 0) {
    return "colocated x" + std::to_string(y) + (tp_d > 1 ? "(tp" + std::to_string(tp_d) + ")" : "");
  }
  auto tp = [](int t) { return t > 1 ? "(tp" + std::to_string(t) + ")" : std::string(); };
  return std::to_string(x) + "P" + tp(tp_p) + std::to_string(y) + "D" + tp(tp_d);
}

std::vector<Candidate> Plan(const PlanSpec& s) {
  std::vector<Candidate> out;
  auto eval = [&](const Profile* p, const Profile& dp, int x, int y) {
    Candidate c;
    c.x = x;
    c.y = y;
    c.tp_p = p ? p->tp : 0;
    c.tp_d = dp.tp;
    const Deployment dep = MakeDeployment(s, p, dp, x, y);
    c.gpus = x * (p ? p->tp : 0) + y * dp.tp;
    c.goodput = FindGoodput(dep, s, &c.at_goodput);
    c.goodput_per_gpu = c.goodput / c.gpus;
    if (x > 0) {
      c.kv_gbps_per_p = c.goodput * MeanOf(s.input) * p->kv_bytes_per_token * 8 / 1e9 / x;
    }
    int warmup = 0;
    if (s.rate > 0) c.at_rate = RunAt(dep, s, s.rate, &warmup);
    out.push_back(std::move(c));
  };
  for (const Profile& dp : s.profiles) {
    for (const Profile& pp : s.profiles) {
      for (int x = 1; x * pp.tp < s.gpu_budget; ++x) {
        for (int y = 1; x * pp.tp + y * dp.tp <= s.gpu_budget; ++y) {
          if (std::gcd(x, y) != 1) continue;  // kP kD scales 1P1D-like shapes: same per GPU
          eval(&pp, dp, x, y);
        }
      }
    }
    if (s.colocated) eval(nullptr, dp, 0, 1);  // colocated instances are independent: one
                                               // instance's goodput per GPU is the answer
  }
  std::stable_sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    if (a.goodput_per_gpu != b.goodput_per_gpu) return a.goodput_per_gpu > b.goodput_per_gpu;
    if (a.gpus != b.gpus) return a.gpus < b.gpus;
    return a.x < b.x;
  });
  return out;
}

}  // namespace pd::planner
