// TCP transport internals shared by tcp_transport.cc (setup, loop, send) and
// tcp_transport_rx.cc (receive, bookkeeping, timers). Private to src/kvtransfer.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvtransfer/congestion.h"
#include "kvtransfer/device_copier.h"
#include "kvtransfer/path_selector.h"
#include "kvtransfer/transport.h"

namespace pd::kvtransfer::tcp {

using wire::FrameHeader;
using wire::FrameType;
using wire::WireSeg;

inline constexpr size_t kStageDepth = 2;  // staged frames queued per path beyond the one sending

inline int64_t NowNs() { return SteadyClock::Get().NowNs(); }
inline std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Fixed-size pinned bounce buffers (GPU arenas over tcp). Memory is the transport's.
struct BouncePool {
  uint8_t* base = nullptr;
  size_t slot_bytes = 0;
  std::vector<int> free_slots;
  bool empty() const { return free_slots.empty(); }
};

// One taken slot; returns itself to its pool when destroyed (move-only). A slot may be reused
// while a copy into it is still queued: copies run in order on one stream, so the later copy
// lands after the earlier one.
class SlotRef {
 public:
  SlotRef() = default;
  static SlotRef Take(BouncePool& p) {
    SlotRef r;
    if (p.free_slots.empty()) return r;
    r.pool_ = &p;
    r.idx_ = p.free_slots.back();
    p.free_slots.pop_back();
    return r;
  }
  SlotRef(SlotRef&& o) noexcept : pool_(o.pool_), idx_(o.idx_) { o.pool_ = nullptr; }
  SlotRef& operator=(SlotRef&& o) noexcept {
    if (this != &o) {
      Reset();
      pool_ = o.pool_;
      idx_ = o.idx_;
      o.pool_ = nullptr;
    }
    return *this;
  }
  ~SlotRef() { Reset(); }
  bool valid() const { return pool_ != nullptr; }
  uint8_t* data() const { return pool_->base + static_cast<size_t>(idx_) * pool_->slot_bytes; }
  void Reset() {
    if (pool_) pool_->free_slots.push_back(idx_);
    pool_ = nullptr;
  }

 private:
  BouncePool* pool_ = nullptr;
  int idx_ = -1;
};

struct OutFrame {
  std::vector<char> head;      // header + segment table
  std::vector<iovec> payload;  // registered memory (data) or `owned`
  std::string owned;
  uint64_t chunk_id = 0;       // != 0: a chunk whose ts is stamped at its first byte
  std::vector<iovec> iov;      // built lazily: head + payload, consumed as it is written
  size_t iov_pos = 0;
  bool started = false;
  // Staged payload (GPU source): not sent before copy fence `fence` completed. The bytes are in
  // `slot` (a pinned bounce buffer) or `staged` (heap; READ_DATA served from a GPU arena).
  uint64_t fence = 0;
  SlotRef slot;
  std::unique_ptr<uint8_t[]> staged;
};

// A received chunk whose host->device copy is in flight; acknowledged when `fence` completes.
struct PendingRx {
  uint64_t fence = 0;
  int fd = -1;
  uint64_t serial = 0;  // of the connection (fds are reused)
  FrameHeader hdr{};
  SlotRef slot;
  std::unique_ptr<uint8_t[]> heap;
};

struct ChunkRec {
  TransferId xfer = 0;
  uint64_t bytes = 0;
  int64_t sent_ns = 0;
};

enum class ConnState { kConnecting, kHelloSent, kReady, kAccepted };
enum class RxState { kHeader, kSegs, kPayload };

struct Conn {
  int fd = -1;
  uint64_t serial = 0;
  ConnState state = ConnState::kConnecting;
  bool outgoing = false;
  PeerId peer = 0;
  int path = -1;
  std::string remote_name;  // set once the peer passed HELLO (and authentication)
  // Handshake authentication (auth.h): our nonce, the peer's, the name awaiting proof.
  std::string auth_nonce, auth_peer_nonce, auth_pending_name;
  bool auth_ok = false;  // initiator: the responder proved the secret
  // send side
  std::deque<OutFrame> ctrl_q, data_q;
  std::optional<OutFrame> cur;
  bool cur_is_data = false;
  bool want_out = false;
  // receive side
  RxState rx = RxState::kHeader;
  FrameHeader hdr{};
  size_t got = 0;
  std::vector<WireSeg> segs;
  std::vector<iovec> rx_iov;
  size_t rx_iov_pos = 0;
  std::string rx_owned;
  bool rx_staged = false;  // payload lands in rx_slot / rx_heap, then goes host->device
  SlotRef rx_slot;
  std::unique_ptr<uint8_t[]> rx_heap;
  // path state
  std::unique_ptr<CongestionControl> cc;
  uint64_t inflight = 0;
  std::unordered_map<uint64_t, ChunkRec> chunks;
  int64_t last_progress_ns = 0;
  int64_t started_ns = 0;
};

struct Xfer {
  TransferWork w;
  size_t seg_idx = 0;
  uint64_t seg_off = 0;
  uint64_t emitted = 0, acked = 0;
  uint32_t chunks = 0;
  bool notify_sent = false, notify_acked = false;
  bool stage = false;  // WRITE from a GPU arena: chunks go through tx bounce slots
  bool Expired(int64_t now_ns) const { return w.deadline_ns > 0 && now_ns >= w.deadline_ns; }
};

struct Peer {
  AgentMetadata md;
  std::vector<Conn*> paths;
  std::deque<TransferId> queue;  // transfers with chunks still to emit, FIFO
  std::unique_ptr<PathSelector> selector;
};

// Advances a consumed iovec array by n bytes.
inline void Consume(std::vector<iovec>& iov, size_t& pos, size_t n) {
  while (n > 0 && pos < iov.size()) {
    const size_t k = std::min(n, iov[pos].iov_len);
    iov[pos].iov_base = static_cast<char*>(iov[pos].iov_base) + k;
    iov[pos].iov_len -= k;
    n -= k;
    if (iov[pos].iov_len == 0) ++pos;
  }
  while (pos < iov.size() && iov[pos].iov_len == 0) ++pos;
}

class TcpTransport final : public Transport {
 public:
  TcpTransport(const EngineOptions& o, uint64_t incarnation, TransportHost* host)
      : opt_(o), incarnation_(incarnation), host_(host) {}
  ~TcpTransport() override { Stop(); }

