// GPU arenas over the rdma transport on the fake verbs layer: pinned bounce rings on both sides
// (rdma_stage.cc). The FakeDeviceCopier stands in for the GPU: it poisons each destination while
// a copy is "in flight" and completes fences late, so a WRITE posted from a send slot before its
// device->host copy finished, or a notification / completion before the receiver's
// host->device copy finished, shows up as wrong bytes. FakeVerbs checks the lkey of every SGE, so
// an RDMA read straight out of (unregistered) GPU memory fails, and GPU destinations are not
// registered at all, so a direct WRITE into one fails.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "kvtransfer/device_copier.h"
#include "kvtransfer/rdma/fake_verbs.h"
#include "kvtransfer/rdma/rdma_channel.h"
#include "kvtransfer/rdma/rdma_transport.h"
#include "kvtransfer/transfer_engine.h"
#include "fake_nic.h"
#include "staging_cases.h"

namespace pd::kvtransfer::rdma {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr int kQps = 4;

// In place: the memory is registered (or named in the channel) by address.
void Fill(std::vector<uint8_t>& mem, uint32_t seed) {
  const auto v = testing::Random(mem.size(), seed);
  std::memcpy(mem.data(), v.data(), v.size());
}

struct StageSide {
  FakeVerbs* dev = nullptr;
  bool gpu = false;
  std::vector<uint8_t> mem;  // "device" memory when gpu (never registered)
  MemoryRegion mr;
  std::shared_ptr<FakeDeviceCopier> copier;  // declared before ch: outlives it
  std::unique_ptr<RdmaChannel> ch;
  std::vector<uint32_t> qps;
};

struct StageOptions {
  bool a_gpu = true, b_gpu = true;
  uint32_t slots = 4;
  microseconds delay{100};
  uint64_t chunk_bytes = 64 << 10;
};

// a sends to b; either side's arena may be "GPU" memory.
struct StageLink {
  StageLink(size_t bytes, StageOptions so) {
    ChannelOptions o;
    o.chunk_bytes = so.chunk_bytes;
    o.cc.algorithm = CcAlgorithm::kNone;
    for (StageSide* s : {&a, &b}) {
      s->gpu = s == &a ? so.a_gpu : so.b_gpu;
      s->dev = fabric.AddDevice();
      s->mem.assign(bytes, 0);
      s->mr = s->gpu ? MemoryRegion{reinterpret_cast<uint64_t>(s->mem.data()), bytes, 0, 0}
                     : *s->dev->RegisterMemory(s->mem.data(), bytes);
      s->ch = std::make_unique<RdmaChannel>(s->dev, std::vector<MemoryRegion>{s->mr}, o, clock);
      if (s->gpu) {
        s->copier = std::make_shared<FakeDeviceCopier>(so.delay);
        EXPECT_TRUE(s->ch->EnableStaging({s->copier, {true}, so.slots}).ok());
      }
      EXPECT_TRUE(s->ch->Init().ok());
      for (int i = 0; i < kQps; ++i) s->qps.push_back(*s->dev->CreateQp());
    }
    for (int i = 0; i < kQps; ++i) {
      EXPECT_TRUE(a.dev->ConnectQp(a.qps[i], b.dev->LocalAddress(b.qps[i])).ok());
      EXPECT_TRUE(b.dev->ConnectQp(b.qps[i], a.dev->LocalAddress(a.qps[i])).ok());
    }
    for (auto [me, peer] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
      EXPECT_TRUE(me->ch->SetPeer(me->qps, {{peer->mr.addr, peer->mr.length, peer->mr.rkey}},
                                  peer->ch->notify_ring()).ok());
      EXPECT_TRUE(me->ch->SetPeerStaging({peer->gpu}, peer->ch->stage_ring(),
                                         peer->ch->stage_slots()).ok());
    }
  }
  void Step() {
    clock.AdvanceUs(10);
    a.ch->Progress();
    b.ch->Progress();
    for (auto& n : b.ch->TakeNotifications()) notes.push_back(std::move(n));
  }
  // Real time passes too: the fake copier's worker completes copies on its own.
  TransferResult Drive(TransferId id) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until) {
      Step();
      TransferResult r = a.ch->Result(id);
      if (r.state != TransferState::kInProgress) return r;
      std::this_thread::sleep_for(microseconds(20));
    }
    return a.ch->Result(id);
  }
  // Steps until a notification is there; returns b's memory as it was right then.
  std::vector<uint8_t> UntilNote() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (notes.empty() && std::chrono::steady_clock::now() < until) {
      Step();
      if (notes.empty()) std::this_thread::sleep_for(microseconds(20));
    }
    return b.mem;
  }
  // Until every bounce slot and credit is back (after success, failure or release).
  // credits: the receive slots too (not after the peer died: those credits never come).
  bool Drained(uint32_t slots, bool credits = true) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      Step();
      const bool tx = !a.gpu || a.ch->tx_slots_free() == slots;
      const bool rx = !b.gpu || (b.ch->rx_copies_pending() == 0 &&
                                 (!credits || a.ch->remote_credits() == b.ch->stage_slots()));
      if (tx && rx) return true;
      std::this_thread::sleep_for(microseconds(50));
    }
    return false;
  }
  ManualClock clock{1'000'000};
  FakeFabric fabric;
  StageSide a, b;
  std::vector<std::string> notes;
};

