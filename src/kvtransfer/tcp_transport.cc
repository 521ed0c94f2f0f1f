// TCP transport: N connections per peer used as paths, chunked protocol (wire.h), writev/readv
// straight between the socket and registered memory, per-path host congestion control and
// power-of-two path choice. One I/O thread (epoll) per engine; all state under one mutex.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/logging.h"
#include "kvtransfer/auth.h"
#include "kvtransfer/tcp_transport_internal.h"

namespace pd::kvtransfer::tcp {

using wire::FrameHeader;
using wire::FrameType;
using wire::WireSeg;

namespace {

// An IPv4 literal, or a host name resolved with getaddrinfo (/etc/hosts, DNS: Kubernetes
// headless-Service names). Names block the caller for the resolver's time.
Status ResolveIpv4(const std::string& host, in_addr* out) {
  if (inet_pton(AF_INET, host.c_str(), out) == 1) return OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Unavailable("cannot resolve '" + host + "' to an IPv4 address: " +
                       (rc != 0 ? gai_strerror(rc) : "no address"));
  }
  *out = reinterpret_cast<const sockaddr_in*>(res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------- setup / teardown

Status TcpTransport::Start(const std::vector<wire::Region>& regions) {
  regions_ = regions;
  PD_RETURN_IF_ERROR(SetUpStaging());
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Unavailable(Errno("socket"));
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(opt_.listen_port));
  if (Status r = ResolveIpv4(opt_.listen_host, &a.sin_addr); !r.ok()) {
    return InvalidArgument("kvtransfer tcp: listen_host: " + r.message());
  }
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(listen_fd_, 128) != 0) {
    return Unavailable(Errno("kvtransfer tcp: bind/listen"));
  }
  socklen_t len = sizeof(a);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  if (copier_fd_ >= 0) {
    ev.data.fd = copier_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, copier_fd_, &ev);
  }
  thread_ = std::thread([this] { Loop(); });
  return OkStatus();
}

std::vector<std::string> TcpTransport::Addresses() const {
  std::vector<std::string> out;
  const auto& hosts = opt_.advertise_addrs;
  if (hosts.empty()) out.push_back(opt_.listen_host + ":" + std::to_string(port_));
  for (const auto& h : hosts) out.push_back(h + ":" + std::to_string(port_));
  return out;
}

void TcpTransport::Stop() {
  if (thread_.joinable()) {
    stop_ = true;
    Wake();
    thread_.join();
  }
  std::lock_guard<std::mutex> l(mu_);
  std::vector<TransferId> ids;
  for (auto& [id, x] : xfers_) ids.push_back(id);
  for (TransferId id : ids) FinishXfer(id, Cancelled("kvtransfer: engine shutting down"));
  while (!conns_.empty()) CloseConn(conns_.begin()->second.get());
  peers_.clear();
  TearDownStaging();
  for (int* fd : {&listen_fd_, &epoll_fd_, &wake_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void TcpTransport::Wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof(one));
}

void TcpTransport::SetSockOpts(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (opt_.notsent_lowat > 0) {
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &opt_.notsent_lowat, sizeof(int));
  }
  if (!opt_.kernel_cc.empty() &&
      setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, opt_.kernel_cc.data(),
                 static_cast<socklen_t>(opt_.kernel_cc.size())) != 0) {
    PD_LOG_WARN("kvtransfer tcp: TCP_CONGESTION {} refused: {}", opt_.kernel_cc, strerror(errno));
  }
}

// --------------------------------------------------------------------------------- peers

void TcpTransport::SetPeer(PeerId id, const AgentMetadata& md) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    FailPeer(id, Unavailable("kvtransfer: peer '" + md.name + "' restarted (new incarnation)"));
  }
  Peer& p = peers_[id];
  p.md = md;
  p.paths.assign(static_cast<size_t>(opt_.num_paths), nullptr);
  p.selector = std::make_unique<PathSelector>(opt_.path_policy, opt_.num_paths,
                                              SteadyClock::Get(), id * 7919 + 1);
}

