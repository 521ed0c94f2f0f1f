// Private plugin interface between TransferEngine and its transports (tcp; later local, rdma).
// Nothing here is part of the public API; transports keep their own state in their .cc files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kvtransfer/transfer_engine.h"
#include "kvtransfer/wire.h"

namespace pd::kvtransfer {

struct ArenaInfo {
  uint64_t bytes = 0;
  MemoryKind kind = MemoryKind::kHost;
};

// Decoded metadata blob of an agent.
struct AgentMetadata {
  std::string name;
  uint64_t incarnation = 0;
  uint64_t compat_hash = 0;
  std::string transport;
  std::vector<std::string> addrs;  // "host:port", path i uses addrs[i % size]
  std::vector<ArenaInfo> arenas;
};
inline constexpr int kMetadataVersion = 1;
std::string EncodeMetadata(const AgentMetadata& md);
StatusOr<AgentMetadata> DecodeMetadata(const std::string& blob);

// A contiguous piece of a transfer after coalescing and pairing local with remote descs.
struct Segment {
  ArenaId local_arena = 0;
  uint64_t local_offset = 0;
  ArenaId remote_arena = 0;
  uint64_t remote_offset = 0;
  uint64_t length = 0;
};
// Merges adjacent descs (same arena, contiguous) and drops empty ones.
std::vector<Desc> CoalesceDescs(std::span<const Desc> descs);
// Checks descs against arena sizes (`what` names the side in errors).
Status CheckDescs(std::span<const Desc> descs, const std::vector<ArenaInfo>& arenas,
                  const char* what);
// Pairs two coalesced desc streams byte for byte; totals must match.
StatusOr<std::vector<Segment>> PairDescs(const std::vector<Desc>& local,
                                         const std::vector<Desc>& remote);

// Work handed to a transport.
struct TransferWork {
  TransferId id = 0;
  Op op = Op::kWrite;
  PeerId peer = 0;
  std::vector<Segment> segs;
  uint64_t bytes = 0;
  bool has_notify = false;
  std::string notify;
  int64_t deadline_ns = 0;  // steady clock
};

// Callbacks from a transport into the engine (called with the transport's lock held; they
// must not call back into the transport).
class TransportHost {
 public:
  virtual ~TransportHost() = default;
  // Exactly once per submitted transfer (also after Cancel / peer failure).
  virtual void OnTransferDone(TransferId id, const Status& status, uint32_t chunks) = 0;
  virtual void OnNotification(const std::string& peer_name, std::string bytes) = 0;
  virtual void OnBytes(uint64_t sent, uint64_t received) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Status Start(const std::vector<wire::Region>& regions) = 0;
  // Addresses for this agent's metadata.
  virtual std::vector<std::string> Addresses() const = 0;
  // Adds a peer or replaces it (a new incarnation): pending transfers to the old one fail.
  virtual void SetPeer(PeerId id, const AgentMetadata& md) = 0;
  virtual void RemovePeer(PeerId id) = 0;
  // Blocks until every path of the peer is up, an error, or deadline_ns.
  virtual Status Connect(PeerId id, int64_t deadline_ns) = 0;
  virtual void Submit(TransferWork work) = 0;
  // Fails the transfer with `why` if it is still known (OnTransferDone follows).
  virtual void Cancel(TransferId id, const Status& why) = 0;
  virtual size_t ConnectedPaths() const = 0;
  virtual size_t PendingTransfers() const = 0;
  // Congestion state of the connected outgoing paths (metrics); none by default.
  virtual std::vector<PathStats> Paths() const { return {}; }
  // Fails everything pending and joins threads.
  virtual void Stop() = 0;
};

std::unique_ptr<Transport> MakeTcpTransport(const EngineOptions& options, uint64_t incarnation,
                                            TransportHost* host);
std::unique_ptr<Transport> MakeRdmaTransport(const EngineOptions& options, uint64_t incarnation,
                                             TransportHost* host);
std::unique_ptr<Transport> MakeLocalTransport(const EngineOptions& options, uint64_t incarnation,
                                              TransportHost* host);

}  // namespace pd::kvtransfer
