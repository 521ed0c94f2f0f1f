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

namespace pd::kvtransfer {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kCompat = 77;

// A kvtransfer_peer child with pipes to its stdin / stdout.
class PeerProcess {
 public:
  PeerProcess(const std::string& name, uint64_t bytes, int port = 0) {
    int in[2], out[2];
    EXPECT_EQ(pipe(in), 0);
    EXPECT_EQ(pipe(out), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      const std::string bin = std::string(PD_BUILD_DIR) + "/tests/kvtransfer/kvtransfer_peer";
      execl(bin.c_str(), bin.c_str(), name.c_str(), std::to_string(bytes).c_str(),
            std::to_string(kCompat).c_str(), std::to_string(port).c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    const std::string hex = Line().substr(5);
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      meta_ += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
  }
  ~PeerProcess() { Kill(); }
  std::string Line() {
    char buf[1 << 16];
    if (!fgets(buf, sizeof(buf), from_)) return "";
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  std::string Ask(const std::string& cmd) {
    fprintf(to_, "%s\n", cmd.c_str());
    fflush(to_);
    return Line();
  }
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    if (to_) fclose(to_);
    if (from_) fclose(from_);
    to_ = from_ = nullptr;
  }
  const std::string& meta() const { return meta_; }
  int port() const { return std::stoi(meta_.substr(meta_.find("addr 127.0.0.1:") + 15)); }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string meta_;
};

uint64_t Fnv(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

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

}  // namespace
}  // namespace pd::kvtransfer
