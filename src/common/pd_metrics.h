// The standard pdserve metric names, in one place, so every daemon exposes the same names and
// dashboards work across deployments. Each daemon owns one metrics::Registry, registers the
// groups it has (router: Router; prefill/decode: Engine + Kv + Transfer) and serves it with
// metrics_http.h. Reference, label values and where each metric is wired: docs/metrics.md.
//
//   pd::metrics::Registry reg;
//   auto rm = pd::metrics::RegisterRouterMetrics(&reg);          // StatusOr<RouterMetrics>
//   pd::metrics::Counter* ok = rm->requests->WithLabels({pd::metrics::kOutcomeOk});
//
// Units are base units (seconds, bytes), as Prometheus conventions and promtool lint want.
#pragma once

#include <vector>

#include "common/metrics.h"
#include "common/status.h"

namespace pd::metrics {

// ---- names ----------------------------------------------------------------------------------
// Router (client-facing).
inline constexpr char kRouterRequests[] = "pd_router_requests_total";          // {outcome}
inline constexpr char kRouterTtft[] = "pd_router_ttft_seconds";                  // histogram
inline constexpr char kRouterTpot[] = "pd_router_tpot_seconds";                  // histogram
inline constexpr char kRouterE2e[] = "pd_router_e2e_latency_seconds";            // histogram
inline constexpr char kRouterInflight[] = "pd_router_inflight_requests";         // gauge
inline constexpr char kRouterPrefillDecisions[] = "pd_router_prefill_decisions_total";  // {path}
inline constexpr char kRouterPrefillRetries[] = "pd_router_prefill_retries_total";
inline constexpr char kRouterPrefillFallbacks[] = "pd_router_prefill_fallbacks_total";  // {reason}
inline constexpr char kRouterDecodeRetries[] = "pd_router_decode_retries_total";
inline constexpr char kRouterInstanceUp[] = "pd_router_instance_up";  // {instance, role} 0|1
// Serving engine of a prefill or decode daemon.
inline constexpr char kEngineRequests[] = "pd_engine_requests_total";            // {outcome}
inline constexpr char kEngineQueueDepth[] = "pd_engine_queue_depth";             // gauge
inline constexpr char kEngineRunningSeqs[] = "pd_engine_running_seqs";           // gauge
inline constexpr char kEngineBatchTokens[] = "pd_engine_batch_tokens";           // histogram
// KV cache pool of a daemon.
inline constexpr char kKvBlocks[] = "pd_kv_blocks";                              // {state}
inline constexpr char kPrefixCacheHitTokens[] = "pd_prefix_cache_hit_tokens_total";
inline constexpr char kPrefixCacheQueryTokens[] = "pd_prefix_cache_query_tokens_total";
// KV transfer engine of a daemon.
inline constexpr char kTransferBytes[] = "pd_kv_transfer_bytes_total";           // {direction}
inline constexpr char kTransferSeconds[] = "pd_kv_transfer_seconds";             // histogram
inline constexpr char kTransferFailures[] = "pd_kv_transfer_failures_total";     // {reason}
inline constexpr char kPathCwnd[] = "pd_kv_transfer_path_cwnd_bytes";            // {peer, path}
inline constexpr char kPathRtt[] = "pd_kv_transfer_path_rtt_seconds";            // {peer, path}

// ---- label values -----------------------------------------------------------------------------
// outcome: the final status of a request, lower-case gRPC code names.
inline constexpr char kOutcomeOk[] = "ok";
inline constexpr char kOutcomeCancelled[] = "cancelled";
inline constexpr char kOutcomeInvalidArgument[] = "invalid_argument";
inline constexpr char kOutcomeDeadlineExceeded[] = "deadline_exceeded";
inline constexpr char kOutcomeResourceExhausted[] = "resource_exhausted";
inline constexpr char kOutcomeUnavailable[] = "unavailable";
inline constexpr char kOutcomeInternal[] = "internal";
// Shed by the router: RESOURCE_EXHAUSTED with a retry-after hint, either by its own admission
// limit (router.max_inflight_requests) or because every decode instance refused the request
// (queue or KV pool full) before any token was streamed.
inline constexpr char kOutcomeShed[] = "shed";
// The outcome label of any status code: the lower-case gRPC code name ("ok", "cancelled",
// "failed_precondition", "unauthenticated", ...). Every request counter uses these values.
inline const char* OutcomeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return kOutcomeOk;
    case StatusCode::kCancelled: return kOutcomeCancelled;
    case StatusCode::kInvalidArgument: return kOutcomeInvalidArgument;
    case StatusCode::kDeadlineExceeded: return kOutcomeDeadlineExceeded;
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kAlreadyExists: return "already_exists";
    case StatusCode::kPermissionDenied: return "permission_denied";
    case StatusCode::kResourceExhausted: return kOutcomeResourceExhausted;
    case StatusCode::kFailedPrecondition: return "failed_precondition";
    case StatusCode::kAborted: return "aborted";
    case StatusCode::kOutOfRange: return "out_of_range";
    case StatusCode::kUnimplemented: return "unimplemented";
    case StatusCode::kInternal: return kOutcomeInternal;
    case StatusCode::kUnavailable: return kOutcomeUnavailable;
    case StatusCode::kDataLoss: return "data_loss";
    case StatusCode::kUnauthenticated: return "unauthenticated";
  }
  return "unknown";
}
// path of pd_router_prefill_decisions_total.
inline constexpr char kPrefillDisaggregated[] = "disaggregated";  // prompt sent to a P instance
inline constexpr char kPrefillLocal[] = "local";                  // D prefills it itself
// reason of pd_router_prefill_fallbacks_total.
inline constexpr char kFallbackRetriesExhausted[] = "retries_exhausted";
inline constexpr char kFallbackNoHealthyPrefill[] = "no_healthy_prefill";
// state of pd_kv_blocks (free + used + cached == total).
inline constexpr char kBlocksFree[] = "free";
inline constexpr char kBlocksUsed[] = "used";
inline constexpr char kBlocksCached[] = "cached";
// direction of pd_kv_transfer_bytes_total.
inline constexpr char kDirectionSent[] = "sent";
inline constexpr char kDirectionReceived[] = "received";
// reason of pd_kv_transfer_failures_total.
inline constexpr char kTransferTimeout[] = "timeout";
inline constexpr char kTransferPeerError[] = "peer_error";
inline constexpr char kTransferCancelled[] = "cancelled";