// The local side as one byte stream, as the remote side should hold it.
std::vector<uint8_t> Expect(const std::vector<uint8_t>& src, const std::vector<Segment>& segs,
                            std::vector<uint8_t> dst) {
  for (const Segment& s : segs) {
    std::memcpy(dst.data() + s.remote_offset, src.data() + s.local_offset, s.length);
  }
  return dst;
}

void WriteCase(bool a_gpu, bool b_gpu, std::vector<Segment> segs, uint32_t slots = 4) {
  const size_t n = 4 << 20;
  StageLink l(n, {a_gpu, b_gpu, slots});
  Fill(l.a.mem, 21);
  const auto want = Expect(l.a.mem, segs, l.b.mem);
  auto id = l.a.ch->Post(segs, "done", 0);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  const auto at_note = l.UntilNote();
  ASSERT_EQ(l.notes.size(), 1u);
  EXPECT_EQ(l.notes[0], "done");
  EXPECT_TRUE(at_note == want) << "destination differs at the notification";
  const TransferResult r = l.Drive(*id);
  ASSERT_EQ(r.state, TransferState::kDone) << r.status.ToString();
  EXPECT_TRUE(l.b.mem == want);
  ASSERT_TRUE(l.Drained(slots));
  if (b_gpu) {
    EXPECT_EQ(l.a.ch->remote_credits(), slots) << "receive slots not all credited back";
  }
  l.a.ch->Release(*id);
  EXPECT_EQ(l.a.ch->pending(), 0u);
}

TEST(RdmaStageTest, GpuToHostGpuToGpuHostToGpuByteExact) {
  const std::vector<Segment> one = {{0, 3, 0, 1001, (2 << 20) + 5}};  // unaligned, 32+ chunks
  for (auto [ag, bg] : {std::pair{true, false}, std::pair{true, true}, std::pair{false, true}}) {
    SCOPED_TRACE(std::string(ag ? "gpu" : "host") + " -> " + (bg ? "gpu" : "host"));
    WriteCase(ag, bg, one);
  }
}

TEST(RdmaStageTest, TinyAndEmptyTransfers) {
  for (auto [ag, bg] : {std::pair{true, false}, std::pair{true, true}, std::pair{false, true}}) {
    WriteCase(ag, bg, {{0, 7, 0, 9, 1}});  // one byte
    StageLink l(1 << 20, {ag, bg});
    auto id = l.a.ch->Post({}, "empty", 0);  // no data: the notification alone
    ASSERT_TRUE(id.ok());
    l.UntilNote();
    ASSERT_EQ(l.notes.size(), 1u);
    EXPECT_EQ(l.Drive(*id).state, TransferState::kDone);
  }
}

