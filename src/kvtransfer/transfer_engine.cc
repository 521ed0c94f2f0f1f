#include "kvtransfer/transfer_engine.h"

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <unordered_map>

#include "common/logging.h"
#include "kvtransfer/clock.h"
#include "kvtransfer/device_copier.h"
#include "kvtransfer/transport.h"

namespace pd::kvtransfer {
namespace {

uint64_t NewIncarnation() {
  // Microseconds since the epoch in the high bits (restarts compare newer), random low bits.
  const uint64_t us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  std::random_device rd;
  return (us << 12) | (rd() & 0xfff);
}

}  // namespace

struct TransferEngine::Impl final : TransportHost {
  EngineOptions opt;
  uint64_t incarnation = NewIncarnation();
  std::vector<ArenaSpec> arenas;
  std::vector<ArenaInfo> arena_info;
  std::unique_ptr<Transport> transport;
  bool started = false;

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::map<std::string, PeerId> peer_by_name;
  std::unordered_map<PeerId, AgentMetadata> peers;
  PeerId next_peer = 1;
  std::unordered_map<TransferId, TransferResult> transfers;
  TransferId next_id = 1;
  std::vector<Notification> notes;
  uint64_t bytes_sent = 0, bytes_received = 0;

  void OnTransferDone(TransferId id, const Status& st, uint32_t chunks) override {
    std::lock_guard<std::mutex> l(mu);
    auto it = transfers.find(id);
    if (it == transfers.end()) return;  // released meanwhile
    it->second.state = st.ok() ? TransferState::kDone : TransferState::kError;
    it->second.status = st;
    it->second.stats.chunks = chunks;
    it->second.stats.complete_ns = SteadyClock::Get().NowNs();
    cv.notify_all();
  }
  void OnNotification(const std::string& peer_name, std::string bytes) override {
    std::lock_guard<std::mutex> l(mu);
    notes.push_back({peer_name, std::move(bytes)});
  }
  void OnBytes(uint64_t sent, uint64_t received) override {
    std::lock_guard<std::mutex> l(mu);
    bytes_sent += sent;
    bytes_received += received;
  }

  // GPU arenas need a DeviceCopier: the injected one, else the CUDA one for their device.
  Status SetUpDeviceCopier() {
    const ArenaSpec* gpu = nullptr;
    for (const ArenaSpec& a : arenas) {
      if (a.kind == MemoryKind::kCuda) gpu = &a;
    }
    if (gpu == nullptr) return OkStatus();
    if (opt.staging_slots < 2 || opt.staging_slots > 1024) {
      return InvalidArgument("kvtransfer: staging_slots must be in [2, 1024]");
    }
    if (opt.device_copier) return OkStatus();
    StatusOr<std::shared_ptr<DeviceCopier>> c = MakeCudaCopier(gpu->device);
    if (!c.ok()) return c.status().WithContext("kvtransfer: GPU arena");
    opt.device_copier = *c;
    PD_LOG_INFO("kvtransfer {}: GPU arenas on device {} via {} ({} bounce slots of {} KiB)",
                opt.name, gpu->device, opt.device_copier->name(), opt.staging_slots,
                opt.chunk_bytes >> 10);
    return OkStatus();
  }

