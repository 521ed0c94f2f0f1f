// A receiver engine in its own process, for the multi-process tests.
//   kvtransfer_peer <name> <arena_bytes> <compat_hash> [listen_port]
//                   [--transport tcp|local] [--mem host|shm|gpu] [--secret S]
// --mem: plain host memory (default), AllocateShareableHostMemory (shm, for the local
// transport), or cudaMalloc'd GPU memory (gpu; CUDA builds). --secret: EngineOptions::auth_secret.
// Prints "META <hex of metadata blob>" once started (or "ERROR <message>"), then answers stdin:
//   sum <offset> <length>  -> "SUM <fnv1a64>"
//   nonzero                -> "NONZERO <count of non-zero bytes in the arena>"
//   notes                  -> "NOTES <count> <bytes joined by ','>"
//   send_and_stop <hexmeta> <bytes> <deadline_ms>
//                          -> fills arena[0, bytes) with 0x5a, connects to that peer, posts a WRITE
//                             of it to the peer's offset 0, and stops itself (SIGSTOP) right after
//                             the Post; once continued: "POSTED <state> <status code>" after the
//                             transfer ended (the sender frozen mid-transfer, for the fence tests)
//   quit                   -> exits
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#ifdef PD_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "hex.h"
#include "kvtransfer/transfer_engine.h"

namespace {

using namespace pd::kvtransfer;

struct Arena {
  std::string kind = "host";
  size_t bytes = 0;
  void* base = nullptr;
  std::vector<uint8_t> host;
  bool Alloc() {
    if (kind == "shm") {
      base = AllocateShareableHostMemory(bytes);
      if (base) std::memset(base, 0, bytes);
    } else if (kind == "gpu") {
#ifdef PD_WITH_CUDA
      if (cudaMalloc(&base, bytes) != cudaSuccess) return false;
      cudaMemset(base, 0, bytes);
      cudaDeviceSynchronize();
#endif
    } else {
      host.assign(bytes, 0);
      base = host.data();
    }
    return base != nullptr;
  }
  // A host copy of the arena's bytes.
  std::vector<uint8_t> Read() const {
    std::vector<uint8_t> v(bytes);
#ifdef PD_WITH_CUDA
    if (kind == "gpu") {
      cudaMemcpy(v.data(), base, bytes, cudaMemcpyDeviceToHost);
      return v;
    }
#endif
    std::memcpy(v.data(), base, bytes);
    return v;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s name arena_bytes compat [port] [--transport T] [--mem M] "
                 "[--secret S]\n", argv[0]);
    return 2;
  }
  EngineOptions o;
  o.name = argv[1];
  o.compat_hash = std::stoull(argv[3]);
  Arena a;
  a.bytes = std::stoull(argv[2]);
  int i = 4;
  if (argc > 4 && argv[4][0] != '-') o.listen_port = std::stoi(argv[i++]);
  for (; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--transport") o.transport = v;
    else if (k == "--mem") a.kind = v;
    else if (k == "--secret") o.auth_secret = v;
  }
  if (!a.Alloc()) {
    std::cout << "ERROR cannot allocate a " << a.kind << " arena" << std::endl;
    return 1;
  }
  TransferEngine e(o);
  const MemoryKind kind = a.kind == "gpu" ? MemoryKind::kCuda : MemoryKind::kHost;
  pd::Status st = e.RegisterArena({a.base, a.bytes, kind, 0}).status();
  if (st.ok()) st = e.Start();
  if (!st.ok()) {
    std::cout << "ERROR " << st.ToString() << std::endl;
    return 1;
  }
  std::cout << "META " << ToHex(e.LocalMetadata()) << std::endl;
  std::string cmd;
  while (std::cin >> cmd) {
    if (cmd == "sum") {
      uint64_t off = 0, len = 0, h = 1469598103934665603ull;
      std::cin >> off >> len;
      const std::vector<uint8_t> mem = a.Read();
      for (uint64_t j = off; j < off + len && j < mem.size(); ++j) {
        h = (h ^ mem[j]) * 1099511628211ull;
      }
      std::cout << "SUM " << h << std::endl;
    } else if (cmd == "nonzero") {
      size_t n = 0;
      for (uint8_t b : a.Read()) n += b != 0;
      std::cout << "NONZERO " << n << std::endl;
    } else if (cmd == "notes") {
      auto notes = e.GetNotifications();
      std::string joined;
      for (const auto& n : notes) joined += (joined.empty() ? "" : ",") + n.bytes;
      std::cout << "NOTES " << notes.size() << " " << joined << std::endl;
    } else if (cmd == "send_and_stop") {
      std::string mhex;
      uint64_t len = 0, deadline_ms = 0;
      std::cin >> mhex >> len >> deadline_ms;
      len = std::min<uint64_t>(len, a.bytes);
      if (a.kind == "host") std::memset(a.base, 0x5a, len);
      auto peer = e.LoadRemoteMetadata(FromHex(mhex));
      pd::Status cs = peer.ok() ? e.Connect(*peer) : peer.status();
      if (!cs.ok()) {
        std::cout << "ERROR " << cs.ToString() << std::endl;
        continue;
      }
      auto t = e.Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, len}},
                      std::vector<Desc>{{0, 0, len}}, {},
                      std::chrono::milliseconds(deadline_ms));
      raise(SIGSTOP);
      if (!t.ok()) {
        std::cout << "ERROR " << t.status().ToString() << std::endl;
        continue;
      }
      auto r = e.Wait(*t, std::chrono::milliseconds(10000));
      std::cout << "POSTED " << static_cast<int>(r.state) << " "
                << static_cast<int>(r.status.code()) << std::endl;
      e.Release(*t);
    } else if (cmd == "quit") {
      break;
    }
  }
  return 0;
}
