// TCP transport, receive side, transfer bookkeeping and timers (see tcp_transport.cc).
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/logging.h"
#include "kvtransfer/auth.h"
#include "kvtransfer/tcp_transport_internal.h"

namespace pd::kvtransfer::tcp {

using wire::FrameHeader;
using wire::FrameType;
using wire::WireSeg;

// ------------------------------------------------------------------------------- receive

void TcpTransport::OnReadable(Conn* c) {
  const int fd = c->fd;
  for (int iter = 0; iter < 256; ++iter) {
    ssize_t n = 0;
    if (c->rx == RxState::kHeader) {
      n = read(fd, reinterpret_cast<char*>(&c->hdr) + c->got, sizeof(FrameHeader) - c->got);
    } else if (c->rx == RxState::kSegs) {
      n = read(fd, reinterpret_cast<char*>(c->segs.data()) + c->got,
               c->segs.size() * sizeof(WireSeg) - c->got);
    } else {
      const size_t cnt = std::min<size_t>(c->rx_iov.size() - c->rx_iov_pos, IOV_MAX);
      n = readv(fd, c->rx_iov.data() + c->rx_iov_pos, static_cast<int>(cnt));
    }
    if (n == 0) {
      ConnFailed(c, Unavailable("kvtransfer tcp: peer '" +
                                (c->outgoing ? peers_[c->peer].md.name : c->remote_name) +
                                "' closed the connection"));
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      ConnFailed(c, Unavailable(Errno("kvtransfer tcp: receive failed")));
      return;
    }
    host_->OnBytes(0, static_cast<uint64_t>(n));
    c->last_progress_ns = NowNs();
    Status st;
    if (c->rx == RxState::kPayload) {
      Consume(c->rx_iov, c->rx_iov_pos, static_cast<size_t>(n));
      if (c->rx_iov_pos < c->rx_iov.size()) continue;
      c->rx = RxState::kHeader;
      c->got = 0;
      Dispatch(c);
    } else if (c->rx == RxState::kSegs) {
      c->got += static_cast<size_t>(n);
      if (c->got < c->segs.size() * sizeof(WireSeg)) continue;
      st = BeginPayload(c);
    } else {
      c->got += static_cast<size_t>(n);
      if (c->got < sizeof(FrameHeader)) continue;
      auto nseg = wire::ParseHeader(c->hdr);
      if (!nseg.ok()) {
        st = nseg.status();
      } else if (*nseg > 0) {
        c->segs.resize(*nseg);
        c->rx = RxState::kSegs;
        c->got = 0;
        continue;
      } else {
        c->segs.clear();
        st = BeginPayload(c);
      }
    }
    if (!st.ok()) {  // hostile or corrupt input: never touch memory, drop the connection
      PD_LOG_WARN("kvtransfer tcp: dropping connection: {}", st.ToString());
      ConnFailed(c, st);
      return;
    }
    if (!conns_.count(fd)) return;  // Dispatch may have closed it
  }
}

// Validates the segment table and points the payload iovecs at their destination.
Status TcpTransport::BeginPayload(Conn* c) {
  const FrameHeader& h = c->hdr;
  const auto type = static_cast<FrameType>(h.type);
  c->rx_iov.clear();
  c->rx_iov_pos = 0;
  c->rx_owned.clear();
  c->rx_staged = false;
  c->rx_slot.Reset();
  c->rx_heap.reset();
  if (c->state != ConnState::kReady && c->state != ConnState::kAccepted &&
      type != FrameType::kHelloAck && type != FrameType::kErr &&
      type != FrameType::kAuthChallenge) {
    return FailedPrecondition("kvtransfer tcp: frame before handshake");
  }
  // An inbound connection carries nothing but HELLO (and its AUTH_RESPONSE) until the peer
  // passed the handshake: no frame before that touches memory.
  if (c->state == ConnState::kAccepted && c->remote_name.empty() && type != FrameType::kHello &&
      type != FrameType::kAuthResponse) {
    return FailedPrecondition("kvtransfer tcp: frame before HELLO");
  }
  if (type == FrameType::kData || type == FrameType::kReadData) {
    PD_RETURN_IF_ERROR(wire::ValidateSegs(c->segs.data(), h.nseg, regions_,
                                          static_cast<int64_t>(h.payload_len)));
    if (copier_ && AnyDevice(c->segs.data(), h.nseg)) {
      StageRxBuffer(c);  // GPU destination: land in a bounce buffer, copy host->device after
    } else {
      for (const WireSeg& s : c->segs) {
        c->rx_iov.push_back({regions_[s.arena].base + s.offset, s.length});
      }
    }
  } else if (type == FrameType::kReadReq) {
    // Source ranges are ours; destinations are checked by the requester when the data returns.
    Status st = wire::ValidateSegs(c->segs.data(), h.nseg, regions_, -1);
    if (!st.ok()) {
      QueueCtrl(c, wire::MakeHeader(FrameType::kErr, h.xfer_id, h.chunk_id, h.ts_ns, 0,
                                    st.message().size(), static_cast<uint32_t>(st.code())),
                {}, st.message());
      c->rx = RxState::kHeader;
      c->got = 0;
      return OkStatus();
    }
  } else if (h.payload_len > 0) {
    c->rx_owned.resize(h.payload_len);
    c->rx_iov.push_back({c->rx_owned.data(), c->rx_owned.size()});
  }
  if (c->rx_iov.empty()) {
    c->rx = RxState::kHeader;
    c->got = 0;
    Dispatch(c);
  } else {
    c->rx = RxState::kPayload;
  }
  return OkStatus();
}

void TcpTransport::Dispatch(Conn* c) {
  const FrameHeader h = c->hdr;
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kHello:
      OnHello(c);
      return;
    case FrameType::kHelloAck:
      if (c->outgoing && c->state == ConnState::kHelloSent) {
        if (!opt_.auth_secret.empty() && !c->auth_ok) {
          ConnFailed(c, Unauthenticated("kvtransfer auth: peer '" + peers_[c->peer].md.name +
                                        "' accepted the connection without proving the shared "
                                        "secret (it has no auth_secret; set the same on both)"));
          return;
        }
        c->state = ConnState::kReady;
      }
      cv_.notify_all();
      return;
    case FrameType::kAuthChallenge:
      OnAuthChallenge(c);
      return;
    case FrameType::kAuthResponse:
      OnAuthResponse(c);
      return;
    case FrameType::kData:
      if (c->rx_staged) return FinishStagedRx(c);  // ACK after the host->device copy
      QueueCtrl(c, wire::MakeHeader(FrameType::kAck, h.xfer_id, h.chunk_id, h.ts_ns, 0, 0,
                                    static_cast<uint32_t>(h.payload_len)),
                {}, {});
      return;
    case FrameType::kReadData:
      if (c->rx_staged) return FinishStagedRx(c);  // done after the host->device copy
      OnChunkAcked(c, h.chunk_id, h.ts_ns);
      return;
    case FrameType::kAck:
      OnChunkAcked(c, h.chunk_id, h.ts_ns);
      return;
    case FrameType::kReadReq: {
      std::vector<WireSeg> dst(c->segs.begin() + h.nseg, c->segs.end());
      std::vector<iovec> payload;
      uint64_t total = 0;
      for (uint32_t i = 0; i < h.nseg; ++i) {
        const WireSeg& s = c->segs[i];
        payload.push_back({regions_[s.arena].base + s.offset, s.length});
        total += s.length;
        dst[i].length = s.length;
      }
      if (copier_ && AnyDevice(c->segs.data(), h.nseg)) {
        ServeStagedRead(c, std::move(dst), std::move(payload), total);
        return;
      }
      QueueCtrl(c, wire::MakeHeader(FrameType::kReadData, h.xfer_id, h.chunk_id, h.ts_ns,
                                    h.nseg, total),
                std::move(dst), {}, std::move(payload));
      return;
    }
    case FrameType::kNotify:
      host_->OnNotification(c->remote_name, std::move(c->rx_owned));
      QueueCtrl(c, wire::MakeHeader(FrameType::kNotifyAck, h.xfer_id, 0, h.ts_ns, 0, 0), {}, {});
      return;
    case FrameType::kNotifyAck:
      if (auto it = xfers_.find(h.xfer_id); it != xfers_.end() && it->second.notify_sent) {
        it->second.notify_acked = true;
        MaybeComplete(h.xfer_id);
      }
      return;
    case FrameType::kErr:
      OnErr(c);
      return;
  }
}

