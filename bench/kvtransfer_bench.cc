// kvtransfer_bench: throughput of the KV transfer engine against the measured capacity of the
// same path, plus the pieces the congestion experiment (scripts/congestion) runs in namespaces.
//
//   kvtransfer_bench loopback [--quick]
//       Two engines in this process over 127.0.0.1: GB/s vs payload, chunk size, path count,
//       next to a plain-TCP ceiling (1 and 4 connections, recv into a buffer) measured in the
//       same run.
//   kvtransfer_bench serve --meta FILE [--listen IP] [--advertise IP,IP,..] [--arena BYTES]
//       Receiver engine; writes its metadata blob to FILE; runs until SIGTERM.
//   kvtransfer_bench send --meta FILE --arms a,b,.. [--payload BYTES] [--runs N] [--link-gbps G]
//       [--kernel-cc cubic] [--chunk BYTES] [--tag T]
//       Runs the arms interleaved, N rounds; prints one JSON line per run. Arms:
//       single (1 connection, no host CC), rr (4 paths round robin, no host CC),
//       swift (4 paths, power of two, Swift), timely (4 paths, power of two, Timely),
//       swift-rF (Swift with relative_target_factor F), swift-abs (Swift, absolute target only).
//   kvtransfer_bench sim [--testbed] [--runs N]
//       Discrete-event leaf-spine simulation with the engine's CC and selector objects: 8 spines
//       x 100 Gbit/s, 1 GB payload (or, with --testbed, the veth testbed: 4 x 0.925 Gbit/s,
//       64 MB) - same scenarios, arms and metrics as the congestion experiment.
//   kvtransfer_bench gpu [--bytes 256M] [--runs 3] [--chunks 256K,1M] [--paths 1,4] [--fake]
//       GPU arenas over tcp loopback (bounce-buffer pipeline) vs host->host and the pinned copy
//       ceiling (kvtransfer_bench_gpu.cc).
//   kvtransfer_bench rawsink --port P [--log FILE]      counts received bytes every 10 ms
//   kvtransfer_bench rawsend --to IP:PORT [--mbps R] [--cc cubic] [--conns N] [--seconds S]
//       bulk TCP sender (background flows; R = 0: unlimited). With --seconds prints goodput.
// GCC 12 at -O3 reports a false -Wrestrict in std::string assignment (ParseFlags).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kvtransfer/sim/fabric_sim.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer::bench {
int GpuBench(const std::map<std::string, std::string>& f);  // kvtransfer_bench_gpu.cc
}

namespace {

using namespace pd::kvtransfer;
using std::chrono::milliseconds;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::map<std::string, std::string> ParseFlags(int argc, char** argv, int first) {
  std::map<std::string, std::string> f;
  for (int i = first; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) != 0) continue;
    const std::string k(argv[i] + 2);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      f[k] = argv[++i];
    } else {
      f[k] = "1";
    }
  }
  return f;
}

std::string Get(const std::map<std::string, std::string>& f, const std::string& k,
                const std::string& def) {
  auto it = f.find(k);
  return it == f.end() ? def : it->second;
}

uint64_t Bytes(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  switch (end && *end ? *end : ' ') {
    case 'K': case 'k': v *= 1024; break;
    case 'M': case 'm': v *= 1024 * 1024; break;
    case 'G': case 'g': v *= 1024.0 * 1024 * 1024; break;
    default: break;
  }
  return static_cast<uint64_t>(v);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, sep)) {
    if (!x.empty()) out.push_back(x);
  }
  return out;
}

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int Listen(const std::string& ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 64) != 0) {
    perror("bind/listen");
    exit(1);
  }
  return fd;
}

int ConnectTo(const std::string& hostport, const std::string& cc) {
  const size_t c = hostport.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(hostport.substr(c + 1))));
  inet_pton(AF_INET, hostport.substr(0, c).c_str(), &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (!cc.empty()) setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc.data(), cc.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    perror("connect");
    exit(1);
  }
  return fd;
}

// ------------------------------------------------------------------------ raw TCP baseline

