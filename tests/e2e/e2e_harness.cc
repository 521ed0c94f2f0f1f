#include "e2e_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace pd::e2e {

namespace fs = std::filesystem;

namespace {
// PD_TEST_TIME_SCALE (default 1) stretches the deployment's leases and timeouts: the sanitizer
// stage (scripts/ci-hardening.sh) runs the same tests 2-5x slower, and a test must fail for a
// wrong answer, not because ASan made a CPU prefill outlive a 5 s lease.
int Scaled(int ms) {
  const char* env = std::getenv("PD_TEST_TIME_SCALE");
  const int scale = env != nullptr ? std::max(1, std::atoi(env)) : 1;
  return ms * scale;
}
}  // namespace

std::string BinPath(const std::string& name) {
  for (const char* sub : {"src/tools", "src/router", "src/prefill", "src/decode"}) {
    const std::string p = std::string(PD_BUILD_DIR) + "/" + sub + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return std::string(PD_BUILD_DIR) + "/src/tools/" + name;
}

int FreePort() {
  static std::set<int> handed_out;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    close(fd);
    if (port > 0 && handed_out.insert(port).second) return port;
  }
  return -1;
}

int RunCapture(const std::vector<std::string>& argv, std::string* out) {
  int p[2];
  if (pipe(p) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  close(p[1]);
  char buf[4096];
  ssize_t n;
  out->clear();
  while ((n = read(p[0], buf, sizeof buf)) > 0) out->append(buf, n);
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string TinyModelDir() {
  const std::string dir = std::string(PD_BUILD_DIR) + "/models/e2e-tiny";
  if (!fs::exists(dir + "/config.json") || !fs::exists(dir + "/model.safetensors")) {
    std::string out;
    RunCapture(
        {BinPath("pd-makemodel"), "--preset", "tiny", "--out", dir, "--seed", "1", "--quiet"},
        &out);
  }
  return dir;
}

StatusOr<std::vector<int32_t>> ReferenceGenerate(const std::string& model,
                                                 const std::vector<int32_t>& prompt,
                                                 int max_tokens) {
  std::string ids;
  for (size_t i = 0; i < prompt.size(); ++i) ids += (i ? "," : "") + std::to_string(prompt[i]);
  std::string out;
  const int rc =
      RunCapture({BinPath("pd-generate"), "--model", model, "--prompt-ids", ids, "--max-tokens",
                  std::to_string(max_tokens), "--ignore-eos", "--threads", "1"},
                 &out);
  if (rc != 0) return Internal("pd-generate exited with " + std::to_string(rc) + ": " + out);
  std::vector<int32_t> result;
  std::stringstream ss(out);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.find_first_not_of(" \n\r\t") == std::string::npos) continue;
    result.push_back(std::stoi(tok));
  }
  return result;
}

StatusOr<std::unique_ptr<Deployment>> Deployment::Start(const DeploySpec& spec, int timeout_s) {
  std::unique_ptr<Deployment> d(new Deployment());
  d->dir_ = fs::temp_directory_path() /
            ("pd-e2e-" + std::to_string(getpid()) + "-" + std::to_string(FreePort()));
  fs::create_directories(d->dir_);
  d->yaml_path_ = d->dir_ + "/deploy.yaml";
  const int router_port = FreePort();
  d->endpoint_ = "127.0.0.1:" + std::to_string(router_port);
  d->num_prefill_ = spec.num_prefill;
  d->num_decode_ = spec.num_decode;
  std::ostringstream y;
  y << "version: 1\nname: e2e\n"
    << "defaults:\n  model: " << (spec.model_dir.empty() ? TinyModelDir() : spec.model_dir)
    << "\n  backend: cpu\n  cpu_threads: 1\n"
    << "  kv: {blocks: " << spec.kv_blocks << ", block_size: 16}\n"
    << "  max_seqs: 64\n  max_batch_tokens: 1024\n  prefill_chunk_tokens: 256\n"
    << "  lease_ms: " << Scaled(spec.lease_ms) << "\n  timeouts: {rpc_ms: " << Scaled(spec.rpc_ms)
    << ", prefill_ms: " << Scaled(spec.prefill_ms) << ", transfer_ms: " << Scaled(spec.transfer_ms)
    << "}\n"
    << spec.extra_defaults << "router:\n  host: 127.0.0.1\n  port: " << router_port
    << "\n  disagg_threshold_tokens: " << spec.disagg_threshold
    << "\n  health_interval_ms: 200\n  health_timeout_ms: 500\n  prefill_retries: "
    << spec.prefill_retries << "\n  max_tokens_limit: 512\n"
    << spec.extra_router;
  // "" or ", metrics_port: N" for an instance entry (and the router's own line).
  auto metrics = [&](const std::string& name) -> std::string {
    if (!spec.metrics) return "";
    d->metrics_ports_[name] = FreePort();
    return ", metrics_port: " + std::to_string(d->metrics_ports_[name]);
  };
  auto extra = [&](const std::string& name) -> std::string {
    auto it = spec.extra_instance.find(name);
    return it == spec.extra_instance.end() ? "" : it->second;
  };
  if (spec.metrics) {
    d->metrics_ports_["router"] = FreePort();
    y << "  metrics_port: " << d->metrics_ports_["router"] << "\n";
  }
  y << "prefill:\n";
  if (spec.num_prefill == 0) y << "  []\n";
  for (int i = 0; i < spec.num_prefill; ++i) {
    const int port = FreePort();
    const std::string name = "prefill-" + std::to_string(i);
    d->addrs_[name] = "127.0.0.1:" + std::to_string(port);
    y << "  - {name: " << name << ", port: " << port << metrics(name) << extra(name) << "}\n";
  }
  y << "decode:\n";
  for (int i = 0; i < spec.num_decode; ++i) {
    const int port = FreePort();
    const std::string name = "decode-" + std::to_string(i);
    d->addrs_[name] = "127.0.0.1:" + std::to_string(port);
    y << "  - {name: " << name << ", port: " << port << metrics(name) << extra(name) << "}\n";
  }
  std::ofstream(d->yaml_path_) << y.str();

  int p[2];
  if (pipe(p) != 0) return Internal("pipe failed");
  d->up_pid_ = fork();
  if (d->up_pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    const std::string up = BinPath("pd-up");
    const std::string logs = d->dir_ + "/logs";
    std::vector<std::string> args = {up, d->yaml_path_, "--log-dir", logs, "--grace-s", "3"};
    if (!spec.bin_dir.empty()) args.insert(args.end(), {"--bin-dir", spec.bin_dir});
    if (spec.restart) args.push_back("--restart");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(up.c_str(), argv.data());
    _exit(127);
  }
  close(p[1]);
  d->up_stdout_ = p[0];
  PD_RETURN_IF_ERROR(d->WaitReady(timeout_s));
  return d;
}

