// DeployConfig: one YAML file describes a whole xPyD deployment on one or more hosts — the router,
// P prefill replicas and D decode replicas. Plain structs with defaults; yaml-cpp appears only in
// deploy_config.cc (library pd_config). Every daemon loads the same file and picks its own entry:
//   pd-router  --config F
//   pd-prefill --config F --instance prefill-0
//   pd-decode  --config F --instance decode-0
//
// YAML shape (full reference with every field: docs/deployment.md):
//   version: 1
//   name: local
//   defaults:            # instance fields applied to every prefill/decode entry (entries override)
//     model: build/models/tiny
//     backend: cpu
//   router: {port: 8000, disagg_threshold_tokens: 64}
//   prefill:
//     - {name: prefill-0, port: 8101}
//   decode:
//     - {name: decode, port: 8201, replicas: 2}   # -> decode-0, decode-1 on ports 8201, 8202
//
// Unknown keys are errors naming the key path (typos must never be silently ignored).
// Relative paths (model dirs) are resolved against the working directory of the process.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd {

enum class Backend { kCpu, kCuda };
enum class InstanceRole { kPrefill, kDecode };

const char* BackendName(Backend b);    // "cpu" | "cuda"
const char* RoleName(InstanceRole r);  // "prefill" | "decode"

// KV cache pool of one daemon. Size: `blocks` if > 0, else derived from memory.
struct KvPoolConfig {
  int blocks = 0;           // number of KV blocks; 0 = derive from memory_mb / memory_fraction
  int64_t memory_mb = 512;  // cpu backend, blocks == 0: host MiB for the KV arena
  double memory_fraction = 0.85;  // cuda backend, blocks == 0: fraction of free GPU memory left
                                  // after weights that the KV arena takes (0, 1]
  std::string dtype = "auto";     // "auto" (= model dtype) | "bfloat16" | "float16" | "float32"
  int block_size = 16;            // tokens per block (same for every instance of one model)
  bool prefix_cache = true;       // reuse KV of full prompt blocks seen before (hash chain)
};

// KV transfer engine settings (src/kvtransfer) of one daemon.
struct TransportConfig {
  std::string kind = "tcp";       // "tcp" (more kinds: rdma, local, as the engine adds them)
  std::string host;               // data-plane address peers connect to; "" = instance host
  int port = 0;                   // data-plane listen port; 0 = any free port (advertised to
                                  // peers through the control plane)
  int paths = 2;                  // parallel connections per peer; chunks are sprayed over them
  int64_t chunk_bytes = 1 << 20;  // transfer chunk size in bytes
  // Hosts advertised to peers instead of `host` (path i connects to advertise[i % n], same
  // port). E.g. a proxy or a second NIC; the chaos tests put a fault-injecting proxy here.
  std::vector<std::string> advertise;
  // File holding the shared secret that authenticates transfer-engine peers (HMAC-SHA256
  // challenge-response in the handshake; docs/kvtransfer.md). Every P and D of a deployment must
  // use the same secret; "" = no peer authentication (trusted network only). A file, not an
  // inline value, so the secret stays out of the YAML/ConfigMap (mount a Kubernetes Secret).
  std::string auth_secret_file;
  // GPU KV arenas: "auto" (= "direct") registers the GPU arena with the transfer engine itself
  // (tcp and rdma: pinned bounce buffers; local: CUDA IPC device->device); "mirror" stages
  // through a full host mirror instead (the old path, kept for A/B runs).
  std::string gpu_kv = "auto";
};

// Deadlines of one daemon (every wait has one).
struct TimeoutConfig {
  int rpc_ms = 5000;        // control RPCs to peers (Reserve, Cancel, Stats, ...)
  int prefill_ms = 60000;   // one remote prefill including its KV transfer
  int transfer_ms = 30000;  // one posted transfer until its completion notification
};

// Mutual TLS of internal gRPC (router -> daemons). Off (plaintext) unless `ca`, `cert` and `key`
// are all set; a partial set is a config error. scripts/gen-test-ca.sh makes a test CA.
struct TlsConfig {
  std::string ca;           // PEM CA bundle the peer's certificate must chain to
  std::string cert;         // PEM certificate chain this process presents
  std::string key;          // PEM private key of `cert` (never logged)
  std::string server_name;  // client side: name the server's certificate must carry;
                            // "" = the host of the address dialled
  bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

// One prefill or decode daemon.
struct InstanceConfig {
  InstanceRole role = InstanceRole::kDecode;  // set by the loader from the list it is in
  std::string name;        // unique; default "<role>-<index>"; `--instance NAME` selects it.
                           // An entry with `replicas: N` (N > 1) expands to NAME-0 .. NAME-N-1
                           // with port, transport.port (if set) and gpu stepped per replica
  std::string model;       // HF model directory (config.json + *.safetensors [+ tokenizer.json])
  std::string model_name;  // served model name (ListModels, request.model); default: last
                           // path component of `model`
  Backend backend = Backend::kCpu;  // "cpu" | "cuda"
  int gpu = 0;                      // first CUDA device id (cuda backend)
  int tensor_parallel = 1;          // GPUs per instance: gpu .. gpu + tensor_parallel - 1
  int cpu_threads = 0;              // cpu backend worker threads; 0 = all cores
  std::string host = "127.0.0.1";   // gRPC listen/connect address
  int port = 0;                     // gRPC port (required, 1..65535)
  int metrics_port = 0;             // Prometheus GET /metrics on `host`; 0 = not served. With
                                    // `replicas: N` it steps per replica like `port`
  KvPoolConfig kv;
  TransportConfig transport;
  int max_batch_tokens = 2048;     // token budget of one forward (prefill chunks + decode tokens)
  int max_seqs = 64;               // max sequences in one running batch
  int prefill_chunk_tokens = 512;  // max prompt tokens of one sequence per forward (chunked)
  int max_model_len = 0;           // max prompt + output tokens; 0 = model's max positions
  int lease_ms = 10000;  // decode: reserved blocks are freed if the prefill does not commit
                         // within this time
  int lease_fence_ms = 0;  // decode: a lease that ends uncommitted (cancel, expiry, failed
                           // prefill) keeps its blocks out of the pool this long, or until its
                           // prefill's final KvReadyNotice, so a late write can never land in a
                           // reused block. 0 = timeouts.prefill_ms + timeouts.transfer_ms + 1000
  int max_queue = 256;   // queued requests (decode: waiting + reserved; prefill: in flight)
                         // beyond which new work is refused with RESOURCE_EXHAUSTED; 0 = none
  TimeoutConfig timeouts;
  TlsConfig tls;  // gRPC server: require and verify client certificates (mTLS); set it in
                  // `defaults` for every instance. The router then needs router.internal_tls
  std::string log_level = "info";  // trace | debug | info | warn | error | off

