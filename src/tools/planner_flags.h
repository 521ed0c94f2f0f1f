// Flags shared by pd-sim and pd-plan (engine and link parameters), parsed the same way.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "planner/sim/serving_sim.h"
#include "tools/bench_workload.h"

namespace pd::planner {

// Parses the length range `v` of flag `a` (--input/--output) into *r; on a bad value prints
// "<tool>: <flag>: <error>" and exits with status 2.
inline void ParseRangeFlagOrExit(const char* tool, const std::string& a, const std::string& v,
                                 pd::bench::LengthRange* r) {
  auto x = pd::bench::ParseLengthRange(v);
  if (!x.ok()) {
    std::fprintf(stderr, "%s: %s: %s\n", tool, a.c_str(), x.status().ToString().c_str());
    std::exit(2);
  }
  *r = *x;
}

// Applies one of the shared flags (`a` with value `v`); false if `a` is not one of them.
//   --link-gbps X --link-efficiency X --link-latency-ms X --link-lanes N --stage-gbps X
//   --threshold N
//   --step-overhead-ms X --seq-overhead-ms X (every instance)
//   --p-max-batch-tokens N --p-max-seqs N --p-chunk N --p-kv-tokens N   (prefill instances)
//   --d-max-batch-tokens N --d-max-seqs N --d-chunk N --d-kv-tokens N   (decode instances)
inline bool ApplySharedFlag(const std::string& a, const std::string& v, LinkParams* link,
                            EngineParams* p, EngineParams* d, int* threshold) {
  const double x = std::atof(v.c_str());
  const int n = std::atoi(v.c_str());
  if (a == "--link-gbps") link->gbps = x;
  else if (a == "--link-efficiency") link->efficiency = x;
  else if (a == "--link-latency-ms") link->latency_ms = x;
  else if (a == "--stage-gbps") link->stage_gbps = x;
  else if (a == "--link-lanes") link->lanes = n;
  else if (a == "--step-overhead-ms") p->step_overhead_ms = d->step_overhead_ms = x;
  else if (a == "--seq-overhead-ms") p->seq_overhead_ms = d->seq_overhead_ms = x;
  else if (a == "--threshold") *threshold = n;
  else if (a == "--p-max-batch-tokens") p->max_batch_tokens = n;
  else if (a == "--p-max-seqs") p->max_seqs = n;
  else if (a == "--p-chunk") p->prefill_chunk_tokens = n;
  else if (a == "--p-kv-tokens") p->kv_pool_tokens = std::atoll(v.c_str());
  else if (a == "--d-max-batch-tokens") d->max_batch_tokens = n;
  else if (a == "--d-max-seqs") d->max_seqs = n;
  else if (a == "--d-chunk") d->prefill_chunk_tokens = n;
  else if (a == "--d-kv-tokens") d->kv_pool_tokens = std::atoll(v.c_str());
  else return false;
  return true;
}

constexpr char kSharedFlagsHelp[] = R"(Engines and link (defaults: configs/h100-1p1d.yaml's engines; 100 Gbit/s per GPU):
  --p-max-batch-tokens N --p-max-seqs N --p-chunk N --p-kv-tokens N   prefill instances
  --d-max-batch-tokens N --d-max-seqs N --d-chunk N --d-kv-tokens N   decode instances
                        (kv-tokens 0 = the profile's kv_pool_tokens)
  --link-gbps X         P->D link per GPU, Gbit/s                            [100]
  --link-efficiency X   fraction of the line rate transfers get              [1.0]
  --link-latency-ms X   per transfer                                         [0.05]
  --link-lanes N        concurrent transfers at --link-gbps each (a transport whose single
                        transfer is slower than the wire: aggregate N x gbps) [1]
  --stage-gbps X        host-mirror staging: D copies arrived KV host -> GPU at X Gbit/s
                        before admitting it (0 = KV lands in GPU memory)     [0]
  --step-overhead-ms X  host time per engine step on top of the profile     [0]
  --seq-overhead-ms X   ... plus this per sequence in the step              [0]
  --threshold N         router disagg_threshold_tokens                       [256]
)";

}  // namespace pd::planner
