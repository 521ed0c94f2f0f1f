// Local transport: both agents on one host. The receiver's arenas are memfd-backed
// (AllocateShareableHostMemory); at connect time it hands their fds to the sender over a Unix
// socket (SCM_RIGHTS), the sender maps them and a transfer is a memcpy by the sender's worker
// thread. Notifications go over the same socket after the copy and are acknowledged, so they
// can never overtake their data. The socket also tells the sender when the peer is gone.
// GPU arenas (kCuda): the receiver exports a CUDA IPC handle per GPU arena in the handshake
// (after the fds), the sender opens it (cudaIpcOpenMemHandle) and the copies run through its
// DeviceCopier (cudaMemcpyAsync, cudaMemcpyDefault: device<->device peer copies, or between a
// GPU arena and a shared host arena); the worker waits for the copy fence before the
// notification goes out. IPC handles only open in another process (CUDA's rule).
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "kvtransfer/auth.h"
#include "common/logging.h"
#include "kvtransfer/clock.h"
#include "kvtransfer/device_copier.h"
#include "kvtransfer/transport.h"

namespace pd::kvtransfer {
namespace {

struct Shareable {
  int fd;
  size_t bytes;
};
std::mutex g_share_mu;
std::map<void*, Shareable>& ShareTable() {
  static auto* t = new std::map<void*, Shareable>();
  return *t;
}

bool SendAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    c += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
bool RecvAll(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = recv(fd, c, n, 0);
    if (k <= 0) return false;
    c += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
bool SendMsg(int fd, const std::string& s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  return SendAll(fd, &n, 4) && SendAll(fd, s.data(), s.size());
}
bool RecvMsg(int fd, std::string& s, uint32_t max = 1 << 20) {
  uint32_t n = 0;
  if (!RecvAll(fd, &n, 4) || n > max) return false;
  s.resize(n);
  return RecvAll(fd, s.data(), n);
}

sockaddr_un AbstractAddr(const std::string& name, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const size_t n = std::min(name.size(), sizeof(a.sun_path) - 2);
  std::memcpy(a.sun_path + 1, name.data(), n);  // abstract namespace: leading NUL
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  return a;
}

struct Mapped {
  uint8_t* base;
  size_t bytes;
  bool device;  // opened CUDA IPC handle (else an mmap'ed memfd)
};

struct LocalPeer {
  AgentMetadata md;
  int fd = -1;  // control socket (notifications), -1 when not connected
  std::vector<Mapped> remote;
};

class LocalTransport final : public Transport {
 public:
  LocalTransport(const EngineOptions& o, uint64_t inc, TransportHost* host)
      : opt_(o), incarnation_(inc), host_(host) {}
  ~LocalTransport() override { Stop(); }

  Status Start(const std::vector<wire::Region>& regions) override {
    std::lock_guard<std::mutex> g(g_share_mu);
    copier_ = opt_.device_copier;
    for (const auto& r : regions) {
      if (r.device) {  // GPU arena: shared by CUDA IPC
        StatusOr<std::string> h = copier_ ? copier_->ExportHandle(r.base)
                                          : StatusOr<std::string>(FailedPrecondition("no copier"));
        if (!h.ok()) return h.status().WithContext("kvtransfer local: GPU arena");
        handles_.push_back(*h);
        regions_.push_back(r);
        continue;
      }
      auto it = ShareTable().find(r.base);
      if (it == ShareTable().end() || it->second.bytes != r.bytes) {
        return FailedPrecondition("kvtransfer local: arenas must come from "
                                  "AllocateShareableHostMemory (whole allocation)");
      }
      fds_.push_back(it->second.fd);
      regions_.push_back(r);
    }
    name_ = "pdkvx-" + opt_.name + "-" + std::to_string(incarnation_);
    socklen_t len;
    sockaddr_un a = AbstractAddr(name_, &len);
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(listen_fd_, 16)) {
      return Unavailable("kvtransfer local: cannot listen on @" + name_);
    }
    acceptor_ = std::thread([this] { AcceptLoop(); });
    worker_ = std::thread([this] { WorkLoop(); });
    return OkStatus();
  }
  std::vector<std::string> Addresses() const override { return {"@" + name_}; }

  void SetPeer(PeerId id, const AgentMetadata& md) override {
    std::lock_guard<std::mutex> l(mu_);
    Disconnect(peers_[id]);
    peers_[id].md = md;
  }
  void RemovePeer(PeerId id) override {
    std::lock_guard<std::mutex> l(mu_);
    Disconnect(peers_[id]);
    peers_.erase(id);
  }
  Status Connect(PeerId id, int64_t) override {
    std::lock_guard<std::mutex> l(mu_);
    return ConnectLocked(id);
  }
  void Submit(TransferWork w) override {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(std::move(w));
    cv_.notify_all();
  }
  void Cancel(TransferId id, const Status& why) override {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->id == id) {
        queue_.erase(it);
        host_->OnTransferDone(id, why, 0);
        return;
      }
    }
    cancelled_ = id;  // the one in progress, if it is this one
  }
  size_t ConnectedPaths() const override {
    std::lock_guard<std::mutex> l(mu_);
    size_t n = 0;
    for (const auto& [id, p] : peers_) n += p.fd >= 0;
    return n;
  }
  size_t PendingTransfers() const override {
    std::lock_guard<std::mutex> l(mu_);
    return queue_.size() + (busy_ ? 1 : 0);
  }
  void Stop() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      stop_ = true;
      cv_.notify_all();
      for (int fd : served_) shutdown(fd, SHUT_RDWR);  // wakes the serving threads
    }
    if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    if (worker_.joinable()) worker_.join();
    std::lock_guard<std::mutex> l(mu_);
    for (auto& w : queue_) host_->OnTransferDone(w.id, Cancelled("kvtransfer: shutting down"), 0);
    queue_.clear();
    for (auto& [id, p] : peers_) Disconnect(p);
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
  }

 private:
  void Disconnect(LocalPeer& p) {
    if (p.fd >= 0) close(p.fd);
    p.fd = -1;
    for (const Mapped& m : p.remote) {
      if (!m.device) munmap(m.base, m.bytes);
      else if (copier_) copier_->CloseHandle(m.base);
    }
    p.remote.clear();
  }
  Status EnsureCopier() {
    if (copier_) return OkStatus();
    StatusOr<std::shared_ptr<DeviceCopier>> c = MakeCudaCopier(0);
    if (!c.ok()) return c.status().WithContext("kvtransfer local: peer has GPU arenas");
    copier_ = *c;
    return OkStatus();
  }
  Status MapRemote(LocalPeer& p, const std::vector<int>& fds, const std::string& handles);
  Status Authenticate(int fd, const std::string& peer, const std::string& nonce_i,
                      std::string& reply);
  std::string AdmitVerdict(int fd, const wire::HelloInfo& h);

  Status ConnectLocked(PeerId id);
  void AcceptLoop();
  void Serve(int fd);
  void WorkLoop();
  Status Execute(const TransferWork& w);

  const EngineOptions opt_;
  const uint64_t incarnation_;
  TransportHost* host_;
  std::vector<wire::Region> regions_;
  std::vector<int> fds_;              // of the host arenas, in arena order
  std::vector<std::string> handles_;  // CUDA IPC handles of the GPU arenas, in arena order
  std::shared_ptr<DeviceCopier> copier_;
  std::string name_;
  int listen_fd_ = -1;
  std::thread acceptor_, worker_;
  std::vector<std::thread> servers_;
  std::vector<int> served_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<PeerId, LocalPeer> peers_;
  std::deque<TransferWork> queue_;
  bool stop_ = false, busy_ = false;
  TransferId cancelled_ = 0;
};

