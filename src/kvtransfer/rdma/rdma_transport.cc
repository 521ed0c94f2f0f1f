// "rdma" transport: RdmaChannel per peer over a Verbs device (libibverbs via dlopen, or an
// injected factory in tests). QPs are set up over a TCP bootstrap connection per peer, which
// also reports the peer's death. A progress thread drives every channel's completions.
// GPU arenas are never registered with the NIC: their channels stage them through pinned
// bounce rings (rdma_stage.cc); the bootstrap says which arenas are GPU memory and where each
// side's receive staging ring is.
// The real-hardware path has NOT run (no RDMA NIC on any project machine).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "kvtransfer/rdma/rdma_channel.h"
#include "kvtransfer/rdma/rdma_transport.h"

namespace pd::kvtransfer {
namespace {

using rdma::MemoryRegion;
using rdma::QpAddress;
using rdma::RdmaChannel;
using rdma::RemoteRegion;

std::mutex g_factory_mu;
rdma::VerbsFactory& Factory() {
  static auto* f = new rdma::VerbsFactory();
  return *f;
}

bool SendStr(int fd, const std::string& s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  std::string b(reinterpret_cast<const char*>(&n), 4);
  b += s;
  return send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
}
bool RecvStr(int fd, std::string& s) {
  uint32_t n = 0;
  if (recv(fd, &n, 4, MSG_WAITALL) != 4 || n > (1u << 20)) return false;
  s.resize(n);
  return n == 0 || recv(fd, s.data(), n, MSG_WAITALL) == static_cast<ssize_t>(n);
}

// Bootstrap message: identity + QPs + memory regions (and which are GPU memory) +
// notification ring + receive staging ring (GPU destinations).
struct Boot {
  std::string name, verdict = "OK";
  uint64_t incarnation = 0, expected = 0, compat = 0;
  std::vector<QpAddress> qps;
  std::vector<RemoteRegion> regions;
  std::vector<bool> device;  // per region
  RemoteRegion ring, stage;
  uint32_t stage_slots = 0;
};
std::string Encode(const Boot& b) {
  std::ostringstream o;
  o << b.name << " " << b.incarnation << " " << b.expected << " " << b.compat << " " << b.qps.size();
  for (const auto& q : b.qps) {
    o << " " << q.qpn << " " << q.lid;
    for (uint8_t g : q.gid) o << " " << static_cast<int>(g);
  }
  o << " " << b.regions.size();
  for (const auto& r : b.regions) o << " " << r.addr << " " << r.length << " " << r.rkey;
  o << " " << b.ring.addr << " " << b.ring.length << " " << b.ring.rkey;
  o << " " << b.stage.addr << " " << b.stage.length << " " << b.stage.rkey << " " << b.stage_slots
    << " d";  // device flags, one character per region
  for (bool d : b.device) o << (d ? '1' : '0');
  o << "\n" << b.verdict;
  return o.str();
}
bool Decode(const std::string& s, Boot& b) {
  std::istringstream in(s);
  size_t nq = 0, nr = 0;
  if (!(in >> b.name >> b.incarnation >> b.expected >> b.compat >> nq) || nq > 64) return false;
  for (size_t i = 0; i < nq; ++i) {
    QpAddress q;
    in >> q.qpn >> q.lid;
    for (auto& g : q.gid) {
      int v = 0;
      in >> v;
      g = static_cast<uint8_t>(v);
    }
    b.qps.push_back(q);
  }
  if (!(in >> nr) || nr > 1024) return false;
  for (size_t i = 0; i < nr; ++i) {
    RemoteRegion r;
    in >> r.addr >> r.length >> r.rkey;
    b.regions.push_back(r);
  }
  std::string flags;
  in >> b.ring.addr >> b.ring.length >> b.ring.rkey;
  in >> b.stage.addr >> b.stage.length >> b.stage.rkey >> b.stage_slots >> flags;
  if (flags.size() != nr + 1 || flags[0] != 'd') return false;
  for (size_t i = 0; i < nr; ++i) b.device.push_back(flags[i + 1] == '1');
  in.ignore(1);
  std::getline(in, b.verdict, '\0');
  return !in.bad();
}

struct RPeer {
  AgentMetadata md;
  int fd = -1;
  std::unique_ptr<RdmaChannel> ch;
  std::vector<uint32_t> qps;
  std::map<TransferId, TransferId> by_engine;  // engine id -> channel id
};

class RdmaTransport final : public Transport {
 public:
  RdmaTransport(const EngineOptions& o, uint64_t inc, TransportHost* host)
      : opt_(o), inc_(inc), host_(host) {}
  ~RdmaTransport() override { Stop(); }

