// Prometheus metrics of pd-prefill / pd-decode (names in common/pd_metrics.h, reference in
// docs/metrics.md): the engine + KV cache group and the KV transfer group, served on the
// instance's `metrics_port`.
//
//   gauges and cumulative counters (queue depth, running batch, KV blocks, prefix-cache tokens,
//   transfer bytes, per-path cwnd / RTT) are copied from Engine::Stats(),
//   TransferEngine::Stats() and TransferEngine::PathSnapshot() at scrape time;
//   events (tokens per forward, finished sequences) come from the engine's observer;
//   each posted KV transfer's duration / failure is recorded by the prefill service through
//   ObserveTransfer() when it waits for the transfer.
#pragma once

#include <memory>

#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/pd_metrics.h"
#include "common/status.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::serving {

struct Daemon;

struct DaemonMetrics {
  metrics::Registry registry;
  metrics::EngineMetrics engine{};
  metrics::TransferMetrics transfer{};
  std::unique_ptr<metrics::MetricsServer> server;  // last: stopped before the registry goes
};

// Registers the metrics of `d` (engine and transfer engine must exist), sets the engine observer
// (before Engine::Start) and serves them on d->inst.host:d->inst.metrics_port when that is not 0.
// Stores the result in d->metrics. UNAVAILABLE if the port cannot be bound; a build without an
// HTTP server (stub pd_metrics_http) logs a warning and serves nothing.
Status StartDaemonMetrics(Daemon* d);

// Records one finished KV transfer (no-op without metrics): its duration when it completed, its
// failure reason when it failed or was still in progress at the caller's deadline (`timed_out`).
void ObserveTransfer(Daemon* d, const kvtransfer::TransferResult& r, bool timed_out);

}  // namespace pd::serving