Status LocalTransport::ConnectLocked(PeerId id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return NotFound("kvtransfer local: unknown peer");
  LocalPeer& p = it->second;
  if (p.fd >= 0) return OkStatus();
  if (p.md.addrs.empty() || p.md.addrs[0].empty() || p.md.addrs[0][0] != '@') {
    return InvalidArgument("kvtransfer local: peer has no local address");
  }
  socklen_t len;
  sockaddr_un a = AbstractAddr(p.md.addrs[0].substr(1), &len);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) {
    close(fd);
    return Unavailable("kvtransfer local: peer '" + p.md.name + "' is not running (" +
                       p.md.addrs[0] + ")");
  }
  timeval tv{static_cast<time_t>(opt_.connect_timeout.count() / 1000),
             static_cast<suseconds_t>(opt_.connect_timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  wire::HelloInfo hi{opt_.name, incarnation_, p.md.incarnation, opt_.compat_hash, 0, {}};
  if (!opt_.auth_secret.empty()) hi.nonce = auth::NewNonce();
  std::string reply;
  if (!SendMsg(fd, wire::EncodeHello(hi)) || !RecvMsg(fd, reply)) {
    close(fd);
    return Unavailable("kvtransfer local: handshake with '" + p.md.name + "' failed");
  }
  if (Status st = Authenticate(fd, p.md.name, hi.nonce, reply); !st.ok()) {
    close(fd);
    return st;
  }
  if (reply != "OK") {
    close(fd);
    return reply.rfind("kvtransfer auth", 0) == 0 ? Unauthenticated(reply)
                                                   : FailedPrecondition(reply);
  }
  // The host arenas' fds follow in one SCM_RIGHTS message, then the GPU arenas' IPC handles.
  size_t n = 0;
  for (const ArenaInfo& ai : p.md.arenas) n += ai.kind == MemoryKind::kHost;
  std::vector<int> fds(n, -1);
  char byte;
  iovec iov{&byte, 1};
  std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * std::max<size_t>(n, 1)));
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctrl.data();
  m.msg_controllen = ctrl.size();
  if (recvmsg(fd, &m, 0) != 1) {
    close(fd);
    return Unavailable("kvtransfer local: no arena descriptors from '" + p.md.name + "'");
  }
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (n > 0) {
    if (c == nullptr || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int) * n)) {
      close(fd);
      return DataLoss("kvtransfer local: bad arena descriptors");
    }
    std::memcpy(fds.data(), CMSG_DATA(c), sizeof(int) * n);
  }
  std::string handles;
  if (!RecvMsg(fd, handles)) {
    for (int f : fds) close(f);
    close(fd);
    return Unavailable("kvtransfer local: no GPU arena handles from '" + p.md.name + "'");
  }
  Status st = MapRemote(p, fds, handles);
  if (!st.ok()) {
    Disconnect(p);
    close(fd);
    return st;
  }
  p.fd = fd;
  return OkStatus();
}

