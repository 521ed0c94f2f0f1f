// pd-plan: recommends an xPyD deployment (or colocated serving) for a workload from phase
// profiles, by simulating every candidate (src/planner/plan.h).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/logging.h"
#include "planner/plan.h"
#include "tools/planner_flags.h"

namespace {

constexpr char kUsage[] = R"(usage: pd-plan --profile F.json [--profile G.json ...] [options]

Searches x prefill + y decode instances (and per-role TP when profiles of several TP sizes are
given, one per TP) within a GPU budget, plus colocated serving; for each, the goodput = largest
Poisson rate at which >= attainment of requests meet both SLOs; ranks by goodput per GPU.
  --profile F.json      phase profile (repeat for other TP sizes)
  --input N|A:B         prompt tokens (ISL)                                  [1024]
  --output N|A:B        output tokens (OSL)                                  [1024]
  --preset P            10k/1k | 5k/1k | 1k/1k
  --slo-ttft-ms X       [500]        --slo-tpot-ms Y   [50]
  --attainment F        fraction of requests meeting both SLOs               [0.9]
  --gpus N              GPU budget                                           [8]
  --rate R              also report every candidate at this request rate
  --num-requests N      simulated requests per probe                         [300]
  --seed N                                                                   [1]
  --top N               rows to print                                        [10]
  --no-colocated        leave colocated serving out
  --csv F               write every candidate as CSV (for plots)
)";

