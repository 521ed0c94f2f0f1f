// libFuzzer target: the transfer engine's wire-frame parser (kvtransfer/wire.h).
// The input is a byte stream as a receiver sees it on a connection: frames of
// FrameHeader | WireSeg table | payload, back to back. Each frame goes through the same gates the
// tcp receiver uses (ParseHeader, ValidateSegs, DecodeHello); whatever passes is then applied to
// two exactly-sized heap arenas (DATA/READ_DATA payload written to the destination ranges,
// READ_REQ sources read), so ASan reports any range the validator let through that is outside
// an arena.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kvtransfer/wire.h"

namespace {

using pd::kvtransfer::wire::FrameHeader;
using pd::kvtransfer::wire::FrameType;
using pd::kvtransfer::wire::Region;
using pd::kvtransfer::wire::WireSeg;
namespace wire = pd::kvtransfer::wire;

struct Arenas {
  Arenas() : a(4096), b(65536), regions{{a.data(), a.size()}, {b.data(), b.size()}} {}
  std::vector<uint8_t> a, b;
  std::vector<Region> regions;
};

void CheckHello(const std::string& payload) {
  auto h = wire::DecodeHello(payload);
  if (!h.ok()) return;
  // Round trip: what we decode re-encodes to something that decodes to the same fields.
  auto again = wire::DecodeHello(wire::EncodeHello(*h));
  if (!again.ok() || again->name != h->name || again->incarnation != h->incarnation ||
      again->expected_incarnation != h->expected_incarnation ||
      again->compat_hash != h->compat_hash || again->path_index != h->path_index) {
    std::abort();
  }
}

// Consumes one frame from [p, end). Returns false when the stream must be dropped.
bool OneFrame(Arenas& ar, const uint8_t*& p, const uint8_t* end) {
  if (static_cast<size_t>(end - p) < sizeof(FrameHeader)) return false;
  FrameHeader h;
  std::memcpy(&h, p, sizeof(h));
  p += sizeof(h);
  auto nseg = wire::ParseHeader(h);
  if (!nseg.ok()) return false;
  if (*nseg > 2 * wire::kMaxSegsPerFrame) std::abort();  // the parser's own bound
  std::vector<WireSeg> segs(*nseg);
  const size_t seg_bytes = segs.size() * sizeof(WireSeg);
  if (static_cast<size_t>(end - p) < seg_bytes) return false;
  if (seg_bytes) std::memcpy(segs.data(), p, seg_bytes);
  p += seg_bytes;
  const auto type = static_cast<FrameType>(h.type);
  const size_t avail = static_cast<size_t>(end - p);
  if (type == FrameType::kData || type == FrameType::kReadData) {
    if (!wire::ValidateSegs(segs.data(), h.nseg, ar.regions, static_cast<int64_t>(h.payload_len))
             .ok()) {
      return false;
    }
    // Scatter the payload exactly as the receiver's iovecs would (short streams: what is there).
    size_t left = avail < h.payload_len ? avail : static_cast<size_t>(h.payload_len);
    for (const WireSeg& s : segs) {
      const size_t n = left < s.length ? left : s.length;
      std::memcpy(ar.regions[s.arena].base + s.offset, p, n);
      p += n;
      left -= n;
    }
    return avail >= h.payload_len;
  }
  if (type == FrameType::kReadReq) {
    // Sources are ours: validate and read them; destinations belong to the requester.
    if (wire::ValidateSegs(segs.data(), h.nseg, ar.regions, -1).ok()) {
      std::string out;
      for (uint32_t i = 0; i < h.nseg; ++i) {
        const WireSeg& s = segs[i];
        out.append(reinterpret_cast<const char*>(ar.regions[s.arena].base + s.offset), s.length);
      }
    }
    // The requester checks the destination half when READ_DATA comes back.
    (void)wire::ValidateSegs(segs.data() + h.nseg, h.nseg, ar.regions, -1);
    return true;
  }
  if (avail < h.payload_len) return false;
  const std::string payload(reinterpret_cast<const char*>(p), static_cast<size_t>(h.payload_len));
  p += h.payload_len;
  if (type == FrameType::kHello) CheckHello(payload);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Arenas* arenas = new Arenas();
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  // A HELLO payload on its own as well (the local transport decodes HELLO from a datagram).
  CheckHello(std::string(reinterpret_cast<const char*>(data), size));
  while (OneFrame(*arenas, p, end)) {
  }
  return 0;
}