// Sink: accepts any number of connections, reads into a buffer; logs (ns, total bytes) / 10 ms.
int RawSink(const std::map<std::string, std::string>& f) {
  const int lfd = Listen(Get(f, "listen", "0.0.0.0"), std::stoi(Get(f, "port", "9000")));
  std::atomic<uint64_t> total{0};
  std::thread acceptor([&] {
    for (;;) {
      int c = accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      std::thread([c, &total] {
        std::vector<char> buf(1 << 20);
        ssize_t n;
        while ((n = read(c, buf.data(), buf.size())) > 0) total += static_cast<uint64_t>(n);
        close(c);
      }).detach();
    }
  });
  acceptor.detach();
  std::vector<std::pair<int64_t, uint64_t>> log;
  while (!g_stop) {
    std::this_thread::sleep_for(milliseconds(10));
    log.push_back({NowNs(), total.load()});
  }
  if (f.count("log")) {
    std::ofstream o(f.at("log"));
    for (auto& [t, b] : log) o << t << " " << b << "\n";
  }
  return 0;
}

// Bulk sender: N connections, optionally paced to R Mbit/s in total.
int RawSend(const std::map<std::string, std::string>& f) {
  const int conns = std::stoi(Get(f, "conns", "1"));
  const double mbps = std::stod(Get(f, "mbps", "0"));
  const double seconds = std::stod(Get(f, "seconds", "0"));
  std::vector<std::thread> ts;
  std::atomic<uint64_t> sent{0};
  const int64_t t0 = NowNs();
  for (int i = 0; i < conns; ++i) {
    ts.emplace_back([&, i] {
      const int fd = ConnectTo(Get(f, "to", "127.0.0.1:9000"), Get(f, "cc", ""));
      std::vector<char> buf(mbps > 0 ? (64 << 10) : (1 << 20), static_cast<char>(i));
      const double per_conn_bps = mbps * 1e6 / 8 / conns;
      uint64_t mine = 0;
      while (!g_stop && (seconds == 0 || NowNs() - t0 < seconds * 1e9)) {
        if (per_conn_bps > 0) {
          const int64_t due = t0 + static_cast<int64_t>(mine / per_conn_bps * 1e9);
          const int64_t now = NowNs();
          if (due > now) std::this_thread::sleep_for(std::chrono::nanoseconds(due - now));
        }
        const ssize_t n = write(fd, buf.data(), buf.size());
        if (n <= 0) break;
        mine += static_cast<uint64_t>(n);
        sent += static_cast<uint64_t>(n);
      }
      close(fd);
    });
  }
  for (auto& t : ts) t.join();
  if (seconds > 0) {
    printf("{\"raw_gbps\": %.3f, \"conns\": %d}\n", sent * 8.0 / ((NowNs() - t0) / 1e9) / 1e9,
           conns);
  }
  return 0;
}

// Plain-TCP ceiling over loopback: `conns` connections, recv into a buffer, same process.
double LoopbackCeilingGbps(int conns, uint64_t bytes) {
  const int lfd = Listen("127.0.0.1", 0);
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string to = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  std::vector<std::thread> rx;
  std::vector<int> tx_fds;
  for (int i = 0; i < conns; ++i) {
    tx_fds.push_back(ConnectTo(to, ""));
    const int c = accept(lfd, nullptr, nullptr);
    rx.emplace_back([c] {
      std::vector<char> buf(1 << 20);
      while (read(c, buf.data(), buf.size()) > 0) {
      }
      close(c);
    });
  }
  std::vector<char> src(1 << 20, 1);
  const int64_t t0 = NowNs();
  std::vector<std::thread> tx;
  for (int fd : tx_fds) {
    tx.emplace_back([&, fd] {
      for (uint64_t s = 0; s < bytes / tx_fds.size();) {
        const ssize_t n = write(fd, src.data(), src.size());
        if (n <= 0) break;
        s += static_cast<uint64_t>(n);
      }
      shutdown(fd, SHUT_WR);
    });
  }
  for (auto& t : tx) t.join();
  for (auto& t : rx) t.join();
  const double secs = (NowNs() - t0) / 1e9;
  for (int fd : tx_fds) close(fd);
  close(lfd);
  return bytes * 8.0 / secs / 1e9;
}

// ----------------------------------------------------------------------------- engine modes

