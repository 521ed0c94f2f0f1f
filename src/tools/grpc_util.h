// A small client of the public pdserve.v1.Inference service (the router's API), shared by
// pd-client, pd-bench, pd-up (readiness) and the e2e tests. Only grpc_util.cc sees the proto.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd::client {

struct GenerateParams {
  std::string model;         // "" = the router's first model
  std::vector<int32_t> ids;  // prompt as token ids (used when text is empty)
  std::string text;          // prompt as text (needs a tokenizer.json on the server)
  int max_tokens = 16;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  int top_k = 0;
  uint64_t seed = 0;
  bool ignore_eos = false;  // benchmarks: always produce max_tokens tokens
  std::string request_id;   // "" = the router assigns one
};

// One streamed message.
struct StreamEvent {
  std::vector<int32_t> ids;  // new token ids
  std::string text;          // new text (empty without a tokenizer)
};

struct GenerateResult {
  Status status;              // gRPC status of the stream (code + message)
  std::vector<int32_t> ids;   // all generated ids
  std::string text;           // all generated text
  std::string finish_reason;  // "length", "stop", ... (from the last message)
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double server_ttft_ms = 0;           // TTFT as the router measured it (usage)
  double ttft_ms = 0;                  // client-side: send -> first token message
  double e2e_ms = 0;                   // client-side: send -> end of stream
  std::vector<double> token_times_ms;  // arrival time of every token (ms since send)
};

struct ModelInfo {
  std::string name;
  int vocab_size = 0;
  int max_model_len = 0;
  bool has_tokenizer = false;
};

struct HealthInfo {
  bool serving = false;                // router up and every instance healthy
  std::vector<std::string> instances;  // "decode-0 up ..." lines as the router reports them
  std::string message;
};

class Client {
 public:
  // addr = "host:port" of the router. The channel connects lazily. api_key: sent as
  // `authorization: Bearer <key>` on every call; "" = the PD_API_KEY environment variable
  // (unset or empty: no key is sent).
  explicit Client(const std::string& addr, const std::string& api_key = "");
  ~Client();

  // Runs one Generate stream; on_event (if set) is called for every message with tokens.
  // cancel (if set) is polled between messages: when it turns true the call is cancelled.
  // timeout_ms > 0 sets a deadline.
  GenerateResult Generate(const GenerateParams& p,
                          const std::function<void(const StreamEvent&)>& on_event = {},
                          int timeout_ms = 0, const std::atomic<bool>* cancel = nullptr);
  StatusOr<std::vector<ModelInfo>> ListModels(int timeout_ms = 5000);
  StatusOr<HealthInfo> Health(int timeout_ms = 1000);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True when the router at addr answers Health with serving = true; else *why says what is missing.
bool ProbeReady(const std::string& addr, int timeout_ms, std::string* why);

}  // namespace pd::client