  // "host:port" for gRPC clients.
  std::string Address() const;
};

// Weights of the router's scorers; each scorer maps an instance to [0, 1], the weighted sum
// picks the instance (ties: lowest index after round-robin rotation). 0 disables a scorer.
struct ScorerWeights {
  double queue_depth = 1.0;      // fewer waiting + running requests is better
  double kv_usage = 1.0;         // lower KV-pool usage is better
  double prefix_affinity = 2.0;  // more of the prompt's leading blocks likely cached is better
  double round_robin = 0.1;      // rotates among otherwise equal instances
};

struct RouterConfig {
  std::string host = "0.0.0.0";       // public gRPC listen address
  int port = 8000;                    // public gRPC port (Inference service)
  int metrics_port = 0;               // Prometheus GET /metrics on `host`; 0 = not served
  int http_port = 0;                  // OpenAI-compatible HTTP API on `host`; 0 = not served
  ScorerWeights scorers;              // used for picking D and P
  int disagg_threshold_tokens = 256;  // uncached prompt tokens below this -> D prefills itself
                                      // (no P hop); 0 = always use a P when one is healthy
  int health_interval_ms = 500;       // Stats/Health poll period per instance
  int health_timeout_ms = 1000;       // one poll's deadline; a failed poll marks the instance down
  int prefill_retries = 1;            // failed remote prefill: retries on another P before fallback
  bool fallback_to_decode = true;     // after the retries (or with no healthy P) D prefills itself
  int max_tokens_limit = 4096;        // requests with max_tokens above this -> INVALID_ARGUMENT
  int max_request_bytes = 64 << 20;   // largest public request message gRPC accepts; bigger ->
                                      // RESOURCE_EXHAUSTED before any parsing
  int request_timeout_ms = 0;         // whole-request deadline; 0 = none (client deadline applies)
  int prefix_history_blocks = 65536;  // per-instance record of recently routed block hashes
  int max_inflight_requests = 512;    // Generate calls in progress beyond which new ones are shed
                                      // with RESOURCE_EXHAUSTED (+ trailing `retry-after-ms`);
                                      // 0 = no limit
  int retry_after_ms = 1000;          // the retry hint sent with RESOURCE_EXHAUSTED
  int decode_idle_timeout_ms = 30000; // a decode stream silent this long fails the request
                                      // (DEADLINE_EXCEEDED; the instance is marked down); 0 = off
  std::string log_level = "info";
  // Public API keys (common/api_keys.h): clients send `authorization: Bearer <key>` on every
  // Inference RPC but Health (and on the HTTP API). Both empty = no access control.
  std::vector<std::string> api_keys;  // inline keys (prefer api_key_file: configs get shared)
  std::string api_key_file;           // one key per line, '#' comments
  TlsConfig internal_tls;  // client certificate for the router's calls to daemons with `tls`
};

struct DeployConfig {
  int version = 1;               // schema version; only 1 exists
  std::string name = "pdserve";  // deployment name (logs)
  RouterConfig router;
  std::vector<InstanceConfig> prefill;  // after `replicas` expansion
  std::vector<InstanceConfig> decode;   // after `replicas` expansion

  // OK or INVALID_ARGUMENT naming the bad field, e.g. "decode[1].port: 0 is not a valid port".
  // Checks ranges, unique names and host:port pairs, that every prefill model has a decode
  // instance and that instances of one model agree on kv.block_size.
  Status Validate() const;
  // The prefill or decode instance called `name`, or nullptr.
  const InstanceConfig* FindInstance(const std::string& name) const;
  // Like FindInstance, NOT_FOUND listing the known names.
  StatusOr<InstanceConfig> GetInstance(const std::string& name) const;
  // Distinct served model names in decode order.
  std::vector<std::string> ModelNames() const;
};

// Parses YAML text (applies defaults, expands `replicas`, then Validate()). Errors are
// INVALID_ARGUMENT with the key path: "router.scorers.prefx: unknown key", "decode[0].port:
// expected an integer, got 'abc'", or the YAML syntax error with its line.
StatusOr<DeployConfig> ParseDeployConfig(const std::string& yaml_text);
// Reads and parses a file; errors are prefixed with the path. NOT_FOUND if it can't be read.
StatusOr<DeployConfig> LoadDeployConfig(const std::string& path);

}  // namespace pd
