// FakeVerbs: an in-memory RDMA fabric implementing the Verbs interface, for unit tests of the
// RDMA transport logic (QP setup, chunk spraying, completions, errors). A WRITE is checked
// against the local MRs (lkey and bounds of every SGE, else an error completion) and the
// target MR (rkey and bounds, else a remote access error completion), copied, and
// completes on the sender's CQ; WRITE_WITH_IMM also consumes a posted receive on the peer QP
// and completes there. Completions can be held back (hold_completions) to test ordering and
// outstanding limits; a device can be killed to test peer failure.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kvtransfer/rdma/verbs.h"

namespace pd::kvtransfer::rdma {

class FakeFabric;

class FakeVerbs final : public Verbs {
 public:
  FakeVerbs(FakeFabric* fabric, uint16_t lid) : fabric_(fabric), lid_(lid) {}
  StatusOr<MemoryRegion> RegisterMemory(void* addr, size_t length) override;
  void DeregisterMemory(const MemoryRegion& mr) override;
  StatusOr<uint32_t> CreateQp() override;
  QpAddress LocalAddress(uint32_t qpn) const override;
  Status ConnectQp(uint32_t qpn, const QpAddress& remote) override;
  Status PostWrite(uint32_t qpn, uint64_t wr_id, std::span<const Sge> sges, uint64_t remote_addr,
                   uint32_t rkey, std::optional<uint32_t> imm) override;
  Status PostRecv(uint32_t qpn, uint64_t wr_id) override;
  int PollCq(std::span<Completion> out) override;
  void DestroyQp(uint32_t qpn) override;

  // Test hooks.
  void set_hold_completions(bool hold);  // keep write completions until released
  void ReleaseHeld();
  size_t writes_posted(uint32_t qpn) const;
  size_t registrations() const;
  uint16_t lid() const { return lid_; }

 private:
  friend class FakeFabric;
  struct Qp {
    bool connected = false;
    QpAddress remote;
    std::deque<uint64_t> recvs;
    size_t writes = 0;
  };
  FakeFabric* fabric_;
  uint16_t lid_;
  mutable std::mutex mu_;
  std::map<uint32_t, Qp> qps_;
  std::map<uint32_t, MemoryRegion> mrs_;  // by rkey
  std::deque<Completion> cq_, held_;
  bool hold_ = false;
  bool dead_ = false;
};

class FakeFabric {
 public:
  FakeVerbs* AddDevice();
  // The device stops answering: writes to it complete with kRetryExceeded.
  void Kill(FakeVerbs* dev);
  FakeVerbs* Find(uint16_t lid);
  uint32_t NextQpn() { return next_qpn_++; }
  uint32_t NextKey() { return next_key_++; }

 private:
  std::mutex mu_;  // guards devs_
  std::vector<std::unique_ptr<FakeVerbs>> devs_;
  std::atomic<uint32_t> next_qpn_{100};
  std::atomic<uint32_t> next_key_{0x1000};
};

}  // namespace pd::kvtransfer::rdma