// 700 small pieces, scattered on the local side, two contiguous runs on the remote side; with 2
// slots and 16 KiB chunks every slot is reused many times.
TEST(RdmaStageTest, ManyDescriptorsAndSlotReuse) {
  std::vector<Segment> segs;
  uint64_t r = 77;
  for (uint64_t i = 0; i < 700; ++i) {
    segs.push_back({0, 5 + i * 3001, 0, r, 1000 + (i % 7) * 300});
    r += segs.back().length;
    if (i == 350) r += 4096;  // a second remote run
  }
  for (auto [ag, bg] : {std::pair{true, false}, std::pair{true, true}, std::pair{false, true}}) {
    SCOPED_TRACE(std::string(ag ? "gpu" : "host") + " -> " + (bg ? "gpu" : "host"));
    WriteCase(ag, bg, segs, 2);
  }
}

// Device->host copies of later chunks are queued while earlier chunks are in flight, and every
// byte crossed each copier exactly once.
TEST(RdmaStageTest, CopiesOverlapTheWire) {
  const size_t n = 2 << 20;
  StageLink l(n, {true, true, 8, microseconds{300}});
  Fill(l.a.mem, 5);
  auto id = l.a.ch->Post({{0, 0, 0, 0, n}}, "", 0);
  ASSERT_TRUE(id.ok());
  const TransferResult r = l.Drive(*id);
  ASSERT_EQ(r.state, TransferState::kDone) << r.status.ToString();
  EXPECT_TRUE(l.a.mem == l.b.mem);  // completion follows the host->device copies too
  EXPECT_EQ(l.a.copier->bytes_copied(), n);
  EXPECT_EQ(l.b.copier->bytes_copied(), n);
  EXPECT_GE(l.a.copier->max_outstanding(), 2u) << "device->host copies were serialised";
  EXPECT_EQ(r.stats.chunks, n / (64 << 10));
}

// Several transfers at once, each with its own notification: at each notification its own
// range is complete.
TEST(RdmaStageTest, ConcurrentTransfersNotifyAfterTheirData) {
  const size_t n = 8 << 20;
  StageLink l(n, {true, true, 4, microseconds{200}});
  Fill(l.a.mem, 9);
  constexpr int kN = 6;
  std::vector<TransferId> ids;
  std::vector<Segment> segs;
  for (int i = 0; i < kN; ++i) {
    const uint64_t len = (1 << 20) - 333 * static_cast<uint64_t>(i);
    segs.push_back({0, static_cast<uint64_t>(i) * (1 << 20) + 11, 0,
                    static_cast<uint64_t>(i) * (1 << 20) + 3, len});
    auto id = l.a.ch->Post({segs.back()}, "t" + std::to_string(i), 0);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  std::vector<bool> seen(kN, false);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  size_t checked = 0;
  while (checked < kN && std::chrono::steady_clock::now() < until) {
    l.Step();
    for (; checked < l.notes.size(); ++checked) {  // check right at the notification
      const int i = std::stoi(l.notes[checked].substr(1));
      const Segment& s = segs[static_cast<size_t>(i)];
      EXPECT_EQ(std::memcmp(l.b.mem.data() + s.remote_offset, l.a.mem.data() + s.local_offset,
                            s.length), 0) << "transfer " << i << " notified before its data";
      seen[static_cast<size_t>(i)] = true;
    }
    std::this_thread::sleep_for(microseconds(20));
  }
  for (int i = 0; i < kN; ++i) {
    EXPECT_TRUE(seen[static_cast<size_t>(i)]) << i;
    EXPECT_EQ(l.Drive(ids[static_cast<size_t>(i)]).state, TransferState::kDone);
  }
  ASSERT_TRUE(l.Drained(4));
  EXPECT_EQ(l.a.ch->remote_credits(), 4u);
}

// The peer dies mid-transfer: the transfer fails (no hang), no notification, every send slot
// comes back.
TEST(RdmaStageTest, QpErrorMidTransferFailsAndReturnsSlots) {
  const size_t n = 4 << 20;
  StageLink l(n, {true, true, 4, microseconds{100}});
  Fill(l.a.mem, 2);
  auto id = l.a.ch->Post({{0, 0, 0, 0, n}}, "never", 0);
  ASSERT_TRUE(id.ok());
  for (int i = 0; i < 2000 && l.b.copier->bytes_copied() < (256 << 10); ++i) {
    l.Step();
    std::this_thread::sleep_for(microseconds(20));
  }
  ASSERT_GT(l.b.copier->bytes_copied(), 0u) << "nothing arrived before the failure";
  l.fabric.Kill(l.b.dev);
  const TransferResult r = l.Drive(*id);
  EXPECT_EQ(r.state, TransferState::kError);
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable) << r.status.ToString();
  ASSERT_TRUE(l.Drained(4, false)) << "send slots leaked: " << l.a.ch->tx_slots_free();
  EXPECT_TRUE(l.notes.empty());
  l.a.ch->Release(*id);
  EXPECT_EQ(l.a.ch->pending(), 0u);
}

