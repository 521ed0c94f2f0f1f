// RouterObs: the router's Prometheus metrics (names in common/pd_metrics.h, reference in
// docs/metrics.md), with every child resolved once so the request path only does relaxed atomic
// updates. RouterImpl owns one (member `obs_`) and serves it on router.metrics_port.
//
// Who counts what (so that new router decisions count the same way):
//   Generate wrapper  : inflight, requests_total{outcome}, E2E and TPOT at the end (OK requests)
//   Emit              : TTFT at the first token sent to the client (every request that has one)
//   RunOnDecode       : one prefill_decisions_total{path} per placement on a decode instance;
//                       fallbacks{reason} when a disaggregated prompt ends up prefilled on D
//   RemotePrefill     : prefill_retries_total for each remote prefill attempt after the first
//   Generate's D loop : decode_retries_total for each attempt on another decode instance
// A request rejected by overload shedding sets Call::shed so its outcome is "shed".
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/deploy_config.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/pd_metrics.h"
#include "common/status.h"

namespace pd::router {

class InstancePool;

class RouterObs {
 public:
  using Clock = std::chrono::steady_clock;
  RouterObs();
  ~RouterObs();

  // pd_router_instance_up is read from the pools at scrape time (pools must outlive this).
  void WatchPools(const InstancePool* decode, const InstancePool* prefill);
  // Serves the registry on host:port (port 0 = not served). UNAVAILABLE if it cannot bind; in
  // builds without an HTTP server (stub pd_metrics_http) it logs a warning and serves nothing.
  Status Serve(const std::string& host, int port);
  // The bound port (0 when not serving).
  int port() const;
  void StopServing();

  // One finished client request. `st` is the status returned to the client; `shed` marks the
  // router's own overload rejection; `tokens` were streamed, the first at `first`, the last at
  // `last` (both unset when none).
  void RequestFinished(const Status& st, bool shed, Clock::time_point t0, Clock::time_point first,
                       Clock::time_point last, int tokens);
  void FirstToken(double ttft_seconds) { ttft_->Observe(ttft_seconds); }
  void PrefillDecision(bool disaggregated) { (disaggregated ? disagg_ : local_)->Inc(); }
  void PrefillRetry() { prefill_retries_->Inc(); }
  // reason: metrics::kFallbackRetriesExhausted | metrics::kFallbackNoHealthyPrefill.
  void PrefillFallback(const char* reason);
  void DecodeRetry() { decode_retries_->Inc(); }

  metrics::Gauge* inflight() { return inflight_; }
  metrics::Registry& registry() { return reg_; }
  const metrics::RouterMetrics& families() const { return m_; }

 private:
  metrics::Registry reg_;
  metrics::RouterMetrics m_{};
  metrics::Histogram *ttft_ = nullptr, *tpot_ = nullptr, *e2e_ = nullptr;
  metrics::Gauge* inflight_ = nullptr;
  metrics::Counter *disagg_ = nullptr, *local_ = nullptr;
  metrics::Counter *prefill_retries_ = nullptr, *decode_retries_ = nullptr;
  std::unique_ptr<metrics::MetricsServer> server_;
};

}  // namespace pd::router
