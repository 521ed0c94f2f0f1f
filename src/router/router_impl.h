// Internal: the router's gRPC service class, shared by router_service.cc (startup, polling,
// Health, ListModels) and router_generate.cc (the Generate flow). Not a public header.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/api_keys.h"
#include "common/grpc_tls.h"
#include "pdserve.grpc.pb.h"
#include "router/instance_pool.h"
#include "router/request_prep.h"
#include "router/router_metrics.h"
#include "router/scheduler.h"

namespace pd::router {

namespace v1 = ::pdserve::v1;
using Clock = std::chrono::steady_clock;
using SysClock = std::chrono::system_clock;

// Helpers shared by router_service.cc and router_generate.cc.

inline grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

inline Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return OkStatus();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

// Errors that say "this instance is gone", as opposed to "this request is bad".
inline bool InstanceFailure(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded ||
         s.code() == StatusCode::kInternal || s.code() == StatusCode::kAborted ||
         s.code() == StatusCode::kDataLoss;
}

// Channel to a daemon: mTLS with router.internal_tls when the instance has `tls`, else plaintext.
inline StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const InstanceConfig& inst,
                                                          const TlsConfig& client_tls) {
  grpc::ChannelArguments args;
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (inst.tls.enabled()) {
    PD_ASSIGN_OR_RETURN(creds,
                        InternalChannelCredentials(client_tls, "router.internal_tls", &args));
  }
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // Recovered instances must be noticed quickly: short reconnect backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(inst.Address(), creds, args);
}

// The `authorization` metadata of a call ("" when absent).
inline std::string_view AuthorizationOf(const grpc::ServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  return it == md.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
}

// A live request's downstream calls, so that a client cancel or a shutdown reaches them.
class CallSet {
 public:
  void Add(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> l(mu_);
    if (cancelled_) c->TryCancel();
    ctxs_.push_back(c);
  }
  void Remove(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> l(mu_);
    std::erase(ctxs_, c);
  }
  void CancelAll() {
    std::lock_guard<std::mutex> l(mu_);
    cancelled_ = true;
    for (auto* c : ctxs_) c->TryCancel();
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> l(mu_);
    return cancelled_;
  }

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::vector<grpc::ClientContext*> ctxs_;
};

class RouterImpl final : public v1::Inference::Service {
 public:
  explicit RouterImpl(DeployConfig cfg)
      : cfg_(std::move(cfg)),
        decode_(cfg_.decode, cfg_.router.prefix_history_blocks),
        prefill_(cfg_.prefill, cfg_.router.prefix_history_blocks),
        pick_d_(cfg_.router.scorers),
        pick_p_(cfg_.router.scorers) {}

  Status Start();
  void Wait() { server_->Wait(); }
  std::shared_ptr<grpc::Channel> InProcessChannel() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    return server_->InProcessChannel(args);
  }
  void Shutdown();

  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* w) override;
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* resp) override;
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                          v1::ListModelsResponse* resp) override;

 private:
  // What one request carries through its attempts.
  struct Call {
    grpc::ServerContext* ctx;
    const v1::GenerateRequest* req;
    grpc::ServerWriter<v1::GenerateResponse>* w;
    PreparedRequest prep;
    std::string id;
    Clock::time_point t0;
    SysClock::time_point deadline;
    CallSet calls;
    std::unique_ptr<IncrementalDecoder> detok;
    int streamed = 0;  // tokens already sent to the client
    double ttft_ms = 0;
    int cached_tokens = 0;
    bool client_gone = false;
    // Metrics (router_metrics.h): first/last token sent, remote prefill attempts, shed.
    Clock::time_point t_first, t_last;
    int prefill_attempts = 0;  // P instances asked (0: none was healthy)
    bool shed = false;         // set when the router's overload shedding rejects the request
    // The decode stream in progress (watched for router.decode_idle_timeout_ms).
    std::mutex stream_mu;
    grpc::ClientContext* stream_ctx = nullptr;  // GUARDED_BY(stream_mu)
    bool stream_idle = false;                   // GUARDED_BY(stream_mu): cancelled as idle
    std::atomic<int64_t> stream_progress{0};    // steady-clock ticks of the last message
  };

  // API key check of a public RPC (router.api_keys): OK or UNAUTHENTICATED.
  grpc::Status Authorize(const grpc::ServerContext* ctx) const {
    return ToGrpc(CheckApiKey(api_keys_, AuthorizationOf(ctx)));
  }
  grpc::Status RunGenerate(Call& c);
  void PollLoop(InstancePool* pool, int i, bool is_decode);
  // Health service status of "pdserve.v1.Inference": SERVING iff a decode instance is healthy.
  void UpdateHealth();
  Status RunOnDecode(Call& c, int d);
  StatusOr<v1::ReserveResponse> ReserveOn(Call& c, int d);
  // Remote prefill with retries, each retry on another P with a new lease from D (replacing
  // *reserved); returns the first token or the last error.
  StatusOr<int32_t> RemotePrefill(Call& c, int d, v1::ReserveResponse* reserved);
  // RESOURCE_EXHAUSTED with the retry hint: trailing metadata `retry-after-ms` and the message.
  grpc::Status Overloaded(grpc::ServerContext* ctx, const std::string& why);
  // Cancels the decode stream of `c` if it has been silent past router.decode_idle_timeout_ms.
  void WatchIdle(Call& c);
  Status StreamDecode(Call& c, int d, const v1::DecodeRequest& dreq);
  // Sends tokens (and their text) to the client; false if the client is gone.
  bool Emit(Call& c, const std::vector<int32_t>& ids, int finish_reason, bool last);
  void CancelOn(int d, int p, const std::string& id);
  void SetDeadline(grpc::ClientContext* ctx, const Call& c, int timeout_ms) const;
  std::string NewRequestId();

  DeployConfig cfg_;
  InstancePool decode_, prefill_;
  Picker pick_d_, pick_p_;
  std::vector<ServedModel> models_;
  std::vector<std::unique_ptr<v1::DecodeService::Stub>> d_stubs_;
  std::vector<std::unique_ptr<v1::PrefillService::Stub>> p_stubs_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::thread> pollers_;
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int> admitted_{0};  // Generate calls admitted and not finished
  uint64_t id_salt_ = std::random_device{}();
  RouterObs obs_;  // Prometheus metrics, served on router.metrics_port
  ApiKeySet api_keys_;  // router.api_keys + router.api_key_file; disabled when none
};

}  // namespace pd::router
