// The receiver runs in another process: killed mid-transfer, hung, restarted.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "kvtransfer/transfer_engine.h"
#include "peer_process.h"

namespace pd::kvtransfer {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kCompat = kPeerCompat;

struct Sender {
  explicit Sender(size_t bytes, milliseconds peer_timeout = milliseconds(3000)) : mem(bytes) {
    std::mt19937 rng(1);
    for (auto& b : mem) b = static_cast<uint8_t>(rng());
    EngineOptions o;
    o.name = "prefill";
    o.compat_hash = kCompat;
    o.peer_timeout = peer_timeout;
    e = std::make_unique<TransferEngine>(o);
    EXPECT_TRUE(e->RegisterArena({mem.data(), mem.size()}).ok());
    EXPECT_TRUE(e->Start().ok());
  }
  std::vector<uint8_t> mem;
  std::unique_ptr<TransferEngine> e;
};

TEST(E2eTest, CrossProcessBytesAndNotification) {
  PeerProcess peer("decode", 8 << 20);
  Sender s(8 << 20);
  auto id = s.e->LoadRemoteMetadata(peer.meta());
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 11, 5 << 20}},
                     std::vector<Desc>{{0, 17, 5 << 20}}, "req-1:token-42");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(s.e->Wait(*t, milliseconds(10000)).state, TransferState::kDone);
  EXPECT_EQ(peer.Ask("notes"), "NOTES 1 req-1:token-42");
  EXPECT_EQ(peer.Ask("sum 17 " + std::to_string(5 << 20)),
            "SUM " + std::to_string(Fnv(s.mem.data() + 11, 5 << 20)));
}

TEST(E2eTest, PeerKilledMidTransferFailsBeforeDeadline) {
  PeerProcess peer("decode", 64 << 20);
  Sender s(64 << 20);
  auto id = s.e->LoadRemoteMetadata(peer.meta());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(s.e->Connect(*id).ok());
  peer.Signal(SIGSTOP);  // it stops reading: the transfer cannot finish
  const auto t0 = Clock::now();
  auto t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 0, 64 << 20}},
                     std::vector<Desc>{{0, 0, 64 << 20}}, "never", milliseconds(10000));
  ASSERT_TRUE(t.ok());
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(s.e->Poll(*t).state, TransferState::kInProgress);
  peer.Kill();
  auto r = s.e->Wait(*t, milliseconds(10000));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(r.state, TransferState::kError);
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable) << r.status.ToString();
  EXPECT_LT(ms, 3000);
  s.e->Release(*t);
  const EngineStats st = s.e->Stats();
  EXPECT_EQ(st.active_transfers, 0u);
  EXPECT_EQ(st.transport_transfers, 0u);
  EXPECT_EQ(st.connected_paths, 0u);
}

TEST(E2eTest, HungPeerFailsAfterPeerTimeout) {
  PeerProcess peer("decode", 64 << 20);
  Sender s(64 << 20, milliseconds(500));
  auto id = s.e->LoadRemoteMetadata(peer.meta());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(s.e->Connect(*id).ok());
  peer.Signal(SIGSTOP);
  const auto t0 = Clock::now();
  auto t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 0, 64 << 20}},
                     std::vector<Desc>{{0, 0, 64 << 20}}, {}, milliseconds(20000));
  ASSERT_TRUE(t.ok());
  auto r = s.e->Wait(*t, milliseconds(10000));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(r.state, TransferState::kError);
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable) << r.status.ToString();
  EXPECT_NE(r.status.message().find("no progress"), std::string::npos);
  EXPECT_LT(ms, 3000);
  s.e->Release(*t);
  EXPECT_EQ(s.e->Stats().transport_transfers, 0u);
  peer.Signal(SIGCONT);
}

TEST(E2eTest, DeadlineExpiresWhilePeerIsSlow) {
  PeerProcess peer("decode", 64 << 20);
  Sender s(64 << 20, milliseconds(60000));
  auto id = s.e->LoadRemoteMetadata(peer.meta());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(s.e->Connect(*id).ok());
  peer.Signal(SIGSTOP);
  const auto t0 = Clock::now();
  auto t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 0, 64 << 20}},
                     std::vector<Desc>{{0, 0, 64 << 20}}, {}, milliseconds(400));
  ASSERT_TRUE(t.ok());
  auto r = s.e->Wait(*t, milliseconds(10000));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(r.status.code(), StatusCode::kDeadlineExceeded) << r.status.ToString();
  EXPECT_GE(ms, 390);
  EXPECT_LT(ms, 2000);
  s.e->Release(*t);
  peer.Signal(SIGCONT);
}