  Status Start(const std::vector<wire::Region>& regions) override;
  std::vector<std::string> Addresses() const override {
    const auto& h = opt_.advertise_addrs.empty() ? opt_.listen_host : opt_.advertise_addrs[0];
    return {h + ":" + std::to_string(port_)};
  }
  void SetPeer(PeerId id, const AgentMetadata& md) override {
    std::lock_guard<std::mutex> l(mu_);
    Drop(id, Unavailable("kvtransfer rdma: peer '" + md.name + "' restarted"));
    peers_[id].md = md;
  }
  void RemovePeer(PeerId id) override {
    std::lock_guard<std::mutex> l(mu_);
    Drop(id, Cancelled("kvtransfer rdma: peer removed"));
    peers_.erase(id);
  }
  Status Connect(PeerId id, int64_t) override {
    std::lock_guard<std::mutex> l(mu_);
    return ConnectLocked(id);
  }
  void Submit(TransferWork w) override;
  void Cancel(TransferId id, const Status& why) override;
  size_t ConnectedPaths() const override {
    std::lock_guard<std::mutex> l(mu_);
    size_t n = 0;
    for (const auto& [id, p] : peers_) n += p.ch ? p.qps.size() : 0;
    return n;
  }
  size_t PendingTransfers() const override {
    std::lock_guard<std::mutex> l(mu_);
    size_t n = 0;
    for (const auto& [id, p] : peers_) n += p.by_engine.size();
    return n;
  }
  void Stop() override;

 private:
  Status ConnectLocked(PeerId id);
  // A channel with its QPs; null with *why set on failure. `sender`: the channel of a peer we
  // connect to (we WRITE over it); else one a peer connected to (it WRITEs to us).
  std::unique_ptr<RdmaChannel> NewChannel(std::vector<uint32_t>* qps, std::vector<QpAddress>* addrs,
                                          Status* why, bool sender);
  void Drop(PeerId id, const Status& why);
  void AcceptLoop();
  void ProgressLoop();
  Boot Self() const {
    Boot b;
    b.name = opt_.name;
    b.incarnation = inc_;
    b.compat = opt_.compat_hash;
    for (const auto& m : mrs_) b.regions.push_back({m.addr, m.length, m.rkey});
    b.device = device_;
    return b;
  }

  const EngineOptions opt_;
  const uint64_t inc_;
  TransportHost* host_;
  std::unique_ptr<rdma::Verbs> verbs_;
  std::vector<MemoryRegion> mrs_;
  std::vector<bool> device_;  // per arena: GPU memory, staged (not registered)
  int listen_fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_, progress_;
  mutable std::mutex mu_;
  std::map<PeerId, RPeer> peers_;
  std::vector<std::unique_ptr<RdmaChannel>> served_;  // channels of peers that connected to us
  std::vector<std::pair<std::string, int>> served_fds_;
};

Status RdmaTransport::Start(const std::vector<wire::Region>& regions) {
  {
    std::lock_guard<std::mutex> g(g_factory_mu);
    if (Factory()) {
      PD_ASSIGN_OR_RETURN(verbs_, Factory()());
    } else {
      PD_ASSIGN_OR_RETURN(verbs_, rdma::OpenIbverbs(""));
    }
  }
  for (const auto& r : regions) {
    device_.push_back(r.device);
    if (r.device) {  // staged through the copier; the NIC never sees it
      if (!opt_.device_copier) {
        return FailedPrecondition("kvtransfer rdma: GPU arena without a device copier");
      }
      mrs_.push_back({reinterpret_cast<uint64_t>(r.base), r.bytes, 0, 0});
      continue;
    }
    PD_ASSIGN_OR_RETURN(MemoryRegion mr, verbs_->RegisterMemory(r.base, r.bytes));
    mrs_.push_back(mr);
  }
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(opt_.listen_port));
  inet_pton(AF_INET, opt_.listen_host.c_str(), &a.sin_addr);
  socklen_t len = sizeof(a);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), len) || listen(listen_fd_, 16)) {
    return Unavailable("kvtransfer rdma: bootstrap listen failed");
  }
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
  progress_ = std::thread([this] { ProgressLoop(); });
  return OkStatus();
}