  Status Start(const std::vector<wire::Region>& regions) override;
  std::vector<std::string> Addresses() const override;
  void SetPeer(PeerId id, const AgentMetadata& md) override;
  void RemovePeer(PeerId id) override;
  Status Connect(PeerId id, int64_t deadline_ns) override;
  void Submit(TransferWork work) override;
  void Cancel(TransferId id, const Status& why) override;
  size_t ConnectedPaths() const override;
  size_t PendingTransfers() const override;
  std::vector<PathStats> Paths() const override;
  void Stop() override;

 private:
  void Loop();
  void Wake();
  void AcceptAll();
  void HandleEvent(Conn* c, uint32_t events);
  // connections
  Status StartConnect(Peer& p, PeerId id, int path);
  void EnsureConnected(Peer& p, PeerId id);
  void SetSockOpts(int fd);
  void CloseConn(Conn* c);
  void ConnFailed(Conn* c, const Status& why);
  void FailPeer(PeerId id, const Status& why);
  void UpdateInterest(Conn* c);
  // send
  void QueueCtrl(Conn* c, FrameHeader h, std::vector<WireSeg> segs, std::string owned,
                 std::vector<iovec> payload = {});
  void Flush(Conn* c);
  bool DropIfTransferEnded(Conn* c, const OutFrame& f);  // true: f's transfer ended, not sent
  void Schedule();
  bool SchedulePeer(PeerId id, Peer& p);
  void EmitChunk(Peer& p, Conn* c, Xfer& x);
  // receive
  void OnReadable(Conn* c);
  Status BeginPayload(Conn* c);
  void Dispatch(Conn* c);
  void OnHello(Conn* c);
  void OnAuthChallenge(Conn* c);
  void OnAuthResponse(Conn* c);
  void Refuse(Conn* c, const Status& st);
  void OnChunkAcked(Conn* c, uint64_t chunk_id, int64_t ts_ns);
  void OnErr(Conn* c);
  // GPU staging (tcp_transport_stage.cc)
  Status SetUpStaging();
  void TearDownStaging();
  bool FrameReady(const OutFrame& f) const;
  bool StageChunk(Xfer& x, OutFrame& f, uint64_t bytes);
  void StageRxBuffer(Conn* c);
  void FinishStagedRx(Conn* c);
  bool ServeStagedRead(Conn* c, std::vector<WireSeg> dst, std::vector<iovec> src, uint64_t total);
  void OnCopiesDone();
  bool AnyDevice(const WireSeg* segs, uint32_t n) const;
  // transfers
  void MaybeComplete(TransferId id);
  void FinishXfer(TransferId id, const Status& st);
  void CheckTimers();
  int64_t NextWakeNs() const;

  const EngineOptions opt_;
  const uint64_t incarnation_;
  TransportHost* host_;
  std::vector<wire::Region> regions_;
  std::shared_ptr<DeviceCopier> copier_;  // set when an arena is GPU memory
  BouncePool tx_pool_, rx_pool_;          // declared before conns_: frames hold their slots
  uint64_t last_fence_ = 0;
  int copier_fd_ = -1;
  int listen_fd_ = -1, epoll_fd_ = -1, wake_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::unique_ptr<Conn>> conns_;  // by fd
  std::map<PeerId, Peer> peers_;
  std::unordered_map<TransferId, Xfer> xfers_;
  std::deque<PendingRx> pending_rx_;  // in fence order
  uint64_t next_serial_ = 1;
  uint64_t next_chunk_id_ = 1;
  int64_t last_timer_ns_ = 0;
  std::string last_connect_error_;
};

}  // namespace pd::kvtransfer::tcp