void TcpTransport::OnHello(Conn* c) {
  auto hello = wire::DecodeHello(c->rx_owned);
  Status st;
  if (!hello.ok()) {
    st = hello.status();
  } else if (hello->compat_hash != opt_.compat_hash) {
    st = FailedPrecondition("kvtransfer: compat hash mismatch: '" + hello->name + "' has " +
                            std::to_string(hello->compat_hash) + ", '" + opt_.name + "' has " +
                            std::to_string(opt_.compat_hash));
  } else if (hello->expected_incarnation != incarnation_) {
    st = FailedPrecondition("kvtransfer: stale metadata: '" + hello->name +
                            "' loaded incarnation " + std::to_string(hello->expected_incarnation) +
                            " of '" + opt_.name + "', which now runs incarnation " +
                            std::to_string(incarnation_) + " (reload its metadata)");
  }
  const bool secret = !opt_.auth_secret.empty();
  if (st.ok() && !secret && !hello->nonce.empty()) {
    st = Unauthenticated("kvtransfer auth: '" + hello->name + "' offers authentication but '" +
                         opt_.name + "' has no auth_secret (set the same secret on both)");
  } else if (st.ok() && secret && hello->nonce.empty()) {
    st = Unauthenticated("kvtransfer auth: '" + opt_.name + "' requires peer authentication and '" +
                         hello->name + "' presented none (set the same auth_secret on both)");
  }
  if (!st.ok()) return Refuse(c, st);
  if (secret) {  // challenge: our nonce and our proof; HELLO_ACK after the peer's proof
    c->auth_peer_nonce = hello->nonce;
    c->auth_nonce = auth::NewNonce();
    c->auth_pending_name = hello->name;
    const std::string body = c->auth_nonce + auth::Proof(opt_.auth_secret, "r", hello->nonce,
                                                         c->auth_nonce, hello->name, opt_.name);
    QueueCtrl(c, wire::MakeHeader(FrameType::kAuthChallenge, 0, 0, 0, 0, body.size()), {}, body);
    return;
  }
  c->remote_name = hello->name;
  QueueCtrl(c, wire::MakeHeader(FrameType::kHelloAck, 0, 0, 0, 0, 0), {}, {});
}

