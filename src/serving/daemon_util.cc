#include <sys/mman.h>

#include "serving/daemon_util.h"

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include <grpcpp/health_check_service_interface.h>

#include "common/grpc_tls.h"
#include "common/logging.h"
#include "pdserve.grpc.pb.h"
#include "serving/daemon_metrics.h"
#include "serving/fake_runner.h"

namespace pd::serving {

Daemon::~Daemon() {
  if (metrics && metrics->server) metrics->server->Stop();
  if (engine) engine->Stop();
  if (kv_mirror == nullptr) return;
  transfer.reset();  // registered the mirror: gone before the mirror is unmapped
  if (kv_mirror_shared) kvtransfer::FreeShareableHostMemory(kv_mirror);
  else munmap(kv_mirror, runner->kv_arena().bytes);
}

namespace {
void Mix(uint64_t* h, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    *h ^= (v >> (8 * i)) & 0xff;
    *h *= 1099511628211ull;
  }
}
uint64_t DoubleBits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof(u));
  return u;
}
}  // namespace

uint64_t ModelConfigHash(const ModelConfig& c) {
  uint64_t h = 1469598103934665603ull;
  for (char ch : c.architecture) Mix(&h, static_cast<uint64_t>(ch));
  for (int v : {c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads,
                c.num_kv_heads, c.head_dim, c.sliding_window}) {
    Mix(&h, static_cast<uint64_t>(v));
  }
  Mix(&h, DoubleBits(c.rms_norm_eps));
  Mix(&h, DoubleBits(c.rope_theta));
  Mix(&h, (c.tie_word_embeddings ? 1 : 0) | (c.qkv_bias ? 2 : 0) | (c.o_bias ? 4 : 0) |
              (c.mlp_bias ? 8 : 0) | (c.qk_norm ? 16 : 0));
  return h;
}

RequestLimits DaemonRequestLimits(const Daemon& d) {
  RequestLimits l;
  l.vocab_size = d.runner->config().vocab_size;
  l.max_model_len = d.engine->max_model_len();
  l.max_tokens_limit = 0;
  l.block_size = d.engine->block_size();
  return l;
}

RunnerOptions MakeRunnerOptions(const InstanceConfig& inst, const ModelConfig& model) {
  RunnerOptions o;
  o.backend = BackendName(inst.backend);
  o.model_dir = inst.model;
  o.block_size = inst.kv.block_size;
  o.num_kv_blocks = inst.kv.blocks;
  o.kv_memory_fraction = inst.kv.memory_fraction;
  o.kv_memory_mb = static_cast<size_t>(inst.kv.memory_mb);
  o.kv_dtype = model.dtype;
  if (inst.kv.dtype != "auto") (void)ParseDType(inst.kv.dtype, &o.kv_dtype);
  o.num_threads = inst.cpu_threads;
  o.gpu_id = inst.gpu;
  o.max_batch_tokens = inst.max_batch_tokens;
  o.max_seqs = inst.max_seqs;
  return o;
}

EngineOptions MakeEngineOptions(const InstanceConfig& inst) {
  EngineOptions e;
  e.max_batch_tokens = inst.max_batch_tokens;
  e.max_seqs = inst.max_seqs;
  e.prefill_chunk_tokens = inst.prefill_chunk_tokens;
  e.max_model_len = inst.max_model_len;
  e.prefix_cache = inst.kv.prefix_cache;
  e.max_queue = inst.max_queue;
  if (inst.role == InstanceRole::kDecode) {  // only decode hands out leases to remote writers
    e.lease_fence_ms = inst.lease_fence_ms > 0
                           ? inst.lease_fence_ms
                           : int64_t{inst.timeouts.prefill_ms} + inst.timeouts.transfer_ms + 1000;
  }
  return e;
}

