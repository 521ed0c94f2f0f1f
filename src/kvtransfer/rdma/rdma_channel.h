// RdmaChannel: the RDMA transport's data path to one peer over several RC QPs, written against
// the Verbs interface (real: dlopen'ed libibverbs; tests: FakeVerbs).
//
// * Chunks: a transfer's segments are cut into chunks of <= chunk_bytes whose remote side is
//   contiguous (one RDMA WRITE each) and whose local side is gathered (<= kMaxSge SGEs).
// * Spraying: each chunk goes to a QP that has room (outstanding WRs < max_outstanding_per_qp
//   and its congestion control allows it), chosen by the path selector (power of two on smoothed
//   completion RTT, or strict round robin). Every chunk is signaled: its completion time minus
//   its post time is the RTT sample fed to the QP's CC.
// * Notifications: after every chunk of a transfer has completed (RC: the data is placed at the
//   peer), the notification bytes go by RDMA WRITE_WITH_IMM into a slot of the peer's
//   notification ring; imm = slot. The peer's receive completion yields the notification, so it
//   can never overtake the data it follows. The ring has notify_slots slots; a sender keeps at
//   most notify_slots notifications unacknowledged.
// * Errors: a failed completion fails its transfer (remote access -> OUT_OF_RANGE, retry
//   exceeded / flushed -> UNAVAILABLE) and takes the QP out of service; with no QP left every
//   pending transfer fails. Deadlines are checked on every Progress().
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvtransfer/clock.h"
#include "kvtransfer/congestion.h"
#include "kvtransfer/path_selector.h"
#include "kvtransfer/rdma/verbs.h"
#include "kvtransfer/transport.h"

namespace pd::kvtransfer::rdma {

struct RemoteRegion {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t rkey = 0;
};

struct ChannelOptions {
  uint64_t chunk_bytes = 256 * 1024;
  int max_outstanding_per_qp = 8;
  PathPolicy policy = PathPolicy::kPowerOfTwo;
  CcParams cc;
  uint32_t notify_slots = 64;
  uint32_t notify_slot_bytes = 4096;
};

class RdmaChannel {
 public:
  static constexpr int kMaxSge = 16;

  // `local` are this side's MRs, one per arena, in arena order.
  RdmaChannel(Verbs* verbs, std::vector<MemoryRegion> local, ChannelOptions options,
              const Clock& clock);
  // Registers the notification ring (receive) and staging (send) buffers; posts receives later.
  Status Init();
  // The ring the peer writes notifications into (goes into this side's metadata).
  RemoteRegion notify_ring() const;
  // Connected QPs to the peer, the peer's arenas (one region per arena index) and its ring.
  Status SetPeer(std::vector<uint32_t> qps, std::vector<RemoteRegion> remote_arenas,
                 RemoteRegion remote_ring);

  // Queues a WRITE of `segs` (local -> remote); `notify` (may be empty) follows the data.
  StatusOr<TransferId> Post(std::vector<Segment> segs, std::string notify, int64_t deadline_ns);
  // Polls the CQ, posts chunks, checks deadlines. Call from the progress thread.
  void Progress();
  // For a CQ shared by several channels: the owner polls it, hands each completion of this
  // channel's QPs to Deliver(), then calls Advance() (post chunks, check deadlines).
  void Deliver(const Completion& c) { OnCompletion(c); }
  void Advance();
  const std::vector<uint32_t>& qpns() const { return qpns_; }
  TransferResult Result(TransferId id) const;
  void Release(TransferId id);
  std::vector<std::string> TakeNotifications();
  size_t pending() const { return xfers_.size(); }
  int live_qps() const;

 private:
  struct Xfer {
    std::vector<Segment> segs;
    size_t seg_idx = 0;
    uint64_t seg_off = 0, bytes = 0, acked = 0;
    std::string notify;
    bool notify_posted = false, notify_done = false;
    int64_t deadline_ns = 0;
    TransferResult result;
  };
  struct Wr {
    TransferId xfer = 0;
    int qp = 0;
    uint64_t bytes = 0;
    int64_t post_ns = 0;
    bool notify = false;
  };
  struct QpState {
    uint32_t qpn = 0;
    bool alive = true;
    int outstanding = 0;
    uint64_t inflight = 0;
    std::unique_ptr<CongestionControl> cc;
  };

  void OnCompletion(const Completion& c);
  void Finish(TransferId id, const Status& st);
  bool PostChunk(TransferId id, Xfer& x);
  void PostNotify(TransferId id, Xfer& x);
  int PickQp(uint64_t bytes);

  Verbs* verbs_;
  std::vector<MemoryRegion> local_;
  ChannelOptions opt_;
  const Clock& clock_;
  std::vector<uint8_t> ring_, staging_;
  MemoryRegion ring_mr_, staging_mr_;
  std::vector<RemoteRegion> remote_;
  RemoteRegion remote_ring_;
  std::vector<QpState> qps_;
  std::vector<uint32_t> qpns_;
  std::unique_ptr<PathSelector> selector_;
  std::map<TransferId, Xfer> xfers_;
  std::deque<TransferId> queue_;
  std::map<uint64_t, Wr> wrs_;
  uint64_t next_wr_ = 1;
  TransferId next_id_ = 1;
  uint32_t next_slot_ = 0, notify_outstanding_ = 0;
  std::vector<std::string> notes_;
};

}  // namespace pd::kvtransfer::rdma