// The receiver cannot copy a chunk into GPU memory: the sender's transfer fails, no notification.
TEST(RdmaStageTest, ReceiverCopyFailureFailsTheSender) {
  const size_t n = 1 << 20;
  StageLink l(n, {false, true, 4});
  Fill(l.a.mem, 3);
  l.b.copier->FailNextEnqueue();
  auto id = l.a.ch->Post({{0, 0, 0, 0, n}}, "never", 0);
  ASSERT_TRUE(id.ok());
  const TransferResult r = l.Drive(*id);
  EXPECT_EQ(r.state, TransferState::kError);
  EXPECT_EQ(r.status.code(), StatusCode::kDataLoss) << r.status.ToString();
  ASSERT_TRUE(l.Drained(4));
  EXPECT_TRUE(l.notes.empty());
  EXPECT_EQ(l.a.ch->remote_credits(), 4u);  // the refused slot was credited back too
  l.a.ch->Release(*id);
  // The channel still works.
  id = l.a.ch->Post({{0, 0, 0, 0, n}}, "ok", 0);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(l.Drive(*id).state, TransferState::kDone);
  EXPECT_TRUE(l.a.mem == l.b.mem);
}

// The sender's copier refuses: the transfer fails at once; released mid-flight: slots return
// after their copies.
TEST(RdmaStageTest, SenderCopyFailureAndReleaseMidFlight) {
  const size_t n = 2 << 20;
  StageLink l(n, {true, true, 4, microseconds{400}});
  l.a.copier->FailNextEnqueue();
  auto id = l.a.ch->Post({{0, 0, 0, 0, n}}, "never", 0);
  ASSERT_TRUE(id.ok());
  const TransferResult r = l.Drive(*id);
  EXPECT_EQ(r.state, TransferState::kError);
  EXPECT_NE(r.status.message().find("staging"), std::string::npos) << r.status.ToString();
  l.a.ch->Release(*id);
  id = l.a.ch->Post({{0, 0, 0, 0, n}}, "never", 0);
  ASSERT_TRUE(id.ok());
  l.Step();  // cuts 4 chunks: their copies are queued; no completion has been polled yet
  EXPECT_EQ(l.a.ch->tx_slots_free(), 0u);
  l.a.ch->Release(*id);
  ASSERT_TRUE(l.Drained(4));
  EXPECT_EQ(l.a.ch->pending(), 0u);
}

TEST(RdmaStageTest, GpuPeerWithoutStagingRingIsRefused) {
  StageLink l(1 << 20, {false, true});
  ASSERT_TRUE(l.a.ch->SetPeerStaging({true}, RemoteRegion{}, 0).ok());
  auto id = l.a.ch->Post({{0, 0, 0, 0, 100}}, "", 0);
  EXPECT_EQ(id.status().code(), StatusCode::kFailedPrecondition) << id.status().ToString();
  EXPECT_NE(id.status().message().find("GPU"), std::string::npos);
}