void FillStats(Daemon* d, const char* role, int64_t awaiting_kv, ::pdserve::v1::StatsResponse* resp) {
  const EngineStats s = d->engine->Stats();
  resp->set_waiting(s.waiting);
  resp->set_running(s.running);
  resp->set_total_blocks(s.blocks.total_blocks);
  resp->set_free_blocks(s.blocks.free_blocks + s.blocks.cached_blocks);
  resp->set_used_blocks(s.blocks.in_use_blocks);
  resp->set_cached_blocks(s.blocks.cached_blocks);
  resp->set_incarnation(d->incarnation);
  resp->set_compat_hash(d->compat_hash);
  resp->set_leases(s.leases);
  resp->set_awaiting_kv(awaiting_kv);
  resp->set_prefix_hit_tokens(s.blocks.prefix_hit_tokens);
  resp->set_prefix_query_tokens(s.blocks.prefix_query_tokens);
  resp->set_preemptions(s.preemptions);
  resp->set_steps(s.steps);
  resp->set_model(d->model_name);
  resp->set_role(role);
  resp->set_block_size(d->engine->block_size());
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

std::chrono::steady_clock::time_point CallDeadline(const grpc::ServerContext* ctx, int ms) {
  const auto now = std::chrono::steady_clock::now();
  auto left = std::chrono::milliseconds(ms);
  const auto dl = ctx->deadline();
  if (dl != std::chrono::system_clock::time_point::max()) {
    const auto call_left = std::chrono::duration_cast<std::chrono::milliseconds>(
        dl - std::chrono::system_clock::now());
    left = std::min(left, std::max(call_left, std::chrono::milliseconds(0)));
  }
  return now + left;
}

Status CheckMatch(const char* what, uint64_t mine, uint64_t theirs) {
  if (theirs == 0 || theirs == mine) return OkStatus();
  return FailedPrecondition(std::string(what) + " mismatch: this instance has " +
                            std::to_string(mine) + ", the request carries " +
                            std::to_string(theirs));
}

namespace {

// SIGINT/SIGTERM -> one byte on a pipe that RunGrpcServer's watcher thread reads. A handler
// (not sigwait) because libraries start threads before main (e.g. OpenBLAS) whose signal mask
// we cannot set, and the default action would kill the process there.
int g_signal_pipe[2] = {-1, -1};

void OnTerminationSignal(int sig) {
  const char c = static_cast<char>(sig);
  ssize_t n = write(g_signal_pipe[1], &c, 1);
  (void)n;
}

void InstallTerminationHandler() {
  if (g_signal_pipe[0] >= 0) return;
  if (pipe(g_signal_pipe) != 0) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnTerminationSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct Flags {
  std::string config, instance, log_level;
  bool fake_runner = false;
};

StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) -> Status {
      if (i + 1 >= argc) return InvalidArgument(a + ": missing value");
      *out = argv[++i];
      return OkStatus();
    };
    Status st;
    if (a == "--config") st = value(&f.config);
    else if (a == "--instance") st = value(&f.instance);
    else if (a == "--log-level") st = value(&f.log_level);
    else if (a == "--fake-runner") f.fake_runner = true;
    else return InvalidArgument("unknown flag '" + a +
                                "' (usage: --config F [--instance NAME] [--fake-runner])");
    if (!st.ok()) return st;
  }
  if (f.config.empty()) return InvalidArgument("--config is required");
  return f;
}

StatusOr<std::unique_ptr<ModelRunner>> MakeRunner(const Flags& f, const InstanceConfig& inst,
                                                  const ModelConfig& model) {
  if (!f.fake_runner) return CreateModelRunner(MakeRunnerOptions(inst, model));
  FakeRunnerOptions o;
  o.vocab_size = model.vocab_size;
  o.num_layers = model.num_layers;
  o.max_position_embeddings = model.max_position_embeddings;
  o.block_size = inst.kv.block_size;
  o.num_blocks = inst.kv.blocks > 0 ? inst.kv.blocks : 1024;
  o.max_batch_tokens = inst.max_batch_tokens;
  o.eos_token_ids = model.eos_token_ids;
  return std::unique_ptr<ModelRunner>(new FakeRunner(o));
}

// The transfer-engine peer secret from `path` (trailing whitespace/newlines dropped). Errors
// name the file, never its content.
StatusOr<std::string> ReadTransferSecret(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return InvalidArgument("transport.auth_secret_file: cannot read '" + path + "'");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (s.size() < 16) {
    return InvalidArgument("transport.auth_secret_file '" + path +
                           "': secret shorter than 16 bytes (use e.g. `openssl rand -hex 32`)");
  }
  return s;
}

