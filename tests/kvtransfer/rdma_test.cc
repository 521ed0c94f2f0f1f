// RDMA data path on the fake verbs layer: QP setup, chunk spraying, completions, errors.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "kvtransfer/rdma/fake_verbs.h"
#include "kvtransfer/rdma/rdma_channel.h"

namespace pd::kvtransfer::rdma {
namespace {

constexpr int kQps = 4;

struct Side {
  FakeVerbs* dev = nullptr;
  std::vector<uint8_t> mem;
  MemoryRegion mr;
  std::unique_ptr<RdmaChannel> ch;
  std::vector<uint32_t> qps;
};

struct Link {
  explicit Link(size_t bytes, ChannelOptions o = {}) {
    for (Side* s : {&a, &b}) {
      s->dev = fabric.AddDevice();
      s->mem.assign(bytes, 0);
      s->mr = *s->dev->RegisterMemory(s->mem.data(), bytes);
      s->ch = std::make_unique<RdmaChannel>(s->dev, std::vector<MemoryRegion>{s->mr}, o, clock);
      EXPECT_TRUE(s->ch->Init().ok());
      for (int i = 0; i < kQps; ++i) s->qps.push_back(*s->dev->CreateQp());
    }
    std::mt19937 rng(4);
    for (auto& x : a.mem) x = static_cast<uint8_t>(rng());
    for (int i = 0; i < kQps; ++i) {
      EXPECT_TRUE(a.dev->ConnectQp(a.qps[i], b.dev->LocalAddress(b.qps[i])).ok());
      EXPECT_TRUE(b.dev->ConnectQp(b.qps[i], a.dev->LocalAddress(a.qps[i])).ok());
    }
    EXPECT_TRUE(a.ch->SetPeer(a.qps, {{b.mr.addr, b.mr.length, b.mr.rkey}}, b.ch->notify_ring()).ok());
    EXPECT_TRUE(b.ch->SetPeer(b.qps, {{a.mr.addr, a.mr.length, a.mr.rkey}}, a.ch->notify_ring()).ok());
  }
  TransferResult Drive(TransferId id, int max_iters = 100000) {
    for (int i = 0; i < max_iters; ++i) {
      clock.AdvanceUs(10);
      a.ch->Progress();
      b.ch->Progress();
      TransferResult r = a.ch->Result(id);
      if (r.state != TransferState::kInProgress) return r;
    }
    return a.ch->Result(id);
  }
  ManualClock clock{1'000'000};
  FakeFabric fabric;
  Side a, b;
};

TEST(RdmaFakeTest, QpMustBeConnectedBeforePosting) {
  FakeFabric f;
  FakeVerbs* d = f.AddDevice();
  const uint32_t qp = *d->CreateQp();
  std::vector<uint8_t> m(64);
  const MemoryRegion mr = *d->RegisterMemory(m.data(), m.size());
  const Sge s{mr.addr, 8, mr.lkey};
  EXPECT_EQ(d->PostWrite(qp, 1, std::span<const Sge>(&s, 1), mr.addr + 8, mr.rkey, std::nullopt)
                .code(),
            StatusCode::kFailedPrecondition);
  EXPECT_FALSE(d->ConnectQp(qp, QpAddress{1, 99, {}}).ok());  // unknown remote LID
}

TEST(RdmaFakeTest, SpraysChunksOverAllQpsByteExact) {
  ChannelOptions o;
  o.chunk_bytes = 64 << 10;
  o.cc.algorithm = CcAlgorithm::kNone;
  Link l(8 << 20, o);
  // Gathered local side (non-adjacent pieces) into one contiguous remote range.
  std::vector<Segment> segs;
  uint64_t r = 1000;
  for (uint64_t off = 0; off < (6 << 20); off += 5000) {
    segs.push_back({0, off + 7, 0, r, 4000});
    r += 4000;
  }
  auto id = l.a.ch->Post(segs, "", 0);
  ASSERT_TRUE(id.ok());
  auto res = l.Drive(*id);
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  for (const Segment& s : segs) {
    ASSERT_EQ(std::memcmp(l.a.mem.data() + s.local_offset, l.b.mem.data() + s.remote_offset, s.length), 0);
  }
  size_t total = 0;
  for (uint32_t qp : l.a.qps) {
    EXPECT_GT(l.a.dev->writes_posted(qp), 10u);  // every QP carried chunks
    total += l.a.dev->writes_posted(qp);
  }
  EXPECT_EQ(total, res.stats.chunks);
  EXPECT_GE(res.stats.chunks, (segs.size() * 4000) / o.chunk_bytes);
}

TEST(RdmaFakeTest, OutstandingLimitAndNotificationAfterAllCompletions) {
  ChannelOptions o;
  o.chunk_bytes = 64 << 10;
  o.max_outstanding_per_qp = 2;
  o.cc.algorithm = CcAlgorithm::kNone;
  Link l(4 << 20, o);
  l.a.dev->set_hold_completions(true);
  auto id = l.a.ch->Post({{0, 0, 0, 0, 2 << 20}}, "req-7 done", 0);
  ASSERT_TRUE(id.ok());
  for (int i = 0; i < 10; ++i) l.a.ch->Progress();
  size_t posted = 0;
  for (uint32_t qp : l.a.qps) {
    EXPECT_LE(l.a.dev->writes_posted(qp), 2u);
    posted += l.a.dev->writes_posted(qp);
  }
  EXPECT_EQ(posted, 8u);  // 4 QPs x 2 outstanding, then it waits for completions
  l.b.ch->Progress();
  EXPECT_TRUE(l.b.ch->TakeNotifications().empty());  // no notification before the data is done
  EXPECT_EQ(l.a.ch->Result(*id).state, TransferState::kInProgress);
  l.a.dev->set_hold_completions(false);
  l.a.dev->ReleaseHeld();
  auto res = l.Drive(*id);
  ASSERT_EQ(res.state, TransferState::kDone);
  l.b.ch->Progress();
  auto notes = l.b.ch->TakeNotifications();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "req-7 done");
  EXPECT_EQ(std::memcmp(l.a.mem.data(), l.b.mem.data(), 2 << 20), 0);
}

TEST(RdmaFakeTest, RemoteAccessErrorFailsTransfer) {
  Link l(1 << 20);
  // A remote range past the peer's MR: caught at Post.
  EXPECT_EQ(l.a.ch->Post({{0, 0, 0, (1 << 20) - 10, 100}}, "", 0).status().code(),
            StatusCode::kOutOfRange);
  // A wrong rkey (peer re-registered its memory): the completion reports the access error.
  ASSERT_TRUE(l.a.ch->SetPeer(l.a.qps, {{l.b.mr.addr, l.b.mr.length, l.b.mr.rkey + 1}},
                              l.b.ch->notify_ring()).ok());
  auto id = l.a.ch->Post({{0, 0, 0, 0, 100}}, "", 0);
  ASSERT_TRUE(id.ok());
  auto res = l.Drive(*id);
  EXPECT_EQ(res.state, TransferState::kError);
  EXPECT_EQ(res.status.code(), StatusCode::kOutOfRange);
}

TEST(RdmaFakeTest, DeadPeerFailsEverythingAndDeadlinesHold) {
  ChannelOptions o;
  o.chunk_bytes = 64 << 10;
  Link l(4 << 20, o);
  l.fabric.Kill(l.b.dev);
  auto id1 = l.a.ch->Post({{0, 0, 0, 0, 2 << 20}}, "x", 0);
  auto id2 = l.a.ch->Post({{0, 0, 0, 0, 1 << 20}}, "", 0);
  ASSERT_TRUE(id1.ok() && id2.ok());
  EXPECT_EQ(l.Drive(*id1).status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(l.Drive(*id2).status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(l.a.ch->live_qps(), 0);
  EXPECT_EQ(l.a.ch->Post({{0, 0, 0, 0, 10}}, "", 0).status().code(), StatusCode::kUnavailable);
  l.a.ch->Release(*id1);
  l.a.ch->Release(*id2);
  EXPECT_EQ(l.a.ch->pending(), 0u);
  // Deadline: completions held forever -> the transfer fails at its deadline.
  Link m(1 << 20);
  m.a.dev->set_hold_completions(true);
  auto id3 = m.a.ch->Post({{0, 0, 0, 0, 1000}}, "", m.clock.NowNs() + 5'000'000);
  ASSERT_TRUE(id3.ok());
  auto res = m.Drive(*id3);
  EXPECT_EQ(res.status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_GE(m.clock.NowNs(), 6'000'000);
}

TEST(RdmaFakeTest, RealLoaderReportsMissingDeviceClearly) {
  auto v = OpenIbverbs("");
  // No RDMA NIC on any project machine: the loader must fail cleanly, never crash.
  if (v.ok()) GTEST_SKIP() << "an RDMA device exists here";
  EXPECT_NE(v.status().message().find("rdma"), std::string::npos) << v.status().ToString();
}

}  // namespace
}  // namespace pd::kvtransfer::rdma

// ---- the "rdma" transport inside TransferEngine, on the fake fabric --------------------------

#include "kvtransfer/rdma/rdma_transport.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer::rdma {
namespace {

class ForwardingVerbs final : public Verbs {
 public:
  explicit ForwardingVerbs(FakeVerbs* d) : d_(d) {}
  StatusOr<MemoryRegion> RegisterMemory(void* a, size_t n) override { return d_->RegisterMemory(a, n); }
  StatusOr<uint32_t> CreateQp() override { return d_->CreateQp(); }
  QpAddress LocalAddress(uint32_t q) const override { return d_->LocalAddress(q); }
  Status ConnectQp(uint32_t q, const QpAddress& r) override { return d_->ConnectQp(q, r); }
  Status PostWrite(uint32_t q, uint64_t w, std::span<const Sge> s, uint64_t ra, uint32_t rk,
                   std::optional<uint32_t> imm) override {
    return d_->PostWrite(q, w, s, ra, rk, imm);
  }
  Status PostRecv(uint32_t q, uint64_t w) override { return d_->PostRecv(q, w); }
  int PollCq(std::span<Completion> out) override { return d_->PollCq(out); }
  void DestroyQp(uint32_t q) override { d_->DestroyQp(q); }

 private:
  FakeVerbs* d_;
};

std::unique_ptr<TransferEngine> RdmaEngine(const std::string& name, std::vector<uint8_t>& mem) {
  EngineOptions o;
  o.name = name;
  o.transport = "rdma";
  o.compat_hash = 8;
  o.chunk_bytes = 64 << 10;
  auto e = std::make_unique<TransferEngine>(o);
  EXPECT_TRUE(e->RegisterArena({mem.data(), mem.size()}).ok());
  const Status st = e->Start();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return e;
}

TEST(RdmaEngineTest, WriteWithNotificationThroughTheEngineOnFakeVerbs) {
  static FakeFabric fabric;  // outlives the engines
  SetVerbsFactoryForTesting(
      [] { return StatusOr<std::unique_ptr<Verbs>>(std::make_unique<ForwardingVerbs>(fabric.AddDevice())); });
  std::vector<uint8_t> a(4 << 20), b(4 << 20, 0);
  std::mt19937 rng(8);
  for (auto& x : a) x = static_cast<uint8_t>(rng());
  auto src = RdmaEngine("prefill", a);
  auto dst = RdmaEngine("decode", b);
  auto peer = src->LoadRemoteMetadata(dst->LocalMetadata());
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(src->Connect(*peer).ok());
  EXPECT_EQ(src->Stats().connected_paths, 4u);
  auto id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 3, (3 << 20) + 5}},
                      std::vector<Desc>{{0, 11, (3 << 20) + 5}}, "req-1 done");
  ASSERT_TRUE(id.ok());
  auto res = src->Wait(*id, std::chrono::milliseconds(10000));
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  EXPECT_EQ(std::memcmp(a.data() + 3, b.data() + 11, (3 << 20) + 5), 0);
  std::vector<Notification> notes;
  for (int i = 0; i < 1000 && notes.empty(); ++i) {
    notes = dst->GetNotifications();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].bytes, "req-1 done");
  EXPECT_EQ(notes[0].peer_name, "prefill");
  src->Release(*id);
  // The decode engine goes away: the next transfer fails, it does not hang.
  dst.reset();
  id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 1 << 20}}, std::vector<Desc>{{0, 0, 1 << 20}});
  ASSERT_TRUE(id.ok());
  res = src->Wait(*id, std::chrono::milliseconds(10000));
  EXPECT_EQ(res.state, TransferState::kError);
  EXPECT_EQ(res.status.code(), StatusCode::kUnavailable) << res.status.ToString();
  src->Release(*id);
  EXPECT_EQ(src->Stats().transport_transfers, 0u);
  SetVerbsFactoryForTesting({});
}

TEST(RdmaEngineTest, WithoutADeviceStartReportsIt) {
  std::vector<uint8_t> m(4096);
  EngineOptions o;
  o.name = "x";
  o.transport = "rdma";
  TransferEngine e(o);
  ASSERT_TRUE(e.RegisterArena({m.data(), m.size()}).ok());
  const Status st = e.Start();
  if (st.ok()) GTEST_SKIP() << "an RDMA device exists here";
  EXPECT_NE(st.message().find("rdma"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace pd::kvtransfer::rdma