void TcpTransport::RemovePeer(PeerId id) {
  std::lock_guard<std::mutex> l(mu_);
  FailPeer(id, Cancelled("kvtransfer: peer disconnected by the application"));
  peers_.erase(id);
}

// Fails every transfer to the peer and closes its outgoing paths (they reconnect on demand).
void TcpTransport::FailPeer(PeerId id, const Status& why) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer& p = it->second;
  last_connect_error_ = why.message();
  std::vector<TransferId> ids;
  for (auto& [xid, x] : xfers_) {
    if (x.w.peer == id) ids.push_back(xid);
  }
  for (TransferId xid : ids) FinishXfer(xid, why);
  p.queue.clear();
  for (Conn*& c : p.paths) {
    if (c) CloseConn(c);
    c = nullptr;
  }
  cv_.notify_all();
}

Status TcpTransport::StartConnect(Peer& p, PeerId id, int path) {
  if (p.md.addrs.empty()) return FailedPrecondition("kvtransfer tcp: peer has no address");
  const std::string& hp = p.md.addrs[static_cast<size_t>(path) % p.md.addrs.size()];
  const size_t colon = hp.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos) {
    return InvalidArgument("kvtransfer tcp: bad peer address '" + hp + "'");
  }
  if (Status r = ResolveIpv4(hp.substr(0, colon), &a.sin_addr); !r.ok()) {
    return Unavailable("kvtransfer tcp: peer address '" + hp + "': " + r.message());
  }
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(hp.c_str() + colon + 1)));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unavailable(Errno("socket"));
  SetSockOpts(fd);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno != EINPROGRESS) {
    Status s = Unavailable(Errno(("kvtransfer tcp: connect " + hp).c_str()));
    close(fd);
    return s;
  }
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->serial = next_serial_++;
  c->outgoing = true;
  c->peer = id;
  c->path = path;
  c->state = ConnState::kConnecting;
  c->started_ns = c->last_progress_ns = NowNs();
  c->cc = MakeCongestionControl(opt_.cc, opt_.chunk_bytes, SteadyClock::Get());
  c->want_out = true;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  p.paths[static_cast<size_t>(path)] = c.get();
  conns_[fd] = std::move(c);
  return OkStatus();
}

void TcpTransport::EnsureConnected(Peer& p, PeerId id) {
  for (int i = 0; i < opt_.num_paths; ++i) {
    if (p.paths[static_cast<size_t>(i)] != nullptr) continue;
    Status s = StartConnect(p, id, i);
    if (!s.ok()) {
      FailPeer(id, s);
      return;
    }
  }
}

Status TcpTransport::Connect(PeerId id, int64_t deadline_ns) {
  std::unique_lock<std::mutex> l(mu_);
  auto it = peers_.find(id);
  if (it == peers_.end()) return NotFound("kvtransfer: unknown peer");
  EnsureConnected(it->second, id);
  Wake();
  for (;;) {
    it = peers_.find(id);
    if (it == peers_.end()) return NotFound("kvtransfer: peer removed");
    int ready = 0, open = 0;
    for (Conn* c : it->second.paths) {
      open += c != nullptr;
      ready += c != nullptr && c->state == ConnState::kReady;
    }
    if (ready == opt_.num_paths) return OkStatus();
    if (open < opt_.num_paths) {
      return Unavailable("kvtransfer tcp: connecting to '" + it->second.md.name + "' failed" +
                         (last_connect_error_.empty() ? "" : ": " + last_connect_error_));
    }
    if (NowNs() >= deadline_ns) return DeadlineExceeded("kvtransfer tcp: connect timed out");
    cv_.wait_for(l, std::chrono::milliseconds(5));
  }
}

// ----------------------------------------------------------------------------- event loop

