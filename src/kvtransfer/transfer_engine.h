// TransferEngine: moves byte ranges between registered memory arenas of two processes (after
// NIXL). The KV use: pd-prefill WRITEs each layer's KV ranges into pd-decode's reserved blocks,
// then posts a notification (e.g. request id + first token) that the decode side reads with
// GetNotifications() only after every byte of the data it follows has landed.
//
// Flow:
//   TransferEngine e(opts);                      // opts.compat_hash = layout.CompatHash()
//   e.RegisterArena({base, bytes, kHost})        -> ArenaId (local index 0, 1, ...)
//   e.Start()                                    // listens; LocalMetadata() is valid after this
//   blob = e.LocalMetadata()                     // send to the peer out of band (gRPC)
//   peer = e.LoadRemoteMetadata(peer_blob)       // refuses other layouts / versions
//   h = e.Post(kWrite, peer, local_descs, remote_descs, notify, deadline)
//   e.Poll(h) / e.Wait(h, timeout) ... e.Release(h)
//
// Descriptors: a Desc is (arena, offset, length). Local descs name local arenas, remote descs
// name the PEER's arena indices (as in its metadata). The two lists are matched as byte streams:
// local bytes [0, n) go to remote bytes [0, n) in list order; both lists must total the same n.
// Adjacent descriptors are coalesced before they reach the wire, so passing one desc per block
// costs nothing when the blocks are contiguous.
//
// Failures: every transfer has a deadline (default EngineOptions::default_deadline). A dead or
// restarted peer completes pending transfers with kUnavailable (never a hang); metadata with an
// unknown version, a different compat hash or an incarnation older than the one loaded is
// refused (kFailedPrecondition) with a message naming the mismatch. Loading the metadata of a
// restarted peer (new incarnation) replaces the old one and reconnects.
//
// Thread safety: every public method may be called from any thread. I/O runs on the engine's
// own thread(s). Memory of a registered arena must stay valid until the engine is destroyed.
// Transports (tcp, local, rdma) are plugins behind a private interface (transport.h); no
// transport detail appears here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd::kvtransfer {

class DeviceCopier;  // device_copier.h

enum class MemoryKind : uint8_t { kHost = 0, kCuda = 1 };
enum class Op : uint8_t { kWrite = 0, kRead = 1 };  // WRITE: local -> remote; READ: remote -> local
enum class TransferState : uint8_t { kInProgress = 0, kDone = 1, kError = 2 };

using ArenaId = uint32_t;
using PeerId = uint32_t;      // engine-local handle of a loaded remote agent, never 0
using TransferId = uint64_t;  // never 0

// One registered memory region (e.g. the KV arena). Registered once, before Start().
// kCuda arenas (cudaMalloc'd, all on one device) work with the tcp and rdma transports
// (bounce-buffer staging, see EngineOptions::staging_slots; rdma: WRITE only, no GPUDirect) and
// the local transport (CUDA IPC).
struct ArenaSpec {
  void* base = nullptr;
  size_t bytes = 0;
  MemoryKind kind = MemoryKind::kHost;
  int device = 0;  // CUDA device ordinal when kind == kCuda
};

