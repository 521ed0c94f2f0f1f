// The local (same-host, shared-memory) transport.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kvtransfer/device_copier.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer {
namespace {

using std::chrono::milliseconds;

struct Mem {
  explicit Mem(size_t n) : bytes(n), p(static_cast<uint8_t*>(AllocateShareableHostMemory(n))) {}
  ~Mem() { FreeShareableHostMemory(p); }
  size_t bytes;
  uint8_t* p;
};

std::unique_ptr<TransferEngine> MakeLocal(const std::string& name, Mem& m, uint64_t compat = 3) {
  EngineOptions o;
  o.name = name;
  o.transport = "local";
  o.compat_hash = compat;
  auto e = std::make_unique<TransferEngine>(o);
  EXPECT_TRUE(e->RegisterArena({m.p, m.bytes}).ok());
  Status st = e->Start();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return e;
}

TEST(LocalTransportTest, WriteReadAndNotificationAfterData) {
  Mem a(8 << 20), b(8 << 20);
  std::mt19937 rng(2);
  for (size_t i = 0; i < a.bytes; ++i) a.p[i] = static_cast<uint8_t>(rng());
  auto src = MakeLocal("prefill", a), dst = MakeLocal("decode", b);
  auto peer = src->LoadRemoteMetadata(dst->LocalMetadata());
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  std::vector<Desc> l = {{0, 1, 3000}, {0, 3001, 5 << 20}, {0, 7 << 20, 17}};
  std::vector<Desc> r = {{0, 100, (5 << 20) + 3017}};
  auto id = src->Post(Op::kWrite, *peer, l, r, "layer-0");
  ASSERT_TRUE(id.ok());
  auto res = src->Wait(*id, milliseconds(10000));
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  auto notes = dst->GetNotifications();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].bytes, "layer-0");
  EXPECT_EQ(notes[0].peer_name, "prefill");
  EXPECT_EQ(std::memcmp(b.p + 100, a.p + 1, (5 << 20) + 3000), 0);
  EXPECT_EQ(std::memcmp(b.p + 100 + (5 << 20) + 3000, a.p + (7 << 20), 17), 0);
  // READ back into another place.
  auto rd = src->Post(Op::kRead, *peer, std::vector<Desc>{{0, 6 << 20, 4096}},
                      std::vector<Desc>{{0, 100, 4096}});
  ASSERT_TRUE(rd.ok());
  ASSERT_EQ(src->Wait(*rd, milliseconds(10000)).state, TransferState::kDone);
  EXPECT_EQ(std::memcmp(a.p + (6 << 20), a.p + 1, 4096), 0);
  src->Release(*id);
  src->Release(*rd);
  EXPECT_EQ(src->Stats().transport_transfers, 0u);
}

TEST(LocalTransportTest, RefusesPlainMemoryStaleAndMismatchedPeers) {
  std::vector<uint8_t> plain(4096);
  EngineOptions o;
  o.name = "x";
  o.transport = "local";
  TransferEngine e(o);
  ASSERT_TRUE(e.RegisterArena({plain.data(), plain.size()}).ok());
  EXPECT_EQ(e.Start().code(), StatusCode::kFailedPrecondition);

  Mem a(1 << 16), b(1 << 16), c(1 << 16);
  auto src = MakeLocal("prefill", a);
  auto dst = MakeLocal("decode", b);
  const std::string old_blob = dst->LocalMetadata();
  auto peer = src->LoadRemoteMetadata(old_blob);
  ASSERT_TRUE(peer.ok());
  dst.reset();  // the decode process is gone
  auto id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 10}}, std::vector<Desc>{{0, 0, 10}});
  ASSERT_TRUE(id.ok());
  auto res = src->Wait(*id, milliseconds(5000));
  EXPECT_EQ(res.status.code(), StatusCode::kUnavailable) << res.status.ToString();
  // It restarts: the new blob works.
  auto dst2 = MakeLocal("decode", c);
  ASSERT_TRUE(src->LoadRemoteMetadata(dst2->LocalMetadata()).ok());
  std::memset(a.p, 9, 10);
  id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 10}}, std::vector<Desc>{{0, 0, 10}});
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(src->Wait(*id, milliseconds(5000)).state, TransferState::kDone);
  EXPECT_EQ(c.p[9], 9);
}