std::unique_ptr<RdmaChannel> RdmaTransport::NewChannel(std::vector<uint32_t>* qps,
                                                       std::vector<QpAddress>* addrs,
                                                       Status* why, bool sender) {
  rdma::ChannelOptions co;
  co.chunk_bytes = opt_.chunk_bytes;
  co.cc = opt_.cc;
  co.policy = opt_.path_policy;
  auto ch = std::make_unique<RdmaChannel>(verbs_.get(), mrs_, co, SteadyClock::Get());
  if (std::find(device_.begin(), device_.end(), true) != device_.end()) {
    rdma::StageConfig sc;
    sc.copier = opt_.device_copier;
    sc.local_device = device_;
    sc.send = sender;  // only the ring each direction uses is pinned
    sc.receive = !sender;
    sc.slots = static_cast<uint32_t>(
        std::clamp<int>(opt_.staging_slots, 2, static_cast<int>(RdmaChannel::kMaxStageSlots)));
    *why = ch->EnableStaging(std::move(sc));
    if (!why->ok()) return nullptr;
  }
  *why = ch->Init();  // rings, including the pinned bounce rings for GPU arenas
  if (!why->ok()) return nullptr;
  for (int i = 0; i < opt_.num_paths; ++i) {
    auto q = verbs_->CreateQp();
    if (!q.ok()) {
      *why = q.status();
      return nullptr;
    }
    qps->push_back(*q);
    addrs->push_back(verbs_->LocalAddress(*q));
  }
  return ch;
}

Status RdmaTransport::ConnectLocked(PeerId id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return NotFound("kvtransfer rdma: unknown peer");
  RPeer& p = it->second;
  if (p.ch) return OkStatus();
  const std::string& hp = p.md.addrs.empty() ? std::string() : p.md.addrs[0];
  const size_t colon = hp.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, hp.substr(0, colon).c_str(), &a.sin_addr) != 1) {
    return InvalidArgument("kvtransfer rdma: bad peer address '" + hp + "'");
  }
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(hp.c_str() + colon + 1)));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{static_cast<time_t>(opt_.connect_timeout.count() / 1000), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return Unavailable("kvtransfer rdma: peer '" + p.md.name + "' unreachable at " + hp);
  }
  Boot me = Self();
  me.expected = p.md.incarnation;
  std::vector<uint32_t> qps;
  Status why;
  auto ch = NewChannel(&qps, &me.qps, &why, /*sender=*/true);
  if (!ch) {
    close(fd);
    return why.WithContext("kvtransfer rdma: QP setup failed");
  }
  me.ring = ch->notify_ring();
  me.stage = ch->stage_ring();
  me.stage_slots = ch->stage_slots();
  std::string reply;
  Boot peer;
  if (!SendStr(fd, Encode(me)) || !RecvStr(fd, reply) || !Decode(reply, peer)) {
    close(fd);
    return Unavailable("kvtransfer rdma: bootstrap with '" + p.md.name + "' failed");
  }
  if (peer.verdict != "OK") {
    close(fd);
    return FailedPrecondition(peer.verdict);
  }
  Status st;
  for (size_t i = 0; st.ok() && i < qps.size() && i < peer.qps.size(); ++i) {
    st = verbs_->ConnectQp(qps[i], peer.qps[i]);
  }
  if (st.ok()) st = ch->SetPeer(qps, peer.regions, peer.ring);
  if (st.ok()) st = ch->SetPeerStaging(peer.device, peer.stage, peer.stage_slots);
  if (!st.ok()) {
    close(fd);
    for (uint32_t q : qps) verbs_->DestroyQp(q);
    return st;
  }
  p.fd = fd;
  p.ch = std::move(ch);
  p.qps = qps;
  return OkStatus();
}

// Receiver side of a bootstrap: create matching QPs and a channel (which delivers the
// notifications the peer writes into our ring).
void RdmaTransport::AcceptLoop() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::string msg;
    Boot them;
    if (!RecvStr(fd, msg) || !Decode(msg, them)) {
      close(fd);
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    Boot me = Self();
    std::vector<uint32_t> qps;
    Status why;
    auto ch = NewChannel(&qps, &me.qps, &why, /*sender=*/false);
    if (them.compat != opt_.compat_hash) me.verdict = "kvtransfer: compat hash mismatch";
    if (them.expected != inc_) {
      me.verdict = "kvtransfer: stale metadata: '" + opt_.name + "' now runs incarnation " +
                   std::to_string(inc_) + " (reload its metadata)";
    }
    if (!ch) me.verdict = "kvtransfer rdma: QP setup failed: " + why.message();
    if (ch) {
      me.ring = ch->notify_ring();
      me.stage = ch->stage_ring();
      me.stage_slots = ch->stage_slots();
    }
    bool ok = me.verdict == "OK";
    for (size_t i = 0; ok && i < qps.size() && i < them.qps.size(); ++i) {
      ok = verbs_->ConnectQp(qps[i], them.qps[i]).ok();
    }
    ok = ok && ch->SetPeer(qps, them.regions, them.ring).ok() &&
         ch->SetPeerStaging(them.device, them.stage, them.stage_slots).ok();
    SendStr(fd, Encode(me));
    if (ok) {
      served_.push_back(std::move(ch));
      served_fds_.push_back({them.name, fd});
    } else {
      close(fd);
    }
  }
}