// Registers the runner's KV arena with the transfer engine: host arenas, and GPU arenas unless
// `transport.gpu_kv: mirror` (GpuKvDirect), as they are; mirrored GPU arenas through a host copy.
Status RegisterKvArena(Daemon* d) {
  const KvArena& a = d->runner->kv_arena();
  kvtransfer::ArenaSpec spec;
  spec.base = a.base;
  spec.bytes = a.bytes;
  spec.kind = kvtransfer::MemoryKind::kHost;
  spec.device = 0;
  if (a.on_gpu) {
    PD_ASSIGN_OR_RETURN(bool direct,
                        GpuKvDirect(d->inst.transport.gpu_kv));
    if (direct) {
      spec.kind = kvtransfer::MemoryKind::kCuda;
      spec.device = a.gpu_id < 0 ? 0 : a.gpu_id;
      d->kv_direct = true;
      PD_LOG_INFO("{}: GPU KV arena ({} MiB, GPU {}) registered with the {} transport directly",
                  d->inst.name, a.bytes >> 20, spec.device, d->inst.transport.kind);
    } else {
      // The local transport maps host arenas of its peer through memfds: shareable memory.
      void* m = nullptr;
      if (d->inst.transport.kind == "local") {
        m = kvtransfer::AllocateShareableHostMemory(a.bytes);
        d->kv_mirror_shared = m != nullptr;
      } else {
        m = mmap(nullptr, a.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) m = nullptr;
      }
      if (m == nullptr) return ResourceExhausted("cannot map a host mirror of the GPU KV arena");
      d->kv_mirror = m;
      spec.base = m;
      PD_LOG_INFO("{}: GPU KV arena staged through a {} MiB host mirror ({} transport)",
                  d->inst.name, a.bytes >> 20, d->inst.transport.kind);
    }
  }
  StatusOr<kvtransfer::ArenaId> id = d->transfer->RegisterArena(spec);
  return id.ok() ? OkStatus() : id.status().WithContext("register KV arena");
}

Status StartTransfer(Daemon* d, const DaemonOptions& options) {
  kvtransfer::EngineOptions o;
  if (!d->inst.transport.auth_secret_file.empty()) {
    PD_ASSIGN_OR_RETURN(o.auth_secret, ReadTransferSecret(d->inst.transport.auth_secret_file));
    PD_LOG_INFO("{}: transfer peers must authenticate (secret from {})", d->inst.name,
                d->inst.transport.auth_secret_file);
  }
  o.name = d->inst.name;
  o.transport = d->inst.transport.kind;
  o.compat_hash = d->compat_hash;
  o.listen_host = d->inst.transport.host.empty() ? d->inst.host : d->inst.transport.host;
  o.listen_port = d->inst.transport.port;
  o.advertise_addrs = d->inst.transport.advertise;
  o.num_paths = d->inst.transport.paths;
  o.chunk_bytes = static_cast<size_t>(d->inst.transport.chunk_bytes);
  o.default_deadline = std::chrono::milliseconds(d->inst.timeouts.transfer_ms);
  o.device_copier = options.device_copier;
  d->transfer = std::make_unique<kvtransfer::TransferEngine>(o);
  PD_RETURN_IF_ERROR(RegisterKvArena(d));
  Status st = d->transfer->Start();
  return st.ok() ? st : st.WithContext("start transfer engine");
}

}  // namespace

StatusOr<bool> GpuKvDirect(const std::string& gpu_kv) {
  if (gpu_kv == "mirror") return false;
  if (gpu_kv != "direct" && gpu_kv != "auto") {
    return InvalidArgument("transport.gpu_kv: '" + gpu_kv + "' is not auto | direct | mirror");
  }
  // tcp and rdma stage GPU arenas through pinned bounce buffers, local opens them by CUDA IPC:
  // every transport the engine builds carries them, so auto is direct for all of them.
  return true;
}

Status StageBlocks(Daemon* d, const std::vector<int32_t>& blocks, int first_layer, int last_layer,
                   bool to_host) {
  if (d->kv_mirror == nullptr || blocks.empty()) return OkStatus();
  const KvLayout& k = d->runner->kv_arena().layout;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (int l = first_layer; l <= last_layer; ++l) {
    for (int32_t b : blocks) {
      const size_t off = k.block_offset(l, b);
      if (!ranges.empty() && ranges.back().first + ranges.back().second == off) {
        ranges.back().second += k.block_layer_bytes();  // coalesce adjacent blocks
      } else {
        ranges.emplace_back(off, k.block_layer_bytes());
      }
    }
  }
  return d->runner->CopyKv(d->kv_mirror, ranges, to_host);
}