// Answers a refused handshake with ERR (the initiator fails with `st`); auth refusals are
// logged here too, so both sides say why. The connection stays unauthenticated.
void TcpTransport::Refuse(Conn* c, const Status& st) {
  if (st.code() == StatusCode::kUnauthenticated) {
    PD_LOG_WARN("kvtransfer tcp: refused an inbound peer: {}", st.message());
  }
  QueueCtrl(c, wire::MakeHeader(FrameType::kErr, 0, 0, 0, 0, st.message().size(),
                                static_cast<uint32_t>(st.code())),
            {}, st.message());
}

// Initiator: verify the responder's proof, then prove ours.
void TcpTransport::OnAuthChallenge(Conn* c) {
  const std::string peer = c->outgoing ? peers_[c->peer].md.name : c->remote_name;
  const std::string& b = c->rx_owned;
  if (!c->outgoing || c->state != ConnState::kHelloSent || c->auth_nonce.empty() ||
      b.size() != auth::kNonceBytes + auth::kProofBytes) {
    return ConnFailed(c, Unauthenticated("kvtransfer auth: unexpected challenge from '" + peer +
                                         "' (set the same auth_secret on both)"));
  }
  const std::string nonce_r = b.substr(0, auth::kNonceBytes);
  const std::string want =
      auth::Proof(opt_.auth_secret, "r", c->auth_nonce, nonce_r, opt_.name, peer);
  if (!auth::Equal(b.substr(auth::kNonceBytes), want)) {
    const Status st = Unauthenticated("kvtransfer auth: peer '" + peer +
                                      "' failed authentication (a different auth_secret)");
    PD_LOG_WARN("kvtransfer tcp: {}", st.message());
    QueueCtrl(c, wire::MakeHeader(FrameType::kErr, 0, 0, 0, 0, st.message().size(),
                                  static_cast<uint32_t>(st.code())),
              {}, st.message());
    return ConnFailed(c, st);
  }
  c->auth_ok = true;
  const std::string proof =
      auth::Proof(opt_.auth_secret, "i", c->auth_nonce, nonce_r, opt_.name, peer);
  QueueCtrl(c, wire::MakeHeader(FrameType::kAuthResponse, 0, 0, 0, 0, proof.size()), {}, proof);
}

