// pd-router --config F: the public gRPC endpoint of a deployment (see router_service.h).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/deploy_config.h"
#include "common/api_keys.h"
#include "common/logging.h"
#include "router/http/openai_server.h"
#include "router/router_service.h"

namespace {

constexpr char kUsage[] = R"(usage: pd-router --config F.yaml [--port N] [--http-port N] [--log-level L]

Serves pdserve.v1.Inference on router.host:router.port of the deployment file and places each
request on the decode and prefill instances listed there. SIGINT/SIGTERM stop it.
  --port N        override router.port
  --http-port N   override router.http_port (OpenAI-compatible HTTP API; 0 = off)
  --log-level L   override router.log_level (trace|debug|info|warn|error|off)
)";

}  // namespace

int main(int argc, char** argv) {
  std::string config, log_level;
  int port = 0, http_port = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--config" && i + 1 < argc) {
      config = argv[++i];
    } else if (a == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (a == "--http-port" && i + 1 < argc) {
      http_port = std::atoi(argv[++i]);
    } else if (a == "--log-level" && i + 1 < argc) {
      log_level = argv[++i];
    } else {
      std::fprintf(stderr, "pd-router: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (config.empty()) {
    std::fprintf(stderr, "pd-router: --config is required\n%s", kUsage);
    return 2;
  }
  auto cfg = pd::LoadDeployConfig(config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "pd-router: %s\n", cfg.status().ToString().c_str());
    return 2;
  }
  if (port > 0) cfg->router.port = port;
  if (http_port >= 0) cfg->router.http_port = http_port;
  pd::SetLogRole("router");
  pd::SetLogLevel(log_level.empty() ? cfg->router.log_level : log_level);

  // Signals are handled by a dedicated thread (sigwait), so Shutdown runs in normal context.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  const pd::RouterConfig rc = cfg->router;
  auto http_models = pd::http::LoadHttpModels(*cfg);
  pd::router::Router router(std::move(cfg).value());
  if (pd::Status s = router.Start(); !s.ok()) {
    PD_LOG_ERROR("cannot start: {}", s.ToString());
    return 1;
  }
  std::unique_ptr<pd::http::OpenAiServer> http;
  if (rc.http_port != 0) {
    auto keys = pd::ApiKeySet::Load(rc.api_keys, rc.api_key_file);
    const pd::Status bad = !http_models.ok() ? http_models.status() : keys.status();
    if (!bad.ok()) {
      PD_LOG_ERROR("cannot start the HTTP API: {}", bad.ToString());
      router.Shutdown();
      return 1;
    }
    pd::http::OpenAiServerOptions o;
    o.host = rc.host;
    o.port = rc.http_port;
    o.api_keys = std::move(keys).value();  // the pre-routing Authorization: Bearer check
    o.retry_after_ms = rc.retry_after_ms;
    o.max_tokens_limit = rc.max_tokens_limit;
    http = std::make_unique<pd::http::OpenAiServer>(o, router.InProcessChannel(),
                                                    std::move(http_models).value());
    if (pd::Status s = http->Start(); !s.ok()) {
      PD_LOG_ERROR("cannot start the HTTP API: {}", s.ToString());
      router.Shutdown();
      return 1;
    }
  }
  std::thread sig([&] {
    int sig = 0;
    sigwait(&set, &sig);
    PD_LOG_INFO("signal {}: shutting down", sig);
    if (http) http->Stop();
    router.Shutdown();
  });
  router.Wait();
  sig.join();
  return 0;
}
