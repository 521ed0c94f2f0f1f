// Thin interface over the ibverbs calls the RDMA transport needs. The real implementation
// (ibverbs_loader.cc, built with PD_WITH_RDMA) loads libibverbs with dlopen at run time, so
// binaries start on hosts without it; FakeVerbs (fake_verbs.h) implements the same interface in
// memory so that all the transport's logic is tested without RDMA hardware.
//
// Model: one device context, one completion queue shared by all QPs, RC QPs, one MR per arena.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/status.h"

namespace pd::kvtransfer::rdma {

struct MemoryRegion {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t lkey = 0;
  uint32_t rkey = 0;
};

// What a peer needs to connect an RC QP to ours (exchanged in the metadata blob).
struct QpAddress {
  uint32_t qpn = 0;
  uint16_t lid = 0;
  std::array<uint8_t, 16> gid{};
};

struct Sge {
  uint64_t addr = 0;
  uint32_t length = 0;
  uint32_t lkey = 0;
};

enum class WcStatus : uint8_t { kSuccess, kRemoteAccessError, kRetryExceeded, kFlushed, kOther };
enum class WcOpcode : uint8_t { kRdmaWrite, kRecvRdmaWithImm };

struct Completion {
  uint64_t wr_id = 0;
  WcStatus status = WcStatus::kSuccess;
  WcOpcode opcode = WcOpcode::kRdmaWrite;
  uint32_t qpn = 0;
  uint32_t imm = 0;
  uint32_t byte_len = 0;
};

class Verbs {
 public:
  virtual ~Verbs() = default;
  // Registers [addr, addr + length) for local and remote write access.
  virtual StatusOr<MemoryRegion> RegisterMemory(void* addr, size_t length) = 0;
  // Releases a registration of RegisterMemory (before its memory is freed); no-op by default.
  virtual void DeregisterMemory(const MemoryRegion& mr) { (void)mr; }
  // Creates an RC QP on the shared CQ; returns its number.
  virtual StatusOr<uint32_t> CreateQp() = 0;
  virtual QpAddress LocalAddress(uint32_t qpn) const = 0;
  // INIT -> RTR -> RTS against the remote QP.
  virtual Status ConnectQp(uint32_t qpn, const QpAddress& remote) = 0;
  // RDMA WRITE (WITH_IMM when `imm` is set) of the gathered `sges` to remote_addr/rkey.
  virtual Status PostWrite(uint32_t qpn, uint64_t wr_id, std::span<const Sge> sges,
                           uint64_t remote_addr, uint32_t rkey, std::optional<uint32_t> imm) = 0;
  // A receive for an incoming WRITE_WITH_IMM (no buffer: the data went to remote_addr).
  virtual Status PostRecv(uint32_t qpn, uint64_t wr_id) = 0;
  // Up to out.size() completions; returns how many.
  virtual int PollCq(std::span<Completion> out) = 0;
  virtual void DestroyQp(uint32_t qpn) = 0;
};

// Opens `device` (empty = the first) through libibverbs loaded at run time. Errors say plainly
// "libibverbs not found" or "no RDMA device" where that is the case.
StatusOr<std::unique_ptr<Verbs>> OpenIbverbs(const std::string& device);

}  // namespace pd::kvtransfer::rdma
