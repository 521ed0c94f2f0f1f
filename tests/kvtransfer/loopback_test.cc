// Two engines in one process over loopback TCP: byte-exact transfers, notifications after data,
// READ, concurrency, metadata checks, deadlines.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kCompat = 0xC0FFEE;

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return v;
}

struct Pair {
  explicit Pair(size_t arena_bytes, EngineOptions base = {}) {
    src_mem = RandomBytes(arena_bytes, 1);
    dst_mem.assign(arena_bytes, 0);
    base.compat_hash = kCompat;
    EngineOptions so = base, ro = base;
    so.name = "prefill";
    ro.name = "decode";
    src = std::make_unique<TransferEngine>(so);
    dst = std::make_unique<TransferEngine>(ro);
    EXPECT_TRUE(src->RegisterArena({src_mem.data(), src_mem.size()}).ok());
    EXPECT_TRUE(dst->RegisterArena({dst_mem.data(), dst_mem.size()}).ok());
    EXPECT_TRUE(src->Start().ok());
    EXPECT_TRUE(dst->Start().ok());
    auto p = src->LoadRemoteMetadata(dst->LocalMetadata());
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    peer = *p;
  }
  TransferResult Run(Op op, const std::vector<Desc>& l, const std::vector<Desc>& r,
                     const std::string& note = {}) {
    auto id = src->Post(op, peer, l, r, note);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return {};
    TransferResult res = src->Wait(*id, milliseconds(20000));
    src->Release(*id);
    return res;
  }
  std::vector<uint8_t> src_mem, dst_mem;
  std::unique_ptr<TransferEngine> src, dst;
  PeerId peer = 0;
};

bool RangeEq(const Pair& p, uint64_t so, uint64_t dof, uint64_t n) {
  return std::memcmp(p.src_mem.data() + so, p.dst_mem.data() + dof, n) == 0;
}

TEST(LoopbackTest, SizesByteExact) {
  Pair p(24 << 20);
  // 0 B, 1 B, unaligned odd sizes, chunk boundaries, many MB.
  const uint64_t sizes[] = {0, 1, 3, 4095, 4097, 262143, 262144, 262145, 1000003, 20u << 20};
  uint64_t off = 0;
  for (uint64_t n : sizes) {
    const uint64_t so = 7 + off % 1000, dof = 13 + (off * 3) % 2000;
    auto res = p.Run(Op::kWrite, {{0, so, n}}, {{0, dof, n}});
    ASSERT_EQ(res.state, TransferState::kDone) << n << " " << res.status.ToString();
    EXPECT_EQ(res.stats.bytes, n);
    EXPECT_TRUE(RangeEq(p, so, dof, n)) << n;
    off += n;
  }
  EXPECT_EQ(p.src->Stats().active_transfers, 0u);
  EXPECT_EQ(p.src->Stats().transport_transfers, 0u);
}

TEST(LoopbackTest, ThousandsOfDescriptorsScatterGather) {
  Pair p(8 << 20);
  std::mt19937_64 rng(3);
  // 5000 disjoint ranges of random length, shuffled destination order.
  std::vector<Desc> l, r;
  uint64_t so = 0, total = 0;
  std::vector<std::pair<uint64_t, uint64_t>> dsts;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t n = 1 + rng() % 700;
    l.push_back({0, so, n});
    so += n + rng() % 3;  // sometimes adjacent (coalesced), sometimes not
    total += n;
  }
  // Destination: one stream cut at different boundaries, placed in reverse chunks of 333 B.
  uint64_t left = total, dpos = 8 << 19;
  while (left > 0) {
    const uint64_t n = std::min<uint64_t>(left, 333);
    dpos -= n + 1;
    r.push_back({0, dpos, n});
    left -= n;
  }
  auto res = p.Run(Op::kWrite, l, r);
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  EXPECT_EQ(res.stats.descs_in, l.size() + r.size());
  // Check via an independent byte-stream walk.
  std::vector<uint8_t> a, b;
  for (const Desc& d : l) a.insert(a.end(), p.src_mem.begin() + d.offset, p.src_mem.begin() + d.offset + d.length);
  for (const Desc& d : r) b.insert(b.end(), p.dst_mem.begin() + d.offset, p.dst_mem.begin() + d.offset + d.length);
  EXPECT_EQ(a, b);
}