TEST(LocalTransportTest, PeerGoneAfterConnectFailsNotification) {
  Mem a(1 << 16), b(1 << 16);
  auto src = MakeLocal("prefill", a);
  auto dst = MakeLocal("decode", b);
  auto peer = src->LoadRemoteMetadata(dst->LocalMetadata());
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(src->Connect(*peer).ok());
  dst.reset();
  auto id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 10}},
                      std::vector<Desc>{{0, 0, 10}}, "note");
  ASSERT_TRUE(id.ok());
  auto res = src->Wait(*id, milliseconds(5000));
  EXPECT_EQ(res.state, TransferState::kError);
  EXPECT_EQ(res.status.code(), StatusCode::kUnavailable) << res.status.ToString();
}

// GPU arenas over the local transport, with the fake copier: host memory stands in for the
// GPU and the fake's IPC handles are in-process pointers (real CUDA IPC needs two processes:
// gpu_test.cc). Checks the handshake (fds + handles), copies through the copier, notification
// after the copy fence, READ back, and a shared host arena writing into a "GPU" one.
TEST(LocalTransportTest, GpuArenasThroughTheCopier) {
  const size_t n = 4 << 20;
  std::vector<uint8_t> dev_a(n), dev_b(n);
  Mem host(n);
  std::mt19937 rng(6);
  for (auto& x : dev_a) x = static_cast<uint8_t>(rng());
  for (size_t i = 0; i < n; ++i) host.p[i] = static_cast<uint8_t>(rng());
  auto make = [](const std::string& name, std::vector<ArenaSpec> arenas) {
    EngineOptions o;
    o.name = name;
    o.transport = "local";
    o.compat_hash = 3;
    o.device_copier = std::make_shared<FakeDeviceCopier>(std::chrono::microseconds{300});
    auto e = std::make_unique<TransferEngine>(o);
    for (const auto& a : arenas) EXPECT_TRUE(e->RegisterArena(a).ok());
    Status st = e->Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return e;
  };
  auto src = make("prefill", {{dev_a.data(), n, MemoryKind::kCuda, 0}, {host.p, n}});
  auto dst = make("decode", {{dev_b.data(), n, MemoryKind::kCuda, 0}});
  auto peer = src->LoadRemoteMetadata(dst->LocalMetadata());
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  auto id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 5, n / 2}},
                      std::vector<Desc>{{0, 7, n / 2}}, "gpu-0");
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(src->Wait(*id, milliseconds(10000)).state, TransferState::kDone);
  auto notes = dst->GetNotifications();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(std::memcmp(dev_b.data() + 7, dev_a.data() + 5, n / 2), 0);
  // Shared host arena (local arena 1) -> the peer's "GPU" arena.
  id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{1, 0, 1000}},
                 std::vector<Desc>{{0, n - 1000, 1000}});
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(src->Wait(*id, milliseconds(10000)).state, TransferState::kDone);
  EXPECT_EQ(std::memcmp(dev_b.data() + n - 1000, host.p, 1000), 0);
  // READ from the peer's GPU arena into local arena 0.
  id = src->Post(Op::kRead, *peer, std::vector<Desc>{{0, 0, 4096}},
                 std::vector<Desc>{{0, n - 1000, 1000}, {0, 7, 3096}});
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(src->Wait(*id, milliseconds(10000)).state, TransferState::kDone);
  EXPECT_EQ(std::memcmp(dev_a.data(), host.p, 1000), 0);
  src.reset();
  dst.reset();
}

}  // namespace
}  // namespace pd::kvtransfer
