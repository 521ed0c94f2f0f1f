// TCP transport: GPU arenas through pinned bounce buffers (see transfer_engine.h,
// EngineOptions::staging_slots). All device traffic goes through the engine's DeviceCopier:
//   send:    a chunk of a WRITE from a GPU arena takes a tx slot when it is bound to a path; its
//            device->host copies are enqueued at once and the frame waits in the path's queue
//            until the copy fence completed (Flush skips it), so the copies of chunks k+1, k+2
//            run while chunk k is on the wire. The slot returns when the frame is in the socket.
//   receive: a DATA / READ_DATA frame aimed at a GPU arena is read into an rx slot (or a heap
//            buffer when none is free or the peer's chunk is larger), then copied host->device;
//            the ACK (or, for READ_DATA, the chunk's completion) waits for that copy's fence, so
//            a sender completes, and only then notifies, after every byte reached GPU memory.
//   READ_REQ served from a GPU arena: copied into a heap buffer, sent after its fence.
#include <algorithm>
#include <cstring>

#include "common/logging.h"
#include "kvtransfer/tcp_transport_internal.h"

namespace pd::kvtransfer::tcp {

Status TcpTransport::SetUpStaging() {
  copier_ = opt_.device_copier;
  if (!copier_) {
    for (const auto& r : regions_) {
      if (r.device) return FailedPrecondition("kvtransfer tcp: GPU arena without a device copier");
    }
    return OkStatus();
  }
  const size_t n = static_cast<size_t>(opt_.staging_slots);
  for (BouncePool* p : {&tx_pool_, &rx_pool_}) {
    p->slot_bytes = opt_.chunk_bytes;
    p->base = static_cast<uint8_t*>(copier_->AllocPinned(n * opt_.chunk_bytes));
    if (p->base == nullptr) {
      return ResourceExhausted("kvtransfer tcp: cannot allocate " +
                               std::to_string(n * opt_.chunk_bytes >> 10) +
                               " KiB of pinned bounce buffers");
    }
    for (size_t i = n; i-- > 0;) p->free_slots.push_back(static_cast<int>(i));
  }
  copier_fd_ = copier_->notify_fd();
  return OkStatus();
}

// After the I/O thread stopped and every connection is closed.
void TcpTransport::TearDownStaging() {
  if (!copier_) return;
  if (last_fence_ > 0) {  // nothing may still copy into the bounce memory
    Status st = copier_->Wait(last_fence_, std::chrono::seconds(10));
    if (!st.ok()) PD_LOG_WARN("kvtransfer tcp: device copies at shutdown: {}", st.ToString());
  }
  pending_rx_.clear();
  for (BouncePool* p : {&tx_pool_, &rx_pool_}) {
    if (p->base) copier_->FreePinned(p->base);
    p->base = nullptr;
    p->free_slots.clear();
  }
}

bool TcpTransport::FrameReady(const OutFrame& f) const {
  return f.fence == 0 || (copier_ && f.fence <= copier_->Completed());
}

bool TcpTransport::AnyDevice(const WireSeg* segs, uint32_t n) const {
  for (uint32_t i = 0; i < n; ++i) {
    if (regions_[segs[i].arena].device) return true;
  }
  return false;
}

// Replaces f.payload (pointers into a GPU arena) by one tx slot filled by the copier. The caller
// made sure a slot is free. False (transfer failed) when the copier refuses.
bool TcpTransport::StageChunk(Xfer& x, OutFrame& f, uint64_t bytes) {
  SlotRef slot = SlotRef::Take(tx_pool_);
  std::vector<CopyOp> ops;
  uint64_t off = 0;
  for (const iovec& v : f.payload) {
    ops.push_back({slot.data() + off, v.iov_base, v.iov_len});
    off += v.iov_len;
  }
  StatusOr<uint64_t> fence = copier_->Enqueue(ops);
  if (!fence.ok()) {
    FinishXfer(x.w.id, fence.status().WithContext("kvtransfer tcp: device->host staging"));
    return false;
  }
  last_fence_ = std::max(last_fence_, *fence);
  f.payload = {{slot.data(), bytes}};
  f.fence = *fence;
  f.slot = std::move(slot);
  return true;
}

// Points the payload of a DATA / READ_DATA frame for a GPU arena at a bounce buffer.
void TcpTransport::StageRxBuffer(Conn* c) {
  const uint64_t n = c->hdr.payload_len;
  c->rx_staged = true;
  uint8_t* buf = nullptr;
  if (n <= rx_pool_.slot_bytes) c->rx_slot = SlotRef::Take(rx_pool_);
  if (c->rx_slot.valid()) {
    buf = c->rx_slot.data();
  } else {  // all slots busy with host->device copies (or an oversized chunk): pageable memory
    c->rx_heap.reset(new uint8_t[n]);
    buf = c->rx_heap.get();
  }
  c->rx_iov.push_back({buf, n});
}

// The whole staged payload arrived: copy it to its destinations; acknowledge after the copy.
void TcpTransport::FinishStagedRx(Conn* c) {
  const FrameHeader h = c->hdr;
  c->rx_staged = false;
  const uint8_t* src = c->rx_slot.valid() ? c->rx_slot.data() : c->rx_heap.get();
  std::vector<CopyOp> ops;
  for (const WireSeg& s : c->segs) {
    ops.push_back({regions_[s.arena].base + s.offset, src, s.length});
    src += s.length;
  }
  StatusOr<uint64_t> fence = copier_->Enqueue(ops);
  if (!fence.ok()) {
    const Status st = fence.status().WithContext("kvtransfer tcp: host->device staging");
    PD_LOG_WARN("{}", st.ToString());
    c->rx_slot.Reset();
    c->rx_heap.reset();
    if (static_cast<FrameType>(h.type) == FrameType::kData) {
      QueueCtrl(c, wire::MakeHeader(FrameType::kErr, h.xfer_id, h.chunk_id, h.ts_ns, 0,
                                    st.message().size(), static_cast<uint32_t>(st.code())),
                {}, st.message());
    } else if (xfers_.count(h.xfer_id)) {
      if (auto it = c->chunks.find(h.chunk_id); it != c->chunks.end()) {
        c->inflight -= it->second.bytes;
        c->chunks.erase(it);
      }
      FinishXfer(h.xfer_id, st);
    }
    return;
  }
  last_fence_ = std::max(last_fence_, *fence);
  PendingRx r;
  r.fence = *fence;
  r.fd = c->fd;
  r.serial = c->serial;
  r.hdr = h;
  r.slot = std::move(c->rx_slot);
  r.heap = std::move(c->rx_heap);
  pending_rx_.push_back(std::move(r));
}

// READ_REQ whose sources lie in a GPU arena: stage them into a heap buffer, answer after the
// copy. False if the copier refused (an ERR went back instead).
bool TcpTransport::ServeStagedRead(Conn* c, std::vector<WireSeg> dst, std::vector<iovec> src,
                                   uint64_t total) {
  const FrameHeader& h = c->hdr;
  OutFrame f;
  f.staged.reset(new uint8_t[std::max<uint64_t>(total, 1)]);
  std::vector<CopyOp> ops;
  uint64_t off = 0;
  for (const iovec& v : src) {
    ops.push_back({f.staged.get() + off, v.iov_base, v.iov_len});
    off += v.iov_len;
  }
  StatusOr<uint64_t> fence = copier_->Enqueue(ops);
  if (!fence.ok()) {
    const Status& st = fence.status();
    QueueCtrl(c, wire::MakeHeader(FrameType::kErr, h.xfer_id, h.chunk_id, h.ts_ns, 0,
                                  st.message().size(), static_cast<uint32_t>(st.code())),
              {}, st.message());
    return false;
  }
  last_fence_ = std::max(last_fence_, *fence);
  const FrameHeader rh = wire::MakeHeader(FrameType::kReadData, h.xfer_id, h.chunk_id, h.ts_ns,
                                          h.nseg, total);
  f.head.resize(sizeof(rh) + dst.size() * sizeof(WireSeg));
  std::memcpy(f.head.data(), &rh, sizeof(rh));
  std::memcpy(f.head.data() + sizeof(rh), dst.data(), dst.size() * sizeof(WireSeg));
  f.payload = {{f.staged.get(), total}};
  f.fence = *fence;
  c->ctrl_q.push_back(std::move(f));
  Flush(c);
  return true;
}

// Called by the loop after copier completions (and periodically while copies are in flight).
void TcpTransport::OnCopiesDone() {
  if (!copier_) return;
  const uint64_t done = copier_->Completed();
  while (!pending_rx_.empty() && pending_rx_.front().fence <= done) {
    PendingRx r = std::move(pending_rx_.front());
    pending_rx_.pop_front();
    r.slot.Reset();
    r.heap.reset();
    auto it = conns_.find(r.fd);
    if (it == conns_.end() || it->second->serial != r.serial) continue;  // connection gone
    Conn* c = it->second.get();
    const FrameHeader& h = r.hdr;
    if (static_cast<FrameType>(h.type) == FrameType::kData) {
      QueueCtrl(c, wire::MakeHeader(FrameType::kAck, h.xfer_id, h.chunk_id, h.ts_ns, 0, 0,
                                    static_cast<uint32_t>(h.payload_len)),
                {}, {});
    } else {
      OnChunkAcked(c, h.chunk_id, h.ts_ns);
    }
  }
  std::vector<int> waiting;  // connections whose next frame was waiting for a copy
  for (const auto& [fd, c] : conns_) {
    if (c->cur) continue;
    if ((!c->ctrl_q.empty() && c->ctrl_q.front().fence != 0) ||
        (!c->data_q.empty() && c->data_q.front().fence != 0)) {
      waiting.push_back(fd);
    }
  }
  for (int fd : waiting) {
    if (auto it = conns_.find(fd); it != conns_.end()) Flush(it->second.get());
  }
}

}  // namespace pd::kvtransfer::tcp