TEST(LoopbackTest, ReadPullsRemoteBytes) {
  Pair p(4 << 20);
  // READ: local = dst of the data (src engine's memory), remote = the decode engine's memory.
  std::vector<uint8_t> expect = RandomBytes(3 << 20, 9);
  std::memcpy(p.dst_mem.data() + 100, expect.data(), expect.size());
  auto res = p.Run(Op::kRead, {{0, 5, expect.size()}}, {{0, 100, expect.size()}});
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  EXPECT_EQ(std::memcmp(p.src_mem.data() + 5, expect.data(), expect.size()), 0);
}

TEST(LoopbackTest, ConcurrentTransfersFromManyThreads) {
  Pair p(32 << 20);
  constexpr int kThreads = 4, kPer = 25;
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<TransferId> ids;
      for (int i = 0; i < kPer; ++i) {
        const uint64_t slot = static_cast<uint64_t>(t * kPer + i) * (300 << 10);
        auto id = p.src->Post(Op::kWrite, p.peer, std::vector<Desc>{{0, slot, 300 << 10}},
                              std::vector<Desc>{{0, slot, 300 << 10}});
        if (id.ok()) ids.push_back(*id);
      }
      for (TransferId id : ids) {
        ok += p.src->Wait(id, milliseconds(20000)).state == TransferState::kDone;
        p.src->Release(id);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), kThreads * kPer);
  EXPECT_TRUE(RangeEq(p, 0, 0, static_cast<uint64_t>(kThreads * kPer) * (300 << 10)));
  EXPECT_EQ(p.src->Stats().active_transfers, 0u);
}