void RdmaTransport::Submit(TransferWork w) {
  std::lock_guard<std::mutex> l(mu_);
  Status st = ConnectLocked(w.peer);
  if (!st.ok()) return host_->OnTransferDone(w.id, st, 0);
  if (w.op != Op::kWrite) {
    return host_->OnTransferDone(w.id, Unimplemented("kvtransfer rdma: READ not implemented"), 0);
  }
  RPeer& p = peers_[w.peer];
  auto cid = p.ch->Post(std::move(w.segs), w.notify, w.deadline_ns);
  if (!cid.ok()) return host_->OnTransferDone(w.id, cid.status(), 0);
  p.by_engine[w.id] = *cid;
}

void RdmaTransport::Cancel(TransferId id, const Status& why) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [pid, p] : peers_) {
    auto it = p.by_engine.find(id);
    if (it == p.by_engine.end()) continue;
    p.ch->Release(it->second);
    p.by_engine.erase(it);
    host_->OnTransferDone(id, why, 0);
    return;
  }
}

void RdmaTransport::Drop(PeerId id, const Status& why) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  RPeer& p = it->second;
  for (auto& [eid, cid] : p.by_engine) host_->OnTransferDone(eid, why, 0);
  p.by_engine.clear();
  for (uint32_t q : p.qps) verbs_->DestroyQp(q);
  p.qps.clear();
  p.ch.reset();
  if (p.fd >= 0) close(p.fd);
  p.fd = -1;
}

void RdmaTransport::ProgressLoop() {
  while (!stop_) {
    {
      std::lock_guard<std::mutex> l(mu_);
      // One CQ for the device: route completions to the channel that owns the QP.
      std::map<uint32_t, RdmaChannel*> owner;
      for (auto& ch : served_) {
        for (uint32_t q : ch->qpns()) owner[q] = ch.get();
      }
      for (auto& [id, p] : peers_) {
        if (p.ch) {
          for (uint32_t q : p.ch->qpns()) owner[q] = p.ch.get();
        }
      }
      rdma::Completion cs[64];
      for (int n = verbs_->PollCq(cs); n > 0; n = n == 64 ? verbs_->PollCq(cs) : 0) {
        for (int i = 0; i < n; ++i) {
          auto o = owner.find(cs[i].qpn);
          if (o != owner.end()) o->second->Deliver(cs[i]);
        }
      }
      for (auto& ch : served_) ch->Advance();
      for (size_t i = 0; i < served_.size(); ++i) {
        for (auto& n : served_[i]->TakeNotifications()) host_->OnNotification(served_fds_[i].first, n);
      }
      std::vector<PeerId> dead;
      for (auto& [id, p] : peers_) {
        if (!p.ch) continue;
        pollfd pf{p.fd, POLLRDHUP, 0};
        if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
          dead.push_back(id);
          continue;
        }
        p.ch->Advance();
        for (auto it = p.by_engine.begin(); it != p.by_engine.end();) {
          const TransferResult r = p.ch->Result(it->second);
          if (r.state == TransferState::kInProgress) {
            ++it;
            continue;
          }
          host_->OnTransferDone(it->first, r.status, r.stats.chunks);
          p.ch->Release(it->second);
          it = p.by_engine.erase(it);
        }
      }
      for (PeerId id : dead) Drop(id, Unavailable("kvtransfer rdma: peer '" + peers_[id].md.name + "' is gone"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void RdmaTransport::Stop() {
  if (stop_.exchange(true)) return;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (progress_.joinable()) progress_.join();
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [id, p] : peers_) Drop(id, Cancelled("kvtransfer: shutting down"));
  for (auto& ch : served_) {
    for (uint32_t q : ch->qpns()) verbs_->DestroyQp(q);  // peers' writes now fail
  }
  for (auto& [n, fd] : served_fds_) close(fd);
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace

namespace rdma {
void SetVerbsFactoryForTesting(VerbsFactory factory) {
  std::lock_guard<std::mutex> g(g_factory_mu);
  Factory() = std::move(factory);
}
}  // namespace rdma

std::unique_ptr<Transport> MakeRdmaTransport(const EngineOptions& options, uint64_t incarnation,
                                             TransportHost* host) {
  return std::make_unique<RdmaTransport>(options, incarnation, host);
}

}  // namespace pd::kvtransfer
