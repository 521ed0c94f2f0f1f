// Hostile bytes on a live engine's socket never write outside the registered arena.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>

#include "kvtransfer/transfer_engine.h"
#include "kvtransfer/wire.h"

namespace pd::kvtransfer {
namespace {

using wire::FrameHeader;
using wire::FrameType;
using wire::WireSeg;

constexpr uint64_t kCompat = 5;
constexpr size_t kGuard = 1 << 16, kArena = 1 << 20;

struct Target {
  Target() : buf(kGuard + kArena + kGuard, 0xEE) {
    EngineOptions o;
    o.name = "decode";
    o.compat_hash = kCompat;
    e = std::make_unique<TransferEngine>(o);
    EXPECT_TRUE(e->RegisterArena({buf.data() + kGuard, kArena}).ok());
    EXPECT_TRUE(e->Start().ok());
    const std::string md = e->LocalMetadata();
    port = std::stoi(md.substr(md.find("addr 127.0.0.1:") + 15));
  }
  bool GuardsIntact() const {
    for (size_t i = 0; i < kGuard; ++i) {
      if (buf[i] != 0xEE || buf[kGuard + kArena + i] != 0xEE) return false;
    }
    return true;
  }
  int Dial() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  }
  // Connects and completes the handshake like a legitimate peer.
  int Handshake() const {
    const int fd = Dial();
    wire::HelloInfo h{"evil", 1, e->incarnation(), kCompat, 0, {}};
    const std::string body = wire::EncodeHello(h);
    const FrameHeader hh = wire::MakeHeader(FrameType::kHello, 0, 0, 0, 0, body.size());
    EXPECT_EQ(write(fd, &hh, sizeof(hh)), static_cast<ssize_t>(sizeof(hh)));
    EXPECT_EQ(write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    FrameHeader ack{};
    EXPECT_EQ(read(fd, &ack, sizeof(ack)), static_cast<ssize_t>(sizeof(ack)));
    EXPECT_EQ(ack.type, static_cast<uint8_t>(FrameType::kHelloAck));
    return fd;
  }
  std::vector<uint8_t> buf;
  std::unique_ptr<TransferEngine> e;
  int port = 0;
};

// Sends a DATA frame and reports whether the engine closed the connection (EOF) instead of ACK.
bool DataFrameDropsConnection(const Target& t, std::vector<WireSeg> segs, uint64_t payload_len,
                              size_t payload_to_send) {
  const int fd = t.Handshake();
  FrameHeader h = wire::MakeHeader(FrameType::kData, 1, 1, 0, static_cast<uint16_t>(segs.size()),
                                   payload_len);
  std::string frame(reinterpret_cast<const char*>(&h), sizeof(h));
  frame.append(reinterpret_cast<const char*>(segs.data()), segs.size() * sizeof(WireSeg));
  frame.append(payload_to_send, '\x41');
  (void)!write(fd, frame.data(), frame.size());
  char c[64];
  const ssize_t n = read(fd, c, sizeof(c));
  close(fd);
  return n == 0 || n < 0;
}

TEST(HostileTest, BadSegmentsAreRefusedAndMemoryOutsideTheArenaIsUntouched) {
  Target t;
  EXPECT_TRUE(DataFrameDropsConnection(t, {{kArena - 10, 20, 0}}, 20, 20));      // past end
  EXPECT_TRUE(DataFrameDropsConnection(t, {{~0ull - 4, 16, 0}}, 16, 16));         // wraps
  EXPECT_TRUE(DataFrameDropsConnection(t, {{0, 16, 3}}, 16, 16));                 // no arena 3
  EXPECT_TRUE(DataFrameDropsConnection(t, {{0, 16, 0}}, 4096, 4096));             // len mismatch
  EXPECT_TRUE(DataFrameDropsConnection(t, {{0, 0, 0}}, 1, 1));                    // empty seg
  EXPECT_TRUE(DataFrameDropsConnection(t, {}, 16, 16));                           // no segs
  EXPECT_TRUE(t.GuardsIntact());
  // A legitimate frame is accepted and ACKed (the same path works).
  EXPECT_FALSE(DataFrameDropsConnection(t, {{kArena - 16, 16, 0}}, 16, 16));
  EXPECT_EQ(t.buf[kGuard + kArena - 1], 0x41);
  EXPECT_TRUE(t.GuardsIntact());
}

TEST(HostileTest, GarbageAndFramesBeforeHandshakeAreDropped) {
  Target t;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 50; ++i) {
    const int fd = i % 2 ? t.Handshake() : t.Dial();
    std::string junk(64 + rng() % 4000, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    if (i % 5 == 0) {  // valid magic, random rest
      const uint32_t m = wire::kMagic;
      std::memcpy(junk.data(), &m, 4);
    }
    (void)!write(fd, junk.data(), junk.size());
    shutdown(fd, SHUT_WR);
    char c[256];
    while (read(fd, c, sizeof(c)) > 0) {
    }
    close(fd);
  }
  // DATA before HELLO.
  {
    const int fd = t.Dial();
    WireSeg s{0, 16, 0};
    FrameHeader h = wire::MakeHeader(FrameType::kData, 1, 1, 0, 1, 16);
    std::string f(reinterpret_cast<const char*>(&h), sizeof(h));
    f.append(reinterpret_cast<const char*>(&s), sizeof(s));
    f.append(16, 'Z');
    (void)!write(fd, f.data(), f.size());
    char c[64];
    EXPECT_LE(read(fd, c, sizeof(c)), 0);
    close(fd);
    EXPECT_NE(t.buf[kGuard], 'Z');
  }
  EXPECT_TRUE(t.GuardsIntact());
  // The engine still serves a real peer.
  std::vector<uint8_t> src(4096, 7);
  EngineOptions o;
  o.name = "prefill";
  o.compat_hash = kCompat;
  TransferEngine p(o);
  ASSERT_TRUE(p.RegisterArena({src.data(), src.size()}).ok());
  ASSERT_TRUE(p.Start().ok());
  auto peer = p.LoadRemoteMetadata(t.e->LocalMetadata());
  ASSERT_TRUE(peer.ok());
  auto id = p.Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 4096}}, std::vector<Desc>{{0, 100, 4096}});
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(p.Wait(*id, std::chrono::milliseconds(5000)).state, TransferState::kDone);
  EXPECT_EQ(t.buf[kGuard + 100], 7);
  EXPECT_TRUE(t.GuardsIntact());
}

TEST(HostileTest, ReadRequestOutsideArenaGetsAnErrorNotBytes) {
  Target t;
  const int fd = t.Handshake();
  WireSeg segs[2] = {{kArena - 8, 64, 0}, {0, 64, 0}};  // source past the end
  FrameHeader h = wire::MakeHeader(FrameType::kReadReq, 9, 9, 0, 1, 0);
  std::string f(reinterpret_cast<const char*>(&h), sizeof(h));
  f.append(reinterpret_cast<const char*>(segs), sizeof(segs));
  (void)!write(fd, f.data(), f.size());
  FrameHeader r{};
  ASSERT_EQ(read(fd, &r, sizeof(r)), static_cast<ssize_t>(sizeof(r)));
  EXPECT_EQ(r.type, static_cast<uint8_t>(FrameType::kErr));
  EXPECT_EQ(r.xfer_id, 9u);
  close(fd);
}

}  // namespace
}  // namespace pd::kvtransfer