void TcpTransport::Loop() {
  epoll_event evs[64];
  while (!stop_) {
    int64_t wait_ns = 2'000'000;
    {
      std::lock_guard<std::mutex> l(mu_);
      const int64_t next = NextWakeNs();
      if (next > 0) wait_ns = std::clamp<int64_t>(next - NowNs(), 0, wait_ns);
      // Copies in flight: their eventfd wakes us; poll too in case a wakeup was missed.
      if (copier_ && copier_->Completed() < last_fence_) {
        wait_ns = std::min<int64_t>(wait_ns, 500'000);
      }
    }
    timespec ts{0, static_cast<long>(wait_ns)};
    const int n = epoll_pwait2(epoll_fd_, evs, 64, &ts, nullptr);
    std::lock_guard<std::mutex> l(mu_);
    // Timers first: a loop that resumes after a stop (SIGSTOP, a VM pause) fails the transfers
    // whose deadline passed before it writes any more of them (Flush drops their queued frames).
    CheckTimers();
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == wake_fd_ || fd == copier_fd_) {
        uint64_t v;
        (void)!read(fd, &v, sizeof(v));
      } else if (fd == listen_fd_) {
        AcceptAll();
      } else if (auto it = conns_.find(fd); it != conns_.end()) {
        HandleEvent(it->second.get(), evs[i].events);
      }
    }
    OnCopiesDone();
    Schedule();
    CheckTimers();
  }
}

void TcpTransport::AcceptAll() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    SetSockOpts(fd);
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->serial = next_serial_++;
    c->state = ConnState::kAccepted;
    c->started_ns = c->last_progress_ns = NowNs();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    conns_[fd] = std::move(c);
  }
}

void TcpTransport::HandleEvent(Conn* c, uint32_t events) {
  const int fd = c->fd;
  if (c->state == ConnState::kConnecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      ConnFailed(c, Unavailable(std::string("kvtransfer tcp: connect failed: ") + strerror(err)));
      return;
    }
    c->state = ConnState::kHelloSent;
    wire::HelloInfo h{opt_.name, incarnation_, peers_[c->peer].md.incarnation, opt_.compat_hash,
                      static_cast<uint32_t>(c->path), {}};
    if (!opt_.auth_secret.empty()) h.nonce = c->auth_nonce = auth::NewNonce();
    std::string body = wire::EncodeHello(h);
    const FrameHeader hh = wire::MakeHeader(FrameType::kHello, 0, 0, 0, 0, body.size());
    QueueCtrl(c, hh, {}, std::move(body));
    return;
  }
  if (events & EPOLLOUT) {
    Flush(c);
    if (!conns_.count(fd)) return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) OnReadable(c);
}

void TcpTransport::UpdateInterest(Conn* c) {
  const bool want = c->cur.has_value() || c->state == ConnState::kConnecting;
  if (want == c->want_out) return;
  c->want_out = want;
  epoll_event ev{};
  ev.events = want ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.fd = c->fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
}

