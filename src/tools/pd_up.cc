// pd-up: launches every process of a deployment YAML on this host (pd-decode, pd-prefill,
// pd-router from the same bin dir), waits until the router answers Health with every instance
// up, prints the endpoint, supervises, and stops everything on SIGINT/SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/deploy_config.h"
#include "tools/grpc_util.h"

namespace {

constexpr char kUsage[] = R"(usage: pd-up CONFIG.yaml [options]

Starts every daemon of the deployment on this host, waits for readiness, prints the endpoint and
supervises. Ctrl-C / SIGTERM stops every process (SIGTERM, then SIGKILL after --grace-s).

  --bin-dir DIR        where pd-decode, pd-prefill, pd-router live   [directory of pd-up]
  --log-dir DIR        write each process's output to DIR/NAME.log   [inherit the terminal]
  --ready-timeout-s N  give up (and stop all) if not ready in time   [120]
  --grace-s N          SIGTERM -> SIGKILL delay when stopping        [5]
  --exit-on-failure    stop everything when any process dies         [report and keep going]
  --restart            restart a process that dies (after 1 s)       [off]

Output (stdout, one line each): "started NAME pid PID", "ready ENDPOINT", "exited NAME pid PID
STATUS", "restarted NAME pid PID", "stopped". Exit status 0 after a clean stop, 1 on failure,
2 on bad flags or config.
)";

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Child {
  std::string name;
  std::string binary;
  std::vector<std::string> args;
  pid_t pid = -1;
  bool running = false;
};

std::string SelfDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : p.parent_path().string();
}

pid_t Spawn(const Child& c, const std::string& log_dir) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: die with pd-up even if it is SIGKILLed; own output file if asked.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole process group; pd-up orders the stop
  if (!log_dir.empty()) {
    const std::string f = log_dir + "/" + c.name + ".log";
    const int fd = open(f.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(c.binary.c_str()));
  for (const std::string& a : c.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(c.binary.c_str(), argv.data());
  std::fprintf(stderr, "pd-up: cannot exec %s: %s\n", c.binary.c_str(), std::strerror(errno));
  _exit(127);
}

std::string DescribeStatus(int st) {
  if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return std::string("signal ") + strsignal(WTERMSIG(st));
  return "status " + std::to_string(st);
}

// Reaps exited children; returns how many of them died.
int Reap(std::vector<Child>& kids) {
  int died = 0;
  int st = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (Child& c : kids) {
      if (c.pid != pid || !c.running) continue;
      c.running = false;
      ++died;
      std::printf("exited %s pid %d %s\n", c.name.c_str(), pid, DescribeStatus(st).c_str());
      std::fflush(stdout);
    }
  }
  return died;
}

void StopAll(std::vector<Child>& kids, int grace_s) {
  for (auto it = kids.rbegin(); it != kids.rend(); ++it) {  // router first
    if (it->running) kill(it->pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_s);
  while (std::chrono::steady_clock::now() < deadline) {
    int st;
    for (Child& c : kids) {
      if (c.running && waitpid(c.pid, &st, WNOHANG) == c.pid) c.running = false;
    }
    bool any = false;
    for (const Child& c : kids) any = any || c.running;
    if (!any) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (Child& c : kids) {
    if (!c.running) continue;
    std::fprintf(stderr, "pd-up: %s did not stop in %d s, killing it\n", c.name.c_str(), grace_s);
    kill(c.pid, SIGKILL);
    int st;
    waitpid(c.pid, &st, 0);
    c.running = false;
  }
}

struct Options {
  std::string config, bin_dir, log_dir;
  int ready_timeout_s = 120, grace_s = 5;
  bool exit_on_failure = false, restart = false;
};

int ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--bin-dir") {
      o->bin_dir = next();
    } else if (a == "--log-dir") {
      o->log_dir = next();
    } else if (a == "--ready-timeout-s") {
      o->ready_timeout_s = std::atoi(next().c_str());
    } else if (a == "--grace-s") {
      o->grace_s = std::atoi(next().c_str());
    } else if (a == "--exit-on-failure") {
      o->exit_on_failure = true;
    } else if (a == "--restart") {
      o->restart = true;
    } else if (!a.empty() && a[0] != '-' && o->config.empty()) {
      o->config = a;
    } else {
      std::fprintf(stderr, "pd-up: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (o->config.empty()) {
    std::fprintf(stderr, "pd-up: missing CONFIG.yaml\n%s", kUsage);
    return 2;
  }
  if (o->bin_dir.empty()) o->bin_dir = SelfDir();
  return 0;
}

std::vector<Child> PlanChildren(const pd::DeployConfig& cfg, const Options& o) {
  std::vector<Child> kids;
  auto bin = [&](const char* n) {
    for (const std::string sub : {"", "/../prefill", "/../decode", "/../router"}) {
      const std::string p = o.bin_dir + sub + "/" + n;
      if (access(p.c_str(), X_OK) == 0) return p;
    }
    return o.bin_dir + "/" + n;
  };
  for (const auto& d : cfg.decode) {
    kids.push_back({d.name, bin("pd-decode"), {"--config", o.config, "--instance", d.name}});
  }
  for (const auto& p : cfg.prefill) {
    kids.push_back({p.name, bin("pd-prefill"), {"--config", o.config, "--instance", p.name}});
  }
  kids.push_back({"router", bin("pd-router"), {"--config", o.config}});
  return kids;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = ParseArgs(argc, argv, &o)) return rc;
  auto cfg = pd::LoadDeployConfig(o.config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "pd-up: %s\n", cfg.status().ToString().c_str());
    return 2;
  }
  if (!o.log_dir.empty()) std::filesystem::create_directories(o.log_dir);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);

  std::vector<Child> kids = PlanChildren(*cfg, o);
  for (Child& c : kids) {
    c.pid = Spawn(c, o.log_dir);
    c.running = c.pid > 0;
    std::printf("started %s pid %d\n", c.name.c_str(), c.pid);
  }
  std::fflush(stdout);

  const std::string host = cfg->router.host == "0.0.0.0" ? "127.0.0.1" : cfg->router.host;
  const std::string endpoint = host + ":" + std::to_string(cfg->router.port);
  const auto ready_deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(o.ready_timeout_s);
  bool ready = false;
  std::string why;
  while (!g_stop && !ready) {
    if (Reap(kids) > 0) {
      std::fprintf(stderr, "pd-up: a process died during startup; stopping the deployment\n");
      StopAll(kids, o.grace_s);
      return 1;
    }
    if (std::chrono::steady_clock::now() > ready_deadline) {
      std::fprintf(stderr, "pd-up: not ready after %d s (%s); stopping\n", o.ready_timeout_s,
                   why.c_str());
      StopAll(kids, o.grace_s);
      return 1;
    }
    ready = pd::client::ProbeReady(endpoint, 1000, &why);
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (ready) {
    std::printf("ready %s\n", endpoint.c_str());
    std::fflush(stdout);
  }

  int rc = 0;
  while (!g_stop) {
    if (Reap(kids) > 0) {
      if (o.exit_on_failure) {
        rc = 1;
        break;
      }
      if (o.restart) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        for (Child& c : kids) {
          if (c.running) continue;
          c.pid = Spawn(c, o.log_dir);
          c.running = c.pid > 0;
          std::printf("restarted %s pid %d\n", c.name.c_str(), c.pid);
          std::fflush(stdout);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  StopAll(kids, o.grace_s);
  std::printf("stopped\n");
  std::fflush(stdout);
  return rc;
}
