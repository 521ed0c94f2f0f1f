#include "router/router_metrics.h"

#include <cstdlib>

#include "common/logging.h"
#include "router/instance_pool.h"

namespace pd::router {

namespace m = pd::metrics;

RouterObs::RouterObs() {
  auto r = m::RegisterRouterMetrics(&reg_);
  if (!r.ok()) {  // fixed names into a fresh registry: only a programming error gets here
    PD_LOG_ERROR("router metrics: {}", r.status().ToString());
    std::abort();
  }
  m_ = *r;
  ttft_ = m_.ttft->Get();
  tpot_ = m_.tpot->Get();
  e2e_ = m_.e2e->Get();
  inflight_ = m_.inflight->Get();
  disagg_ = m_.prefill_decisions->WithLabels({m::kPrefillDisaggregated});
  local_ = m_.prefill_decisions->WithLabels({m::kPrefillLocal});
  prefill_retries_ = m_.prefill_retries->Get();
  decode_retries_ = m_.decode_retries->Get();
  // The usual label values render 0 from the start (dashboards and rate() need the series).
  for (const char* o : {m::kOutcomeOk, m::kOutcomeCancelled, m::kOutcomeInvalidArgument,
                        m::kOutcomeDeadlineExceeded, m::kOutcomeResourceExhausted,
                        m::kOutcomeUnavailable, m::kOutcomeInternal, m::kOutcomeShed}) {
    m_.requests->WithLabels({o});
  }
  for (const char* why : {m::kFallbackRetriesExhausted, m::kFallbackNoHealthyPrefill}) {
    m_.prefill_fallbacks->WithLabels({why});
  }
}

RouterObs::~RouterObs() { StopServing(); }

void RouterObs::WatchPools(const InstancePool* decode, const InstancePool* prefill) {
  std::vector<std::pair<const InstancePool*, m::Gauge*>> up;
  for (const auto& [pool, role] : {std::pair{decode, "decode"}, std::pair{prefill, "prefill"}}) {
    for (size_t i = 0; i < pool->size(); ++i) {
      up.emplace_back(pool, m_.instance_up->WithLabels({pool->config(static_cast<int>(i)).name,
                                                        role}));
    }
  }
  reg_.AddCollector([decode, prefill, up] {
    size_t k = 0;
    for (const InstancePool* pool : {decode, prefill}) {
      for (size_t i = 0; i < pool->size(); ++i, ++k) {
        up[k].second->Set(pool->healthy(static_cast<int>(i)) ? 1 : 0);
      }
    }
  });
}

Status RouterObs::Serve(const std::string& host, int port) {
  if (port == 0) return OkStatus();
  auto s = m::StartMetricsServer(host, port, &reg_);
  if (s.status().code() == StatusCode::kUnimplemented) {  // built without an HTTP server
    PD_LOG_WARN("router.metrics_port {} ignored: {}", port, s.status().message());
    return OkStatus();
  }
  if (!s.ok()) return s.status();
  server_ = std::move(s).value();
  return OkStatus();
}

int RouterObs::port() const { return server_ ? server_->port() : 0; }

void RouterObs::StopServing() {
  if (server_) server_->Stop();
}

void RouterObs::RequestFinished(const Status& st, bool shed, Clock::time_point t0,
                                Clock::time_point first, Clock::time_point last, int tokens) {
  const char* outcome = shed ? m::kOutcomeShed : m::OutcomeName(st.code());
  m_.requests->WithLabels({outcome})->Inc();
  if (!st.ok() || shed) return;
  const Clock::time_point end = tokens > 0 ? last : Clock::now();
  e2e_->Observe(std::chrono::duration<double>(end - t0).count());
  if (tokens >= 2) {
    tpot_->Observe(std::chrono::duration<double>(last - first).count() / (tokens - 1));
  }
}

void RouterObs::PrefillFallback(const char* reason) {
  m_.prefill_fallbacks->WithLabels({reason})->Inc();
}

}  // namespace pd::router
