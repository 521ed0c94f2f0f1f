// The "rdma" transport on an in-memory fabric (FakeVerbs) instead of a NIC, for engine-level
// tests: each engine started while a FakeNicScope lives gets its own device on one shared,
// never-destroyed fabric (engines may outlive the scope's tests).
#pragma once

#include <memory>

#include "kvtransfer/rdma/fake_verbs.h"
#include "kvtransfer/rdma/rdma_transport.h"

namespace pd::kvtransfer::testing {

class FakeNic final : public rdma::Verbs {
 public:
  explicit FakeNic(rdma::FakeVerbs* d) : d_(d) {}
  StatusOr<rdma::MemoryRegion> RegisterMemory(void* a, size_t n) override {
    return d_->RegisterMemory(a, n);
  }
  void DeregisterMemory(const rdma::MemoryRegion& mr) override { d_->DeregisterMemory(mr); }
  StatusOr<uint32_t> CreateQp() override { return d_->CreateQp(); }
  rdma::QpAddress LocalAddress(uint32_t q) const override { return d_->LocalAddress(q); }
  Status ConnectQp(uint32_t q, const rdma::QpAddress& r) override { return d_->ConnectQp(q, r); }
  Status PostWrite(uint32_t q, uint64_t w, std::span<const rdma::Sge> s, uint64_t ra,
                   uint32_t rk, std::optional<uint32_t> imm) override {
    return d_->PostWrite(q, w, s, ra, rk, imm);
  }
  Status PostRecv(uint32_t q, uint64_t w) override { return d_->PostRecv(q, w); }
  int PollCq(std::span<rdma::Completion> out) override { return d_->PollCq(out); }
  void DestroyQp(uint32_t q) override { d_->DestroyQp(q); }

 private:
  rdma::FakeVerbs* d_;
};

struct FakeNicScope {
  FakeNicScope() {
    static auto* fabric = new rdma::FakeFabric();  // outlives every engine
    rdma::SetVerbsFactoryForTesting([] {
      return StatusOr<std::unique_ptr<rdma::Verbs>>(std::make_unique<FakeNic>(fabric->AddDevice()));
    });
  }
  ~FakeNicScope() { rdma::SetVerbsFactoryForTesting({}); }
};

}  // namespace pd::kvtransfer::testing