void TcpTransport::CloseConn(Conn* c) {
  if (c->outgoing) {
    auto it = peers_.find(c->peer);
    if (it != peers_.end() && c->path >= 0 &&
        it->second.paths[static_cast<size_t>(c->path)] == c) {
      it->second.paths[static_cast<size_t>(c->path)] = nullptr;
    }
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  conns_.erase(c->fd);  // destroys *c
}

void TcpTransport::ConnFailed(Conn* c, const Status& why) {
  if (c->outgoing) {
    FailPeer(c->peer, why);  // closes c too
  } else {
    PD_LOG_DEBUG("kvtransfer tcp: inbound connection from '{}' closed: {}", c->remote_name,
                 why.ToString());
    CloseConn(c);
  }
}

// ---------------------------------------------------------------------------------- send

void TcpTransport::QueueCtrl(Conn* c, FrameHeader h, std::vector<WireSeg> segs, std::string owned,
                             std::vector<iovec> payload) {
  OutFrame f;
  f.head.resize(sizeof(h) + segs.size() * sizeof(WireSeg));
  std::memcpy(f.head.data(), &h, sizeof(h));
  if (!segs.empty()) {
    std::memcpy(f.head.data() + sizeof(h), segs.data(), segs.size() * sizeof(WireSeg));
  }
  f.owned = std::move(owned);
  f.payload = std::move(payload);
  c->ctrl_q.push_back(std::move(f));
  Flush(c);
}

// A queued (not yet started) data frame whose transfer has ended - failed, cancelled or past
// its deadline - is not sent: once the transfer's owner is told it failed, no byte of it may
// still reach the peer (a D reuses the blocks of a fenced lease). Its chunk leaves the window.
// Past the deadline counts even before CheckTimers has failed the transfer: a loop stopped
// mid-Flush (SIGSTOP, VM pause) resumes here, not at CheckTimers.
bool TcpTransport::DropIfTransferEnded(Conn* c, const OutFrame& f) {
  if (f.chunk_id == 0) return false;
  auto it = c->chunks.find(f.chunk_id);
  if (it == c->chunks.end()) return false;
  auto x = xfers_.find(it->second.xfer);
  if (x != xfers_.end() && !x->second.Expired(NowNs())) {
    return false;
  }
  c->inflight -= it->second.bytes;
  c->chunks.erase(it);
  return true;
}

void TcpTransport::Flush(Conn* c) {
  const int fd = c->fd;
  for (;;) {
    if (!c->cur) {  // frames with a device copy in flight wait for its fence
      if (!c->ctrl_q.empty() && FrameReady(c->ctrl_q.front())) {
        c->cur = std::move(c->ctrl_q.front());
        c->ctrl_q.pop_front();
        c->cur_is_data = false;
      } else if (!c->data_q.empty() && FrameReady(c->data_q.front())) {
        if (DropIfTransferEnded(c, c->data_q.front())) {
          c->data_q.pop_front();
          continue;
        }
        c->cur = std::move(c->data_q.front());
        c->data_q.pop_front();
        c->cur_is_data = true;
      } else {
        break;
      }
    }
    OutFrame& f = *c->cur;
    if (!f.started) {
      f.started = true;
      if (f.chunk_id != 0) {  // stamp the send time at the first byte
        const int64_t now = NowNs();
        std::memcpy(f.head.data() + offsetof(FrameHeader, ts_ns), &now, sizeof(now));
        auto it = c->chunks.find(f.chunk_id);
        if (it != c->chunks.end()) it->second.sent_ns = now;
      }
      f.iov.push_back({f.head.data(), f.head.size()});
      if (!f.owned.empty()) f.iov.push_back({f.owned.data(), f.owned.size()});
      for (const iovec& v : f.payload) f.iov.push_back(v);
    }
    const size_t cnt = std::min<size_t>(f.iov.size() - f.iov_pos, IOV_MAX);
    const ssize_t n = writev(fd, f.iov.data() + f.iov_pos, static_cast<int>(cnt));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      ConnFailed(c, Unavailable(Errno("kvtransfer tcp: send to peer failed")));
      return;
    }
    host_->OnBytes(static_cast<uint64_t>(n), 0);
    c->last_progress_ns = NowNs();
    Consume(f.iov, f.iov_pos, static_cast<size_t>(n));
    if (f.iov_pos == f.iov.size()) c->cur.reset();
  }
  UpdateInterest(c);
}

void TcpTransport::Schedule() {
  for (auto it = peers_.begin(); it != peers_.end();) {
    const PeerId id = it->first;
    Peer& p = it->second;
    ++it;
    if (!p.queue.empty()) SchedulePeer(id, p);
  }
}