// Maps the peer's arenas: host ones from their fds (closed here), GPU ones by IPC handle.
// `handles`: per GPU arena, a u32 length and the handle's bytes.
Status LocalTransport::MapRemote(LocalPeer& p, const std::vector<int>& fds,
                                 const std::string& handles) {
  size_t next_fd = 0, pos = 0;
  Status st;
  for (const ArenaInfo& ai : p.md.arenas) {
    if (ai.kind == MemoryKind::kHost) {
      const int f = fds[next_fd++];
      void* base = st.ok() ? mmap(nullptr, ai.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
                           : MAP_FAILED;
      close(f);
      if (base == MAP_FAILED) {
        if (st.ok()) st = Unavailable("kvtransfer local: mmap of a peer arena failed");
        continue;
      }
      p.remote.push_back({static_cast<uint8_t*>(base), ai.bytes, false});
      continue;
    }
    if (!st.ok()) continue;
    uint32_t len = 0;
    if (pos + 4 > handles.size()) {
      st = DataLoss("kvtransfer local: truncated GPU arena handles");
      continue;
    }
    std::memcpy(&len, handles.data() + pos, 4);
    if (pos + 4 + len > handles.size()) {
      st = DataLoss("kvtransfer local: truncated GPU arena handles");
      continue;
    }
    const std::string h = handles.substr(pos + 4, len);
    pos += 4 + len;
    st = EnsureCopier();
    if (!st.ok()) continue;
    StatusOr<void*> base = copier_->OpenHandle(h);
    if (!base.ok()) {
      st = base.status().WithContext("kvtransfer local: opening '" + p.md.name + "' GPU arena");
      continue;
    }
    p.remote.push_back({static_cast<uint8_t*>(*base), ai.bytes, true});
  }
  return st;
}

// Initiator side of the auth exchange (auth.h): `reply` is the responder's first answer; on
// success it is replaced by the final verdict.
Status LocalTransport::Authenticate(int fd, const std::string& peer, const std::string& nonce_i,
                                    std::string& reply) {
  if (reply.rfind("AUTH", 0) != 0) {
    if (!nonce_i.empty() && reply == "OK") {
      return Unauthenticated("kvtransfer auth: peer '" + peer + "' accepted the connection "
                             "without proving the shared secret (set the same auth_secret on "
                             "both)");
    }
    return OkStatus();
  }
  if (nonce_i.empty() || reply.size() != 4 + auth::kNonceBytes + auth::kProofBytes) {
    return Unauthenticated("kvtransfer auth: unexpected challenge from '" + peer + "'");
  }
  const std::string nonce_r = reply.substr(4, auth::kNonceBytes);
  if (!auth::Equal(reply.substr(4 + auth::kNonceBytes),
                   auth::Proof(opt_.auth_secret, "r", nonce_i, nonce_r, opt_.name, peer))) {
    SendMsg(fd, std::string(auth::kProofBytes, '\0'));  // the responder refuses it, then we close
    const Status st = Unauthenticated("kvtransfer auth: peer '" + peer +
                                      "' failed authentication (a different auth_secret)");
    PD_LOG_WARN("kvtransfer local: {}", st.message());
    return st;
  }
  if (!SendMsg(fd, auth::Proof(opt_.auth_secret, "i", nonce_i, nonce_r, opt_.name, peer)) ||
      !RecvMsg(fd, reply)) {
    return Unavailable("kvtransfer local: handshake with '" + peer + "' failed");
  }
  return OkStatus();
}

// Responder side: "OK" to admit, else the refusal. With a secret: challenge, then check proof.
std::string LocalTransport::AdmitVerdict(int fd, const wire::HelloInfo& h) {
  const bool secret = !opt_.auth_secret.empty();
  std::string verdict = "OK";
  if (!secret && !h.nonce.empty()) {
    verdict = "kvtransfer auth: '" + h.name + "' offers authentication but '" + opt_.name +
              "' has no auth_secret (set the same secret on both)";
  } else if (secret && h.nonce.empty()) {
    verdict = "kvtransfer auth: '" + opt_.name + "' requires peer authentication and '" + h.name +
              "' presented none (set the same auth_secret on both)";
  } else if (secret) {
    const std::string nonce_r = auth::NewNonce();
    std::string proof;
    if (!SendMsg(fd, "AUTH" + nonce_r +
                         auth::Proof(opt_.auth_secret, "r", h.nonce, nonce_r, h.name, opt_.name)) ||
        !RecvMsg(fd, proof) ||
        !auth::Equal(proof,
                     auth::Proof(opt_.auth_secret, "i", h.nonce, nonce_r, h.name, opt_.name))) {
      verdict = "kvtransfer auth: '" + h.name + "' failed authentication at '" + opt_.name +
                "' (a different auth_secret)";
    }
  }
  if (verdict != "OK") PD_LOG_WARN("kvtransfer local: refused an inbound peer: {}", verdict);
  return verdict;
}

void LocalTransport::AcceptLoop() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) break;
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      close(fd);
      break;
    }
    served_.push_back(fd);
    servers_.emplace_back([this, fd] { Serve(fd); });
  }
  for (auto& t : servers_) t.join();
  std::lock_guard<std::mutex> l(mu_);
  for (int fd : served_) close(fd);  // closed here, after their threads ended
  served_.clear();
}