void PrintRow(const pd::planner::Candidate& c, const pd::planner::PlanSpec& s) {
  const pd::bench::Report& r = c.at_goodput.report;
  std::printf("%-16s %4d %9.3f %9.4f %8.0f %8.0f %7.1f %7.1f %9.1f %6.0f%%\n", c.Name().c_str(),
              c.gpus, c.goodput, c.goodput_per_gpu, r.ttft.p50, r.ttft.p90, r.tpot.p50, r.tpot.p90,
              c.kv_gbps_per_p, c.x > 0 ? 100 * c.kv_gbps_per_p / (s.link.gbps * c.tp_p) : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pd::planner;
  pd::SetLogLevel("warn");  // the router's pool logs every instance coming up
  PlanSpec s;
  int top = 10;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(kSharedFlagsHelp, stdout);
      return 0;
    }
    if (a == "--no-colocated") { s.colocated = false; continue; }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "pd-plan: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    auto range = [&](pd::bench::LengthRange* r) { ParseRangeFlagOrExit("pd-plan", a, v, r); };
    if (ApplySharedFlag(a, v, &s.link, &s.prefill, &s.decode, &s.disagg_threshold_tokens)) continue;
    if (a == "--profile") {
      auto p = LoadProfile(v);
      if (!p.ok()) {
        std::fprintf(stderr, "pd-plan: %s\n", p.status().ToString().c_str());
        return 1;
      }
      s.profiles.push_back(*p);
    } else if (a == "--input") range(&s.input);
    else if (a == "--output") range(&s.output);
    else if (a == "--preset") {
      auto p = pd::bench::ParsePreset(v);
      if (!p.ok()) { std::fprintf(stderr, "pd-plan: %s\n", p.status().ToString().c_str()); return 2; }
      s.input = {p->first, p->first};
      s.output = {p->second, p->second};
    } else if (a == "--slo-ttft-ms") s.slo_ttft_ms = std::atof(v.c_str());
    else if (a == "--slo-tpot-ms") s.slo_tpot_ms = std::atof(v.c_str());
    else if (a == "--attainment") s.attainment = std::atof(v.c_str());
    else if (a == "--gpus") s.gpu_budget = std::atoi(v.c_str());
    else if (a == "--rate") s.rate = std::atof(v.c_str());
    else if (a == "--num-requests") s.num_requests = std::atoi(v.c_str());
    else if (a == "--seed") s.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--top") top = std::atoi(v.c_str());
    else if (a == "--csv") csv = v;
    else {
      std::fprintf(stderr, "pd-plan: unknown flag %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (s.profiles.empty()) {
    std::fprintf(stderr, "pd-plan: at least one --profile is needed\n");
    return 2;
  }
  const Profile& p0 = s.profiles[0];
  std::printf("model %s on %s; ISL %d:%d OSL %d:%d; SLO TTFT %.0f ms TPOT %.0f ms at %.0f%%; "
              "%d GPUs; link %.0f Gbit/s/GPU x %.2f\n",
              p0.model.name.c_str(), p0.hardware.device.c_str(), s.input.lo, s.input.hi,
              s.output.lo, s.output.hi, s.slo_ttft_ms, s.slo_tpot_ms, 100 * s.attainment,
              s.gpu_budget, s.link.gbps, s.link.efficiency);
  const std::vector<Candidate> c = Plan(s);
  std::printf("%-16s %4s %9s %9s %8s %8s %7s %7s %9s %7s\n", "config", "GPUs", "goodput",
              "per GPU", "TTFT50", "TTFT90", "TPOT50", "TPOT90", "KV Gb/s/P", "of link");
  for (int i = 0; i < static_cast<int>(c.size()) && i < top; ++i) PrintRow(c[i], s);
  const Candidate* best_dis = nullptr;
  const Candidate* colo = nullptr;
  for (const Candidate& x : c) {
    if (x.x > 0 && !best_dis) best_dis = &x;
    if (x.x == 0 && !colo) colo = &x;
  }
  if (best_dis) {
    std::printf("best disaggregated: %s, %.3f req/s/GPU; P:D = %d:%d; KV %.1f Gbit/s per P "
                "(%.0f%% of its link)\n", best_dis->Name().c_str(), best_dis->goodput_per_gpu,
                best_dis->x, best_dis->y, best_dis->kv_gbps_per_p,
                100 * best_dis->kv_gbps_per_p / (s.link.gbps * best_dis->tp_p));
  }
  if ((!best_dis || best_dis->goodput <= 0) && (!colo || colo->goodput <= 0)) {
    std::printf("no configuration meets the SLOs at any probed rate (an idle deployment already "
                "misses them: relax the SLOs or use a faster profile)\n");
  } else if (colo) {
    const bool wins = !best_dis || colo->goodput_per_gpu >= best_dis->goodput_per_gpu;
    std::printf("colocated: %.3f req/s/GPU -> %s\n", colo->goodput_per_gpu,
                wins ? "colocated serving beats disaggregation for this workload"
                     : "disaggregation beats colocated serving for this workload");
  }
  if (s.rate > 0) {
    std::printf("at %.3f req/s:\n", s.rate);
    for (int i = 0; i < static_cast<int>(c.size()) && i < top; ++i) {
      const pd::bench::Report& r = c[i].at_rate.report;
      std::printf("  %-16s goodput %.3f req/s, TTFT p50 %.0f ms, TPOT p50 %.1f ms, out %.0f tok/s\n",
                  c[i].Name().c_str(), r.goodput, r.ttft.p50, r.tpot.p50, r.output_throughput);
    }
  }
  if (!csv.empty()) {
    FILE* f = std::fopen(csv.c_str(), "w");
    if (!f) { std::fprintf(stderr, "pd-plan: cannot write %s\n", csv.c_str()); return 1; }
    std::fprintf(f, "config,x,y,tp_p,tp_d,gpus,goodput,goodput_per_gpu,ttft_p50,ttft_p90,"
                    "tpot_p50,tpot_p90,kv_gbps_per_p\n");
    for (const Candidate& x : c) {
      const pd::bench::Report& r = x.at_goodput.report;
      std::fprintf(f, "%s,%d,%d,%d,%d,%d,%.6f,%.6f,%.3f,%.3f,%.3f,%.3f,%.3f\n", x.Name().c_str(),
                   x.x, x.y, x.tp_p, x.tp_d, x.gpus, x.goodput, x.goodput_per_gpu, r.ttft.p50,
                   r.ttft.p90, r.tpot.p50, r.tpot.p90, x.kv_gbps_per_p);
    }
    std::fclose(f);
  }
  return 0;
}
