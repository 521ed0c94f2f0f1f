// The OpenAI-compatible HTTP API of pd-router (docs/http-api.md), served with cpp-httplib on
// router.host:router.http_port: POST /v1/completions, POST /v1/chat/completions (SSE when
// stream is true), GET /v1/models[/{id}]. Each request becomes one pdserve.v1.Inference Generate
// call on the router's own gRPC server through an in-process channel, so admission, routing,
// retries, metrics and cancellation are exactly those of gRPC clients; a client that
// disconnects mid-stream cancels that call (and so frees its KV on the instances).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/api_keys.h"
#include "common/deploy_config.h"
#include "common/status.h"

namespace grpc {
class Channel;
}

namespace pd {
class Tokenizer;
}

namespace pd::http {

class ChatTemplate;

// What the HTTP layer knows about a served model.
struct HttpModel {
  std::string name;
  std::shared_ptr<const Tokenizer> tokenizer;  // null: text prompts/chat are refused
  std::shared_ptr<const ChatTemplate> chat;    // null: plain fallback format
  std::string chat_note;                       // why `chat` is null ("" if it is set)
  int max_model_len = 0;
};

// One HttpModel per served model of the deployment (tokenizer.json and tokenizer_config.json of
// the first instance serving it).
StatusOr<std::vector<HttpModel>> LoadHttpModels(const DeployConfig& cfg);

struct OpenAiServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                 // 0: any free port (see OpenAiServer::port())
  ApiKeySet api_keys;           // pre-routing check of `Authorization: Bearer <key>`
  int retry_after_ms = 1000;    // Retry-After of a 429 when the router sent no hint
  int max_tokens_limit = 4096;  // router.max_tokens_limit (default max_tokens of chat)
  size_t max_body_bytes = 64 << 20;
  int threads = 64;  // concurrent HTTP requests (a stream holds one thread)
};

class OpenAiServer {
 public:
  // `router`: a channel to pdserve.v1.Inference (the router's in-process channel).
  OpenAiServer(OpenAiServerOptions opts, std::shared_ptr<grpc::Channel> router,
               std::vector<HttpModel> models);
  ~OpenAiServer();  // stops the server

  // Binds and starts serving on a background thread. UNAVAILABLE if the port cannot be bound;
  // UNIMPLEMENTED in builds without cpp-httplib.
  Status Start();
  // Stops accepting, closes connections and joins the server thread.
  void Stop();
  // The bound port (after Start()).
  int port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pd::http
