// xPyD search: for a workload, SLOs, a GPU budget and a P<->D link, simulates every
// x prefill + y decode deployment (per-role TP from the given profiles) and every colocated
// deployment within the budget, finds each one's goodput (the largest Poisson request rate at
// which >= `attainment` of the requests meet both SLOs; DistServe's definition) and ranks them
// by goodput per GPU.
#pragma once

#include <string>
#include <vector>

#include "planner/sim/serving_sim.h"

namespace pd::planner {

struct PlanSpec {
  std::vector<Profile> profiles;  // one per TP degree (profile.tp)
  bench::LengthRange input{1024, 1024}, output{1024, 1024};
  double slo_ttft_ms = 500, slo_tpot_ms = 50;
  double attainment = 0.9;   // fraction of requests that must meet both SLOs
  int gpu_budget = 8;
  LinkParams link;
  EngineParams prefill{16384, 16, 8192, 16, 0};
  EngineParams decode{8192, 256, 1024, 16, 0};
  int disagg_threshold_tokens = 256;
  int num_requests = 300;    // simulated per rate probe, at least; more when the rate x
                             // horizon asks for more (steady state), at most max_requests
  int max_requests = 20000;
  double horizon_s = 0;      // arrivals span this long (0: max(30 s, 4 x a request's life));
                             // the first quarter of the requests is warm-up (not scored)
  uint64_t seed = 1;
  double rate = 0;           // > 0: also evaluate every candidate at this rate
  int rate_iters = 7;        // bisection steps of the goodput search
  bool colocated = true;     // include colocated (decode-only) deployments
};

struct Candidate {
  int x = 0, y = 0;          // prefill, decode instances (x = 0: colocated)
  int tp_p = 1, tp_d = 1;
  int gpus = 0;
  double goodput = 0;        // req/s at which attainment holds (0: not even the lowest probe)
  double goodput_per_gpu = 0;
  SimResult at_goodput;      // the simulation at that rate
  SimResult at_rate;         // at PlanSpec::rate (when set)
  double kv_gbps_per_p = 0;  // KV Gbit/s each P sends at the goodput rate (analytic: rate x
                             // mean ISL x KV bytes/token / x)
  std::string Name() const;  // "2P1D", "colocated x3", "1P(tp2)1D(tp4)"
};

// Simulates and ranks; best first (ties: fewer GPUs, then fewer prefill instances).
std::vector<Candidate> Plan(const PlanSpec& s);

// Goodput search for one deployment (used by Plan; exposed for tests).
double FindGoodput(const Deployment& d, const PlanSpec& s, SimResult* at);

// Fraction of requests [warmup, n) that completed within both SLOs.
double Attainment(const SimResult& r, double slo_ttft_ms, double slo_tpot_ms, int warmup = 0);

}  // namespace pd::planner