// A byte range of an arena (local arena index, or the peer's index for remote descs).
struct Desc {
  ArenaId arena = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

enum class CcAlgorithm : uint8_t { kSwift = 0, kTimely = 1, kNone = 2 };
enum class PathPolicy : uint8_t { kPowerOfTwo = 0, kRoundRobin = 1 };

struct CcParams {
  CcAlgorithm algorithm = CcAlgorithm::kSwift;
  // Swift target delay = base_target_us + target_chunk_factor * (chunk serialisation time at
  // link_gbps). RTT samples below target grow the window, above shrink it (once per RTT).
  double base_target_us = 300;
  double target_chunk_factor = 1.5;
  double link_gbps = 100;          // per path; only used for the serialisation term
  double additive_increase = 1.0;  // chunks per RTT when below target
  double beta = 0.8;               // multiplicative decrease strength
  double max_mdf = 0.5;            // largest single decrease (fraction of the window)
  double min_cwnd_chunks = 0.05;   // below 1 chunk the path is paced
  double max_cwnd_chunks = 64;
  double init_cwnd_chunks = 4;
  // Relative target: the delay target is at least this times the smoothed RTT of the peer's
  // best path (0 = off). Keeps a share when every path is congested (incast) rather than
  // yielding to loss-based competitors; with one path it leaves the kernel's CC in charge.
  double relative_target_factor = 1.5;
  // Timely: low threshold = Swift's target (above), high threshold = low + timely_t_high_us.
  double timely_t_high_us = 3000;
};

struct EngineOptions {
  std::string name = "agent";       // agent name, carried in metadata and every connection
  // "tcp", "local" (same host: the peer's arenas are mapped and copied into directly; host
  // arenas must come from AllocateShareableHostMemory, GPU arenas are shared by CUDA IPC), or
  // "rdma" (WRITE only; GPU arenas through pinned bounce buffers, see staging_slots).
  std::string transport = "tcp";
  uint64_t compat_hash = 0;         // KvLayout::CompatHash(); peers must match
  // TCP: where to listen, and which addresses the metadata advertises (path i connects to
  // advertise_addrs[i % size]; empty = listen_host). Port 0 = ephemeral.
  std::string listen_host = "127.0.0.1";
  int listen_port = 0;
  std::vector<std::string> advertise_addrs;
  int num_paths = 4;                // connections per peer
  size_t chunk_bytes = 256 * 1024;  // 64 KiB .. 1 MiB
  PathPolicy path_policy = PathPolicy::kPowerOfTwo;
  CcParams cc;
  std::string kernel_cc;            // TCP_CONGESTION per socket ("cubic", "bbr"); empty = default
  int notsent_lowat = 128 * 1024;   // TCP_NOTSENT_LOWAT; 0 = leave unset
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds default_deadline{30000};
  // A connection with bytes outstanding and no progress for this long is declared dead.
  std::chrono::milliseconds peer_timeout{3000};
  // GPU arenas (MemoryKind::kCuda) over tcp are staged through pinned bounce buffers:
  // `staging_slots` buffers of chunk_bytes per direction (send and receive). On the send side a
  // chunk's device->host copy is started when the chunk is bound to a path, so copies of the
  // next chunks overlap the sending of earlier ones; on the receive side each chunk is copied
  // host->device as it lands and acknowledged only after that copy finished (so completions and
  // notifications follow the data into GPU memory).
  // rdma: a pinned, registered ring of min(staging_slots, 128) slots per peer connection (send
  // ring to a peer, receive ring from one); a chunk is posted from its send slot after its copy,
  // a chunk for a GPU arena lands in a slot of the receiver's ring and is copied host->device
  // before the receiver hands the slot's credit back, which is what acknowledges the chunk.
  int staging_slots = 16;
  // The copier for GPU arenas; null = the CUDA copier for the arenas' device (MakeCudaCopier).
  // Tests inject a FakeDeviceCopier (host memory standing in for the GPU).
  std::shared_ptr<DeviceCopier> device_copier;
  // Shared secret of the control handshake (HMAC-SHA256 challenge-response, both directions):
  // peers must hold the same secret or the connection is refused before any data frame is
  // accepted. Empty = no authentication (any host that reaches the port and knows the metadata
  // may connect; use only on a trusted network). Never logged.
  std::string auth_secret;
};

struct TransferStats {
  uint64_t bytes = 0;
  uint32_t descs_in = 0;       // descriptors as posted (local + remote)
  uint32_t segments = 0;       // contiguous segments after coalescing / pairing
  uint32_t chunks = 0;         // wire chunks
  int64_t post_ns = 0;         // steady_clock at Post()
  int64_t complete_ns = 0;     // steady_clock at completion (0 while in progress)
  double duration_us() const { return complete_ns ? (complete_ns - post_ns) / 1e3 : 0; }
};

struct TransferResult {
  TransferState state = TransferState::kInProgress;
  Status status;  // OK unless state == kError
  TransferStats stats;
};

// A notification posted with a transfer, delivered after all of that transfer's data.
struct Notification {
  std::string peer_name;
  std::string bytes;
};

// Engine-wide counters (tests check that failed transfers leave nothing behind).
struct EngineStats {
  size_t active_transfers = 0;   // posted, not yet released
  size_t transport_transfers = 0;  // in flight inside the transport (0 when idle)
  size_t pending_notifications = 0;
  size_t connected_paths = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
};

// Congestion state of one connected outgoing path (read-only snapshot, for metrics).
struct PathStats {
  std::string peer;         // peer agent name
  int path = 0;             // path index 0 .. num_paths-1
  double cwnd_bytes = 0;    // congestion window (very large with CcAlgorithm::kNone)
  int64_t srtt_ns = 0;      // smoothed RTT; 0 before the first sample
};

class Transport;  // private plugin interface (transport.h)

// Host memory that the "local" transport can map into a peer process on the same host
// (memfd-backed, MAP_SHARED). Arenas registered with a local-transport engine must come from
// here. Returns nullptr on failure. Freed with FreeShareableHostMemory (or at process exit).
void* AllocateShareableHostMemory(size_t bytes);
void FreeShareableHostMemory(void* base);

class TransferEngine {
 public:
  explicit TransferEngine(EngineOptions options);
  ~TransferEngine();  // fails pending transfers, closes connections, joins threads
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // Registers an arena; returns its index. Only before Start().
  StatusOr<ArenaId> RegisterArena(const ArenaSpec& arena);
  // Starts the transport (listening socket, I/O thread). Validates options.
  Status Start();

