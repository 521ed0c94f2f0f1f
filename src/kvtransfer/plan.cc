// Metadata encoding and descriptor planning (coalescing, validation, pairing).
#include <sstream>

#include "kvtransfer/transport.h"

namespace pd::kvtransfer {

std::string EncodeMetadata(const AgentMetadata& md) {
  std::ostringstream o;
  o << "pdkvx " << kMetadataVersion << "\n";
  o << "name " << md.name << "\n";
  o << "incarnation " << md.incarnation << "\n";
  o << "compat " << md.compat_hash << "\n";
  o << "transport " << md.transport << "\n";
  for (const auto& a : md.addrs) o << "addr " << a << "\n";
  for (const auto& a : md.arenas) o << "arena " << a.bytes << " " << static_cast<int>(a.kind) << "\n";
  o << "end\n";
  return o.str();
}

StatusOr<AgentMetadata> DecodeMetadata(const std::string& blob) {
  std::istringstream in(blob);
  std::string key;
  int version = 0;
  if (!(in >> key >> version) || key != "pdkvx") {
    return InvalidArgument("kvtransfer metadata: not a pdkvx blob");
  }
  if (version != kMetadataVersion) {
    return FailedPrecondition("kvtransfer metadata: version " + std::to_string(version) +
                              " not supported (this build speaks " +
                              std::to_string(kMetadataVersion) + ")");
  }
  AgentMetadata md;
  bool ended = false;
  while (!ended && in >> key) {
    if (key == "name") {
      in >> md.name;
    } else if (key == "incarnation") {
      in >> md.incarnation;
    } else if (key == "compat") {
      in >> md.compat_hash;
    } else if (key == "transport") {
      in >> md.transport;
    } else if (key == "addr") {
      std::string a;
      in >> a;
      md.addrs.push_back(a);
    } else if (key == "arena") {
      ArenaInfo a;
      int kind = 0;
      in >> a.bytes >> kind;
      if (kind < 0 || kind > 1) return InvalidArgument("kvtransfer metadata: bad arena kind");
      a.kind = static_cast<MemoryKind>(kind);
      md.arenas.push_back(a);
    } else if (key == "end") {
      ended = true;
    } else {
      return InvalidArgument("kvtransfer metadata: unknown field '" + key + "'");
    }
    if (in.fail()) return InvalidArgument("kvtransfer metadata: malformed field '" + key + "'");
  }
  if (!ended || md.name.empty() || md.incarnation == 0) {
    return InvalidArgument("kvtransfer metadata: truncated blob");
  }
  return md;
}

std::vector<Desc> CoalesceDescs(std::span<const Desc> descs) {
  std::vector<Desc> out;
  out.reserve(descs.size());
  for (const Desc& d : descs) {
    if (d.length == 0) continue;
    if (!out.empty()) {
      Desc& b = out.back();
      if (b.arena == d.arena && b.offset + b.length == d.offset) {
        b.length += d.length;
        continue;
      }
    }
    out.push_back(d);
  }
  return out;
}

Status CheckDescs(std::span<const Desc> descs, const std::vector<ArenaInfo>& arenas,
                  const char* what) {
  for (size_t i = 0; i < descs.size(); ++i) {
    const Desc& d = descs[i];
    if (d.arena >= arenas.size()) {
      return OutOfRange(std::string(what) + " desc " + std::to_string(i) + ": arena " +
                        std::to_string(d.arena) + " not registered");
    }
    const uint64_t size = arenas[d.arena].bytes;
    if (d.offset > size || d.length > size - d.offset) {
      return OutOfRange(std::string(what) + " desc " + std::to_string(i) + ": [" +
                        std::to_string(d.offset) + ", +" + std::to_string(d.length) +
                        ") outside arena of " + std::to_string(size) + " bytes");
    }
  }
  return OkStatus();
}

StatusOr<std::vector<Segment>> PairDescs(const std::vector<Desc>& local,
                                         const std::vector<Desc>& remote) {
  uint64_t lt = 0, rt = 0;
  for (const Desc& d : local) lt += d.length;
  for (const Desc& d : remote) rt += d.length;
  if (lt != rt) {
    return InvalidArgument("kvtransfer: local descs total " + std::to_string(lt) +
                           " bytes, remote descs " + std::to_string(rt));
  }
  std::vector<Segment> segs;
  size_t li = 0, ri = 0;
  uint64_t lo = 0, ro = 0;
  while (li < local.size() && ri < remote.size()) {
    const uint64_t n = std::min(local[li].length - lo, remote[ri].length - ro);
    segs.push_back({local[li].arena, local[li].offset + lo, remote[ri].arena,
                    remote[ri].offset + ro, n});
    lo += n;
    ro += n;
    if (lo == local[li].length) ++li, lo = 0;
    if (ro == remote[ri].length) ++ri, ro = 0;
  }
  return segs;
}

}  // namespace pd::kvtransfer
