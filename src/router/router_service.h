// The router: public pdserve.v1.Inference service in front of the prefill and decode daemons.
// Per request: check and tokenize (request_prep.h), pick D (scorers), reserve on D, decide where
// the prefill runs (decider), run it on P (retry on another P, then fall back to D) or on D,
// stream D's tokens (and text) to the client. Stats polls keep health and load current.
// Client cancellation and deadlines propagate to D and P.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/deploy_config.h"
#include "common/status.h"
#include "router/instance_pool.h"
#include "router/request_prep.h"
#include "router/scheduler.h"

namespace grpc {
class Channel;
class Server;
}

namespace pd::router {

class RouterImpl;

class Router {
 public:
  explicit Router(DeployConfig cfg);
  ~Router();

  // Loads the served models (config.json, tokenizer.json), connects to every instance, starts
  // the health/stats pollers and the gRPC server on router.host:router.port.
  Status Start();
  // Blocks until Shutdown() (from another thread or a signal handler thread).
  void Wait();
  // Stops accepting requests, cancels in-flight ones, stops the pollers.
  void Shutdown();
  // After Start(): a channel to this router's own pdserve.v1.Inference that stays in the process
  // (no socket); the OpenAI HTTP API (src/router/http) calls Generate through it.
  std::shared_ptr<grpc::Channel> InProcessChannel();

 private:
  std::unique_ptr<RouterImpl> impl_;
};

}  // namespace pd::router