// Receiver side of one connection: handshake, hand over the arenas, then notifications.
void LocalTransport::Serve(int fd) {
  std::string msg;
  if (RecvMsg(fd, msg)) {
    auto h = wire::DecodeHello(msg);
    std::string verdict = "OK";
    if (!h.ok()) {
      verdict = h.status().message();
    } else if (h->compat_hash != opt_.compat_hash) {
      verdict = "kvtransfer: compat hash mismatch with '" + opt_.name + "'";
    } else if (h->expected_incarnation != incarnation_) {
      verdict = "kvtransfer: stale metadata: '" + opt_.name + "' now runs incarnation " +
                std::to_string(incarnation_) + " (reload its metadata)";
    } else {
      verdict = AdmitVerdict(fd, *h);
    }
    if (SendMsg(fd, verdict) && verdict == "OK") {
      char byte = 0;
      iovec iov{&byte, 1};
      std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds_.size(), 1)));
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      if (!fds_.empty()) {
        m.msg_control = ctrl.data();
        m.msg_controllen = CMSG_SPACE(sizeof(int) * fds_.size());
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds_.size());
        std::memcpy(CMSG_DATA(c), fds_.data(), sizeof(int) * fds_.size());
      }
      std::string handles;
      for (const std::string& h : handles_) {
        const uint32_t len = static_cast<uint32_t>(h.size());
        handles.append(reinterpret_cast<const char*>(&len), 4);
        handles += h;
      }
      if (sendmsg(fd, &m, MSG_NOSIGNAL) == 1 && SendMsg(fd, handles)) {
        while (RecvMsg(fd, msg)) {
          host_->OnNotification(h->name, msg);
          if (!SendAll(fd, "A", 1)) break;
        }
      }
    }
  }
  shutdown(fd, SHUT_RDWR);  // the fd itself is closed by AcceptLoop
}