// A channel going away deregisters every buffer it registered (a late WRITE from the peer then
// fails at the NIC instead of landing in freed memory) and frees its pinned rings.
TEST(RdmaStageTest, ChannelReleasesItsRegistrationsAndRings) {
  FakeFabric f;
  FakeVerbs* d = f.AddDevice();
  ManualClock clock{0};
  std::vector<uint8_t> mem(1 << 20);
  const MemoryRegion gpu{reinterpret_cast<uint64_t>(mem.data()), mem.size(), 0, 0};
  auto copier = std::make_shared<FakeDeviceCopier>();
  {
    RdmaChannel ch(d, {gpu}, ChannelOptions{}, clock);
    ASSERT_TRUE(ch.EnableStaging({copier, {true}, 4}).ok());
    ASSERT_TRUE(ch.Init().ok());
    ASSERT_TRUE(ch.SetPeer({*d->CreateQp()}, {{0x1000, 1 << 20, 7}}, {0x2000, 4096, 8}).ok());
    ASSERT_TRUE(ch.SetPeerStaging({true}, {0x3000, 4 * (64 + 4096), 9}, 4).ok());
    ASSERT_TRUE(ch.SetPeerStaging({true}, {0x3000, 4 * (64 + 4096), 9}, 4).ok());  // again
    EXPECT_EQ(d->registrations(), 5u);  // notify ring, notify staging, tx, rx, headers
    EXPECT_EQ(copier->pinned_live(), 2u);
  }
  EXPECT_EQ(d->registrations(), 0u);
  EXPECT_EQ(copier->pinned_live(), 0u);
}

// ---- through TransferEngine ("rdma" transport) ----------------------------------------------

EngineOptions Rdma() {
  EngineOptions o;
  o.transport = "rdma";
  o.staging_slots = 4;
  return o;
}

TEST(RdmaStageEngineTest, WritesWithNotificationGpuHostGpu) {
  testing::FakeNicScope fake_nic;
  testing::WriteWithNotificationCase(testing::FakeBackend(), true, true, 8 << 20, Rdma());
  testing::WriteWithNotificationCase(testing::FakeBackend(), true, false, 4 << 20, Rdma());
  testing::WriteWithNotificationCase(testing::FakeBackend(), false, true, 4 << 20, Rdma());
}

TEST(RdmaStageEngineTest, ReadStaysRefusedAndShutdownMidFlightFreesPinnedMemory) {
  testing::FakeNicScope fake_nic;
  const size_t n = 8 << 20;
  std::shared_ptr<DeviceCopier> sc, dc;
  {
    testing::Rig r(testing::FakeBackend(microseconds{400}), n, true, true, Rdma());
    sc = r.src_copier;
    dc = r.dst_copier;
    auto id = r.src->Post(Op::kRead, r.peer, std::vector<Desc>{{0, 0, 4096}},
                          std::vector<Desc>{{0, 0, 4096}});
    ASSERT_TRUE(id.ok());
    const TransferResult res = r.src->Wait(*id, milliseconds(10000));
    EXPECT_EQ(res.status.code(), StatusCode::kUnimplemented) << res.status.ToString();
    // Connected: the sender pinned its send ring only, the receiver its receive ring only.
    EXPECT_EQ(static_cast<FakeDeviceCopier*>(sc.get())->pinned_live(), 1u);
    EXPECT_EQ(static_cast<FakeDeviceCopier*>(dc.get())->pinned_live(), 1u);
    r.src->Release(*id);
    id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, n}},
                     std::vector<Desc>{{0, 0, n}}, "x");
    ASSERT_TRUE(id.ok());
    std::this_thread::sleep_for(milliseconds(3));
  }  // engines destroyed with the write in flight
  EXPECT_EQ(static_cast<FakeDeviceCopier*>(sc.get())->pinned_live(), 0u);
  EXPECT_EQ(static_cast<FakeDeviceCopier*>(dc.get())->pinned_live(), 0u);
}

}  // namespace
}  // namespace pd::kvtransfer::rdma
