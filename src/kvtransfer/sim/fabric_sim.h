// Discrete-event simulation of a KV transfer across a leaf-spine fabric, running the engine's
// own CongestionControl and PathSelector objects (on a ManualClock) to show behaviour at a
// scale no single machine has.
//
// Model (deliberately small):
// * The sender's leaf reaches the receiver's leaf through `spines` spines; the bottleneck of
//   each path is the spine -> receiver-leaf link: a FIFO of 64 KB units served at link_gbps.
//   Every path adds base_rtt_us of propagation + processing to each round trip.
// * KV chunks (chunk_bytes) enter a path's FIFO when the path's CC allows (window / pacing);
//   the chunk's ACK arrives base_rtt after its last unit is served: RTT sample = queueing +
//   serialisation + base RTT, exactly what the TCP / RDMA transports measure.
//   The sender NIC is not modelled (arrivals are bursts of a chunk).
// * Background flows are bulk, loss-/ECN-like AIMD flows hashed onto a spine (ECMP collision):
//   +1 unit per window of ACKs, halve at most once per RTT when a unit saw a queue above
//   mark_kb (they keep a standing queue, like cubic keeps the tbf queue full on the testbed).
//   Paced flows (rate_gbps > 0) send at a fixed rate without CC.
// * Arms: the engine's options (paths, CC, path policy). Single-path arms use spine 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer::sim {

struct BgFlow {
  int spine = 0;
  double rate_gbps = 0;  // > 0: paced at this rate (no CC); 0: bulk AIMD
};

struct FabricConfig {
  int spines = 8;
  double link_gbps = 100;
  double base_rtt_us = 10;
  double mark_kb = 512;  // standing queue that AIMD background flows keep (per spine)
  std::vector<BgFlow> background;
};

struct Arm {
  std::string name;
  int paths = 8;  // <= spines; path i uses spine i
  PathPolicy policy = PathPolicy::kPowerOfTwo;
  CcParams cc;
  uint64_t chunk_bytes = 256 * 1024;
};

struct RunResult {
  double completion_us = 0;
  double bg_goodput_gbps = 0;  // background bytes delivered during the transfer / its duration
};

// Simulates one transfer of `payload` bytes after `warmup_us` of background-only traffic.
RunResult SimulateTransfer(const FabricConfig& fabric, const Arm& arm, uint64_t payload,
                           double warmup_us, uint64_t seed);

}  // namespace pd::kvtransfer::sim