// A transfer that missed its deadline sends nothing more once the receiver comes back: its
// chunks not yet handed to a connection leave the peer's queue when it fails (FinishXfer), so
// only what the congestion window had already put on a connection (kernel socket buffers) can
// land. The peer is frozen (SIGSTOP) so the window is full when the deadline passes. (The
// sender-frozen case of docs/reliability.md's residual risk 2 is not covered: it needs the
// sender's own loop stopped mid-window.)
TEST(E2eTest, ExpiredTransferSendsNothingAfterTheReceiverResumes) {
  constexpr size_t kBytes = size_t(64) << 20;
  PeerProcess peer("decode", kBytes);
  Sender s(kBytes, milliseconds(60000));
  auto id = s.e->LoadRemoteMetadata(peer.meta());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(s.e->Connect(*id).ok());
  peer.Signal(SIGSTOP);
  auto t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 0, kBytes}},
                     std::vector<Desc>{{0, 0, kBytes}}, {}, milliseconds(400));
  ASSERT_TRUE(t.ok());
  auto r = s.e->Wait(*t, milliseconds(10000));
  EXPECT_EQ(r.status.code(), StatusCode::kDeadlineExceeded) << r.status.ToString();
  s.e->Release(*t);
  std::this_thread::sleep_for(milliseconds(200));  // the sender's loop runs on, peer frozen
  peer.Signal(SIGCONT);
  std::this_thread::sleep_for(milliseconds(1500));  // everything that will land has landed
  const std::string a = peer.Ask("nonzero");
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(peer.Ask("nonzero"), a);  // stable
  const uint64_t landed = std::stoull(a.substr(a.find(' ') + 1));
  std::printf("[expired-transfer] %.1f MiB landed of %zu MiB\n", landed / 1048576.0, kBytes >> 20);
  // socket buffers on loopback (send + receive, every path) hold a few MiB; the queued chunks
  // of the dead transfer would add tens of MiB
  EXPECT_LT(landed, uint64_t(24) << 20);
}

// The sender frozen right after posting (a P stopped mid-transfer, docs/reliability.md's lease
// fence): when it resumes long after the transfer's deadline, the transfer fails before any more
// of it is sent. What the sender had put on its connections before it stopped lands (while it is
// stopped, counted in `before`); after it resumes at most the frames it had already started on
// each path may still complete.
TEST(E2eTest, SenderResumedAfterTheDeadlineSendsNothingMore) {
  constexpr size_t kBytes = size_t(64) << 20;
  std::vector<uint8_t> arena(kBytes, 0);
  EngineOptions o;
  o.name = "decode";
  o.compat_hash = kCompat;
  TransferEngine rx(o);
  ASSERT_TRUE(rx.RegisterArena({arena.data(), arena.size()}).ok());
  ASSERT_TRUE(rx.Start().ok());
  PeerProcess tx("prefill", kBytes);
  auto landed = [&] {
    size_t n = 0;
    for (size_t i = 0; i < kBytes; i += 4096) n += arena[i] != 0;  // one byte per 4 KiB page
    return n * 4096;
  };
  tx.Tell("send_and_stop " + ToHex(rx.LocalMetadata()) + " " + std::to_string(kBytes) + " 300");
  std::this_thread::sleep_for(milliseconds(900));  // stopped; the deadline passes
  const size_t before = landed();
  tx.Signal(SIGCONT);
  const std::string posted = tx.Line();  // "POSTED <state> <code>" once the transfer ended
  std::this_thread::sleep_for(milliseconds(300));
  const size_t after = landed();
  std::printf("[sender-resumed] %s; %.1f MiB before the resume, %.1f MiB after\n",
              posted.c_str(), before / 1048576.0, after / 1048576.0);
  EXPECT_EQ(posted.rfind("POSTED ", 0), 0u) << posted;
  EXPECT_NE(posted.find(" " + std::to_string(static_cast<int>(StatusCode::kDeadlineExceeded))),
            std::string::npos) << posted;
  // Only a frame the loop had started writing when it stopped may complete after the resume
  // (one 256 KiB chunk per path at most; measured: none). Before the transport checked
  // deadlines in its send path, 1.0-1.8 MiB landed here in 4 of 5 runs.
  EXPECT_LE(after - before, size_t(512) << 10);
}

