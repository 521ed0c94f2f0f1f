#include "chaos_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "pdserve.grpc.pb.h"

namespace pd::e2e {

using Clock = std::chrono::steady_clock;

LoadRun::LoadRun(std::string endpoint, std::vector<LoadItem> items, int concurrency,
                 int timeout_ms)
    : endpoint_(std::move(endpoint)),
      items_(std::move(items)),
      concurrency_(concurrency),
      timeout_ms_(timeout_ms) {}

LoadRun::~LoadRun() { Join(); }

void LoadRun::Start() {
  const auto t0 = Clock::now();
  for (int w = 0; w < concurrency_; ++w) {
    threads_.emplace_back([this, t0] {
      client::Client c(endpoint_);
      while (true) {
        const int i = next_++;
        if (i >= static_cast<int>(items_.size())) return;
        LoadItem& it = items_[i];
        client::GenerateParams p;
        p.ids = it.prompt;
        p.max_tokens = it.max_tokens;
        p.ignore_eos = true;
        p.request_id = it.id;
        it.result = c.Generate(p, {}, timeout_ms_);
        ++it.finished;
        it.end_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        ++done_;
      }
    });
  }
}

void LoadRun::Join() {
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

std::vector<std::vector<int32_t>> ChaosPrompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(3, 2000);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(160 + (i * 37) % 100);
    for (auto& t : p) t = tok(rng);
    out.push_back(std::move(p));
  }
  return out;
}

const std::vector<int32_t>& ReferenceIds(const std::vector<int32_t>& prompt, int max_tokens) {
  static std::mutex mu;
  static std::map<std::pair<std::vector<int32_t>, int>, std::vector<int32_t>> cache;
  std::lock_guard<std::mutex> l(mu);
  auto key = std::make_pair(prompt, max_tokens);
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto ref = ReferenceGenerate(TinyModelDir(), prompt, max_tokens);
    it = cache.emplace(key, ref.ok() ? *ref : std::vector<int32_t>{}).first;
  }
  return it->second;
}

std::map<std::string, int64_t> FreeBlocksOf(const Deployment& d,
                                            const std::vector<std::string>& names) {
  std::map<std::string, int64_t> m;
  for (const std::string& n : names) {
    auto s = GetDaemonStats(d.InstanceAddress(n), n.rfind("decode", 0) == 0);
    m[n] = s.ok() ? s->free_blocks : -1;
  }
  return m;
}

std::vector<std::string> WaitPoolsBack(const Deployment& d,
                                       const std::map<std::string, int64_t>& start,
                                       const std::vector<std::string>& names, int timeout_s) {
  const auto until = Clock::now() + std::chrono::seconds(timeout_s);
  std::vector<std::string> bad;
  for (const std::string& n : names) {
    int64_t now = -1;
    while (true) {
      auto s = GetDaemonStats(d.InstanceAddress(n), n.rfind("decode", 0) == 0);
      now = s.ok() ? s->free_blocks : -1;
      if (now == start.at(n) || Clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (now != start.at(n)) {
      bad.push_back(n + ": now " + std::to_string(now) + ", start " + std::to_string(start.at(n)));
    }
  }
  return bad;
}

std::string ScrapeMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
    }
  }
  close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

double MetricSum(const std::string& page, const std::string& family,
                 const std::string& label_filter) {
  double sum = 0;
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind(family, 0) != 0) continue;
    const char next = line.size() > family.size() ? line[family.size()] : ' ';
    if (next != '{' && next != ' ') continue;  // another family sharing the prefix
    if (!label_filter.empty() && line.find(label_filter) == std::string::npos) continue;
    const size_t sp = line.rfind(' ');
    sum += std::atof(line.c_str() + sp + 1);
  }
  return sum;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int64_t RssKiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

// ---- FaultProxy ----------------------------------------------------------------------------

FaultProxy::FaultProxy(std::string listen_host, int listen_port, std::string target_host,
                       int target_port)
    : listen_host_(std::move(listen_host)),
      target_host_(std::move(target_host)),
      listen_port_(listen_port),
      target_port_(target_port) {}

FaultProxy::~FaultProxy() {
  stop_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (accept_.joinable()) accept_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  std::lock_guard<std::mutex> l(mu_);
  for (std::thread& t : pumps_) t.join();
}

Status FaultProxy::Start() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(listen_port_));
  inet_pton(AF_INET, listen_host_.c_str(), &a.sin_addr);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(listen_fd_, 64) != 0) {
    return Unavailable("proxy cannot listen on " + listen_host_ + ":" +
                       std::to_string(listen_port_));
  }
  accept_ = std::thread([this] { AcceptLoop(); });
  return OkStatus();
}

void FaultProxy::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const int in = accept(listen_fd_, nullptr, nullptr);
    if (in < 0) continue;
    const int out = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in t{};
    t.sin_family = AF_INET;
    t.sin_port = htons(static_cast<uint16_t>(target_port_));
    inet_pton(AF_INET, target_host_.c_str(), &t.sin_addr);
    if (connect(out, reinterpret_cast<sockaddr*>(&t), sizeof t) != 0) {
      close(in);
      close(out);
      continue;
    }
    ++conns_;
    auto dead = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard<std::mutex> l(mu_);
    pumps_.emplace_back([this, in, out, dead] { Pump(in, out, dead); });
    pumps_.emplace_back([this, in, out, dead] {
      Pump(out, in, dead);
      // The second pump of a pair closes both ends once both are done.
      while (!dead->load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      close(in);
      close(out);
    });
  }
}

void FaultProxy::Pump(int from, int to, std::shared_ptr<std::atomic<bool>> dead) {
  const uint64_t gen = reset_gen_.load();
  char buf[65536];
  while (!stop_ && !dead->load() && reset_gen_.load() == gen) {
    if (blackhole_) {  // bytes stay in the kernel buffers: the link is cut, nothing is lost yet
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    pollfd p{from, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0) break;
    ssize_t off = 0;
    while (off < n) {
      const ssize_t w = send(to, buf + off, n - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += w;
    }
    if (off < n) break;
    bytes_ += n;
  }
  // Either side's end (or a Reset) ends the pair: shut both sockets so the peers see it.
  shutdown(from, SHUT_RDWR);
  shutdown(to, SHUT_RDWR);
  dead->store(true);
}

void FaultProxy::Reset() { ++reset_gen_; }

}  // namespace pd::e2e
