// pd_metrics_http for builds without cpp-httplib (or with PD_STATIC_DEPS): no /metrics server.
#include "common/metrics_http.h"

namespace pd::metrics {

StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                            const Registry* registry) {
  (void)registry;
  return Unimplemented("metrics: this build has no HTTP server (cpp-httplib not found or "
                       "PD_STATIC_DEPS); cannot serve " + host + ":" + std::to_string(port));
}

}  // namespace pd::metrics
