// Unit pieces behind the served metrics and probes:
//  - the TCP transfer engine listens on and connects to a host NAME ("localhost", resolved with
//    getaddrinfo), moves bytes exactly, and PathSnapshot() reports each connected path's
//    congestion window and smoothed RTT for the peer;
//  - an unresolvable peer name fails the transfer (UNAVAILABLE naming the address), not a hang;
//  - the hand-encoded grpc.health.v1 messages match the protobuf wire format;
//  - every metric name defined in common/pd_metrics.h is documented in docs/metrics.md.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "health_check.h"
#include "kvtransfer/transfer_engine.h"

namespace pd {
namespace {

using kvtransfer::EngineOptions;
using kvtransfer::TransferEngine;
using std::chrono::milliseconds;

TEST(TransferDnsTest, LocalhostByNameAndPathSnapshot) {
  std::vector<uint8_t> src(4 << 20), dst(4 << 20, 0);
  std::mt19937 rng(7);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  EngineOptions o;
  o.compat_hash = 42;
  o.listen_host = "localhost";  // a name, not an IPv4 literal: advertised as "localhost:port"
  o.num_paths = 2;
  o.name = "p";
  TransferEngine a(o);
  o.name = "d";
  TransferEngine b(o);
  ASSERT_TRUE(a.RegisterArena({src.data(), src.size()}).ok());
  ASSERT_TRUE(b.RegisterArena({dst.data(), dst.size()}).ok());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  EXPECT_TRUE(a.PathSnapshot().empty());  // nothing connected yet
  auto peer = a.LoadRemoteMetadata(b.LocalMetadata());
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  const std::vector<kvtransfer::Desc> l = {{0, 0, src.size()}}, r = {{0, 0, dst.size()}};
  auto id = a.Post(kvtransfer::Op::kWrite, *peer, l, r);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  const kvtransfer::TransferResult res = a.Wait(*id, milliseconds(20000));
  a.Release(*id);
  ASSERT_EQ(res.state, kvtransfer::TransferState::kDone) << res.status.ToString();
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), src.size()), 0);

  const std::vector<kvtransfer::PathStats> paths = a.PathSnapshot();
  ASSERT_EQ(paths.size(), 2u);
  bool sampled = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(paths[i].peer, "d");
    EXPECT_EQ(paths[i].path, static_cast<int>(i));
    EXPECT_GT(paths[i].cwnd_bytes, 0);
    sampled |= paths[i].srtt_ns > 0;
  }
  EXPECT_TRUE(sampled) << "4 MiB in 256 KiB chunks: some path has RTT samples";
  EXPECT_TRUE(b.PathSnapshot().empty());  // the receiver has no outgoing paths
  EXPECT_GE(a.Stats().bytes_sent, src.size());
}

TEST(TransferDnsTest, UnresolvableListenHostIsAnError) {
  EngineOptions o;
  o.listen_host = "no-such-host.invalid";
  TransferEngine e(o);
  std::vector<uint8_t> mem(4096);
  ASSERT_TRUE(e.RegisterArena({mem.data(), mem.size()}).ok());
  const Status st = e.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no-such-host.invalid"), std::string::npos) << st.ToString();
}

TEST(HealthWireTest, RequestAndResponseEncoding) {
  EXPECT_EQ(health::EncodeCheckRequest(""), "");
  EXPECT_EQ(health::EncodeCheckRequest("ab"), std::string("\x0a\x02"
                                                          "ab"));
  const std::string long_name(200, 'x');  // length needs a two-byte varint: 200 = 0xc8 0x01
  EXPECT_EQ(health::EncodeCheckRequest(long_name).substr(0, 3), std::string("\x0a\xc8\x01"));
  EXPECT_EQ(*health::DecodeCheckResponse(""), health::ServingStatus::kUnknown);
  EXPECT_EQ(*health::DecodeCheckResponse(std::string("\x08\x01")),
            health::ServingStatus::kServing);
  EXPECT_EQ(*health::DecodeCheckResponse(std::string("\x08\x02")),
            health::ServingStatus::kNotServing);
  EXPECT_FALSE(health::DecodeCheckResponse(std::string("\x10\x01")).ok());
}

std::string ReadRepoFile(const std::string& rel) {
  std::ifstream f(std::string(PD_TEST_DATA_DIR) + "/../../" + rel);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(MetricsDocTest, EveryStandardNameIsDocumented) {
  const std::string header = ReadRepoFile("src/common/pd_metrics.h");
  const std::string doc = ReadRepoFile("docs/metrics.md");
  ASSERT_FALSE(header.empty());
  ASSERT_FALSE(doc.empty());
  const std::regex name_re("\"(pd_[a-z0-9_]+)\"");
  int n = 0;
  for (auto it = std::sregex_iterator(header.begin(), header.end(), name_re);
       it != std::sregex_iterator(); ++it, ++n) {
    const std::string name = (*it)[1];
    EXPECT_NE(doc.find("| `" + name + "` |"), std::string::npos)
        << name << " has no row in the docs/metrics.md reference tables";
  }
  EXPECT_GE(n, 22);
}

}  // namespace
}  // namespace pd