TEST(E2eTest, RestartedPeerRefusesStaleMetadataThenReconnects) {
  Sender s(4 << 20);
  auto peer = std::make_unique<PeerProcess>("decode", 4 << 20);
  const int port = peer->port();
  auto id = s.e->LoadRemoteMetadata(peer->meta());
  ASSERT_TRUE(id.ok());
  auto t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 0, 1 << 20}},
                     std::vector<Desc>{{0, 0, 1 << 20}});
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(s.e->Wait(*t, milliseconds(5000)).state, TransferState::kDone);
  s.e->Release(*t);
  peer.reset();  // killed
  peer = std::make_unique<PeerProcess>("decode", 4 << 20, port);  // same address, new incarnation
  t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 0, 1 << 20}},
                std::vector<Desc>{{0, 0, 1 << 20}});
  ASSERT_TRUE(t.ok());
  auto r = s.e->Wait(*t, milliseconds(5000));
  EXPECT_EQ(r.state, TransferState::kError);
  EXPECT_EQ(r.status.code(), StatusCode::kFailedPrecondition) << r.status.ToString();
  EXPECT_NE(r.status.message().find("stale metadata"), std::string::npos);
  s.e->Release(*t);
  auto id2 = s.e->LoadRemoteMetadata(peer->meta());
  ASSERT_TRUE(id2.ok());
  EXPECT_EQ(*id2, *id);
  t = s.e->Post(Op::kWrite, *id, std::vector<Desc>{{0, 5, 1 << 20}},
                std::vector<Desc>{{0, 9, 1 << 20}}, "hello-again");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(s.e->Wait(*t, milliseconds(5000)).state, TransferState::kDone);
  EXPECT_EQ(peer->Ask("notes"), "NOTES 1 hello-again");
  EXPECT_EQ(peer->Ask("sum 9 " + std::to_string(1 << 20)),
            "SUM " + std::to_string(Fnv(s.mem.data() + 5, 1 << 20)));
}

// The local transport across two processes: the receiver's memfd arena is mapped into this
// process through the fd it hands over (SCM_RIGHTS); bytes and notification checked in the peer.
TEST(E2eTest, LocalSharedMemoryAcrossProcesses) {
  const size_t n = 16 << 20;
  PeerProcess peer("decode-shm", n, 0, {"--transport", "local", "--mem", "shm"});
  ASSERT_FALSE(peer.meta().empty());
  uint8_t* mem = static_cast<uint8_t*>(AllocateShareableHostMemory(n));
  ASSERT_NE(mem, nullptr);
  std::mt19937 rng(4);
  for (size_t i = 0; i < n; ++i) mem[i] = static_cast<uint8_t>(rng());
  {
    EngineOptions o;
    o.name = "prefill-shm";
    o.transport = "local";
    o.compat_hash = kCompat;
    TransferEngine e(o);
    ASSERT_TRUE(e.RegisterArena({mem, n}).ok());
    ASSERT_TRUE(e.Start().ok());
    auto id = e.LoadRemoteMetadata(peer.meta());
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    const std::vector<Desc> l = {{0, 3, 5000}, {0, 1 << 20, 8 << 20}};
    const std::vector<Desc> r = {{0, 11, 5000 + (8 << 20)}};
    auto t = e.Post(Op::kWrite, *id, l, r, "shm-done");
    ASSERT_TRUE(t.ok());
    auto res = e.Wait(*t, milliseconds(10000));
    ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
    EXPECT_EQ(peer.Ask("notes"), "NOTES 1 shm-done");
    std::vector<uint8_t> want(mem + 3, mem + 3 + 5000);
    want.insert(want.end(), mem + (1 << 20), mem + (1 << 20) + (8 << 20));
    EXPECT_EQ(peer.Ask("sum 11 " + std::to_string(want.size())),
              "SUM " + std::to_string(Fnv(want.data(), want.size())));
    EXPECT_EQ(peer.Ask("nonzero"), peer.Ask("nonzero"));  // stable: nothing else writes
    e.Release(*t);
    // READ back from the peer into another place.
    std::memset(mem, 0, 4096);
    t = e.Post(Op::kRead, *id, std::vector<Desc>{{0, 0, 4096}}, std::vector<Desc>{{0, 11, 4096}});
    ASSERT_TRUE(t.ok());
    ASSERT_EQ(e.Wait(*t, milliseconds(10000)).state, TransferState::kDone);
    EXPECT_EQ(std::memcmp(mem, want.data(), 4096), 0);
  }
  FreeShareableHostMemory(mem);
}

}  // namespace
}  // namespace pd::kvtransfer
