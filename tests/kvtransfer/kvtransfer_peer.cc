// A receiver engine in its own process, for the e2e tests.
//   kvtransfer_peer <name> <arena_bytes> <compat_hash> [listen_port]
// Prints "META <hex of metadata blob>" once started, then answers stdin commands:
//   sum <offset> <length>  -> "SUM <fnv1a64>"
//   notes                  -> "NOTES <count> <bytes joined by ','>"
//   quit                   -> exits
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "kvtransfer/transfer_engine.h"

int main(int argc, char** argv) {
  using namespace pd::kvtransfer;
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s name arena_bytes compat [port]\n", argv[0]);
    return 2;
  }
  EngineOptions o;
  o.name = argv[1];
  o.compat_hash = std::stoull(argv[3]);
  if (argc > 4) o.listen_port = std::stoi(argv[4]);
  std::vector<uint8_t> mem(std::stoull(argv[2]));
  TransferEngine e(o);
  if (!e.RegisterArena({mem.data(), mem.size()}).ok() || !e.Start().ok()) return 1;
  std::string hex;
  for (unsigned char ch : e.LocalMetadata()) {
    static const char* d = "0123456789abcdef";
    hex += d[ch >> 4];
    hex += d[ch & 15];
  }
  std::cout << "META " << hex << std::endl;
  std::string cmd;
  while (std::cin >> cmd) {
    if (cmd == "sum") {
      uint64_t off = 0, len = 0, h = 1469598103934665603ull;
      std::cin >> off >> len;
      for (uint64_t i = off; i < off + len && i < mem.size(); ++i) {
        h = (h ^ mem[i]) * 1099511628211ull;
      }
      std::cout << "SUM " << h << std::endl;
    } else if (cmd == "notes") {
      auto notes = e.GetNotifications();
      std::string joined;
      for (const auto& n : notes) joined += (joined.empty() ? "" : ",") + n.bytes;
      std::cout << "NOTES " << notes.size() << " " << joined << std::endl;
    } else if (cmd == "quit") {
      break;
    }
  }
  return 0;
}
