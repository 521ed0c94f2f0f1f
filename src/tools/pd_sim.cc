// pd-sim: simulates one deployment (xPyD or colocated) on a workload and prints pd-bench's
// report for it (src/planner/sim/serving_sim.h). Used for calibration against pd-bench.
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "planner/sim/serving_sim.h"
#include "tools/planner_flags.h"

namespace {

constexpr char kUsage[] = R"(usage: pd-sim --profile F.json [options]

Simulates a deployment driven by a phase profile and prints what pd-bench would report.
  --profile F.json      profile of every instance (or --prefill-profile / --decode-profile)
  --prefill N           prefill instances (0 = colocated: decode instances prefill)  [1]
  --decode N            decode instances                                     [1]
  --input N|A:B         prompt tokens                                        [1024]
  --output N|A:B        output tokens                                        [1024]
  --preset P            10k/1k | 5k/1k | 1k/1k
  --rate R              Poisson requests/s (inf = all at once)               [1]
  --num-requests N                                                           [200]
  --seed N              same seed as pd-bench -> same arrival times          [0]
  --warmup N            leading requests left out of the report (steady state) [0]
  --slo-ttft-ms X --slo-tpot-ms Y                                            [500, 50]
  --shared-gpu          all instances time-slice one GPU (1P1D on one GPU)
  --share-penalty X     slowdown per other busy instance on the shared GPU   [1.0]
  --chunk-factor X      cost factor of prompt chunks after a cached prefix  [1.0]
  --poll-ms X           router load poll interval                            [500]
  --json                pd-bench's JSON report plus kv_gbps / link use
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace pd::planner;
  pd::SetLogLevel("warn");  // the router's pool logs every instance coming up
  Deployment d;
  WorkloadSpec w;
  SimOptions so{0, 500, 50};
  std::string pprof, dprof;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(kSharedFlagsHelp, stdout);
      return 0;
    }
    if (a == "--shared-gpu") { d.shared_gpu = true; continue; }
    if (a == "--json") { json = true; continue; }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "pd-sim: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    auto range = [&](pd::bench::LengthRange* r) { ParseRangeFlagOrExit("pd-sim", a, v, r); };
    if (ApplySharedFlag(a, v, &d.link, &d.prefill, &d.decode, &d.disagg_threshold_tokens)) continue;
    if (a == "--profile") pprof = dprof = v;
    else if (a == "--prefill-profile") pprof = v;
    else if (a == "--decode-profile") dprof = v;
    else if (a == "--prefill") d.num_prefill = std::atoi(v.c_str());
    else if (a == "--decode") d.num_decode = std::atoi(v.c_str());
    else if (a == "--input") range(&w.input);
    else if (a == "--output") range(&w.output);
    else if (a == "--preset") {
      auto p = pd::bench::ParsePreset(v);
      if (!p.ok()) { std::fprintf(stderr, "pd-sim: %s\n", p.status().ToString().c_str()); return 2; }
      w.input = {p->first, p->first};
      w.output = {p->second, p->second};
    } else if (a == "--rate") {
      w.rate = v == "inf" ? std::numeric_limits<double>::infinity() : std::atof(v.c_str());
    } else if (a == "--num-requests") w.num_requests = std::atoi(v.c_str());
    else if (a == "--seed") w.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--warmup") so.warmup = std::atoi(v.c_str());
    else if (a == "--slo-ttft-ms") so.slo_ttft_ms = std::atof(v.c_str());
    else if (a == "--slo-tpot-ms") so.slo_tpot_ms = std::atof(v.c_str());
    else if (a == "--share-penalty") d.share_penalty = std::atof(v.c_str());
    else if (a == "--chunk-factor") d.chunk_factor = std::atof(v.c_str());
    else if (a == "--poll-ms") d.poll_interval_ms = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "pd-sim: unknown flag %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (pprof.empty() || dprof.empty()) {
    std::fprintf(stderr, "pd-sim: --profile (or --prefill-profile and --decode-profile) needed\n");
    return 2;
  }
  auto pp = LoadProfile(pprof);
  auto dp = LoadProfile(dprof);
  if (!pp.ok() || !dp.ok()) {
    std::fprintf(stderr, "pd-sim: %s\n", (!pp.ok() ? pp : dp).status().ToString().c_str());
    return 1;
  }
  d.prefill_profile = *pp;
  d.decode_profile = *dp;
  const SimResult r = Simulate(d, MakeRequests(w), so);
  if (json) {
    nlohmann::json j = nlohmann::json::parse(pd::bench::ReportJson(r.report));
    j["kv_gbps"] = r.kv_gbps;
    j["max_link_util"] = r.max_link_util;
    j["steps"] = r.steps;
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("simulated %s: %dP%dD%s, %d requests\n", d.decode_profile.model.name.c_str(),
              d.num_prefill, d.num_decode, d.shared_gpu ? " on one shared GPU" : "",
              w.num_requests);
  std::fputs(pd::bench::ReportText(r.report).c_str(), stdout);
  std::printf("KV moved P->D: %.3f GB, %.2f Gbit/s average; busiest link %.0f%% busy; %lld steps\n",
              r.kv_bytes / 1e9, r.kv_gbps, 100 * r.max_link_util, static_cast<long long>(r.steps));
  return 0;
}
