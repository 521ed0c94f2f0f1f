// Wire protocol of the chunk transports (tcp today). Every frame is
//
//   FrameHeader (48 bytes, little-endian, packed)  |  nseg x WireSeg (16 bytes)  |  payload
//
// DATA       sender -> receiver: segs = destination ranges in the RECEIVER's arenas; payload =
//            their bytes in order (payload_len == sum of seg lengths). Receiver answers ACK.
// ACK        echoes xfer_id, chunk_id, ts_ns of the DATA / READ_REQ it acknowledges; aux = bytes.
// READ_REQ   requester -> responder: 2*nseg segs: nseg SOURCE ranges in the responder's arenas,
//            then nseg DESTINATION ranges in the requester's arenas (pairwise equal lengths).
//            The responder answers READ_DATA (segs = destinations, payload = source bytes,
//            ts/chunk echoed) or ERR.
// NOTIFY     payload = notification bytes; answered NOTIFY_ACK.
// HELLO      payload = HelloInfo (connect-time check of incarnation and compat hash); answered
//            HELLO_ACK or ERR, or (engine with an auth secret) AUTH_CHALLENGE.
// AUTH_CHALLENGE  responder -> initiator: nonce_r | proof_r (auth.h). The initiator answers
//            AUTH_RESPONSE (payload proof_i); the responder then HELLO_ACK or ERR.
// ERR        payload = message; aux = StatusCode; xfer_id/chunk_id name what failed.
//
// ParseHeader / ValidateSegs are the ONLY gate between bytes from the network and registered
// memory: every length and offset is checked against the registry (no overflow, no range
// outside a registered arena, bounded counts and sizes) before any byte is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd::kvtransfer::wire {

inline constexpr uint32_t kMagic = 0x3158'4B50;  // "PKX1"
inline constexpr uint32_t kMaxSegsPerFrame = 256;
inline constexpr uint64_t kMaxDataPayload = 4ull << 20;     // > the largest chunk (1 MiB)
inline constexpr uint64_t kMaxControlPayload = 1ull << 20;  // notifications, hello, errors

enum class FrameType : uint8_t {
  kHello = 1,
  kHelloAck = 2,
  kData = 3,
  kAck = 4,
  kReadReq = 5,
  kReadData = 6,
  kNotify = 7,
  kNotifyAck = 8,
  kErr = 9,
  kAuthChallenge = 10,
  kAuthResponse = 11,
};

#pragma pack(push, 1)
struct FrameHeader {
  uint32_t magic;
  uint8_t type;
  uint8_t flags;
  uint16_t nseg;
  uint32_t aux;
  uint32_t reserved;
  uint64_t xfer_id;
  uint64_t chunk_id;
  int64_t ts_ns;
  uint64_t payload_len;
};
struct WireSeg {
  uint64_t offset;
  uint32_t length;
  uint32_t arena;
};
#pragma pack(pop)
static_assert(sizeof(FrameHeader) == 48);
static_assert(sizeof(WireSeg) == 16);

// One registered region as the receiver knows it.
struct Region {
  uint8_t* base = nullptr;
  uint64_t bytes = 0;
  bool device = false;  // GPU memory: only reachable through the engine's DeviceCopier
};

// Checks magic, type, nseg and payload_len bounds for the type. Returns the number of WireSeg
// entries that follow the header (nseg, or 2*nseg for READ_REQ).
StatusOr<uint32_t> ParseHeader(const FrameHeader& h);

// Checks every seg against `regions`: arena index known, offset + length inside it (no
// overflow), non-zero length, and (when `expect_total` >= 0) the lengths summing to it.
Status ValidateSegs(const WireSeg* segs, uint32_t n, const std::vector<Region>& regions,
                    int64_t expect_total);

// Connect-time identity check carried by HELLO.
struct HelloInfo {
  std::string name;                 // initiator's agent name
  uint64_t incarnation = 0;         // initiator's incarnation
  uint64_t expected_incarnation = 0;  // the responder incarnation the initiator loaded
  uint64_t compat_hash = 0;
  uint32_t path_index = 0;
  std::string nonce;  // the initiator's auth nonce (auth.h); empty = no authentication offered
};
std::string EncodeHello(const HelloInfo& h);
StatusOr<HelloInfo> DecodeHello(const std::string& bytes);

FrameHeader MakeHeader(FrameType type, uint64_t xfer_id, uint64_t chunk_id, int64_t ts_ns,
                       uint16_t nseg, uint64_t payload_len, uint32_t aux = 0);

}  // namespace pd::kvtransfer::wire
