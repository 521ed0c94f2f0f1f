// Discrete-event simulator of a pdserve deployment (x prefill + y decode instances, or y
// colocated instances), driven by phase profiles (planner/profile.h).
//
// What it models, after the real code paths (docs/planning.md has the details and the gaps):
// * Router: pd::router::InstancePool + Picker (the router's own scoring code) over loads that it
//   refreshes every poll_interval_ms like the router's Stats poller, plus its in-flight counts;
//   pd::router::DecidePrefill (conditional disaggregation) with the deployment's threshold.
// * Every instance runs the Engine's step policy (src/serving/engine.h): one token per decoding
//   sequence, then prompt chunks (<= prefill_chunk_tokens) of running prefills, then FIFO
//   admissions, within max_batch_tokens / max_seqs; admission waits for KV blocks; a decoding
//   sequence that cannot grow preempts the most recently admitted one (recomputed later).
//   Step time = CostModel::StepMs of the batch.
// * Remote prefill: D reserves the prompt's blocks first (FIFO when the pool is full), P prefills
//   (max_tokens = 1), its KV moves layer-wise over P's egress and D's ingress link (FIFO each
//   over LinkParams::lanes concurrent transfers, bandwidth x efficiency each, + latency); P keeps the prompt's blocks until its KV is delivered
//   (hold_blocks, Release after the notice); with a host mirror (stage_gbps > 0) D copies the
//   prompt's KV host -> GPU (FIFO per instance) before it submits the sequence; D's engine
//   admits it at its next schedule (after the step in flight) and emits the first token then.
// * Instances sharing one GPU (shared_gpu) time-slice it (processor sharing): while k of them
//   run a step, each progresses at 1 / (1 + share_penalty * (k - 1)) of its solo speed.
// Deterministic: same inputs -> identical outputs (no clocks, no threads, ordered event ties).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/deploy_config.h"
#include "planner/profile.h"
#include "tools/bench_workload.h"

namespace pd::planner {

struct EngineParams {
  int max_batch_tokens = 8192;
  int max_seqs = 256;
  int prefill_chunk_tokens = 8192;
  int block_size = 16;
  int64_t kv_pool_tokens = 0;  // 0: the profile's kv_pool_tokens
  // Host time of every engine step on top of the profile's forward time (scheduling, sampling,
  // streaming: the profile times bare forwards).
  double step_overhead_ms = 0;
  double seq_overhead_ms = 0;  // ... plus this per sequence in the step (sampling, streaming)
};

struct LinkParams {
  double gbps = 100;        // per GPU, each direction (an instance of tp GPUs has tp x this)
  double efficiency = 1.0;  // fraction of line rate a transfer gets (congestion, protocol)
  double latency_ms = 0.05;
  // Host staging of GPU KV (the daemons' host mirror when the transport cannot reach GPU memory):
  // D copies each arrived prompt's KV host -> GPU at this rate, Gbit/s, before admitting it
  // (P's GPU -> host copies run layer by layer inside the forward and are not charged).
  // 0 = no staging (KV lands in GPU memory directly).
  double stage_gbps = 0;
  // Concurrent transfers the link carries at `gbps` each (FIFO over `lanes` servers): 1 = one
  // transfer at a time at the full rate; N > 1 models a transport whose single transfer is
  // limited by its own pipeline (staging copies, one engine thread) below what the wire carries
  // in aggregate (N x gbps), e.g. loopback TCP with several transfers in flight.
  int lanes = 1;
};

struct Deployment {
  int num_prefill = 1;  // 0 = colocated: decode instances prefill every prompt themselves
  int num_decode = 1;
  Profile prefill_profile, decode_profile;
  EngineParams prefill{16384, 16, 8192, 16, 0};
  EngineParams decode{4096, 256, 1024, 16, 0};
  LinkParams link;
  int disagg_threshold_tokens = 256;
  ScorerWeights scorers;
  double poll_interval_ms = 500;
  double rpc_ms = 1.0;       // the router's extra hop of a remote prefill (P answers, then D)
  bool shared_gpu = false;   // every instance on one GPU (the calibration setup)
  double share_penalty = 1.0;  // 1: fair time-slicing (k busy -> each at 1/k speed)
  double chunk_factor = 1.0;   // CostModel's factor on chunks after a cached prefix

  int gpus() const {
    return num_prefill * prefill_profile.tp + num_decode * decode_profile.tp;
  }
};

struct SimRequest {
  double arrival_s = 0;
  int input = 0, output = 0;
};

struct WorkloadSpec {
  bench::LengthRange input{1024, 1024}, output{1024, 1024};
  double rate = 1;  // Poisson requests/s; inf = all at once
  int num_requests = 200;
  uint64_t seed = 0;
};

// Requests with pd-bench's arrival process (bench::PoissonArrivals) and length sampling.
std::vector<SimRequest> MakeRequests(const WorkloadSpec& w);

struct RequestOutcome {
  bool ok = false;
  std::string reject_reason;  // set when !ok
  bool remote_prefill = false;
  int input = 0, output = 0, preemptions = 0;
  double ttft_ms = 0, e2e_ms = 0;
};

struct SimResult {
  std::vector<RequestOutcome> requests;  // in request order
  bench::Report report;                  // pd-bench's report over requests [warmup, n)
  double kv_bytes = 0;                   // KV moved P -> D
  double kv_gbps = 0;                    // kv_bytes / report duration, Gbit/s
  double max_link_util = 0;              // busiest link's busy time / duration
  int64_t steps = 0;
  // Text of every outcome with full precision (determinism tests compare it).
  std::string Digest() const;
};

struct SimOptions {
  int warmup = 0;  // leading requests left out of the report (as pd-bench --warmup)
  double slo_ttft_ms = 0, slo_tpot_ms = 0;
};

// Runs the deployment on the requests (arrival-sorted). Never fails: impossible requests are
// rejected with a reason in their outcome.
SimResult Simulate(const Deployment& d, const std::vector<SimRequest>& reqs, const SimOptions& o);

}  // namespace pd::planner