// ---- bucket layouts -----------------------------------------------------------------------------
// 5 ms .. ~82 s (15 buckets, x2): TTFT and end-to-end latency.
inline std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.005, 2, 15); }
// 1 ms .. ~1 s (11 buckets, x2): time per output token.
inline std::vector<double> TokenBuckets() { return ExponentialBuckets(0.001, 2, 11); }
// 100 us .. ~26 s (19 buckets, x2): one KV transfer.
inline std::vector<double> TransferBuckets() { return ExponentialBuckets(0.0001, 2, 19); }
// 1 .. 32768 tokens (16 buckets, x2): tokens in one forward.
inline std::vector<double> BatchTokenBuckets() { return ExponentialBuckets(1, 2, 16); }

// ---- groups -------------------------------------------------------------------------------------
struct RouterMetrics {
  CounterFamily* requests;           // {outcome}
  HistogramFamily* ttft;             // request arrival -> first token sent to the client
  HistogramFamily* tpot;             // (last token - first token) / (tokens - 1), per request
  HistogramFamily* e2e;              // request arrival -> last token
  GaugeFamily* inflight;             // requests currently being served
  CounterFamily* prefill_decisions;  // {path}: disaggregated | local
  CounterFamily* prefill_retries;    // remote prefills retried on another P
  CounterFamily* prefill_fallbacks;  // {reason}: D prefilled after P failed / was unavailable
  GaugeFamily* instance_up;          // {instance, role}: 1 healthy, 0 down (health polls)
  CounterFamily* decode_retries;     // requests re-placed on another D before any token streamed
};

struct EngineMetrics {
  CounterFamily* requests;        // {outcome}
  GaugeFamily* queue_depth;       // sequences waiting for admission
  GaugeFamily* running_seqs;      // sequences in the running batch
  HistogramFamily* batch_tokens;  // tokens (prefill chunks + decode tokens) per forward
  GaugeFamily* kv_blocks;         // {state}: free | used | cached
  CounterFamily* prefix_hit_tokens;    // prompt tokens served from the prefix cache
  CounterFamily* prefix_query_tokens;  // prompt tokens looked up in the prefix cache
};

struct TransferMetrics {
  CounterFamily* bytes;       // {direction}: sent | received
  HistogramFamily* seconds;   // one posted transfer: Post -> completion
  CounterFamily* failures;    // {reason}: timeout | peer_error | cancelled
  GaugeFamily* path_cwnd;     // {peer, path}: congestion window in bytes
  GaugeFamily* path_rtt;      // {peer, path}: smoothed RTT in seconds
};