StatusOr<std::unique_ptr<Daemon>> SetupDaemon(int argc, char** argv, InstanceRole role) {
  InstallTerminationHandler();
  StatusOr<Flags> f = ParseFlags(argc, argv);
  if (!f.ok()) return f.status();
  StatusOr<DeployConfig> cfg = LoadDeployConfig(f->config);
  if (!cfg.ok()) return cfg.status();
  auto d = std::make_unique<Daemon>();
  const auto& list = role == InstanceRole::kDecode ? cfg->decode : cfg->prefill;
  if (f->instance.empty()) {
    if (list.empty()) return NotFound(std::string("config has no ") + RoleName(role) + " instance");
    d->inst = list.front();
  } else {
    StatusOr<InstanceConfig> inst = cfg->GetInstance(f->instance);
    if (!inst.ok()) return inst.status();
    d->inst = *inst;
  }
  if (d->inst.role != role) {
    return InvalidArgument("--instance " + d->inst.name + " is a " + RoleName(d->inst.role) +
                           " instance, not " + RoleName(role));
  }
  SetLogLevel(f->log_level.empty() ? d->inst.log_level : f->log_level);
  StatusOr<ModelConfig> model = LoadModelConfig(d->inst.model);
  if (!model.ok()) return model.status().WithContext(d->inst.name + ".model");
  StatusOr<std::unique_ptr<ModelRunner>> runner = MakeRunner(*f, d->inst, *model);
  if (!runner.ok()) return runner.status().WithContext(d->inst.name + " runner");
  StatusOr<std::unique_ptr<Daemon>> made = MakeDaemon(d->inst, std::move(*runner));
  if (!made.ok()) return made;
  PD_RETURN_IF_ERROR(StartDaemonMetrics(made->get()));
  return made;
}

StatusOr<std::unique_ptr<Daemon>> MakeDaemon(const InstanceConfig& inst,
                                             std::unique_ptr<ModelRunner> runner,
                                             const DaemonOptions& options) {
  auto d = std::make_unique<Daemon>();
  d->inst = inst;
  d->model_name = inst.model_name;
  d->runner = std::move(runner);
  d->incarnation = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  d->incarnation |= 1;
  d->compat_hash = d->runner->kv_arena().layout.CompatHash() ^ ModelConfigHash(d->runner->config());
  d->engine = std::make_unique<Engine>(d->runner.get(), MakeEngineOptions(d->inst));
  Status st = StartTransfer(d.get(), options);
  if (!st.ok()) return st.WithContext(d->inst.name);
  PD_LOG_INFO("{}: {} backend, {} KV blocks of {} tokens, incarnation {:x}, compat {:x}",
              d->inst.name, d->runner->backend_name(), d->runner->kv_arena().layout.num_blocks,
              d->runner->kv_arena().layout.block_size, d->incarnation, d->compat_hash);
  return d;
}

int RunGrpcServer(const InstanceConfig& inst, const std::vector<grpc::Service*>& services) {
  InstallTerminationHandler();
  // grpc.health.v1.Health for Kubernetes gRPC probes: "" and the role's service are SERVING
  // while the server runs (the model is loaded before this point); Shutdown flips them.
  grpc::EnableDefaultHealthCheckService(true);
  // Internal port: mTLS (client certificates required and verified) when inst.tls is set.
  StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      InternalServerCredentials(inst.tls, inst.name + ".tls");
  if (!creds.ok()) {
    PD_LOG_ERROR("{}: {}", inst.name, creds.status().ToString());
    return 1;
  }
  grpc::ServerBuilder b;
  b.AddListeningPort(inst.Address(), *creds);
  b.SetMaxReceiveMessageSize(256 << 20);
  for (grpc::Service* s : services) b.RegisterService(s);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    PD_LOG_ERROR("{}: cannot listen on {}", inst.name, inst.Address());
    return 1;
  }
  if (grpc::HealthCheckServiceInterface* h = server->GetHealthCheckService()) {
    h->SetServingStatus(inst.role == InstanceRole::kDecode
                            ? ::pdserve::v1::DecodeService::service_full_name()
                            : ::pdserve::v1::PrefillService::service_full_name(),
                        true);
  }
  PD_LOG_INFO("{}: serving on {}{}", inst.name, inst.Address(),
              inst.tls.enabled() ? " (mutual TLS)" : "");
  std::thread sig([&] {
    char c = 0;
    while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    PD_LOG_INFO("{}: signal {}, shutting down", inst.name, static_cast<int>(c));
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  });
  server->Wait();
  sig.join();
  return 0;
}

}  // namespace pd::serving