EngineOptions ArmOptions(const std::string& arm, const std::map<std::string, std::string>& f) {
  EngineOptions o;
  o.name = "bench-" + arm + "-" + std::to_string(getpid());
  o.compat_hash = 1;
  o.chunk_bytes = Bytes(Get(f, "chunk", "256K"));
  o.kernel_cc = Get(f, "kernel-cc", "");
  o.cc.link_gbps = std::stod(Get(f, "link-gbps", "100"));
  o.cc.base_target_us = std::stod(Get(f, "target-us", "300"));
  o.num_paths = 4;
  if (arm == "single") {
    o.num_paths = 1;
    o.cc.algorithm = CcAlgorithm::kNone;
  } else if (arm == "rr") {
    o.cc.algorithm = CcAlgorithm::kNone;
    o.path_policy = PathPolicy::kRoundRobin;
  } else if (arm == "timely") {
    o.cc.algorithm = CcAlgorithm::kTimely;
  } else if (arm.rfind("swift-r", 0) == 0) {  // e.g. swift-r3: relative target factor 3
    o.cc.algorithm = CcAlgorithm::kSwift;
    o.cc.relative_target_factor = std::stod(arm.substr(7));
  } else if (arm == "swift-abs") {  // absolute Swift target only
    o.cc.algorithm = CcAlgorithm::kSwift;
    o.cc.relative_target_factor = 0;
  } else {
    o.cc.algorithm = CcAlgorithm::kSwift;
  }
  return o;
}

int Serve(const std::map<std::string, std::string>& f) {
  EngineOptions o;
  o.name = Get(f, "name", "decode");
  o.compat_hash = 1;
  o.listen_host = Get(f, "listen", "127.0.0.1");
  o.listen_port = std::stoi(Get(f, "port", "0"));
  o.advertise_addrs = Split(Get(f, "advertise", ""), ',');
  std::vector<uint8_t> mem(Bytes(Get(f, "arena", "64M")));
  TransferEngine e(o);
  if (!e.RegisterArena({mem.data(), mem.size()}).ok() || !e.Start().ok()) return 1;
  const std::string path = Get(f, "meta", "/tmp/kvx.meta");
  {
    std::ofstream out(path + ".tmp");
    out << e.LocalMetadata();
  }
  rename((path + ".tmp").c_str(), path.c_str());
  while (!g_stop) std::this_thread::sleep_for(milliseconds(50));
  return 0;
}