  StatusOr<TransferId> Submit(TransferWork w, std::chrono::milliseconds deadline,
                              uint32_t descs_in, uint32_t segments) {
    const int64_t now = SteadyClock::Get().NowNs();
    if (deadline.count() <= 0) deadline = opt.default_deadline;
    w.deadline_ns = now + deadline.count() * 1'000'000;
    TransferId id;
    {
      std::lock_guard<std::mutex> l(mu);
      id = next_id++;
      TransferResult& r = transfers[id];
      r.stats.bytes = w.bytes;
      r.stats.descs_in = descs_in;
      r.stats.segments = segments;
      r.stats.post_ns = now;
    }
    w.id = id;
    transport->Submit(std::move(w));
    return id;
  }
};

TransferEngine::TransferEngine(EngineOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
}

TransferEngine::~TransferEngine() {
  if (impl_->transport) impl_->transport->Stop();
}

StatusOr<ArenaId> TransferEngine::RegisterArena(const ArenaSpec& arena) {
  if (impl_->started) return FailedPrecondition("kvtransfer: RegisterArena after Start");
  if (arena.base == nullptr || arena.bytes == 0) {
    return InvalidArgument("kvtransfer: arena needs a base pointer and a size");
  }
  for (const ArenaSpec& a : impl_->arenas) {
    if (a.kind == MemoryKind::kCuda && arena.kind == MemoryKind::kCuda &&
        a.device != arena.device) {
      return InvalidArgument("kvtransfer: GPU arenas of one engine must be on one device");
    }
  }
  impl_->arenas.push_back(arena);
  impl_->arena_info.push_back({arena.bytes, arena.kind});
  return static_cast<ArenaId>(impl_->arenas.size() - 1);
}

Status TransferEngine::Start() {
  Impl& m = *impl_;
  if (m.started) return FailedPrecondition("kvtransfer: Start called twice");
  if (m.opt.name.empty() || m.opt.name.find_first_of(" \t\n") != std::string::npos ||
      m.opt.name.size() > 200) {
    return InvalidArgument("kvtransfer: name must be non-empty without whitespace");
  }
  if (m.opt.num_paths < 1 || m.opt.num_paths > 64) {
    return InvalidArgument("kvtransfer: num_paths must be in [1, 64]");
  }
  if (m.opt.chunk_bytes < 4096 || m.opt.chunk_bytes > (1u << 20)) {
    return InvalidArgument("kvtransfer: chunk_bytes must be in [4 KiB, 1 MiB]");
  }
  PD_RETURN_IF_ERROR(m.SetUpDeviceCopier());
  if (m.opt.transport == "tcp") {
    m.transport = MakeTcpTransport(m.opt, m.incarnation, &m);
  } else if (m.opt.transport == "rdma") {
    m.transport = MakeRdmaTransport(m.opt, m.incarnation, &m);
  } else if (m.opt.transport == "local") {
    m.transport = MakeLocalTransport(m.opt, m.incarnation, &m);
  } else {
    return Unimplemented("kvtransfer: transport '" + m.opt.transport + "' is not built");
  }
  std::vector<wire::Region> regions;
  for (const auto& a : m.arenas) {
    regions.push_back({static_cast<uint8_t*>(a.base), a.bytes, a.kind == MemoryKind::kCuda});
  }
  PD_RETURN_IF_ERROR(m.transport->Start(regions));
  m.started = true;
  return OkStatus();
}

std::string TransferEngine::LocalMetadata() const {
  AgentMetadata md;
  md.name = impl_->opt.name;
  md.incarnation = impl_->incarnation;
  md.compat_hash = impl_->opt.compat_hash;
  md.transport = impl_->opt.transport;
  if (impl_->transport) md.addrs = impl_->transport->Addresses();
  md.arenas = impl_->arena_info;
  return EncodeMetadata(md);
}

uint64_t TransferEngine::incarnation() const { return impl_->incarnation; }

StatusOr<PeerId> TransferEngine::LoadRemoteMetadata(const std::string& blob) {
  Impl& m = *impl_;
  if (!m.started) return FailedPrecondition("kvtransfer: LoadRemoteMetadata before Start");
  PD_ASSIGN_OR_RETURN(AgentMetadata md, DecodeMetadata(blob));
  if (md.compat_hash != m.opt.compat_hash) {
    return FailedPrecondition("kvtransfer: peer '" + md.name + "' has compat hash " +
                              std::to_string(md.compat_hash) + ", this engine " +
                              std::to_string(m.opt.compat_hash) + " (different KV layout/model)");
  }
  if (md.transport != m.opt.transport) {
    return FailedPrecondition("kvtransfer: peer '" + md.name + "' speaks transport '" +
                              md.transport + "', this engine '" + m.opt.transport + "'");
  }
  PeerId id;
  {
    std::lock_guard<std::mutex> l(m.mu);
    auto it = m.peer_by_name.find(md.name);
    if (it != m.peer_by_name.end()) {
      const AgentMetadata& old = m.peers[it->second];
      if (md.incarnation < old.incarnation) {
        return FailedPrecondition("kvtransfer: stale metadata for '" + md.name +
                                  "': incarnation " + std::to_string(md.incarnation) +
                                  " is older than the loaded " + std::to_string(old.incarnation));
      }
      if (md.incarnation == old.incarnation) return it->second;
      id = it->second;
    } else {
      id = m.next_peer++;
      m.peer_by_name[md.name] = id;
    }
    m.peers[id] = md;
  }
  m.transport->SetPeer(id, md);
  return id;
}

Status TransferEngine::Connect(PeerId peer) {
  if (!impl_->started) return FailedPrecondition("kvtransfer: not started");
  const int64_t deadline =
      SteadyClock::Get().NowNs() + impl_->opt.connect_timeout.count() * 1'000'000;
  return impl_->transport->Connect(peer, deadline);
}

void TransferEngine::Disconnect(PeerId peer) {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> l(m.mu);
    auto it = m.peers.find(peer);
    if (it == m.peers.end()) return;
    m.peer_by_name.erase(it->second.name);
    m.peers.erase(it);
  }
  m.transport->RemovePeer(peer);
}