TEST(LoopbackTest, NotificationArrivesOnlyAfterItsData) {
  EngineOptions o;
  o.chunk_bytes = 64 << 10;
  Pair p(32 << 20, o);
  constexpr int kN = 16;
  constexpr uint64_t kLen = 2 << 20;
  std::vector<TransferId> ids;
  for (int i = 0; i < kN; ++i) {
    const uint64_t off = static_cast<uint64_t>(i) * kLen;
    auto id = p.src->Post(Op::kWrite, p.peer, std::vector<Desc>{{0, off, kLen}},
                          std::vector<Desc>{{0, off, kLen}}, "layer-" + std::to_string(i));
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  int seen = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (seen < kN && std::chrono::steady_clock::now() < end) {
    for (const Notification& n : p.dst->GetNotifications()) {
      EXPECT_EQ(n.peer_name, "prefill");
      const int i = std::stoi(n.bytes.substr(6));
      const uint64_t off = static_cast<uint64_t>(i) * kLen;
      // The data this notification follows is complete at the moment we see it.
      EXPECT_TRUE(RangeEq(p, off, off, kLen)) << n.bytes;
      ++seen;
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(seen, kN);
  for (TransferId id : ids) {
    EXPECT_EQ(p.src->Wait(id, milliseconds(5000)).state, TransferState::kDone);
    p.src->Release(id);
  }
  auto id = p.src->PostNotification(p.peer, "done");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(p.src->Wait(*id, milliseconds(5000)).state, TransferState::kDone);
  auto notes = p.dst->GetNotifications();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].bytes, "done");
}

TEST(LoopbackTest, PathCountsChunkSizesAndCcAlgorithms) {
  for (int paths : {1, 3}) {
    for (size_t chunk : {size_t{64} << 10, size_t{1} << 20}) {
      for (CcAlgorithm cc : {CcAlgorithm::kSwift, CcAlgorithm::kTimely, CcAlgorithm::kNone}) {
        EngineOptions o;
        o.num_paths = paths;
        o.chunk_bytes = chunk;
        o.cc.algorithm = cc;
        o.path_policy = paths == 3 ? PathPolicy::kRoundRobin : PathPolicy::kPowerOfTwo;
        Pair p(6 << 20, o);
        auto res = p.Run(Op::kWrite, {{0, 1, (5 << 20) + 7}}, {{0, 3, (5 << 20) + 7}});
        ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
        EXPECT_TRUE(RangeEq(p, 1, 3, (5 << 20) + 7));
        EXPECT_GE(res.stats.chunks, ((5u << 20) + 7) / chunk);
      }
    }
  }
}

TEST(LoopbackTest, InvalidDescsRefusedAtPost) {
  Pair p(1 << 20);
  auto past = p.src->Post(Op::kWrite, p.peer, std::vector<Desc>{{0, 0, 10}},
                          std::vector<Desc>{{0, (1 << 20) - 5, 10}});
  EXPECT_EQ(past.status().code(), StatusCode::kOutOfRange);
  auto arena = p.src->Post(Op::kWrite, p.peer, std::vector<Desc>{{1, 0, 10}},
                           std::vector<Desc>{{0, 0, 10}});
  EXPECT_EQ(arena.status().code(), StatusCode::kOutOfRange);
  auto mismatch = p.src->Post(Op::kWrite, p.peer, std::vector<Desc>{{0, 0, 10}},
                              std::vector<Desc>{{0, 0, 11}});
  EXPECT_EQ(mismatch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.src->Post(Op::kWrite, 99, {}, {}, "x").status().code(), StatusCode::kNotFound);
}

TEST(LoopbackTest, MetadataCompatAndIncarnationChecks) {
  Pair p(1 << 20);
  std::vector<uint8_t> mem(1 << 16);
  EngineOptions o;
  o.name = "other";
  o.compat_hash = kCompat + 1;
  TransferEngine other(o);
  ASSERT_TRUE(other.RegisterArena({mem.data(), mem.size()}).ok());
  ASSERT_TRUE(other.Start().ok());
  auto r = p.src->LoadRemoteMetadata(other.LocalMetadata());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("compat hash"), std::string::npos);
  // A "decode" that restarted: new incarnation, same name. Its blob replaces the old; the old
  // blob is then stale.
  const std::string old_blob = p.dst->LocalMetadata();
  EngineOptions d2;
  d2.name = "decode";
  d2.compat_hash = kCompat;
  TransferEngine decode2(d2);
  ASSERT_TRUE(decode2.RegisterArena({mem.data(), mem.size()}).ok());
  ASSERT_TRUE(decode2.Start().ok());
  auto again = p.src->LoadRemoteMetadata(decode2.LocalMetadata());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, p.peer);
  auto stale = p.src->LoadRemoteMetadata(old_blob);
  EXPECT_EQ(stale.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.status().message().find("stale"), std::string::npos);
  auto res = p.Run(Op::kWrite, {{0, 0, 1000}}, {{0, 0, 1000}});
  EXPECT_EQ(res.state, TransferState::kDone);
  EXPECT_EQ(std::memcmp(mem.data(), p.src_mem.data(), 1000), 0);
}