// Responder: the initiator's proof admits the connection (HELLO_ACK) or refuses it.
void TcpTransport::OnAuthResponse(Conn* c) {
  if (c->outgoing || c->auth_pending_name.empty()) {
    return Refuse(c, Unauthenticated("kvtransfer auth: AUTH_RESPONSE without a challenge"));
  }
  const std::string name = c->auth_pending_name;
  const std::string want = auth::Proof(opt_.auth_secret, "i", c->auth_peer_nonce, c->auth_nonce,
                                       name, opt_.name);
  const bool ok = auth::Equal(c->rx_owned, want);
  c->auth_nonce.clear();  // one attempt per challenge
  c->auth_peer_nonce.clear();
  c->auth_pending_name.clear();
  if (!ok) {
    return Refuse(c, Unauthenticated("kvtransfer auth: '" + name + "' failed authentication at '" +
                                     opt_.name + "' (a different auth_secret)"));
  }
  c->remote_name = name;
  QueueCtrl(c, wire::MakeHeader(FrameType::kHelloAck, 0, 0, 0, 0, 0), {}, {});
}

void TcpTransport::OnErr(Conn* c) {
  const FrameHeader& h = c->hdr;
  StatusCode code = static_cast<StatusCode>(h.aux);
  if (h.aux == 0 || h.aux > 16) code = StatusCode::kInternal;
  Status st(code, c->rx_owned.empty() ? "kvtransfer: peer reported an error" : c->rx_owned);
  if (h.xfer_id == 0) {  // handshake refused
    ConnFailed(c, st);
    return;
  }
  if (auto it = c->chunks.find(h.chunk_id); it != c->chunks.end()) {
    c->inflight -= it->second.bytes;
    c->chunks.erase(it);
  }
  if (xfers_.count(h.xfer_id)) FinishXfer(h.xfer_id, st);
}

