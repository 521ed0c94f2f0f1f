// Peer authentication of the handshake (EngineOptions::auth_secret, auth.h): the right secret
// works on tcp and local; a wrong or missing secret on either side is refused with
// UNAUTHENTICATED and nothing reaches the arena; a raw stranger that skips or fakes the
// challenge-response cannot write.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "kvtransfer/auth.h"
#include "kvtransfer/transfer_engine.h"
#include "kvtransfer/wire.h"

namespace pd::kvtransfer {
namespace {

using std::chrono::milliseconds;
using wire::FrameHeader;
using wire::FrameType;
using wire::WireSeg;

constexpr size_t kBytes = 1 << 20;

struct Mem {
  Mem(bool shared) : shared(shared) {
    p = shared ? static_cast<uint8_t*>(AllocateShareableHostMemory(kBytes)) : new uint8_t[kBytes];
    std::memset(p, 0, kBytes);
  }
  ~Mem() {
    if (shared) FreeShareableHostMemory(p);
    else delete[] p;
  }
  bool AllZero() const { return std::all_of(p, p + kBytes, [](uint8_t b) { return b == 0; }); }
  bool shared;
  uint8_t* p;
};

std::unique_ptr<TransferEngine> Make(const std::string& name, const std::string& transport,
                                     const std::string& secret, Mem& m) {
  EngineOptions o;
  o.name = name;
  o.transport = transport;
  o.compat_hash = 8;
  o.auth_secret = secret;
  o.connect_timeout = milliseconds(2000);
  auto e = std::make_unique<TransferEngine>(o);
  EXPECT_TRUE(e->RegisterArena({m.p, kBytes}).ok());
  Status st = e->Start();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return e;
}

// Writes 64 KiB with a notification from an engine holding `mine` to one holding `theirs`.
TransferResult Attempt(const std::string& transport, const std::string& mine,
                       const std::string& theirs, bool* dst_untouched, size_t* notes) {
  const bool shm = transport == "local";
  Mem a(shm), b(shm);
  std::mt19937 rng(1);
  for (size_t i = 0; i < kBytes; ++i) a.p[i] = static_cast<uint8_t>(rng() | 1);
  auto src = Make("prefill", transport, mine, a);
  auto dst = Make("decode", transport, theirs, b);
  auto peer = src->LoadRemoteMetadata(dst->LocalMetadata());
  EXPECT_TRUE(peer.ok());
  auto id = src->Post(Op::kWrite, *peer, std::vector<Desc>{{0, 0, 65536}},
                      std::vector<Desc>{{0, 0, 65536}}, "note");
  EXPECT_TRUE(id.ok());
  TransferResult r = src->Wait(*id, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(20));
  *dst_untouched = b.AllZero();
  *notes = dst->GetNotifications().size();
  if (r.state == TransferState::kDone) {
    EXPECT_EQ(std::memcmp(a.p, b.p, 65536), 0);
  }
  return r;
}

class AuthTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AuthTest, SameSecretWorks) {
  bool untouched = false;
  size_t notes = 0;
  TransferResult r = Attempt(GetParam(), "s3cret-shared", "s3cret-shared", &untouched, &notes);
  EXPECT_EQ(r.state, TransferState::kDone) << r.status.ToString();
  EXPECT_FALSE(untouched);
  EXPECT_EQ(notes, 1u);
}

TEST_P(AuthTest, WrongOrMissingSecretIsRefusedAndNothingIsWritten) {
  const std::pair<std::string, std::string> cases[] = {
      {"alpha", "beta"},  // wrong secret
      {"", "beta"},       // the sender has none
      {"alpha", ""},      // the receiver has none
  };
  for (const auto& [mine, theirs] : cases) {
    bool untouched = false;
    size_t notes = 1;
    TransferResult r = Attempt(GetParam(), mine, theirs, &untouched, &notes);
    EXPECT_EQ(r.state, TransferState::kError) << "'" << mine << "' -> '" << theirs << "'";
    EXPECT_EQ(r.status.code(), StatusCode::kUnauthenticated) << r.status.ToString();
    EXPECT_NE(r.status.message().find("auth"), std::string::npos) << r.status.ToString();
    EXPECT_EQ(r.status.message().find(mine.empty() ? "\x01" : mine), std::string::npos)
        << "the secret leaked into an error message";
    EXPECT_TRUE(untouched) << "'" << mine << "' -> '" << theirs << "'";
    EXPECT_EQ(notes, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, AuthTest, ::testing::Values("tcp", "local"));

TEST(AuthProofTest, BindsSecretNoncesAndNames) {
  const std::string ni = auth::NewNonce(), nr = auth::NewNonce();
  EXPECT_EQ(ni.size(), auth::kNonceBytes);
  EXPECT_NE(ni, nr);
  const std::string p = auth::Proof("k", "r", ni, nr, "a", "b");
  EXPECT_EQ(p.size(), auth::kProofBytes);
  EXPECT_TRUE(auth::Equal(p, auth::Proof("k", "r", ni, nr, "a", "b")));
  EXPECT_FALSE(auth::Equal(p, auth::Proof("k2", "r", ni, nr, "a", "b")));
  EXPECT_FALSE(auth::Equal(p, auth::Proof("k", "i", ni, nr, "a", "b")));
  EXPECT_FALSE(auth::Equal(p, auth::Proof("k", "r", nr, ni, "a", "b")));
  EXPECT_FALSE(auth::Equal(p, auth::Proof("k", "r", ni, nr, "ab", "")));
  EXPECT_FALSE(auth::Equal(p, p.substr(1)));
}

// A raw client against an engine with a secret: no nonce, a forged response, or DATA right
// after HELLO - the connection is closed or refused and the arena stays untouched.
struct Raw {
  explicit Raw(int port) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Raw() { close(fd); }
  void Send(FrameType t, const std::string& body, std::vector<WireSeg> segs = {}) {
    FrameHeader h = wire::MakeHeader(t, 1, 1, 0, static_cast<uint16_t>(segs.size()), body.size());
    std::string f(reinterpret_cast<const char*>(&h), sizeof(h));
    f.append(reinterpret_cast<const char*>(segs.data()), segs.size() * sizeof(WireSeg));
    f += body;
    (void)!write(fd, f.data(), f.size());
  }
  // Next frame's type, or 0 on EOF / error.
  uint8_t Next(std::string* body = nullptr) {
    FrameHeader h{};
    if (recv(fd, &h, sizeof(h), MSG_WAITALL) != static_cast<ssize_t>(sizeof(h))) return 0;
    std::string b(h.payload_len, '\0');
    if (h.payload_len &&
        recv(fd, b.data(), b.size(), MSG_WAITALL) != static_cast<ssize_t>(b.size())) {
      return 0;
    }
    if (body) *body = b;
    return h.type;
  }
  int fd;
};

TEST(AuthRawTest, StrangerCannotWrite) {
  Mem m(false);
  auto e = Make("decode", "tcp", "topsecret", m);
  const std::string md = e->LocalMetadata();
  const int port = std::stoi(md.substr(md.find("addr 127.0.0.1:") + 15));
  const std::string payload(4096, '\x5a');
  const std::vector<WireSeg> seg = {{0, 4096, 0}};
  {  // HELLO without a nonce, then DATA at once
    Raw r(port);
    r.Send(FrameType::kHello, wire::EncodeHello({"evil", 1, e->incarnation(), 8, 0, {}}));
    r.Send(FrameType::kData, payload, seg);
    std::string body;
    EXPECT_EQ(r.Next(&body), static_cast<uint8_t>(FrameType::kErr));
    EXPECT_NE(body.find("auth"), std::string::npos) << body;
    while (r.Next() != 0) {
    }  // then the DATA frame before authentication drops the connection
  }
  {  // HELLO with a nonce, a forged response, then DATA
    Raw r(port);
    wire::HelloInfo h{"evil", 1, e->incarnation(), 8, 0, {}};
    h.nonce = auth::NewNonce();
    r.Send(FrameType::kHello, wire::EncodeHello(h));
    EXPECT_EQ(r.Next(), static_cast<uint8_t>(FrameType::kAuthChallenge));
    r.Send(FrameType::kAuthResponse, std::string(auth::kProofBytes, '\x01'));
    std::string body;
    EXPECT_EQ(r.Next(&body), static_cast<uint8_t>(FrameType::kErr));
    EXPECT_NE(body.find("auth"), std::string::npos) << body;
    r.Send(FrameType::kData, payload, seg);
    while (r.Next() != 0) {
    }
  }
  {  // DATA with no handshake at all
    Raw r(port);
    r.Send(FrameType::kData, payload, seg);
    EXPECT_EQ(r.Next(), 0);
  }
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(m.AllZero());
  EXPECT_EQ(e->Stats().bytes_received > 0, true);
}

}  // namespace
}  // namespace pd::kvtransfer