TEST(LoopbackTest, HandshakeRefusesPeerThatRestartedBehindStaleMetadata) {
  // The receiver's listening port is taken over by a different incarnation: connecting with
  // the old metadata must fail with a clear stale-metadata error, not write into it.
  std::vector<uint8_t> mem(1 << 16), mem2(1 << 16);
  EngineOptions a;
  a.name = "decode";
  a.compat_hash = kCompat;
  auto d1 = std::make_unique<TransferEngine>(a);
  ASSERT_TRUE(d1->RegisterArena({mem.data(), mem.size()}).ok());
  ASSERT_TRUE(d1->Start().ok());
  const std::string blob = d1->LocalMetadata();
  const auto port_pos = blob.find("addr 127.0.0.1:") + 15;
  const int port = std::stoi(blob.substr(port_pos));
  d1.reset();
  a.listen_port = port;
  TransferEngine d2(a);
  ASSERT_TRUE(d2.RegisterArena({mem2.data(), mem2.size()}).ok());
  ASSERT_TRUE(d2.Start().ok());
  EngineOptions s;
  s.name = "prefill";
  s.compat_hash = kCompat;
  TransferEngine src(s);
  ASSERT_TRUE(src.RegisterArena({mem.data(), mem.size()}).ok());
  ASSERT_TRUE(src.Start().ok());
  auto peer = src.LoadRemoteMetadata(blob);
  ASSERT_TRUE(peer.ok());
  auto id = src.Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 100}},
                     std::vector<Desc>{{0, 0, 100}});
  ASSERT_TRUE(id.ok());
  auto res = src.Wait(*id, milliseconds(5000));
  EXPECT_EQ(res.state, TransferState::kError);
  EXPECT_EQ(res.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(res.status.message().find("stale metadata"), std::string::npos) << res.status.ToString();
  src.Release(*id);
  // Loading the new metadata reconnects.
  ASSERT_TRUE(src.LoadRemoteMetadata(d2.LocalMetadata()).ok());
  auto id2 = src.Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 100}},
                      std::vector<Desc>{{0, 0, 100}});
  ASSERT_TRUE(id2.ok());
  EXPECT_EQ(src.Wait(*id2, milliseconds(5000)).state, TransferState::kDone);
  EXPECT_EQ(std::memcmp(mem.data(), mem2.data(), 100), 0);
}

TEST(LoopbackTest, UnreachablePeerFailsWithinConnectTimeout) {
  std::vector<uint8_t> mem(1 << 16);
  EngineOptions a;
  a.name = "decode";
  a.compat_hash = kCompat;
  auto d = std::make_unique<TransferEngine>(a);
  ASSERT_TRUE(d->RegisterArena({mem.data(), mem.size()}).ok());
  ASSERT_TRUE(d->Start().ok());
  const std::string blob = d->LocalMetadata();
  d.reset();  // nobody listens there any more
  EngineOptions s;
  s.name = "prefill";
  s.compat_hash = kCompat;
  s.connect_timeout = milliseconds(500);
  TransferEngine src(s);
  ASSERT_TRUE(src.RegisterArena({mem.data(), mem.size()}).ok());
  ASSERT_TRUE(src.Start().ok());
  auto peer = src.LoadRemoteMetadata(blob);
  ASSERT_TRUE(peer.ok());
  EXPECT_FALSE(src.Connect(*peer).ok());
  auto id = src.Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 10}}, std::vector<Desc>{{0, 0, 10}});
  ASSERT_TRUE(id.ok());
  auto res = src.Wait(*id, milliseconds(3000));
  EXPECT_EQ(res.state, TransferState::kError);
  EXPECT_EQ(res.status.code(), StatusCode::kUnavailable) << res.status.ToString();
  src.Release(*id);
  EXPECT_EQ(src.Stats().transport_transfers, 0u);
}

TEST(LoopbackTest, ReleaseCancelsAndPollReportsUnknown) {
  Pair p(16 << 20);
  auto id = p.src->Post(Op::kWrite, p.peer, std::vector<Desc>{{0, 0, 16 << 20}},
                        std::vector<Desc>{{0, 0, 16 << 20}});
  ASSERT_TRUE(id.ok());
  p.src->Release(*id);
  EXPECT_EQ(p.src->Poll(*id).status.code(), StatusCode::kNotFound);
  EXPECT_EQ(p.src->Stats().active_transfers, 0u);
  EXPECT_EQ(p.src->Stats().transport_transfers, 0u);
  // The engine still works afterwards.
  auto res = p.Run(Op::kWrite, {{0, 0, 1000}}, {{0, 0, 1000}});
  EXPECT_EQ(res.state, TransferState::kDone);
}

}  // namespace
}  // namespace pd::kvtransfer