// Hands chunks of the peer's queued transfers to paths that may send now.
bool TcpTransport::SchedulePeer(PeerId id, Peer& p) {
  EnsureConnected(p, id);
  if (!peers_.count(id)) return false;
  std::vector<bool> eligible(p.paths.size());
  while (!p.queue.empty()) {
    auto xit = xfers_.find(p.queue.front());
    if (xit == xfers_.end() || xit->second.seg_idx >= xit->second.w.segs.size()) {
      p.queue.pop_front();
      if (xit != xfers_.end()) MaybeComplete(xit->first);
      continue;
    }
    Xfer& x = xit->second;
    if (x.Expired(NowNs())) {  // CheckTimers fails it
      p.queue.pop_front();
      continue;
    }
    const uint64_t next = std::min<uint64_t>(opt_.chunk_bytes, x.w.bytes - x.emitted);
    if (x.stage && tx_pool_.empty()) return true;  // bounce slots return as frames leave
    bool any = false;
    for (size_t i = 0; i < p.paths.size(); ++i) {
      Conn* c = p.paths[i];
      // Staged chunks may queue up to kStageDepth frames behind the one being written, so their
      // device->host copies overlap the wire.
      const bool room = x.stage ? c && c->data_q.size() < kStageDepth
                                : c && !c->cur && c->data_q.empty();
      eligible[i] = room && c->state == ConnState::kReady && c->cc->CanSend(c->inflight, next);
      any = any || eligible[i];
    }
    if (!any) return true;
    const int path = p.selector->Pick(eligible);
    if (path < 0) return true;  // strict round robin: the path whose turn it is must drain first
    EmitChunk(p, p.paths[static_cast<size_t>(path)], x);
    if (!peers_.count(id)) return false;
  }
  return true;
}

// Builds one chunk of `x` (up to chunk_bytes over up to kMaxSegsPerFrame segments) on path c.
void TcpTransport::EmitChunk(Peer& p, Conn* c, Xfer& x) {
  std::vector<WireSeg> dst, src;
  OutFrame f;
  uint64_t bytes = 0;
  while (x.seg_idx < x.w.segs.size() && bytes < opt_.chunk_bytes &&
         dst.size() < wire::kMaxSegsPerFrame) {
    const Segment& s = x.w.segs[x.seg_idx];
    const uint64_t n = std::min(s.length - x.seg_off, opt_.chunk_bytes - bytes);
    const uint64_t lo = s.local_offset + x.seg_off, ro = s.remote_offset + x.seg_off;
    if (x.w.op == Op::kWrite) {
      dst.push_back({ro, static_cast<uint32_t>(n), s.remote_arena});
      f.payload.push_back({regions_[s.local_arena].base + lo, n});
    } else {
      src.push_back({ro, static_cast<uint32_t>(n), s.remote_arena});
      dst.push_back({lo, static_cast<uint32_t>(n), s.local_arena});
    }
    bytes += n;
    x.seg_off += n;
    if (x.seg_off == s.length) ++x.seg_idx, x.seg_off = 0;
  }
  if (x.stage && !StageChunk(x, f, bytes)) return;  // x is gone (failed)
  const uint64_t chunk_id = next_chunk_id_++;
  const bool write = x.w.op == Op::kWrite;
  FrameHeader h = wire::MakeHeader(write ? FrameType::kData : FrameType::kReadReq, x.w.id,
                                   chunk_id, 0, static_cast<uint16_t>(dst.size()),
                                   write ? bytes : 0);
  std::vector<WireSeg> table = write ? dst : src;
  if (!write) table.insert(table.end(), dst.begin(), dst.end());
  f.head.resize(sizeof(h) + table.size() * sizeof(WireSeg));
  std::memcpy(f.head.data(), &h, sizeof(h));
  std::memcpy(f.head.data() + sizeof(h), table.data(), table.size() * sizeof(WireSeg));
  f.chunk_id = chunk_id;
  c->chunks[chunk_id] = ChunkRec{x.w.id, bytes, NowNs()};
  c->inflight += bytes;
  c->cc->OnSend(bytes);
  x.emitted += bytes;
  x.chunks++;
  c->data_q.push_back(std::move(f));
  Flush(c);
}

}  // namespace pd::kvtransfer::tcp