  // Opaque, versioned blob: name, incarnation, compat hash, addresses, arenas (index + size).
  std::string LocalMetadata() const;
  // This process's incarnation id (random per engine instance).
  uint64_t incarnation() const;
  // Parses a peer's blob. Same name + newer incarnation replaces the old peer (its pending
  // transfers fail) and returns the same PeerId; an older incarnation or another compat hash is
  // refused. Connections are made lazily by the first Post (or eagerly by Connect()).
  StatusOr<PeerId> LoadRemoteMetadata(const std::string& blob);
  // Opens the peer's paths now (optional; Post connects on demand). Bounded by connect_timeout.
  Status Connect(PeerId peer);
  // Forgets a peer: fails its pending transfers and closes its connections.
  void Disconnect(PeerId peer);

  // Starts a transfer. Validates every desc against the local registry and the peer's metadata
  // (out of range -> kOutOfRange); lengths must total the same. `notify` (may be empty = none)
  // is delivered to the peer after the data (WRITE only). deadline: zero = default_deadline.
  StatusOr<TransferId> Post(Op op, PeerId peer, std::span<const Desc> local,
                            std::span<const Desc> remote, const std::string& notify = {},
                            std::chrono::milliseconds deadline = std::chrono::milliseconds{0});
  // Sends only a notification (ordered after every transfer to that peer that completed before
  // this call).
  StatusOr<TransferId> PostNotification(PeerId peer, const std::string& notify,
                                        std::chrono::milliseconds deadline = {});
  // Non-blocking state of a transfer (NotFound status in result if unknown / released).
  TransferResult Poll(TransferId id) const;
  // Blocks until the transfer is no longer in progress or `timeout` passes (then kInProgress).
  TransferResult Wait(TransferId id, std::chrono::milliseconds timeout) const;
  // Frees the record of a finished transfer; cancels (fails) one still in progress.
  void Release(TransferId id);

  // Notifications received so far (moved out; each is returned once).
  std::vector<Notification> GetNotifications();
  EngineStats Stats() const;
  // Every connected outgoing path's congestion state (tcp; empty for transports without
  // host-side congestion control).
  std::vector<PathStats> PathSnapshot() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pd::kvtransfer
