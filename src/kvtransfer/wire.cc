#include "kvtransfer/wire.h"

#include <cstring>

namespace pd::kvtransfer::wire {

StatusOr<uint32_t> ParseHeader(const FrameHeader& h) {
  if (h.magic != kMagic) return DataLoss("kvtransfer wire: bad magic");
  if (h.nseg > kMaxSegsPerFrame) return DataLoss("kvtransfer wire: too many segments");
  const auto type = static_cast<FrameType>(h.type);
  switch (type) {
    case FrameType::kData:
    case FrameType::kReadData:
      if (h.nseg == 0 || h.payload_len == 0 || h.payload_len > kMaxDataPayload) {
        return DataLoss("kvtransfer wire: bad data frame size");
      }
      return static_cast<uint32_t>(h.nseg);
    case FrameType::kReadReq:
      if (h.nseg == 0 || h.payload_len != 0) return DataLoss("kvtransfer wire: bad read request");
      return 2u * h.nseg;
    case FrameType::kHello:
    case FrameType::kHelloAck:
    case FrameType::kAck:
    case FrameType::kNotify:
    case FrameType::kNotifyAck:
    case FrameType::kErr:
    case FrameType::kAuthChallenge:
    case FrameType::kAuthResponse:
      if (h.nseg != 0 || h.payload_len > kMaxControlPayload) {
        return DataLoss("kvtransfer wire: bad control frame");
      }
      return 0u;
  }
  return DataLoss("kvtransfer wire: unknown frame type " + std::to_string(h.type));
}

Status ValidateSegs(const WireSeg* segs, uint32_t n, const std::vector<Region>& regions,
                    int64_t expect_total) {
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const WireSeg& s = segs[i];
    if (s.arena >= regions.size()) return OutOfRange("kvtransfer wire: unknown arena");
    const uint64_t size = regions[s.arena].bytes;
    if (s.length == 0 || s.offset > size || s.length > size - s.offset) {
      return OutOfRange("kvtransfer wire: segment outside the registered arena");
    }
    total += s.length;  // n <= 2 * kMaxSegsPerFrame and length < 2^32: no overflow
  }
  if (expect_total >= 0 && total != static_cast<uint64_t>(expect_total)) {
    return DataLoss("kvtransfer wire: segment lengths do not match the payload");
  }
  return OkStatus();
}

namespace {
void Put64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
bool Get64(const std::string& s, size_t& pos, uint64_t& v) {
  if (s.size() - pos < 8) return false;
  std::memcpy(&v, s.data() + pos, 8);
  pos += 8;
  return true;
}
}  // namespace

std::string EncodeHello(const HelloInfo& h) {
  std::string s;
  Put64(s, h.incarnation);
  Put64(s, h.expected_incarnation);
  Put64(s, h.compat_hash);
  Put64(s, h.path_index);
  s += h.name;
  if (!h.nonce.empty()) {  // names never hold NUL: it separates the optional nonce
    s += '\0';
    s += h.nonce;
  }
  return s;
}

StatusOr<HelloInfo> DecodeHello(const std::string& bytes) {
  HelloInfo h;
  size_t pos = 0;
  uint64_t path = 0;
  if (!Get64(bytes, pos, h.incarnation) || !Get64(bytes, pos, h.expected_incarnation) ||
      !Get64(bytes, pos, h.compat_hash) || !Get64(bytes, pos, path)) {
    return DataLoss("kvtransfer wire: short HELLO");
  }
  h.path_index = static_cast<uint32_t>(path);
  h.name = bytes.substr(pos);
  if (const size_t nul = h.name.find('\0'); nul != std::string::npos) {
    h.nonce = h.name.substr(nul + 1);
    h.name.resize(nul);
    if (h.nonce.size() != 32) return DataLoss("kvtransfer wire: bad HELLO nonce");
  }
  if (h.name.size() > 256) return DataLoss("kvtransfer wire: HELLO name too long");
  return h;
}

FrameHeader MakeHeader(FrameType type, uint64_t xfer_id, uint64_t chunk_id, int64_t ts_ns,
                       uint16_t nseg, uint64_t payload_len, uint32_t aux) {
  FrameHeader h{};
  h.magic = kMagic;
  h.type = static_cast<uint8_t>(type);
  h.nseg = nseg;
  h.aux = aux;
  h.xfer_id = xfer_id;
  h.chunk_id = chunk_id;
  h.ts_ns = ts_ns;
  h.payload_len = payload_len;
  return h;
}

}  // namespace pd::kvtransfer::wire
