// Helpers shared by pd-prefill and pd-decode: command line, config, runner, transfer engine,
// gRPC status conversion and the server's run/stop loop.
#pragma once

#include <grpcpp/grpcpp.h>

#include "pdserve.pb.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/deploy_config.h"
#include "common/status.h"
#include "kvtransfer/device_copier.h"
#include "kvtransfer/transfer_engine.h"
#include "model/runner.h"
#include "serving/engine.h"
#include "serving/request_check.h"

namespace pd::serving {

struct DaemonMetrics;  // daemon_metrics.h

// Everything a daemon owns, in construction order.
struct Daemon {
  // Stops the metrics server and the engine first (a scrape reads the engine and the transfer
  // engine; the engine's observer writes the metrics), then destroys the members in reverse.
  ~Daemon();

  InstanceConfig inst;
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<kvtransfer::TransferEngine> transfer;
  uint64_t incarnation = 0;  // random per process start
  uint64_t compat_hash = 0;  // KvLayout::CompatHash() mixed with ModelConfigHash()
  std::string model_name;
  // Host mirror of a GPU KV arena (same size and offsets), registered with the transfer engine
  // in place of GPU memory: prefill copies each layer's blocks GPU -> mirror before posting,
  // decode copies arrived blocks mirror -> GPU before admitting. Only with
  // `transport.gpu_kv: mirror`; nullptr otherwise (host arenas, and GPU arenas registered
  // directly: MemoryKind::kCuda, see GpuKvDirect).
  void* kv_mirror = nullptr;
  bool kv_mirror_shared = false;  // kv_mirror from AllocateShareableHostMemory (local transport)
  bool kv_direct = false;         // the GPU arena itself is registered with the transfer engine
  // Prometheus metrics (daemon_metrics.h); set by SetupDaemon, nullptr for MakeDaemon alone.
  std::shared_ptr<DaemonMetrics> metrics;
};

// Test hooks of MakeDaemon.
struct DaemonOptions {
  // The transfer engine's DeviceCopier for GPU arenas (null: the CUDA copier of the arena's
  // device). CI tests pass a kvtransfer::FakeDeviceCopier with a runner whose host "GPU" arena
  // stands in for device memory.
  std::shared_ptr<kvtransfer::DeviceCopier> device_copier;
};

// Whether a GPU KV arena is registered with the transfer engine directly (true) or staged
// through a host mirror (false), for `transport.gpu_kv` (auto | direct | mirror): auto = direct,
// whatever the transport (tcp and rdma stage GPU arenas through pinned bounce buffers, local
// uses CUDA IPC); mirror = the host mirror.
StatusOr<bool> GpuKvDirect(const std::string& gpu_kv);

// Copies `blocks` of every layer between the GPU arena and its host mirror (no-op without one).
Status StageBlocks(Daemon* d, const std::vector<int32_t>& blocks, int first_layer, int last_layer,
                   bool to_host);

// The limits the request checks (serving/request_check.h) apply on this daemon: the model's
// vocabulary, the engine's max_model_len (also the max_tokens cap) and KV block size.
RequestLimits DaemonRequestLimits(const Daemon& d);

// Stable hash of the model fields that change the KV contents or the sampled tokens.
uint64_t ModelConfigHash(const ModelConfig& c);

// Parses `--config F [--instance NAME] [--fake-runner] [--log-level L]`, loads the instance of
// `role` (default: the first of that role), creates the runner (FakeRunner with --fake-runner:
// scheduler/transport checks without a model backend), the engine and the transfer engine
// (arena registered, started). Installs the SIGINT/SIGTERM handler first. Errors name the
// flag / config field.
StatusOr<std::unique_ptr<Daemon>> SetupDaemon(int argc, char** argv, InstanceRole role);

// Builds a daemon around an existing runner: incarnation, compat hash, engine (not started),
// transfer engine (arena registered, started).
StatusOr<std::unique_ptr<Daemon>> MakeDaemon(const InstanceConfig& inst,
                                             std::unique_ptr<ModelRunner> runner,
                                             const DaemonOptions& options = {});

// RunnerOptions / EngineOptions of an instance.
RunnerOptions MakeRunnerOptions(const InstanceConfig& inst, const ModelConfig& model);
EngineOptions MakeEngineOptions(const InstanceConfig& inst);

grpc::Status ToGrpc(const Status& s);

// Fills the StatsResponse fields both daemons report from the engine and the daemon (role,
// queue, blocks, prefix counters, incarnation/compat hash); `awaiting_kv` is the role's own
// count of requests waiting on a KV transfer.
void FillStats(Daemon* d, const char* role, int64_t awaiting_kv, ::pdserve::v1::StatsResponse* resp);
// The earlier of the call's deadline and now + ms, on the steady clock.
std::chrono::steady_clock::time_point CallDeadline(const grpc::ServerContext* ctx, int ms);
// "<what> mismatch: mine <a>, peer's <b>" as FAILED_PRECONDITION, or OK when equal or theirs == 0.
Status CheckMatch(const char* what, uint64_t mine, uint64_t theirs);

// Starts a gRPC server on inst.Address() with `services`, blocks until SIGINT/SIGTERM, then
// shuts down (1 s grace). Returns the process exit code.
int RunGrpcServer(const InstanceConfig& inst, const std::vector<grpc::Service*>& services);

}  // namespace pd::serving
