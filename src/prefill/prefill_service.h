// PrefillService of pd-prefill: runs prompts through the shared Engine (several prompts per
// forward, chunked under the token budget, own prefix cache) and, from the engine's layer hook,
// WRITEs each layer's KV of every finished block into the decode instance's reserved blocks
// while the later layers compute. When the last chunk's forward is done and every posted write
// has completed, it posts a KvReadyNotice (delivered after the data) and answers the first token.
// GPU arenas: the hook runs after the runner has waited for layer L's K/V writes (an event on the
// compute stream, ModelRunner's on_layer_done contract), so the transfer engine's own copier
// stream may read the blocks at once (registered directly); with a host mirror
// (transport.gpu_kv: mirror) the layer's blocks are first copied GPU -> mirror.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pdserve.grpc.pb.h"
#include "serving/daemon_util.h"

namespace pd::prefill {

class PrefillServiceImpl final : public ::pdserve::v1::PrefillService::Service {
 public:
  explicit PrefillServiceImpl(serving::Daemon* d);

  grpc::Status Prefill(grpc::ServerContext* ctx, const ::pdserve::v1::PrefillRequest* req,
                       ::pdserve::v1::PrefillResponse* resp) override;
  grpc::Status Cancel(grpc::ServerContext* ctx, const ::pdserve::v1::CancelRequest* req,
                      ::pdserve::v1::CancelResponse* resp) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const ::pdserve::v1::StatsRequest* req,
                     ::pdserve::v1::StatsResponse* resp) override;

  // Engine layer hook (engine thread): posts this layer's new blocks of every chunk.
  void OnLayer(const std::vector<serving::ChunkInfo>& chunks, int layer);

 private:
  // One prefill's transfer state, shared by the handler and the layer hook.
  struct Xfer {
    ::pdserve::v1::TransferTarget target;
    kvtransfer::PeerId peer = 0;
    KvLayout remote_layout;
    int prompt_len = 0;
    bool first_chunk = true;   // P's prefix-cache blocks go with the first chunk
    std::vector<kvtransfer::TransferId> posted;
    int64_t bytes = 0;
    Status error;
    std::chrono::steady_clock::time_point until;  // the prefill's deadline: no write after it
    bool notice_sent = false;  // D got (or was sent) this attempt's final KvReadyNotice
  };
  // After a failed attempt stopped writing: tells D (best effort, short deadline) that this
  // lease's writer is done, so D frees its fenced blocks at once instead of at the fence time.
  void SendTombstone(const std::string& id, Xfer& x, const Status& why);
  // Validates the request and its target, resolves D's transfer peer into x.
  Status Check(const ::pdserve::v1::PrefillRequest& req, const std::vector<int32_t>& prompt,
               Xfer* x);
  StatusOr<kvtransfer::PeerId> Peer(const ::pdserve::v1::TransferTarget& t);
  // Waits for the request's writes, then posts the notice and waits for it.
  Status Finish(const std::string& id, int32_t first_token, std::chrono::steady_clock::time_point until,
                int64_t* bytes);
  // Cancels the request in the engine, fails its transfers, releases its blocks.
  void Abort(const std::string& id, const std::shared_ptr<serving::OutputStream>& out);

  serving::Daemon* d_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Xfer>> xfers_;
  std::map<std::string, kvtransfer::PeerId> peers_;  // metadata blob -> peer
  int inflight_ = 0;
};

}  // namespace pd::prefill