void TcpTransport::OnChunkAcked(Conn* c, uint64_t chunk_id, int64_t ts_ns) {
  auto it = c->chunks.find(chunk_id);
  if (it == c->chunks.end()) return;  // unknown chunk: ignore
  const ChunkRec rec = it->second;
  c->chunks.erase(it);
  c->inflight -= rec.bytes;
  const int64_t now = NowNs();
  int64_t rtt = now - ts_ns;  // the receiver echoed our send timestamp
  if (ts_ns <= 0 || rtt <= 0 || rtt > 60'000'000'000) rtt = now - rec.sent_ns;
  if (auto p = peers_.find(c->peer); p != peers_.end()) {
    p->second.selector->OnRtt(c->path, rtt);
    int64_t best = 0;  // the best path's smoothed RTT: the reference of the relative target
    for (const Conn* q : p->second.paths) {
      const int64_t s = q && q->state == ConnState::kReady ? q->cc->srtt_ns() : 0;
      if (s > 0 && (best == 0 || s < best)) best = s;
    }
    if (best == 0) best = rtt;
    for (Conn* q : p->second.paths) {
      if (q) q->cc->SetReferenceRttNs(best);
    }
  }
  c->cc->OnAck(rec.bytes, rtt);
  if (auto x = xfers_.find(rec.xfer); x != xfers_.end()) {
    x->second.acked += rec.bytes;
    MaybeComplete(rec.xfer);
  }
}

// ----------------------------------------------------------------------------- transfers

void TcpTransport::MaybeComplete(TransferId id) {
  auto it = xfers_.find(id);
  if (it == xfers_.end()) return;
  Xfer& x = it->second;
  if (x.acked < x.w.bytes) return;
  if (x.w.has_notify && !x.notify_acked) {
    if (x.notify_sent) return;
    auto p = peers_.find(x.w.peer);
    if (p == peers_.end()) return FinishXfer(id, Unavailable("kvtransfer: peer removed"));
    for (Conn* c : p->second.paths) {
      if (c && c->state == ConnState::kReady) {
        x.notify_sent = true;
        QueueCtrl(c, wire::MakeHeader(FrameType::kNotify, id, 0, NowNs(), 0, x.w.notify.size()),
                  {}, x.w.notify);
        return;
      }
    }
    EnsureConnected(p->second, x.w.peer);  // sent once a path is up (CheckTimers retries)
    return;
  }
  FinishXfer(id, OkStatus());
}

void TcpTransport::FinishXfer(TransferId id, const Status& st) {
  auto it = xfers_.find(id);
  if (it == xfers_.end()) return;
  const uint32_t chunks = it->second.chunks;
  if (auto p = peers_.find(it->second.w.peer); p != peers_.end()) {
    auto& q = p->second.queue;
    q.erase(std::remove(q.begin(), q.end(), id), q.end());
  }
  xfers_.erase(it);
  host_->OnTransferDone(id, st, chunks);
}

void TcpTransport::CheckTimers() {
  const int64_t now = NowNs();
  if (now - last_timer_ns_ < 1'000'000) return;
  last_timer_ns_ = now;
  std::vector<TransferId> expired, waiting_notify;
  for (auto& [id, x] : xfers_) {
    if (x.Expired(now)) expired.push_back(id);
    else if (x.acked >= x.w.bytes && x.w.has_notify && !x.notify_sent) waiting_notify.push_back(id);
  }
  for (TransferId id : expired) {
    FinishXfer(id, DeadlineExceeded("kvtransfer: transfer " + std::to_string(id) +
                                    " missed its deadline"));
  }
  for (TransferId id : waiting_notify) MaybeComplete(id);
  const int64_t connect_ns = opt_.connect_timeout.count() * 1'000'000;
  const int64_t idle_ns = opt_.peer_timeout.count() * 1'000'000;
  std::vector<std::pair<PeerId, Status>> dead;
  for (auto& [fd, c] : conns_) {
    if (!c->outgoing) continue;
    const bool handshaking = c->state != ConnState::kReady;
    const bool busy = c->inflight > 0 || c->cur.has_value();
    if (handshaking && now - c->started_ns > connect_ns) {
      dead.push_back({c->peer, Unavailable("kvtransfer tcp: connect/handshake to '" +
                                           peers_[c->peer].md.name + "' timed out")});
    } else if (!handshaking && busy && now - c->last_progress_ns > idle_ns) {
      dead.push_back({c->peer, Unavailable("kvtransfer tcp: peer '" + peers_[c->peer].md.name +
                                           "' made no progress for " +
                                           std::to_string(opt_.peer_timeout.count()) + " ms")});
    }
  }
  for (auto& [id, st] : dead) FailPeer(id, st);
}

int64_t TcpTransport::NextWakeNs() const {
  int64_t next = 0;
  for (const auto& [id, p] : peers_) {
    if (p.queue.empty()) continue;
    for (const Conn* c : p.paths) {
      if (!c) continue;
      const int64_t t = c->cc->NextSendNs();
      if (t > 0 && (next == 0 || t < next)) next = t;
    }
  }
  return next;
}

// ------------------------------------------------------------------------------- public ops

void TcpTransport::Submit(TransferWork work) {
  std::lock_guard<std::mutex> l(mu_);
  const TransferId id = work.id;
  const PeerId peer = work.peer;
  auto p = peers_.find(peer);
  if (p == peers_.end()) {
    host_->OnTransferDone(id, NotFound("kvtransfer: unknown peer"), 0);
    return;
  }
  Xfer& x = xfers_[id];
  x.w = std::move(work);
  if (x.w.op == Op::kWrite) {
    for (const Segment& s : x.w.segs) x.stage = x.stage || regions_[s.local_arena].device;
  }
  p->second.queue.push_back(id);
  Wake();
}

void TcpTransport::Cancel(TransferId id, const Status& why) {
  std::lock_guard<std::mutex> l(mu_);
  FinishXfer(id, why);
}

size_t TcpTransport::ConnectedPaths() const {
  std::lock_guard<std::mutex> l(mu_);
  size_t n = 0;
  for (const auto& [fd, c] : conns_) n += c->outgoing && c->state == ConnState::kReady;
  return n;
}

size_t TcpTransport::PendingTransfers() const {
  std::lock_guard<std::mutex> l(mu_);
  return xfers_.size();
}

std::vector<PathStats> TcpTransport::Paths() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<PathStats> out;
  for (const auto& [id, p] : peers_) {
    for (size_t i = 0; i < p.paths.size(); ++i) {
      const Conn* c = p.paths[i];
      if (c == nullptr || c->state != ConnState::kReady || !c->cc) continue;
      out.push_back({p.md.name, static_cast<int>(i), c->cc->cwnd_bytes(), c->cc->srtt_ns()});
    }
  }
  return out;
}

}  // namespace pd::kvtransfer::tcp

namespace pd::kvtransfer {
std::unique_ptr<Transport> MakeTcpTransport(const EngineOptions& options, uint64_t incarnation,
                                            TransportHost* host) {
  return std::make_unique<tcp::TcpTransport>(options, incarnation, host);
}
}  // namespace pd::kvtransfer
