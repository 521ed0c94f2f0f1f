// Local transport: both agents on one host. The receiver's arenas are memfd-backed
// (AllocateShareableHostMemory); at connect time it hands their fds to the sender over a Unix
// socket (SCM_RIGHTS), the sender maps them and a transfer is a memcpy by the sender's worker
// thread. Notifications go over the same socket after the copy and are acknowledged, so they
// can never overtake their data. The socket also tells the sender when the peer is gone.
// Host memory only; CUDA IPC for GPU arenas is not built.
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

#include "kvtransfer/clock.h"
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
    for (const auto& r : regions) {
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
    for (const Mapped& m : p.remote) munmap(m.base, m.bytes);
    p.remote.clear();
  }

  Status ConnectLocked(PeerId id);
  void AcceptLoop();
  void Serve(int fd);
  void WorkLoop();
  Status Execute(const TransferWork& w);

  const EngineOptions opt_;
  const uint64_t incarnation_;
  TransportHost* host_;
  std::vector<wire::Region> regions_;
  std::vector<int> fds_;
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
  const std::string hello = wire::EncodeHello({opt_.name, incarnation_, p.md.incarnation,
                                               opt_.compat_hash, 0});
  std::string reply;
  if (!SendMsg(fd, hello) || !RecvMsg(fd, reply)) {
    close(fd);
    return Unavailable("kvtransfer local: handshake with '" + p.md.name + "' failed");
  }
  if (reply != "OK") {
    close(fd);
    return FailedPrecondition(reply);
  }
  // The arena fds follow in one SCM_RIGHTS message.
  const size_t n = p.md.arenas.size();
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
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int) * n)) {
    close(fd);
    return DataLoss("kvtransfer local: bad arena descriptors");
  }
  std::memcpy(fds.data(), CMSG_DATA(c), sizeof(int) * n);
  for (size_t i = 0; i < n; ++i) {
    void* base = mmap(nullptr, p.md.arenas[i].bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
    close(fds[i]);
    if (base == MAP_FAILED) {
      Disconnect(p);
      close(fd);
      return Unavailable("kvtransfer local: mmap of a peer arena failed");
    }
    p.remote.push_back({static_cast<uint8_t*>(base), p.md.arenas[i].bytes});
  }
  p.fd = fd;
  return OkStatus();
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
    }
    if (SendMsg(fd, verdict) && verdict == "OK") {
      char byte = 0;
      iovec iov{&byte, 1};
      std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds_.size(), 1)));
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = ctrl.data();
      m.msg_controllen = CMSG_SPACE(sizeof(int) * fds_.size());
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds_.size());
      std::memcpy(CMSG_DATA(c), fds_.data(), sizeof(int) * fds_.size());
      if (sendmsg(fd, &m, MSG_NOSIGNAL) == 1) {
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
  for (const Segment& s : w.segs) {
    if (SteadyClock::Get().NowNs() > w.deadline_ns) {
      return DeadlineExceeded("kvtransfer: transfer missed its deadline");
    }
    uint8_t* local = regions_[s.local_arena].base + s.local_offset;
    uint8_t* remote = p.remote[s.remote_arena].base + s.remote_offset;
    if (w.op == Op::kWrite) {
      std::memcpy(remote, local, s.length);
    } else {
      std::memcpy(local, remote, s.length);
    }
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
