#include "kvtransfer/rdma/fake_verbs.h"

#include <cstring>

namespace pd::kvtransfer::rdma {

FakeVerbs* FakeFabric::AddDevice() {
  std::lock_guard<std::mutex> l(mu_);
  devs_.push_back(std::make_unique<FakeVerbs>(this, static_cast<uint16_t>(devs_.size() + 1)));
  return devs_.back().get();
}

void FakeFabric::Kill(FakeVerbs* dev) {
  std::lock_guard<std::mutex> l(dev->mu_);
  dev->dead_ = true;
}

FakeVerbs* FakeFabric::Find(uint16_t lid) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& d : devs_) {
    if (d->lid() == lid) return d.get();
  }
  return nullptr;
}

StatusOr<MemoryRegion> FakeVerbs::RegisterMemory(void* addr, size_t length) {
  if (addr == nullptr || length == 0) return InvalidArgument("fake verbs: empty MR");
  std::lock_guard<std::mutex> l(mu_);
  MemoryRegion mr{reinterpret_cast<uint64_t>(addr), length, fabric_->NextKey(), 0};
  mr.rkey = mr.lkey ^ 0xABCD0000u;
  mrs_[mr.rkey] = mr;
  return mr;
}

void FakeVerbs::DeregisterMemory(const MemoryRegion& mr) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = mrs_.find(mr.rkey);
  if (it != mrs_.end() && it->second.lkey == mr.lkey) mrs_.erase(it);
}

size_t FakeVerbs::registrations() const {
  std::lock_guard<std::mutex> l(mu_);
  return mrs_.size();
}

StatusOr<uint32_t> FakeVerbs::CreateQp() {
  std::lock_guard<std::mutex> l(mu_);
  const uint32_t qpn = fabric_->NextQpn();
  qps_[qpn] = Qp{};
  return qpn;
}

QpAddress FakeVerbs::LocalAddress(uint32_t qpn) const {
  QpAddress a;
  a.qpn = qpn;
  a.lid = lid_;
  a.gid[15] = static_cast<uint8_t>(lid_);
  return a;
}

Status FakeVerbs::ConnectQp(uint32_t qpn, const QpAddress& remote) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = qps_.find(qpn);
  if (it == qps_.end()) return NotFound("fake verbs: no QP " + std::to_string(qpn));
  if (fabric_->Find(remote.lid) == nullptr) return Unavailable("fake verbs: no such remote LID");
  it->second.connected = true;
  it->second.remote = remote;
  return OkStatus();
}

Status FakeVerbs::PostWrite(uint32_t qpn, uint64_t wr_id, std::span<const Sge> sges,
                            uint64_t remote_addr, uint32_t rkey, std::optional<uint32_t> imm) {
  QpAddress remote;
  bool local_ok = true;  // every SGE inside a local MR of its lkey (else a protection error)
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = qps_.find(qpn);
    if (it == qps_.end()) return NotFound("fake verbs: no QP");
    if (!it->second.connected) return FailedPrecondition("fake verbs: QP not in RTS");
    remote = it->second.remote;
    it->second.writes++;
    for (const Sge& s : sges) {
      auto mr = mrs_.find(s.lkey ^ 0xABCD0000u);
      local_ok = local_ok && mr != mrs_.end() && mr->second.lkey == s.lkey &&
                 s.addr >= mr->second.addr && s.length <= mr->second.length &&
                 s.addr - mr->second.addr <= mr->second.length - s.length;
    }
  }
  uint64_t total = 0;
  for (const Sge& s : sges) total += s.length;
  FakeVerbs* peer = fabric_->Find(remote.lid);
  WcStatus st = WcStatus::kSuccess;
  if (!local_ok) {
    st = WcStatus::kOther;  // local protection error: nothing is sent
  } else if (peer == nullptr) {
    st = WcStatus::kRetryExceeded;
  } else {
    std::lock_guard<std::mutex> pl(peer->mu_);
    auto mr = peer->mrs_.find(rkey);
    auto pq = peer->qps_.find(remote.qpn);
    if (peer->dead_ || pq == peer->qps_.end()) {
      st = WcStatus::kRetryExceeded;
    } else if (mr == peer->mrs_.end() || remote_addr < mr->second.addr ||
               total > mr->second.length ||
               remote_addr - mr->second.addr > mr->second.length - total) {
      st = WcStatus::kRemoteAccessError;
    } else if (imm && pq->second.recvs.empty()) {
      st = WcStatus::kOther;  // RNR: no receive posted
    } else {
      uint64_t dst = remote_addr;
      for (const Sge& s : sges) {
        std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(s.addr), s.length);
        dst += s.length;
      }
      if (imm) {
        Completion rc{pq->second.recvs.front(), WcStatus::kSuccess, WcOpcode::kRecvRdmaWithImm,
                      remote.qpn, *imm, static_cast<uint32_t>(total)};
        pq->second.recvs.pop_front();
        peer->cq_.push_back(rc);
      }
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  Completion c{wr_id, st, WcOpcode::kRdmaWrite, qpn, 0, static_cast<uint32_t>(total)};
  (hold_ ? held_ : cq_).push_back(c);
  return OkStatus();
}

Status FakeVerbs::PostRecv(uint32_t qpn, uint64_t wr_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = qps_.find(qpn);
  if (it == qps_.end()) return NotFound("fake verbs: no QP");
  it->second.recvs.push_back(wr_id);
  return OkStatus();
}

int FakeVerbs::PollCq(std::span<Completion> out) {
  std::lock_guard<std::mutex> l(mu_);
  size_t n = 0;
  while (n < out.size() && !cq_.empty()) {
    out[n++] = cq_.front();
    cq_.pop_front();
  }
  return static_cast<int>(n);
}

void FakeVerbs::DestroyQp(uint32_t qpn) {
  std::lock_guard<std::mutex> l(mu_);
  qps_.erase(qpn);
}

void FakeVerbs::set_hold_completions(bool hold) {
  std::lock_guard<std::mutex> l(mu_);
  hold_ = hold;
}

void FakeVerbs::ReleaseHeld() {
  std::lock_guard<std::mutex> l(mu_);
  while (!held_.empty()) {
    cq_.push_back(held_.front());
    held_.pop_front();
  }
}

size_t FakeVerbs::writes_posted(uint32_t qpn) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = qps_.find(qpn);
  return it == qps_.end() ? 0 : it->second.writes;
}

}  // namespace pd::kvtransfer::rdma
