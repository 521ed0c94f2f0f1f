#include "kvtransfer/rdma/rdma_channel.h"

#include <algorithm>
#include <cstring>

namespace pd::kvtransfer::rdma {
namespace {
constexpr uint64_t kRecvWrBit = 1ull << 63;
// Receives posted per QP: notifications, staged chunks (receive side) and their credits (send
// side) all consume one; at most notify_slots + kMaxStageSlots are outstanding per direction.
constexpr int kRecvDepth = 200;
}  // namespace

RdmaChannel::RdmaChannel(Verbs* verbs, std::vector<MemoryRegion> local, ChannelOptions options,
                         const Clock& clock)
    : verbs_(verbs), local_(std::move(local)), opt_(options), clock_(clock) {}

Status RdmaChannel::Init() {
  ring_.assign(static_cast<size_t>(opt_.notify_slots) * opt_.notify_slot_bytes, 0);
  staging_.assign(ring_.size(), 0);
  PD_ASSIGN_OR_RETURN(ring_mr_, verbs_->RegisterMemory(ring_.data(), ring_.size()));
  PD_ASSIGN_OR_RETURN(staging_mr_, verbs_->RegisterMemory(staging_.data(), staging_.size()));
  return InitStaging();
}

RemoteRegion RdmaChannel::notify_ring() const {
  return {ring_mr_.addr, ring_mr_.length, ring_mr_.rkey};
}

Status RdmaChannel::SetPeer(std::vector<uint32_t> qps, std::vector<RemoteRegion> remote_arenas,
                            RemoteRegion remote_ring) {
  if (qps.empty()) return InvalidArgument("rdma: need at least one QP");
  remote_ = std::move(remote_arenas);
  remote_ring_ = remote_ring;
  qps_.clear();
  qpns_ = qps;
  for (uint32_t qpn : qps) {
    QpState q;
    q.qpn = qpn;
    q.cc = MakeCongestionControl(opt_.cc, opt_.chunk_bytes, clock_);
    qps_.push_back(std::move(q));
    for (int i = 0; i < kRecvDepth; ++i) {
      PD_RETURN_IF_ERROR(verbs_->PostRecv(qpn, kRecvWrBit | (qps_.size() - 1)));
    }
  }
  selector_ = std::make_unique<PathSelector>(opt_.policy, static_cast<int>(qps_.size()), clock_);
  return OkStatus();
}

int RdmaChannel::live_qps() const {
  int n = 0;
  for (const auto& q : qps_) n += q.alive;
  return n;
}

StatusOr<TransferId> RdmaChannel::Post(std::vector<Segment> segs, std::string notify,
                                       int64_t deadline_ns) {
  if (qps_.empty()) return FailedPrecondition("rdma: channel has no peer");
  if (live_qps() == 0) return Unavailable("rdma: every QP to the peer has failed");
  if (notify.size() > opt_.notify_slot_bytes) {
    return InvalidArgument("rdma: notification larger than a ring slot");
  }
  for (const Segment& s : segs) {
    if (s.local_arena >= local_.size() || s.remote_arena >= remote_.size() ||
        s.local_offset + s.length > local_[s.local_arena].length ||
        s.remote_offset + s.length > remote_[s.remote_arena].length) {
      return OutOfRange("rdma: segment outside a registered region");
    }
  }
  bool staged = false, stage_local = false;
  PD_RETURN_IF_ERROR(CheckStaged(segs, &staged, &stage_local));
  const TransferId id = next_id_++;
  Xfer& x = xfers_[id];
  x.staged = staged;
  x.stage_local = stage_local;
  for (const Segment& s : segs) x.bytes += s.length;
  x.segs = std::move(segs);
  x.notify = std::move(notify);
  x.deadline_ns = deadline_ns;
  x.result.stats.bytes = x.bytes;
  x.result.stats.post_ns = clock_.NowNs();
  queue_.push_back(id);
  return id;
}

int RdmaChannel::PickQp(uint64_t bytes) {
  std::vector<bool> ok(qps_.size());
  for (size_t i = 0; i < qps_.size(); ++i) {
    const QpState& q = qps_[i];
    ok[i] = q.alive && q.outstanding < opt_.max_outstanding_per_qp && q.cc->CanSend(q.inflight, bytes);
  }
  return selector_->Pick(ok);
}

// One chunk: remote side contiguous, local side gathered. Returns false when no QP has room.
bool RdmaChannel::PostChunk(TransferId id, Xfer& x) {
  const uint64_t want = std::min<uint64_t>(opt_.chunk_bytes, x.bytes);  // upper bound for CC
  const int qi = PickQp(want);
  if (qi < 0) return false;
  Sge sges[kMaxSge];
  int n = 0;
  uint64_t bytes = 0, remote_addr = 0;
  uint32_t rkey = 0;
  while (x.seg_idx < x.segs.size() && n < kMaxSge && bytes < opt_.chunk_bytes) {
    const Segment& s = x.segs[x.seg_idx];
    const uint64_t raddr = remote_[s.remote_arena].addr + s.remote_offset + x.seg_off;
    if (n > 0 && (remote_[s.remote_arena].rkey != rkey || raddr != remote_addr + bytes)) break;
    if (n == 0) {
      remote_addr = raddr;
      rkey = remote_[s.remote_arena].rkey;
    }
    const uint64_t len = std::min(s.length - x.seg_off, opt_.chunk_bytes - bytes);
    const MemoryRegion& mr = local_[s.local_arena];
    sges[n++] = {mr.addr + s.local_offset + x.seg_off, static_cast<uint32_t>(len), mr.lkey};
    bytes += len;
    x.seg_off += len;
    if (x.seg_off == s.length) ++x.seg_idx, x.seg_off = 0;
  }
  QpState& q = qps_[static_cast<size_t>(qi)];
  const uint64_t wr = next_wr_++;
  Status st = verbs_->PostWrite(q.qpn, wr, std::span<const Sge>(sges, static_cast<size_t>(n)),
                                remote_addr, rkey, std::nullopt);
  if (!st.ok()) {
    q.alive = false;
    Finish(id, Unavailable("rdma: post failed: " + st.message()));
    return true;
  }
  wrs_[wr] = Wr{id, qi, bytes, clock_.NowNs(), false};
  q.outstanding++;
  q.inflight += bytes;
  q.cc->OnSend(bytes);
  x.result.stats.chunks++;
  return true;
}

void RdmaChannel::PostNotify(TransferId id, Xfer& x) {
  if (notify_outstanding_ >= opt_.notify_slots) return;  // ring full: retry on next Progress
  int qi = -1;
  for (size_t i = 0; i < qps_.size(); ++i) {
    if (qps_[i].alive) qi = static_cast<int>(i);
  }
  if (qi < 0) return Finish(id, Unavailable("rdma: no live QP for the notification"));
  const uint32_t slot = next_slot_++ % opt_.notify_slots;
  const uint64_t off = static_cast<uint64_t>(slot) * opt_.notify_slot_bytes;
  std::memcpy(staging_.data() + off, x.notify.data(), x.notify.size());
  const Sge sge{staging_mr_.addr + off, static_cast<uint32_t>(x.notify.size()), staging_mr_.lkey};
  const uint64_t wr = next_wr_++;
  QpState& q = qps_[static_cast<size_t>(qi)];
  Status st = verbs_->PostWrite(q.qpn, wr, std::span<const Sge>(&sge, 1), remote_ring_.addr + off,
                                remote_ring_.rkey, slot);
  if (!st.ok()) return Finish(id, Unavailable("rdma: notify post failed: " + st.message()));
  wrs_[wr] = Wr{id, qi, 0, clock_.NowNs(), true};
  q.outstanding++;
  notify_outstanding_++;
  x.notify_posted = true;
}

void RdmaChannel::Progress() {
  Completion cs[32];
  for (;;) {
    const int n = verbs_->PollCq(cs);
    for (int i = 0; i < n; ++i) OnCompletion(cs[i]);
    if (n < 32) break;
  }
  Advance();
}

void RdmaChannel::Advance() {
  const int64_t now = clock_.NowNs();
  std::vector<TransferId> expired;
  for (auto& [id, x] : xfers_) {
    if (x.result.state == TransferState::kInProgress && x.deadline_ns > 0 && now >= x.deadline_ns) {
      expired.push_back(id);
    }
  }
  for (TransferId id : expired) Finish(id, DeadlineExceeded("rdma: transfer missed its deadline"));
  PumpRx();
  if (live_qps() == 0) {
    std::vector<TransferId> all;
    for (auto& [id, x] : xfers_) {
      if (x.result.state == TransferState::kInProgress) all.push_back(id);
    }
    for (TransferId id : all) Finish(id, Unavailable("rdma: every QP to the peer has failed"));
  }
  // Data complete: notifications waiting for a ring slot, and empty transfers.
  for (auto& [id, x] : xfers_) {
    if (x.result.state != TransferState::kInProgress || x.acked < x.bytes) continue;
    if (x.notify.empty()) {
      Finish(id, OkStatus());
    } else if (!x.notify_posted) {
      PostNotify(id, x);
    }
  }
  PumpStaged();
  while (!queue_.empty()) {
    auto it = xfers_.find(queue_.front());
    if (it == xfers_.end() || it->second.result.state != TransferState::kInProgress ||
        it->second.seg_idx >= it->second.segs.size()) {
      queue_.pop_front();
      continue;
    }
    Xfer& x = it->second;
    if (x.staged ? !CutStaged(it->first, x) : !PostChunk(it->first, x)) break;
  }
  PumpStaged();
}

void RdmaChannel::OnCompletion(const Completion& c) {
  if (c.wr_id & kRecvWrBit) {  // a notification arrived (after its data, by construction)
    const bool ok = c.status == WcStatus::kSuccess && c.opcode == WcOpcode::kRecvRdmaWithImm;
    if (ok && (c.imm & kImmData)) {
      OnStagedData(c);
    } else if (ok && (c.imm & kImmCredit)) {
      OnCredit(c.imm);
    } else if (ok && c.imm < opt_.notify_slots && c.byte_len <= opt_.notify_slot_bytes) {
      const uint64_t off = static_cast<uint64_t>(c.imm) * opt_.notify_slot_bytes;
      notes_.emplace_back(reinterpret_cast<const char*>(ring_.data() + off), c.byte_len);
    }
    const size_t qi = c.wr_id & ~kRecvWrBit;
    if (qi < qps_.size() && qps_[qi].alive) (void)verbs_->PostRecv(qps_[qi].qpn, c.wr_id);
    return;
  }
  auto it = wrs_.find(c.wr_id);
  if (it == wrs_.end()) return;
  const Wr wr = it->second;
  wrs_.erase(it);
  QpState& q = qps_[static_cast<size_t>(wr.qp)];
  q.outstanding--;
  q.inflight -= wr.bytes;
  if (wr.notify) notify_outstanding_--;
  if (wr.tx_slot >= 0) tx_free_.push_back(wr.tx_slot);  // the NIC is done reading it
  auto x = xfers_.find(wr.xfer);
  if (c.status != WcStatus::kSuccess) {
    q.alive = false;  // an RC QP in error state flushes everything after
    Status st = c.status == WcStatus::kRemoteAccessError
                    ? OutOfRange("rdma: remote access error (bad rkey or range)")
                    : Unavailable("rdma: peer unreachable (completion error)");
    if (x != xfers_.end()) Finish(wr.xfer, st);
    return;
  }
  const int64_t rtt = std::max<int64_t>(1, clock_.NowNs() - wr.post_ns);
  if (wr.credit) return;
  if (!wr.notify) {
    q.cc->OnAck(wr.bytes, rtt);
    selector_->OnRtt(wr.qp, rtt);
  }
  if (x == xfers_.end() || x->second.result.state != TransferState::kInProgress) return;
  if (wr.remote_staged) return;  // acknowledged when the peer returns the slot's credit
  Xfer& xf = x->second;
  if (wr.notify) xf.notify_done = true;
  Acked(wr.xfer, xf, wr.notify ? 0 : wr.bytes);
}

// `bytes` more of the transfer are in the destination memory; after the last the notification
// goes out, and after the notification (or without one) the transfer is done.
void RdmaChannel::Acked(TransferId id, Xfer& xf, uint64_t bytes) {
  xf.acked += bytes;
  if (xf.acked < xf.bytes) return;
  if (!xf.notify.empty() && !xf.notify_posted) PostNotify(id, xf);
  if (xf.notify.empty() || xf.notify_done) Finish(id, OkStatus());
}

void RdmaChannel::Finish(TransferId id, const Status& st) {
  auto it = xfers_.find(id);
  if (it == xfers_.end() || it->second.result.state != TransferState::kInProgress) return;
  it->second.result.state = st.ok() ? TransferState::kDone : TransferState::kError;
  it->second.result.status = st;
  it->second.result.stats.complete_ns = clock_.NowNs();
}

TransferResult RdmaChannel::Result(TransferId id) const {
  auto it = xfers_.find(id);
  if (it == xfers_.end()) {
    TransferResult r;
    r.state = TransferState::kError;
    r.status = NotFound("rdma: unknown transfer");
    return r;
  }
  return it->second.result;
}

void RdmaChannel::Release(TransferId id) { xfers_.erase(id); }

std::vector<std::string> RdmaChannel::TakeNotifications() {
  std::vector<std::string> out;
  out.swap(notes_);
  return out;
}

}  // namespace pd::kvtransfer::rdma