int Send(const std::map<std::string, std::string>& f) {
  std::ifstream in(Get(f, "meta", "/tmp/kvx.meta"));
  const std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const uint64_t payload = Bytes(Get(f, "payload", "64M"));
  const int runs = std::stoi(Get(f, "runs", "30"));
  const auto arms = Split(Get(f, "arms", "single,rr,swift"), ',');
  const std::string tag = Get(f, "tag", "");
  std::vector<uint8_t> mem(payload, 7);
  std::vector<std::unique_ptr<TransferEngine>> engines;
  std::vector<PeerId> peers;
  for (const auto& arm : arms) {
    engines.push_back(std::make_unique<TransferEngine>(ArmOptions(arm, f)));
    auto& e = *engines.back();
    if (!e.RegisterArena({mem.data(), mem.size()}).ok() || !e.Start().ok()) return 1;
    auto p = e.LoadRemoteMetadata(blob);
    const pd::Status st = p.ok() ? e.Connect(*p) : p.status();
    if (!st.ok()) {
      fprintf(stderr, "connect failed: %s\n", st.ToString().c_str());
      return 1;
    }
    peers.push_back(*p);
  }
  const std::vector<Desc> d = {{0, 0, payload}};
  for (int r = 0; r < runs && !g_stop; ++r) {
    for (size_t a = 0; a < arms.size(); ++a) {
      auto id = engines[a]->Post(Op::kWrite, peers[a], d, d, {}, milliseconds(60000));
      if (!id.ok()) return 1;
      auto res = engines[a]->Wait(*id, milliseconds(70000));
      engines[a]->Release(*id);
      printf("{\"tag\": \"%s\", \"arm\": \"%s\", \"run\": %d, \"ok\": %d, \"ms\": %.3f, "
             "\"start_ns\": %lld, \"end_ns\": %lld, \"chunks\": %u}\n",
             tag.c_str(), arms[a].c_str(), r, res.state == TransferState::kDone,
             res.stats.duration_us() / 1e3, static_cast<long long>(res.stats.post_ns),
             static_cast<long long>(res.stats.complete_ns), res.stats.chunks);
      fflush(stdout);
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  return 0;
}

// Loopback sweep: two engines in this process.
int Loopback(const std::map<std::string, std::string>& f) {
  const bool quick = f.count("quick");
  const uint64_t arena = 256ull << 20;
  std::vector<uint8_t> a(arena, 1), b(arena, 0);
  printf("# loopback, one process, 2 engines; ceiling = plain TCP write->read, same run\n");
  const double ceil1 = LoopbackCeilingGbps(1, 2ull << 30);
  const double ceil4 = LoopbackCeilingGbps(4, 2ull << 30);
  printf("ceiling plain TCP: 1 conn %.2f GB/s, 4 conns %.2f GB/s\n", ceil1 / 8, ceil4 / 8);
  printf("%-10s %-8s %-6s %-8s %-10s %-8s\n", "payload", "chunk", "paths", "GB/s", "vs_ceil", "ms");
  const std::vector<uint64_t> payloads =
      quick ? std::vector<uint64_t>{16 << 20, 256 << 20}
            : std::vector<uint64_t>{64 << 10, 1 << 20, 16 << 20, 256 << 20};
  for (uint64_t chunk : {64ull << 10, 256ull << 10, 1ull << 20}) {
    for (int paths : {1, 2, 4}) {
      EngineOptions so, ro;
      so.name = "src";
      ro.name = "dst";
      so.num_paths = paths;
      so.chunk_bytes = chunk;
      so.cc.algorithm = CcAlgorithm::kSwift;  // loopback: the CC stays out of the way
      TransferEngine s(so), r(ro);
      if (!s.RegisterArena({a.data(), arena}).ok() || !r.RegisterArena({b.data(), arena}).ok() ||
          !s.Start().ok() || !r.Start().ok()) {
        return 1;
      }
      auto peer = s.LoadRemoteMetadata(r.LocalMetadata());
      if (!peer.ok() || !s.Connect(*peer).ok()) return 1;
      for (uint64_t payload : payloads) {
        const int reps = payload >= (256u << 20) ? 3 : 10;
        double best_ms = 1e18;
        for (int i = 0; i < reps; ++i) {
          const std::vector<Desc> d = {{0, 0, payload}};
          auto id = s.Post(Op::kWrite, *peer, d, d);
          auto res = s.Wait(*id, milliseconds(60000));
          s.Release(*id);
          if (res.state != TransferState::kDone) return 1;
          best_ms = std::min(best_ms, res.stats.duration_us() / 1e3);
        }
        const double gbs = payload / (best_ms / 1e3) / 1e9;
        const double ceil = (paths == 1 ? ceil1 : ceil4) / 8;
        printf("%-10llu %-8llu %-6d %-8.2f %-10.2f %-8.3f\n",
               static_cast<unsigned long long>(payload), static_cast<unsigned long long>(chunk),
               paths, gbs, gbs / ceil, best_ms);
      }
    }
  }
  return 0;
}


// ------------------------------------------------------------------------------- simulator

double Median(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double k = (v.size() - 1) * q;
  const size_t lo = static_cast<size_t>(k), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (k - static_cast<double>(lo));
}

int Sim(const std::map<std::string, std::string>& f) {
  namespace sim = pd::kvtransfer::sim;
  const bool testbed = f.count("testbed");
  const int runs = std::stoi(Get(f, "runs", "30"));
  sim::FabricConfig fab;
  uint64_t payload;
  CcParams cc;
  if (testbed) {  // calibrated to the netns testbed (MACHINE-NOTES, scripts/congestion)
    fab.spines = 4;
    fab.link_gbps = 0.925;
    fab.base_rtt_us = 100;
    fab.mark_kb = 378;  // tbf: rate x latency + burst
    payload = 64ull << 20;
    cc.link_gbps = 1;
    cc.base_target_us = 300;
  } else {
    fab.spines = 8;
    fab.link_gbps = 100;
    fab.base_rtt_us = 10;
    fab.mark_kb = 512;
    payload = 1ull << 30;
    cc.link_gbps = 100;
    cc.base_target_us = 20;
  }
  const int n = fab.spines;
  const double light = testbed ? 0.15 / 0.925 : 0.3;  // testbed: 150 Mbit/s as in run.sh
  struct Scenario {
    std::string name;
    std::vector<sim::BgFlow> bg;
    double left;  // spines' worth of capacity left to the transfer (fair share)
  };
  std::vector<Scenario> scen = {
      {"idle", {}, static_cast<double>(n)},
      {"light", {{0, light * fab.link_gbps}}, n - light},
      {"heavy", {{0, 0}, {0, 0}}, n - 1 + 1.0 / 3},
      {"incast", {}, n / 2.0},
  };
  for (int i = 0; i < n; ++i) scen[3].bg.push_back({i, 0});
  if (!testbed) {
    Scenario h3{"heavy3", {}, n - 3 + 1.0};
    for (int i = 0; i < 3; ++i) h3.bg.insert(h3.bg.end(), {{i, 0}, {i, 0}});
    scen.insert(scen.begin() + 3, h3);
  }
  std::vector<sim::Arm> arms;
  for (std::string a : {"single", "rr", "swift", "timely"}) {
    sim::Arm arm;
    arm.name = a;
    arm.cc = cc;
    arm.chunk_bytes = Bytes(Get(f, "chunk", "256K"));
    arm.cc.relative_target_factor = std::stod(Get(f, "rel", "1.5"));
    arm.paths = a == "single" ? 1 : n;
    arm.policy = a == "rr" ? PathPolicy::kRoundRobin : PathPolicy::kPowerOfTwo;
    arm.cc.algorithm = a == "swift" ? CcAlgorithm::kSwift
                       : a == "timely" ? CcAlgorithm::kTimely : CcAlgorithm::kNone;
    arms.push_back(arm);
  }
  printf("# sim: %d spines x %.3f Gbit/s, base RTT %.0f us, payload %llu MB, %d runs per arm\n", n,
         fab.link_gbps, fab.base_rtt_us, static_cast<unsigned long long>(payload >> 20), runs);
  printf("| scenario | arm | p50 ms | p99 ms | p50 infl. | floor | p50 vs floor | bg Gbit/s |\n");
  printf("|---|---|---|---|---|---|---|---|\n");
  std::map<std::string, double> idle;
  for (const Scenario& s : scen) {
    fab.background = s.bg;
    for (const sim::Arm& arm : arms) {
      std::vector<double> ms, bg;
      for (int r = 0; r < runs; ++r) {
        const double warm = (testbed ? 200000 : 2000) * (1 + r % 7 / 7.0);
        const auto res = sim::SimulateTransfer(fab, arm, payload, warm, 1000 + r);
        ms.push_back(res.completion_us / 1e3);
        bg.push_back(res.bg_goodput_gbps);
      }
      const double p50 = Median(ms, 0.5), p99 = Median(ms, 0.99);
      if (s.name == "idle") idle[arm.name] = p50;
      const double full = arm.paths == 1 ? 1.0 : n;
      const double left = arm.paths == 1 ? (s.name == "idle" ? 1 : s.name == "light" ? 1 - light
                                            : s.name == "incast" ? 0.5 : s.name == "heavy" ? 1.0 / 3
                                            : 1.0 / 3)
                                         : s.left;
      const double floor = (full / left - 1) * 100;
      const double infl = (p50 / idle[arm.name] - 1) * 100;
      printf("| %s | %s | %.2f | %.2f | %+.1f%% | %+.1f%% | %+.1f%% | %.2f |\n", s.name.c_str(),
             arm.name.c_str(), p50, p99, infl, floor,
             (p50 / (idle[arm.name] * (1 + floor / 100)) - 1) * 100, Median(bg, 0.5));
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  const std::string mode = argc > 1 ? argv[1] : "loopback";
  const auto f = ParseFlags(argc, argv, 2);
  if (mode == "loopback") return Loopback(f);
  if (mode == "serve") return Serve(f);
  if (mode == "send") return Send(f);
  if (mode == "sim") return Sim(f);
  if (mode == "gpu") return pd::kvtransfer::bench::GpuBench(f);
  if (mode == "rawsink") return RawSink(f);
  if (mode == "rawsend") return RawSend(f);
  fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