int Deployment::metrics_port(const std::string& name) const {
  auto it = metrics_ports_.find(name);
  return it == metrics_ports_.end() ? 0 : it->second;
}

Status Deployment::WaitReady(int timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string buf;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{up_stdout_, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    char tmp[1024];
    const ssize_t n = read(up_stdout_, tmp, sizeof tmp);
    if (n <= 0) return Internal("pd-up exited before ready; logs in " + dir_ + "/logs");
    buf.append(tmp, n);
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      char name[128];
      int pid;
      if (std::sscanf(line.c_str(), "started %127s pid %d", name, &pid) == 2) pids_[name] = pid;
      if (line.rfind("ready ", 0) == 0) {
        // Keep draining pd-up's stdout so it never blocks on a full pipe; track restarts.
        {
          std::lock_guard<std::mutex> l(*pids_mu_);
          *live_pids_ = pids_;
        }
        std::thread([fd = up_stdout_, mu = pids_mu_, live = live_pids_] {
          char t[1024];
          std::string pending;
          ssize_t got;
          while ((got = read(fd, t, sizeof t)) > 0) {
            pending.append(t, got);
            size_t e;
            while ((e = pending.find('\n')) != std::string::npos) {
              char nm[128];
              int np;
              if (std::sscanf(pending.substr(0, e).c_str(), "restarted %127s pid %d", nm, &np) ==
                  2) {
                std::lock_guard<std::mutex> l(*mu);
                (*live)[nm] = np;
              }
              pending.erase(0, e + 1);
            }
          }
        }).detach();
        up_stdout_ = -1;
        return OkStatus();
      }
    }
  }
  return DeadlineExceeded("deployment not ready in " + std::to_string(timeout_s) + " s; logs in " +
                          dir_ + "/logs");
}

Deployment::~Deployment() {
  if (up_pid_ > 0) {
    kill(up_pid_, SIGTERM);
    int st;
    waitpid(up_pid_, &st, 0);
  }
  if (up_stdout_ >= 0) close(up_stdout_);
  std::error_code ec;
  if (!getenv("PD_E2E_KEEP")) fs::remove_all(dir_, ec);
}

std::string Deployment::InstanceAddress(const std::string& name) const {
  auto it = addrs_.find(name);
  return it == addrs_.end() ? "" : it->second;
}

pid_t Deployment::pid(const std::string& name) const {
  std::lock_guard<std::mutex> l(*pids_mu_);
  const auto& m = live_pids_->empty() ? pids_ : *live_pids_;
  auto it = m.find(name);
  return it == m.end() ? -1 : it->second;
}

void Deployment::Signal(const std::string& name, int sig) {
  const pid_t p = pid(name);
  if (p > 0) kill(p, sig);
}

bool Deployment::WaitRestarted(const std::string& name, pid_t old_pid, int timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    const pid_t p = pid(name);
    if (p > 0 && p != old_pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void Deployment::Kill(const std::string& name) {
  const pid_t p = pid(name);
  if (p > 0) kill(p, SIGKILL);
}

std::vector<std::string> Deployment::prefill_names() const {
  std::vector<std::string> v;
  for (int i = 0; i < num_prefill_; ++i) v.push_back("prefill-" + std::to_string(i));
  return v;
}

std::vector<std::string> Deployment::decode_names() const {
  std::vector<std::string> v;
  for (int i = 0; i < num_decode_; ++i) v.push_back("decode-" + std::to_string(i));
  return v;
}

}  // namespace pd::e2e
