#include "serving/daemon_metrics.h"

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "common/logging.h"
#include "serving/daemon_util.h"

namespace pd::serving {

namespace m = pd::metrics;

namespace {

const char* FinishOutcome(Finish f, const Status& st) {
  if (f == Finish::kCancelled) return m::kOutcomeCancelled;
  if (f == Finish::kError) return m::OutcomeName(st.ok() ? StatusCode::kInternal : st.code());
  return m::kOutcomeOk;
}

using PathKeys = std::set<std::vector<std::string>>;

// Copies snapshot values into the gauges / mirrored counters (runs at the start of Render(),
// under the registry lock). `paths` holds the {peer, path} series set by the previous scrape: a
// path no longer connected reads NaN (Prometheus: no value) instead of its last window.
void Collect(Daemon* d, const m::EngineMetrics& em, const m::TransferMetrics& tm,
             PathKeys* paths) {
  const EngineStats s = d->engine->Stats();
  em.queue_depth->Get()->Set(s.waiting);
  em.running_seqs->Get()->Set(s.running);
  em.kv_blocks->WithLabels({m::kBlocksFree})->Set(s.blocks.free_blocks);
  em.kv_blocks->WithLabels({m::kBlocksUsed})->Set(s.blocks.in_use_blocks);
  em.kv_blocks->WithLabels({m::kBlocksCached})->Set(s.blocks.cached_blocks);
  em.prefix_hit_tokens->Get()->SetTotal(static_cast<double>(s.blocks.prefix_hit_tokens));
  em.prefix_query_tokens->Get()->SetTotal(static_cast<double>(s.blocks.prefix_query_tokens));
  const kvtransfer::EngineStats t = d->transfer->Stats();
  tm.bytes->WithLabels({m::kDirectionSent})->SetTotal(static_cast<double>(t.bytes_sent));
  tm.bytes->WithLabels({m::kDirectionReceived})->SetTotal(static_cast<double>(t.bytes_received));
  PathKeys now;
  for (const kvtransfer::PathStats& p : d->transfer->PathSnapshot()) {
    const std::vector<std::string> labels = {p.peer, std::to_string(p.path)};
    now.insert(labels);
    // CcAlgorithm::kNone reports an unbounded window: +Inf says so without a made-up number.
    tm.path_cwnd->WithLabels(labels)->Set(p.cwnd_bytes >= 1e17
                                              ? std::numeric_limits<double>::infinity()
                                              : p.cwnd_bytes);
    tm.path_rtt->WithLabels(labels)->Set(static_cast<double>(p.srtt_ns) / 1e9);
  }
  for (const std::vector<std::string>& gone : *paths) {
    if (now.count(gone)) continue;
    tm.path_cwnd->WithLabels(gone)->Set(std::numeric_limits<double>::quiet_NaN());
    tm.path_rtt->WithLabels(gone)->Set(std::numeric_limits<double>::quiet_NaN());
  }
  paths->insert(now.begin(), now.end());
}

}  // namespace

Status StartDaemonMetrics(Daemon* d) {
  auto dm = std::make_shared<DaemonMetrics>();
  auto em = m::RegisterEngineMetrics(&dm->registry);
  if (!em.ok()) return em.status();
  auto tm = m::RegisterTransferMetrics(&dm->registry);
  if (!tm.ok()) return tm.status();
  dm->engine = *em;
  dm->transfer = *tm;
  // Series that exist from the start (0 until the first event).
  for (const char* o : {m::kOutcomeOk, m::kOutcomeCancelled, m::kOutcomeInternal,
                        m::kOutcomeUnavailable, m::kOutcomeResourceExhausted}) {
    dm->engine.requests->WithLabels({o});
  }
  for (const char* r : {m::kTransferTimeout, m::kTransferPeerError, m::kTransferCancelled}) {
    dm->transfer.failures->WithLabels({r});
  }
  m::Histogram* batch = dm->engine.batch_tokens->Get();
  m::CounterFamily* requests = dm->engine.requests;
  EngineObserver obs;
  obs.on_forward = [batch](int tokens) { batch->Observe(tokens); };
  obs.on_finish = [requests](Finish f, const Status& st) {
    requests->WithLabels({FinishOutcome(f, st)})->Inc();
  };
  d->engine->set_observer(std::move(obs));
  const m::EngineMetrics e = dm->engine;
  const m::TransferMetrics t = dm->transfer;
  auto paths = std::make_shared<PathKeys>();  // only touched by the collector (registry lock)
  dm->registry.AddCollector([d, e, t, paths] { Collect(d, e, t, paths.get()); });
  if (d->inst.metrics_port != 0) {
    auto srv = m::StartMetricsServer(d->inst.host, d->inst.metrics_port, &dm->registry);
    if (srv.status().code() == StatusCode::kUnimplemented) {  // built without an HTTP server
      PD_LOG_WARN("{}.metrics_port {} ignored: {}", d->inst.name, d->inst.metrics_port,
                  srv.status().message());
    } else if (!srv.ok()) {
      return srv.status().WithContext(d->inst.name + ".metrics_port");
    } else {
      dm->server = std::move(srv).value();
    }
  }
  d->metrics = std::move(dm);
  return OkStatus();
}

void ObserveTransfer(Daemon* d, const kvtransfer::TransferResult& r, bool timed_out) {
  if (!d->metrics) return;
  const m::TransferMetrics& tm = d->metrics->transfer;
  if (r.state == kvtransfer::TransferState::kDone) {
    tm.seconds->Get()->Observe(r.stats.duration_us() / 1e6);
    return;
  }
  const char* reason = m::kTransferPeerError;
  if (timed_out || r.state == kvtransfer::TransferState::kInProgress ||
      r.status.code() == StatusCode::kDeadlineExceeded) {
    reason = m::kTransferTimeout;
  } else if (r.status.code() == StatusCode::kCancelled) {
    reason = m::kTransferCancelled;
  }
  tm.failures->WithLabels({reason})->Inc();
}

}  // namespace pd::serving
