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
// * GPU memory (EnableStaging, rdma_stage.cc): GPU arenas are never registered with the NIC.
//   Send side: a transfer from a GPU arena is cut into chunks that each take a pinned,
//   registered bounce slot (ring of `slots`); the chunk's device->host copies are enqueued on the
//   DeviceCopier at once, and the WRITE is posted from the slot after the copy fence completed,
//   so the copies of chunks k+1.. run while chunk k is on the wire. A slot is reused only after
//   its WRITE completion. Receive side: a peer whose destination arena is GPU memory advertises a
//   staging ring instead (slots of kStageHeader + chunk bytes, registered); the sender holds one
//   credit per remote slot and writes chunk k into a free slot by WRITE_WITH_IMM (imm = data bit
//   | slot) with a header naming the destination (arena, offset, length). The receiver validates
//   the header, copies host->device and, after that copy's fence, returns the credit by a
//   zero-length WRITE_WITH_IMM (imm = credit bit | slot, error bit if the chunk was refused).
//   Such chunks count as acknowledged only when their credit is back, so the notification
//   (posted after every chunk is acknowledged) and the sender's completion both follow the data
//   into GPU memory.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvtransfer/clock.h"
#include "kvtransfer/congestion.h"
#include "kvtransfer/device_copier.h"
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

// GPU arenas of this side (see the header comment).
struct StageConfig {
  std::shared_ptr<DeviceCopier> copier;
  std::vector<bool> local_device;  // per local arena: GPU memory (its MR is not registered)
  uint32_t slots = 16;             // bounce slots of the send ring and of the receive ring
  bool send = true;     // a send ring: this side WRITEs from its GPU arenas
  bool receive = true;  // a receive ring: the peer WRITEs into this side's GPU arenas
};

class RdmaChannel {
 public:
  static constexpr int kMaxSge = 16;
  static constexpr uint32_t kStageHeader = 64;     // bytes before the data in a receive slot
  static constexpr uint32_t kMaxStageSlots = 128;  // per ring (receives posted per QP follow)
  // Immediate data: a notification's ring slot (< notify_slots), or one of these | slot.
  static constexpr uint32_t kImmData = 1u << 31;    // a chunk in the receiver's staging slot
  static constexpr uint32_t kImmCredit = 1u << 30;  // the receiver is done with its slot
  static constexpr uint32_t kImmError = 1u << 29;   // ... but could not place the chunk
  static constexpr uint32_t kImmSlotMask = 0xFFFF;

  // `local` are this side's MRs, one per arena, in arena order (a GPU arena's entry has its
  // address and length but no keys: see EnableStaging).
  RdmaChannel(Verbs* verbs, std::vector<MemoryRegion> local, ChannelOptions options,
              const Clock& clock);
  // Waits for copies into / out of the bounce rings, then frees them.
  ~RdmaChannel();
  // Declares GPU arenas among `local`: allocates (in Init) the pinned send and / or receive ring.
  // Before Init. Without it every arena must be registered host memory.
  Status EnableStaging(StageConfig config);
  // Registers the notification ring (receive) and staging (send) buffers; posts receives later.
  Status Init();
  // The ring the peer writes notifications into (goes into this side's metadata).
  RemoteRegion notify_ring() const;
  // Connected QPs to the peer, the peer's arenas (one region per arena index) and its ring.
  Status SetPeer(std::vector<uint32_t> qps, std::vector<RemoteRegion> remote_arenas,
                 RemoteRegion remote_ring);
  // This side's receive staging ring (length 0 without GPU arenas) and its slot count.
  RemoteRegion stage_ring() const;
  uint32_t stage_slots() const { return rx_ring_ != nullptr ? cfg_.slots : 0; }
  // After SetPeer: which of the peer's arenas are GPU memory and its staging ring (slots of
  // remote_stage.length / remote_slots bytes). A WRITE into a GPU arena of a peer without a
  // ring is refused at Post.
  Status SetPeerStaging(std::vector<bool> remote_device, RemoteRegion remote_stage,
                        uint32_t remote_slots);

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
  // Staging bookkeeping (tests: every slot returns after success, failure and release).
  size_t tx_slots_free() const { return tx_free_.size(); }
  size_t remote_credits() const { return remote_free_.size(); }
  size_t rx_copies_pending() const { return rx_copies_.size(); }

 private:
  struct Xfer {
    std::vector<Segment> segs;
    size_t seg_idx = 0;
    uint64_t seg_off = 0, bytes = 0, acked = 0;
    std::string notify;
    bool notify_posted = false, notify_done = false;
    int64_t deadline_ns = 0;
    TransferResult result;
    bool staged = false;       // GPU memory on either side: chunks go through rdma_stage.cc
    bool stage_local = false;  // the local side goes through send bounce slots
  };
  struct Wr {
    TransferId xfer = 0;
    int qp = 0;
    uint64_t bytes = 0;
    int64_t post_ns = 0;
    bool notify = false;
    int tx_slot = -1;          // send bounce slot, free again at this completion
    bool remote_staged = false;  // acknowledged by the peer's credit, not by this completion
    bool credit = false;       // a credit returned to the peer (receive side)
  };
  // A chunk of a staged transfer, cut and (if stage_local) being copied into a send slot.
  struct StagedChunk {
    TransferId xfer = 0;
    std::vector<Sge> sges;  // host sources read directly (tx_slot < 0)
    int tx_slot = -1;
    uint64_t fence = 0;     // copier fence that fills tx_slot
    ArenaId remote_arena = 0;
    uint64_t remote_offset = 0, bytes = 0;
    bool remote_staged = false;
  };
  struct RemoteSlot {
    TransferId xfer = 0;
    uint64_t bytes = 0;
  };
  struct RxCopy {
    uint64_t fence = 0;
    uint32_t slot = 0;
    bool failed = false;
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
  // rdma_stage.cc
  Status InitStaging();
  Status CheckStaged(const std::vector<Segment>& segs, bool* staged, bool* local) const;
  bool CutStaged(TransferId id, Xfer& x);
  void PumpStaged();
  bool PostStaged(StagedChunk& c);
  void OnCredit(uint32_t imm);
  void OnStagedData(const Completion& c);
  void PumpRx();
  void Acked(TransferId id, Xfer& x, uint64_t bytes);

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
  // Staging (rdma_stage.cc).
  bool stage_ = false;
  StageConfig cfg_;
  uint64_t tx_stride_ = 0, rx_stride_ = 0, last_fence_ = 0;
  uint8_t *tx_ring_ = nullptr, *rx_ring_ = nullptr;  // pinned (copier), registered
  MemoryRegion tx_mr_, rx_mr_;
  std::vector<int> tx_free_;
  std::deque<std::pair<uint64_t, int>> tx_parked_;  // (fence, slot) of dropped chunks
  std::deque<StagedChunk> stage_q_;
  std::deque<RxCopy> rx_copies_;  // host->device copies out of receive slots, in fence order
  bool rx_broken_logged_ = false;
  int credit_qp_ = 0;
  // The peer's side.
  std::vector<bool> remote_device_;
  RemoteRegion remote_stage_;
  uint64_t remote_stride_ = 0;
  std::vector<uint32_t> remote_free_;
  std::vector<RemoteSlot> remote_owner_;
  std::vector<uint8_t> hdrs_;  // one header per remote slot, registered
  MemoryRegion hdrs_mr_;
};

}  // namespace pd::kvtransfer::rdma
