// RdmaChannel: GPU arenas through pinned bounce rings (see rdma_channel.h). Send side: chunks
// of a transfer from a GPU arena take a send slot, are copied device->host by the DeviceCopier
// and posted once their fence completed; chunks into a peer's GPU arena go to a slot of the
// peer's staging ring (one credit per slot) with a header naming their destination. Receive
// side: such a chunk is copied host->device and its slot credited back after the copy.
#include <algorithm>
#include <cstring>
#include <tuple>

#include "common/logging.h"
#include "kvtransfer/rdma/rdma_channel.h"

namespace pd::kvtransfer::rdma {
namespace {

constexpr uint32_t kHeaderMagic = 0x53475044;  // "DPGS"
// What the sender writes in front of a chunk in a receive slot (kStageHeader bytes reserved).
struct StageHeader {
  uint32_t magic = 0;
  uint32_t arena = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};
static_assert(sizeof(StageHeader) <= RdmaChannel::kStageHeader);
constexpr size_t kMaxCopyPieces = 256;  // copies per send slot (descs gathered into one chunk)
// Cut chunks waiting for a copy / credit / QP: enough for every send slot to be in use.
constexpr size_t kMaxQueuedChunks = RdmaChannel::kMaxStageSlots;

}  // namespace

RdmaChannel::~RdmaChannel() {
  // The NIC must not touch our buffers once they are freed: a late WRITE from the peer now fails
  // with a remote access error instead.
  for (const MemoryRegion* mr : {&ring_mr_, &staging_mr_, &tx_mr_, &rx_mr_, &hdrs_mr_}) {
    if (mr->addr != 0) verbs_->DeregisterMemory(*mr);
  }
  if (!stage_) return;
  if (last_fence_ > 0) {  // nothing may still copy into or out of the rings
    Status st = cfg_.copier->Wait(last_fence_, std::chrono::seconds(10));
    if (!st.ok()) PD_LOG_WARN("kvtransfer rdma: device copies at teardown: {}", st.ToString());
  }
  if (tx_ring_) cfg_.copier->FreePinned(tx_ring_);
  if (rx_ring_) cfg_.copier->FreePinned(rx_ring_);
}

Status RdmaChannel::EnableStaging(StageConfig config) {
  if (!config.copier) return InvalidArgument("rdma: GPU arenas need a device copier");
  if (config.local_device.size() != local_.size()) {
    return InvalidArgument("rdma: one device flag per local arena");
  }
  if (config.slots < 2 || config.slots > kMaxStageSlots) {
    return InvalidArgument("rdma: staging slots must be in [2, " +
                           std::to_string(kMaxStageSlots) + "]");
  }
  cfg_ = std::move(config);
  stage_ = true;
  return OkStatus();
}

Status RdmaChannel::InitStaging() {
  if (!stage_) return OkStatus();
  tx_stride_ = opt_.chunk_bytes;
  rx_stride_ = kStageHeader + opt_.chunk_bytes;
  const uint64_t n = cfg_.slots;
  for (auto [want, ring, mr, stride] : {std::tuple{cfg_.send, &tx_ring_, &tx_mr_, tx_stride_},
                                        std::tuple{cfg_.receive, &rx_ring_, &rx_mr_, rx_stride_}}) {
    if (!want) continue;
    *ring = static_cast<uint8_t*>(cfg_.copier->AllocPinned(n * stride));
    if (*ring == nullptr) {
      return ResourceExhausted("rdma: cannot allocate " + std::to_string(n * stride >> 10) +
                               " KiB of pinned bounce buffers");
    }
    PD_ASSIGN_OR_RETURN(*mr, verbs_->RegisterMemory(*ring, n * stride));
  }
  if (tx_ring_ != nullptr) {
    for (size_t i = n; i-- > 0;) tx_free_.push_back(static_cast<int>(i));
  }
  return OkStatus();
}

RemoteRegion RdmaChannel::stage_ring() const {
  if (rx_ring_ == nullptr) return {};
  return {rx_mr_.addr, rx_mr_.length, rx_mr_.rkey};
}

Status RdmaChannel::SetPeerStaging(std::vector<bool> remote_device, RemoteRegion remote_stage,
                                   uint32_t remote_slots) {
  if (remote_device.size() != remote_.size()) {
    return InvalidArgument("rdma: one device flag per peer arena");
  }
  remote_device_ = std::move(remote_device);
  remote_stage_ = remote_stage;
  remote_stride_ = 0;
  remote_free_.clear();
  remote_owner_.clear();
  if (hdrs_mr_.addr != 0) verbs_->DeregisterMemory(hdrs_mr_);
  hdrs_mr_ = {};
  if (remote_slots == 0 || remote_stage.length == 0) return OkStatus();
  if (remote_slots > kMaxStageSlots || remote_stage.length % remote_slots != 0 ||
      remote_stage.length / remote_slots <= kStageHeader ||
      remote_stage.length / remote_slots - kStageHeader > (1u << 30)) {
    return InvalidArgument("rdma: the peer's staging ring is malformed");
  }
  remote_stride_ = remote_stage.length / remote_slots;
  hdrs_.assign(static_cast<size_t>(remote_slots) * kStageHeader, 0);
  PD_ASSIGN_OR_RETURN(hdrs_mr_, verbs_->RegisterMemory(hdrs_.data(), hdrs_.size()));
  remote_owner_.assign(remote_slots, RemoteSlot{});
  for (uint32_t i = remote_slots; i-- > 0;) remote_free_.push_back(i);
  return OkStatus();
}

Status RdmaChannel::CheckStaged(const std::vector<Segment>& segs, bool* staged,
                                bool* local) const {
  for (const Segment& s : segs) {
    const bool ld = stage_ && cfg_.local_device[s.local_arena];
    const bool rd = s.remote_arena < remote_device_.size() && remote_device_[s.remote_arena];
    if (ld && tx_ring_ == nullptr) {
      return FailedPrecondition("rdma: arena " + std::to_string(s.local_arena) +
                                " is GPU memory and this channel has no send staging ring");
    }
    if (rd && remote_stride_ == 0) {
      return FailedPrecondition("rdma: the peer's arena " + std::to_string(s.remote_arena) +
                                " is GPU memory and the peer advertises no staging ring");
    }
    *local = *local || ld;
    *staged = *staged || ld || rd;
  }
  return OkStatus();
}

// Cuts the next chunk of a staged transfer (remote side contiguous in one arena). A chunk from
// GPU memory takes a send slot and its device->host copies are enqueued now. False when no send
// slot is free or enough chunks are queued.
bool RdmaChannel::CutStaged(TransferId id, Xfer& x) {
  if (stage_q_.size() >= kMaxQueuedChunks || (x.stage_local && tx_free_.empty())) return false;
  const Segment& first = x.segs[x.seg_idx];
  StagedChunk c;
  c.xfer = id;
  c.remote_arena = first.remote_arena;
  c.remote_offset = first.remote_offset + x.seg_off;
  c.remote_staged = c.remote_arena < remote_device_.size() && remote_device_[c.remote_arena];
  const uint64_t cap = c.remote_staged ? std::min<uint64_t>(opt_.chunk_bytes,
                                                            remote_stride_ - kStageHeader)
                                       : opt_.chunk_bytes;
  const size_t sges = static_cast<size_t>(kMaxSge - (c.remote_staged ? 1 : 0));  // + header
  const size_t max_pieces = x.stage_local ? kMaxCopyPieces : sges;
  uint8_t* slot = nullptr;
  if (x.stage_local) {
    c.tx_slot = tx_free_.back();
    tx_free_.pop_back();
    slot = tx_ring_ + static_cast<uint64_t>(c.tx_slot) * tx_stride_;
  }
  std::vector<CopyOp> ops;
  size_t pieces = 0;
  while (x.seg_idx < x.segs.size() && pieces < max_pieces && c.bytes < cap) {
    const Segment& s = x.segs[x.seg_idx];
    if (s.remote_arena != c.remote_arena ||
        s.remote_offset + x.seg_off != c.remote_offset + c.bytes) {
      break;
    }
    const uint64_t len = std::min(s.length - x.seg_off, cap - c.bytes);
    const MemoryRegion& mr = local_[s.local_arena];
    const uint64_t src = mr.addr + s.local_offset + x.seg_off;
    if (slot != nullptr) {
      ops.push_back({slot + c.bytes, reinterpret_cast<const void*>(src), len});
    } else {
      c.sges.push_back({src, static_cast<uint32_t>(len), mr.lkey});
    }
    ++pieces;
    c.bytes += len;
    x.seg_off += len;
    if (x.seg_off == s.length) ++x.seg_idx, x.seg_off = 0;
  }
  if (c.bytes == 0) {  // only empty segments were left
    if (c.tx_slot >= 0) tx_free_.push_back(c.tx_slot);
    return true;
  }
  if (slot != nullptr) {
    StatusOr<uint64_t> fence = cfg_.copier->Enqueue(ops);
    if (!fence.ok()) {
      tx_free_.push_back(c.tx_slot);
      Finish(id, fence.status().WithContext("rdma: device->host staging"));
      return true;
    }
    c.fence = *fence;
    last_fence_ = std::max(last_fence_, c.fence);
  }
  x.result.stats.chunks++;
  stage_q_.push_back(std::move(c));
  return true;
}

// Posts cut chunks in order once their copy is done, a credit (receive slot) is free and a QP
// has room. Chunks of failed / released transfers give their send slot back (after the copy).
void RdmaChannel::PumpStaged() {
  const uint64_t done = stage_ ? cfg_.copier->Completed() : 0;
  while (!tx_parked_.empty() && tx_parked_.front().first <= done) {
    tx_free_.push_back(tx_parked_.front().second);
    tx_parked_.pop_front();
  }
  while (!stage_q_.empty()) {
    StagedChunk& c = stage_q_.front();
    auto it = xfers_.find(c.xfer);
    if (it == xfers_.end() || it->second.result.state != TransferState::kInProgress) {
      if (c.tx_slot >= 0 && c.fence <= done) {
        tx_free_.push_back(c.tx_slot);
      } else if (c.tx_slot >= 0) {
        tx_parked_.push_back({c.fence, c.tx_slot});
      }
      stage_q_.pop_front();
      continue;
    }
    if (c.tx_slot >= 0 && c.fence > done) break;  // its device->host copy is still running
    if (c.remote_staged && remote_free_.empty()) break;
    if (!PostStaged(c)) break;
    stage_q_.pop_front();
  }
}

// One staged chunk: [header] + (send slot | gathered host SGEs) to the peer's arena or to a
// slot of its staging ring. False when no QP has room.
bool RdmaChannel::PostStaged(StagedChunk& c) {
  const int qi = PickQp(c.bytes);
  if (qi < 0) return false;
  Sge sges[kMaxSge];
  size_t n = 0;
  uint64_t raddr = 0;
  uint32_t rkey = 0;
  std::optional<uint32_t> imm;
  int rslot = -1;
  if (c.remote_staged) {
    rslot = static_cast<int>(remote_free_.back());
    remote_free_.pop_back();
    const StageHeader h{kHeaderMagic, c.remote_arena, c.remote_offset, c.bytes};
    const uint64_t hoff = static_cast<uint64_t>(rslot) * kStageHeader;
    std::memcpy(hdrs_.data() + hoff, &h, sizeof(h));
    sges[n++] = {hdrs_mr_.addr + hoff, kStageHeader, hdrs_mr_.lkey};
    raddr = remote_stage_.addr + static_cast<uint64_t>(rslot) * remote_stride_;
    rkey = remote_stage_.rkey;
    imm = kImmData | static_cast<uint32_t>(rslot);
    remote_owner_[static_cast<size_t>(rslot)] = {c.xfer, c.bytes};
  } else {
    raddr = remote_[c.remote_arena].addr + c.remote_offset;
    rkey = remote_[c.remote_arena].rkey;
  }
  if (c.tx_slot >= 0) {
    sges[n++] = {tx_mr_.addr + static_cast<uint64_t>(c.tx_slot) * tx_stride_,
                 static_cast<uint32_t>(c.bytes), tx_mr_.lkey};
  } else {
    for (const Sge& s : c.sges) sges[n++] = s;
  }
  QpState& q = qps_[static_cast<size_t>(qi)];
  const uint64_t wr = next_wr_++;
  Status st = verbs_->PostWrite(q.qpn, wr, std::span<const Sge>(sges, n), raddr, rkey, imm);
  if (!st.ok()) {  // never reached the wire: both slots are free again
    q.alive = false;
    if (c.tx_slot >= 0) tx_free_.push_back(c.tx_slot);
    if (rslot >= 0) {
      remote_owner_[static_cast<size_t>(rslot)] = {};
      remote_free_.push_back(static_cast<uint32_t>(rslot));
    }
    Finish(c.xfer, Unavailable("rdma: post failed: " + st.message()));
    return true;
  }
  Wr w{c.xfer, qi, c.bytes, clock_.NowNs(), false};
  w.tx_slot = c.tx_slot;
  w.remote_staged = c.remote_staged;
  wrs_[wr] = w;
  q.outstanding++;
  q.inflight += c.bytes;
  q.cc->OnSend(c.bytes);
  return true;
}

// The peer placed (or refused) the chunk in its receive slot `imm & kImmSlotMask`.
void RdmaChannel::OnCredit(uint32_t imm) {
  const uint32_t slot = imm & kImmSlotMask;
  if (slot >= remote_owner_.size() || remote_owner_[slot].xfer == 0) return;  // not ours
  const RemoteSlot o = remote_owner_[slot];
  remote_owner_[slot] = {};
  remote_free_.push_back(slot);
  auto it = xfers_.find(o.xfer);
  if (it == xfers_.end() || it->second.result.state != TransferState::kInProgress) return;
  if (imm & kImmError) {
    return Finish(o.xfer, DataLoss("rdma: the peer could not place a chunk in its GPU memory "
                                   "(bad header or host->device copy failed)"));
  }
  Acked(o.xfer, it->second, o.bytes);
}

// A chunk arrived in our receive slot: check its header, copy it host->device; the credit goes
// back after the copy (PumpRx).
void RdmaChannel::OnStagedData(const Completion& c) {
  const uint32_t slot = c.imm & kImmSlotMask;
  if (rx_ring_ == nullptr || slot >= cfg_.slots) {
    PD_LOG_WARN("kvtransfer rdma: staged chunk for slot {} without a staging ring", slot);
    return;
  }
  uint8_t* base = rx_ring_ + static_cast<uint64_t>(slot) * rx_stride_;
  StageHeader h;
  bool ok = c.byte_len >= kStageHeader;
  if (ok) std::memcpy(&h, base, sizeof(h));
  ok = ok && h.magic == kHeaderMagic && h.arena < local_.size() && cfg_.local_device[h.arena] &&
       h.length == c.byte_len - kStageHeader && h.length <= rx_stride_ - kStageHeader &&
       h.offset <= local_[h.arena].length && h.length <= local_[h.arena].length - h.offset;
  RxCopy r;
  r.slot = slot;
  r.failed = !ok;
  if (ok) {
    const CopyOp op{reinterpret_cast<void*>(local_[h.arena].addr + h.offset), base + kStageHeader,
                    h.length};
    StatusOr<uint64_t> fence = cfg_.copier->Enqueue(std::span<const CopyOp>(&op, 1));
    if (fence.ok()) {
      r.fence = *fence;
      last_fence_ = std::max(last_fence_, r.fence);
    } else {
      r.failed = true;
      PD_LOG_WARN("kvtransfer rdma: host->device staging: {}", fence.status().ToString());
    }
  } else {
    PD_LOG_WARN("kvtransfer rdma: refused a staged chunk (slot {}, {} bytes): bad header", slot,
                c.byte_len);
  }
  rx_copies_.push_back(r);
}

// Returns the credit of every receive slot whose host->device copy completed (in order).
void RdmaChannel::PumpRx() {
  if (!stage_ || rx_copies_.empty()) return;
  const uint64_t done = cfg_.copier->Completed();
  while (!rx_copies_.empty() && rx_copies_.front().fence <= done) {
    const RxCopy r = rx_copies_.front();
    rx_copies_.pop_front();
    const int n = static_cast<int>(qps_.size());
    for (int k = 0; k < n; ++k) {
      const int qi = (credit_qp_ + k) % n;
      QpState& q = qps_[static_cast<size_t>(qi)];
      if (!q.alive) continue;
      credit_qp_ = qi + 1;
      const uint64_t wr = next_wr_++;
      const uint32_t imm = kImmCredit | (r.failed ? kImmError : 0) | r.slot;
      Status st = verbs_->PostWrite(q.qpn, wr, {}, remote_ring_.addr, remote_ring_.rkey, imm);
      if (!st.ok()) {
        q.alive = false;
        continue;
      }
      Wr w;
      w.qp = qi;
      w.post_ns = clock_.NowNs();
      w.credit = true;
      wrs_[wr] = w;
      q.outstanding++;
      break;
    }
  }
}

}  // namespace pd::kvtransfer::rdma