StatusOr<TransferId> TransferEngine::Post(Op op, PeerId peer, std::span<const Desc> local,
                                          std::span<const Desc> remote, const std::string& notify,
                                          std::chrono::milliseconds deadline) {
  Impl& m = *impl_;
  if (!m.started) return FailedPrecondition("kvtransfer: Post before Start");
  if (op == Op::kRead && !notify.empty()) {
    return InvalidArgument("kvtransfer: notifications ride on WRITE transfers only");
  }
  std::vector<ArenaInfo> remote_arenas;
  {
    std::lock_guard<std::mutex> l(m.mu);
    auto it = m.peers.find(peer);
    if (it == m.peers.end()) return NotFound("kvtransfer: unknown peer " + std::to_string(peer));
    remote_arenas = it->second.arenas;
  }
  PD_RETURN_IF_ERROR(CheckDescs(local, m.arena_info, "local"));
  PD_RETURN_IF_ERROR(CheckDescs(remote, remote_arenas, "remote"));
  const std::vector<Desc> lc = CoalesceDescs(local), rc = CoalesceDescs(remote);
  PD_ASSIGN_OR_RETURN(std::vector<Segment> segs, PairDescs(lc, rc));
  TransferWork w;
  w.op = op;
  w.peer = peer;
  for (const Segment& s : segs) w.bytes += s.length;
  w.segs = std::move(segs);
  w.has_notify = !notify.empty();
  w.notify = notify;
  const uint32_t nsegs = static_cast<uint32_t>(w.segs.size());
  return m.Submit(std::move(w), deadline, static_cast<uint32_t>(local.size() + remote.size()),
                  nsegs);
}

StatusOr<TransferId> TransferEngine::PostNotification(PeerId peer, const std::string& notify,
                                                      std::chrono::milliseconds deadline) {
  if (notify.empty()) return InvalidArgument("kvtransfer: empty notification");
  return Post(Op::kWrite, peer, {}, {}, notify, deadline);
}

TransferResult TransferEngine::Poll(TransferId id) const {
  std::lock_guard<std::mutex> l(impl_->mu);
  auto it = impl_->transfers.find(id);
  if (it == impl_->transfers.end()) {
    TransferResult r;
    r.state = TransferState::kError;
    r.status = NotFound("kvtransfer: unknown transfer " + std::to_string(id));
    return r;
  }
  return it->second;
}

TransferResult TransferEngine::Wait(TransferId id, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> l(impl_->mu);
  impl_->cv.wait_for(l, timeout, [&] {
    auto it = impl_->transfers.find(id);
    return it == impl_->transfers.end() || it->second.state != TransferState::kInProgress;
  });
  l.unlock();
  return Poll(id);
}

void TransferEngine::Release(TransferId id) {
  Impl& m = *impl_;
  bool in_progress = false;
  {
    std::lock_guard<std::mutex> l(m.mu);
    auto it = m.transfers.find(id);
    if (it == m.transfers.end()) return;
    in_progress = it->second.state == TransferState::kInProgress;
    m.transfers.erase(it);
  }
  if (in_progress && m.transport) m.transport->Cancel(id, Cancelled("kvtransfer: released"));
}

std::vector<Notification> TransferEngine::GetNotifications() {
  std::lock_guard<std::mutex> l(impl_->mu);
  std::vector<Notification> out;
  out.swap(impl_->notes);
  return out;
}

EngineStats TransferEngine::Stats() const {
  EngineStats s;
  const size_t paths = impl_->transport ? impl_->transport->ConnectedPaths() : 0;
  const size_t pending = impl_->transport ? impl_->transport->PendingTransfers() : 0;
  std::lock_guard<std::mutex> l(impl_->mu);
  s.active_transfers = impl_->transfers.size();
  s.transport_transfers = pending;
  s.pending_notifications = impl_->notes.size();
  s.connected_paths = paths;
  s.bytes_sent = impl_->bytes_sent;
  s.bytes_received = impl_->bytes_received;
  return s;
}

std::vector<PathStats> TransferEngine::PathSnapshot() const {
  return impl_->transport ? impl_->transport->Paths() : std::vector<PathStats>{};
}

}  // namespace pd::kvtransfer