// Registers the router group. INVALID_ARGUMENT if any name is already registered in `r`.
inline StatusOr<RouterMetrics> RegisterRouterMetrics(Registry* r) {
  RouterMetrics m{};
  PD_ASSIGN_OR_RETURN(m.requests, r->AddCounter(kRouterRequests,
                                                "Client requests finished, by outcome.",
                                                {"outcome"}));
  PD_ASSIGN_OR_RETURN(m.ttft, r->AddHistogram(kRouterTtft, "Time to first token in seconds.",
                                              LatencyBuckets()));
  PD_ASSIGN_OR_RETURN(m.tpot, r->AddHistogram(kRouterTpot,
                                              "Time per output token after the first, seconds.",
                                              TokenBuckets()));
  PD_ASSIGN_OR_RETURN(m.e2e, r->AddHistogram(kRouterE2e, "End-to-end request latency, seconds.",
                                             LatencyBuckets()));
  PD_ASSIGN_OR_RETURN(m.inflight, r->AddGauge(kRouterInflight, "Requests being served."));
  PD_ASSIGN_OR_RETURN(m.prefill_decisions,
                      r->AddCounter(kRouterPrefillDecisions,
                                    "Prefill placements: disaggregated (on a P instance) or "
                                    "local (the decode instance prefills).",
                                    {"path"}));
  PD_ASSIGN_OR_RETURN(m.prefill_retries,
                      r->AddCounter(kRouterPrefillRetries,
                                    "Remote prefills retried on another prefill instance."));
  PD_ASSIGN_OR_RETURN(m.prefill_fallbacks,
                      r->AddCounter(kRouterPrefillFallbacks,
                                    "Requests whose prompt fell back to prefill on decode.",
                                    {"reason"}));
  PD_ASSIGN_OR_RETURN(m.instance_up, r->AddGauge(kRouterInstanceUp,
                                                 "1 if the instance's last health poll passed.",
                                                 {"instance", "role"}));
  PD_ASSIGN_OR_RETURN(m.decode_retries,
                      r->AddCounter(kRouterDecodeRetries,
                                    "Requests re-placed on another decode instance after a "
                                    "failure before any token was streamed."));
  return m;
}

// Registers the engine + KV cache group of a prefill or decode daemon.
inline StatusOr<EngineMetrics> RegisterEngineMetrics(Registry* r) {
  EngineMetrics m{};
  PD_ASSIGN_OR_RETURN(m.requests, r->AddCounter(kEngineRequests,
                                                "Sequences finished by this engine, by outcome.",
                                                {"outcome"}));
  PD_ASSIGN_OR_RETURN(m.queue_depth,
                      r->AddGauge(kEngineQueueDepth, "Sequences waiting for admission."));
  PD_ASSIGN_OR_RETURN(m.running_seqs,
                      r->AddGauge(kEngineRunningSeqs, "Sequences in the running batch."));
  PD_ASSIGN_OR_RETURN(m.batch_tokens, r->AddHistogram(kEngineBatchTokens,
                                                      "Tokens processed per forward.",
                                                      BatchTokenBuckets()));
  PD_ASSIGN_OR_RETURN(m.kv_blocks, r->AddGauge(kKvBlocks, "KV cache blocks by state.",
                                               {"state"}));
  PD_ASSIGN_OR_RETURN(m.prefix_hit_tokens,
                      r->AddCounter(kPrefixCacheHitTokens,
                                    "Prompt tokens whose KV was reused from the prefix cache."));
  PD_ASSIGN_OR_RETURN(m.prefix_query_tokens,
                      r->AddCounter(kPrefixCacheQueryTokens,
                                    "Prompt tokens looked up in the prefix cache."));
  return m;
}

// Registers the KV transfer group of a prefill or decode daemon.
inline StatusOr<TransferMetrics> RegisterTransferMetrics(Registry* r) {
  TransferMetrics m{};
  PD_ASSIGN_OR_RETURN(m.bytes, r->AddCounter(kTransferBytes, "KV bytes moved, by direction.",
                                             {"direction"}));
  PD_ASSIGN_OR_RETURN(m.seconds, r->AddHistogram(kTransferSeconds,
                                                 "Duration of one KV transfer, seconds.",
                                                 TransferBuckets()));
  PD_ASSIGN_OR_RETURN(m.failures, r->AddCounter(kTransferFailures,
                                                "Failed KV transfers, by reason.", {"reason"}));
  PD_ASSIGN_OR_RETURN(m.path_cwnd, r->AddGauge(kPathCwnd,
                                               "Congestion window of one path, bytes.",
                                               {"peer", "path"}));
  PD_ASSIGN_OR_RETURN(m.path_rtt, r->AddGauge(kPathRtt, "Smoothed RTT of one path, seconds.",
                                              {"peer", "path"}));
  return m;
}

}  // namespace pd::metrics
