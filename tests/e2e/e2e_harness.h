// e2e harness: free loopback ports, the tiny model, a deployment launched through pd-up, a gRPC
// client for the router, and pd-generate as the single-process reference.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd::e2e {

// Binaries of this build (PD_BUILD_DIR/src/...).
std::string BinPath(const std::string& name);
// A loopback TCP port free right now (bound and released; distinct across calls of one process).
int FreePort();
// PD_BUILD_DIR/models/e2e-tiny, created with pd-makemodel on first use (tiny preset, seed 1).
std::string TinyModelDir();

// Runs a command, returns its exit status and stdout (stderr is inherited).
int RunCapture(const std::vector<std::string>& argv, std::string* out);
// Greedy reference: pd-generate on the same model, the generated ids.
StatusOr<std::vector<int32_t>> ReferenceGenerate(const std::string& model,
                                                 const std::vector<int32_t>& prompt,
                                                 int max_tokens);

struct DeploySpec {
  int num_prefill = 1;
  int num_decode = 1;
  int disagg_threshold = 0;  // 0: every prompt goes through P
  int kv_blocks = 256;       // per daemon
  int prefill_retries = 1;
  std::string extra_router;  // extra YAML lines under router: (indented by the caller)
  std::string bin_dir;       // pd-up --bin-dir ("" = next to pd-up)
  std::string model_dir;     // "" = TinyModelDir()
  bool restart = false;      // pd-up --restart (dead daemons are started again)
  bool metrics = false;      // give the router and every instance a free metrics_port
  // Deadlines of every instance (ms; PD_TEST_TIME_SCALE stretches them).
  int lease_ms = 5000, rpc_ms = 3000, prefill_ms = 10000, transfer_ms = 5000;
  // Extra YAML lines under `defaults:` (indented by the caller, e.g. "  max_queue: 8\n").
  std::string extra_defaults;
  // Extra flow-map fields of one instance entry, e.g. {"decode-0", ", transport: {port: 9}"}.
  std::map<std::string, std::string> extra_instance;
};

// A deployment started with pd-up from a generated YAML (fresh ports). Stops it on destruction.
class Deployment {
 public:
  // Writes the YAML, starts pd-up and waits (up to timeout_s) for "ready".
  static StatusOr<std::unique_ptr<Deployment>> Start(const DeploySpec& spec, int timeout_s = 90);
  ~Deployment();

  const std::string& endpoint() const { return endpoint_; }
  const std::string& yaml_path() const { return yaml_path_; }
  // Address (host:port) of an instance's gRPC server.
  std::string InstanceAddress(const std::string& name) const;
  pid_t pid(const std::string& name) const;
  // SIGKILLs one daemon (pd-up reports it and keeps the others running).
  void Kill(const std::string& name);
  // Sends `sig` to one daemon (SIGSTOP / SIGCONT for stalls).
  void Signal(const std::string& name, int sig);
  // With DeploySpec::restart: waits until pd-up has restarted `name` (a new pid); true if so.
  bool WaitRestarted(const std::string& name, pid_t old_pid, int timeout_s);
  // pd-up's log file of a process ("router", "prefill-0", ...).
  std::string LogPath(const std::string& name) const { return dir_ + "/logs/" + name + ".log"; }
  // pid of pd-up itself (its children are the daemons).
  pid_t up_pid() const { return up_pid_; }
  // The metrics_port of "router" or an instance (DeploySpec::metrics); 0 if none.
  int metrics_port(const std::string& name) const;
  // Names of prefill / decode instances.
  std::vector<std::string> prefill_names() const;
  std::vector<std::string> decode_names() const;

 private:
  Deployment() = default;
  Status WaitReady(int timeout_s);

  std::string dir_, yaml_path_, endpoint_;
  pid_t up_pid_ = -1;
  int up_stdout_ = -1;
  std::shared_ptr<std::mutex> pids_mu_ = std::make_shared<std::mutex>();
  std::shared_ptr<std::map<std::string, pid_t>> live_pids_ =
      std::make_shared<std::map<std::string, pid_t>>();  // updated from "restarted" lines
  std::map<std::string, pid_t> pids_;
  std::map<std::string, std::string> addrs_;
  std::map<std::string, int> metrics_ports_;
  int num_prefill_ = 0, num_decode_ = 0;
};

// A daemon's KV pool as its Stats RPC reports it.
struct DaemonStats {
  int64_t total_blocks = 0;
  int64_t free_blocks = 0;  // free + evictable cached: what a new request can use
  int waiting = 0, running = 0;
  int64_t steps = 0;
  int awaiting_kv = 0;  // decode: Decode calls waiting for KV; prefill: prefills in progress
  int leases = 0;       // decode: live reservations
};
StatusOr<DaemonStats> GetDaemonStats(const std::string& addr, bool is_decode);
// Sends bytes that are not a GenerateRequest to the router's Generate method; returns the status.
Status SendMalformedGenerate(const std::string& endpoint);

}  // namespace pd::e2e
