// A tiny HTTP server that serves one Registry at GET /metrics (Prometheus text format).
// Library pd_metrics_http (links cpp-httplib); the core (pd_common) does not depend on it.
//
//   auto srv = pd::metrics::StartMetricsServer("0.0.0.0", 9400, &registry);
//   if (!srv.ok()) ...;            // e.g. UNAVAILABLE: port in use
//   (*srv)->port();                // the bound port (useful with port 0)
//   srv->reset();                  // stops and joins the server thread
#pragma once

#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/status.h"

namespace pd::metrics {

class MetricsServer {
 public:
  virtual ~MetricsServer() = default;
  // The TCP port the server listens on.
  virtual int port() const = 0;
  // Stops accepting and joins the server thread (idempotent; the destructor calls it).
  virtual void Stop() = 0;
};

// Listens on host:port (port 0 = any free port) and serves `registry` (not owned; must outlive
// the server) at GET /metrics; GET /healthz answers "ok"; other paths 404. Returns UNAVAILABLE
// if the address cannot be bound, INVALID_ARGUMENT for a null registry or a port outside
// 0..65535.
StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                            const Registry* registry);

}  // namespace pd::metrics
