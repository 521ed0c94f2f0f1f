// DecodeService of pd-decode: Reserve (lease over the blocks the prefix cache lacks), Decode
// (waits for the remote prefill's KvReadyNotice, or prefills locally, then streams tokens from
// the engine), Cancel, Stats. KV arrives through the transfer engine; its notifications are
// read by a poller thread and matched to Decode calls by request id. A KvReadyNotice reaches
// GetNotifications() only after every byte of P's writes is in this daemon's KV arena - for a
// GPU arena registered directly, after the transport's host->device (tcp) or P's
// device->device (local, CUDA IPC) copy fence - so the blocks are admitted as they are.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "pdserve.grpc.pb.h"
#include "serving/daemon_util.h"

namespace pd::decode {

class DecodeServiceImpl final : public ::pdserve::v1::DecodeService::Service {
 public:
  explicit DecodeServiceImpl(serving::Daemon* d);
  ~DecodeServiceImpl() override;

  grpc::Status Reserve(grpc::ServerContext* ctx, const ::pdserve::v1::ReserveRequest* req,
                       ::pdserve::v1::ReserveResponse* resp) override;
  grpc::Status Decode(grpc::ServerContext* ctx, const ::pdserve::v1::DecodeRequest* req,
                      grpc::ServerWriter<::pdserve::v1::DecodeResponse>* w) override;
  grpc::Status Cancel(grpc::ServerContext* ctx, const ::pdserve::v1::CancelRequest* req,
                      ::pdserve::v1::CancelResponse* resp) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const ::pdserve::v1::StatsRequest* req,
                     ::pdserve::v1::StatsResponse* resp) override;

 private:
  struct Arrival {
    ::pdserve::v1::KvReadyNotice notice;
    std::chrono::steady_clock::time_point at;
  };
  void PollNotifications();
  // A received notice: frees a fenced lease, or files it for its Decode call when it is for the
  // request's live lease; a notice for any other (older) lease is dropped. Holds mu_.
  void RouteNotice(const ::pdserve::v1::KvReadyNotice& notice, const std::string& peer);
  // Once a second: drops staging lists and filed notices whose lease is no longer live (expired,
  // cancelled), releasing the fence of a lease whose writer already reported. Holds mu_.
  void SweepLocked();
  // Waits for the request's KvReadyNotice until `until` (or the call is cancelled).
  StatusOr<::pdserve::v1::KvReadyNotice> WaitForKv(grpc::ServerContext* ctx,
                                                   const std::string& id,
                                                   std::chrono::steady_clock::time_point until);
  grpc::Status Stream(grpc::ServerContext* ctx, const std::string& id,
                      std::shared_ptr<serving::OutputStream> out,
                      grpc::ServerWriter<::pdserve::v1::DecodeResponse>* w);

  serving::Daemon* d_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Arrival> arrived_;
  // GPU arenas staged through a host mirror (Daemon::kv_mirror, transport.gpu_kv: mirror): the
  // reserved blocks P writes into the mirror, copied to the GPU on arrival.
  struct Staging {
    LeaseId lease = 0;
    std::vector<int32_t> blocks;
  };
  std::map<std::string, Staging> to_stage_;
  std::chrono::steady_clock::time_point last_sweep_;
  int awaiting_ = 0;
  bool stop_ = false;
  std::thread poller_;
};

}  // namespace pd::decode