void LocalTransport::WorkLoop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    TransferWork w = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    cancelled_ = 0;
    Status st = Execute(w);  // runs with mu_ held: one transfer at a time
    busy_ = false;
    if (cancelled_ == w.id) st = Cancelled("kvtransfer: released");
    host_->OnTransferDone(w.id, st, static_cast<uint32_t>(w.segs.size()));
  }
}

Status LocalTransport::Execute(const TransferWork& w) {
  PD_RETURN_IF_ERROR(ConnectLocked(w.peer));
  LocalPeer& p = peers_[w.peer];
  std::vector<CopyOp> device_ops;  // any side on a GPU: through the copier, waited for below
  for (const Segment& s : w.segs) {
    if (SteadyClock::Get().NowNs() > w.deadline_ns) {
      return DeadlineExceeded("kvtransfer: transfer missed its deadline");
    }
    uint8_t* local = regions_[s.local_arena].base + s.local_offset;
    uint8_t* remote = p.remote[s.remote_arena].base + s.remote_offset;
    uint8_t* dst = w.op == Op::kWrite ? remote : local;
    const uint8_t* src = w.op == Op::kWrite ? local : remote;
    if (regions_[s.local_arena].device || p.remote[s.remote_arena].device) {
      device_ops.push_back({dst, src, s.length});
    } else {
      std::memcpy(dst, src, s.length);
    }
  }
  if (!device_ops.empty()) {
    PD_RETURN_IF_ERROR(EnsureCopier());
    PD_ASSIGN_OR_RETURN(uint64_t fence, copier_->Enqueue(device_ops));
    const int64_t left_ms = (w.deadline_ns - SteadyClock::Get().NowNs()) / 1'000'000;
    PD_RETURN_IF_ERROR(
        copier_->Wait(fence, std::chrono::milliseconds(std::max<int64_t>(left_ms, 1))));
  }
  pollfd pf{p.fd, POLLRDHUP, 0};
  if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
    Disconnect(p);
    return Unavailable("kvtransfer local: peer '" + p.md.name + "' is gone");
  }
  if (w.has_notify) {
    char ack = 0;
    if (!SendMsg(p.fd, w.notify) || !RecvAll(p.fd, &ack, 1)) {
      Disconnect(p);
      return Unavailable("kvtransfer local: peer '" + p.md.name + "' is gone");
    }
  }
  return OkStatus();
}

}  // namespace

void* AllocateShareableHostMemory(size_t bytes) {
  const int fd = memfd_create("pdkvx-arena", MFD_CLOEXEC);
  if (fd < 0) return nullptr;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    close(fd);
    return nullptr;
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    return nullptr;
  }
  std::lock_guard<std::mutex> g(g_share_mu);
  ShareTable()[p] = {fd, bytes};
  return p;
}

void FreeShareableHostMemory(void* base) {
  std::lock_guard<std::mutex> g(g_share_mu);
  auto it = ShareTable().find(base);
  if (it == ShareTable().end()) return;
  munmap(base, it->second.bytes);
  close(it->second.fd);
  ShareTable().erase(it);
}

std::unique_ptr<Transport> MakeLocalTransport(const EngineOptions& options, uint64_t incarnation,
                                              TransportHost* host) {
  return std::make_unique<LocalTransport>(options, incarnation, host);
}

}  // namespace pd::kvtransfer
