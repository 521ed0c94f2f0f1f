// YAML loader and validation for DeployConfig. yaml-cpp lives only in this file.
#include "common/deploy_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace pd {

const char* BackendName(Backend b) { return b == Backend::kCuda ? "cuda" : "cpu"; }
const char* RoleName(InstanceRole r) { return r == InstanceRole::kPrefill ? "prefill" : "decode"; }

std::string InstanceConfig::Address() const { return host + ":" + std::to_string(port); }

namespace {

// Reads the keys of one YAML map; remembers which keys were consumed so that Finish() can name
// the unknown ones. The first error sticks.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      status_ = InvalidArgument(Where("") + "expected a mapping");
    }
  }

  template <typename T>
  void Field(const char* key, T* out) {
    const YAML::Node n = Take(key);
    if (!n || !status_.ok()) return;
    if (!n.IsScalar()) {
      status_ = InvalidArgument(Where(key) + "expected a scalar");
      return;
    }
    try {
      *out = n.as<T>();
    } catch (const YAML::Exception&) {
      status_ =
          InvalidArgument(Where(key) + "expected " + TypeName<T>() + ", got '" + n.Scalar() + "'");
    }
  }

  void BackendField(const char* key, Backend* out) {
    std::string s = *out == Backend::kCuda ? "cuda" : "cpu";
    Field(key, &s);
    if (!status_.ok() || !Has(key)) return;
    if (s == "cpu") {
      *out = Backend::kCpu;
    } else if (s == "cuda") {
      *out = Backend::kCuda;
    } else {
      status_ = InvalidArgument(Where(key) + "'" + s + "' is not a backend (cpu | cuda)");
    }
  }

  // A list of strings; errors never echo the values (they may be secrets).
  void StringList(const char* key, std::vector<std::string>* out) {
    const YAML::Node n = Take(key);
    if (!n || !status_.ok() || n.IsNull()) return;
    if (!n.IsSequence()) {
      status_ = InvalidArgument(Where(key) + "expected a list of strings");
      return;
    }
    out->clear();
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        status_ = InvalidArgument(Where(key) + "entry " + std::to_string(i) +
                                  " is not a string");
        return;
      }
      out->push_back(n[i].Scalar());
    }
  }

  // Calls fn(child node, child path) for a nested map.
  void Sub(const char* key,
           const std::function<Status(const YAML::Node&, const std::string&)>& fn) {
    const YAML::Node n = Take(key);
    if (!n || !status_.ok()) return;
    status_ = fn(n, path_.empty() ? key : path_ + "." + key);
  }

  bool Has(const char* key) const { return node_ && node_.IsMap() && node_[key]; }

  Status Finish() {
    if (!status_.ok() || !node_ || !node_.IsMap()) return status_;
    for (const auto& kv : node_) {
      const std::string k = kv.first.Scalar();
      if (!seen_.count(k)) return InvalidArgument(Where(k) + "unknown key");
    }
    return status_;
  }

  Status status() const { return status_; }

 private:
  YAML::Node Take(const char* key) {
    seen_.insert(key);
    if (!status_.ok() || !node_ || !node_.IsMap()) return YAML::Node();
    return node_[key];
  }
  std::string Where(const std::string& key) const {
    std::string p = path_;
    if (!key.empty()) p = p.empty() ? key : p + "." + key;
    return p.empty() ? "" : p + ": ";
  }
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    return "a string";
  }

  YAML::Node node_;
  std::string path_;
  std::set<std::string> seen_;
  Status status_;
};

Status ParseKv(const YAML::Node& n, const std::string& path, KvPoolConfig* kv) {
  MapReader r(n, path);
  r.Field("blocks", &kv->blocks);
  r.Field("memory_mb", &kv->memory_mb);
  r.Field("memory_fraction", &kv->memory_fraction);
  r.Field("dtype", &kv->dtype);
  r.Field("block_size", &kv->block_size);
  r.Field("prefix_cache", &kv->prefix_cache);
  return r.Finish();
}

Status ParseTransport(const YAML::Node& n, const std::string& path, TransportConfig* t) {
  MapReader r(n, path);
  r.Field("kind", &t->kind);
  r.Field("host", &t->host);
  r.Field("port", &t->port);
  r.Field("paths", &t->paths);
  r.Field("chunk_bytes", &t->chunk_bytes);
  r.StringList("advertise", &t->advertise);
  r.Field("auth_secret_file", &t->auth_secret_file);
  r.Field("gpu_kv", &t->gpu_kv);
  return r.Finish();
}

Status ParseTimeouts(const YAML::Node& n, const std::string& path, TimeoutConfig* t) {
  MapReader r(n, path);
  r.Field("rpc_ms", &t->rpc_ms);
  r.Field("prefill_ms", &t->prefill_ms);
  r.Field("transfer_ms", &t->transfer_ms);
  return r.Finish();
}

Status ParseTls(const YAML::Node& n, const std::string& path, TlsConfig* t) {
  MapReader r(n, path);
  r.Field("ca", &t->ca);
  r.Field("cert", &t->cert);
  r.Field("key", &t->key);
  r.Field("server_name", &t->server_name);
  return r.Finish();
}

// Instance fields; `replicas` (list entries only) is returned through *replicas when non-null.
Status ParseInstance(const YAML::Node& n, const std::string& path, InstanceConfig* c,
                     int* replicas) {
  MapReader r(n, path);
  if (replicas) {
    r.Field("name", &c->name);
    r.Field("replicas", replicas);
  }
  r.Field("model", &c->model);
  r.Field("model_name", &c->model_name);
  r.BackendField("backend", &c->backend);
  r.Field("gpu", &c->gpu);
  r.Field("tensor_parallel", &c->tensor_parallel);
  r.Field("cpu_threads", &c->cpu_threads);
  r.Field("host", &c->host);
  r.Field("port", &c->port);
  r.Field("metrics_port", &c->metrics_port);
  r.Sub("kv", [c](const YAML::Node& x, const std::string& p) { return ParseKv(x, p, &c->kv); });
  r.Field("max_batch_tokens", &c->max_batch_tokens);
  r.Field("max_seqs", &c->max_seqs);
  r.Field("prefill_chunk_tokens", &c->prefill_chunk_tokens);
  r.Field("max_model_len", &c->max_model_len);
  r.Field("lease_ms", &c->lease_ms);
  r.Field("lease_fence_ms", &c->lease_fence_ms);
  r.Field("max_queue", &c->max_queue);
  r.Sub("transport", [c](const YAML::Node& x, const std::string& p) {
    return ParseTransport(x, p, &c->transport);
  });
  r.Sub("timeouts", [c](const YAML::Node& x, const std::string& p) {
    return ParseTimeouts(x, p, &c->timeouts);
  });
  r.Sub("tls", [c](const YAML::Node& x, const std::string& p) { return ParseTls(x, p, &c->tls); });
  r.Field("log_level", &c->log_level);
  return r.Finish();
}

Status ParseScorers(const YAML::Node& n, const std::string& path, ScorerWeights* w) {
  MapReader r(n, path);
  r.Field("queue_depth", &w->queue_depth);
  r.Field("kv_usage", &w->kv_usage);
  r.Field("prefix_affinity", &w->prefix_affinity);
  r.Field("round_robin", &w->round_robin);
  return r.Finish();
}

Status ParseRouter(const YAML::Node& n, const std::string& path, RouterConfig* c) {
  MapReader r(n, path);
  r.Field("host", &c->host);
  r.Field("port", &c->port);
  r.Field("metrics_port", &c->metrics_port);
  r.Field("http_port", &c->http_port);
  r.Sub("scorers",
        [c](const YAML::Node& x, const std::string& p) { return ParseScorers(x, p, &c->scorers); });
  r.Field("disagg_threshold_tokens", &c->disagg_threshold_tokens);
  r.Field("health_interval_ms", &c->health_interval_ms);
  r.Field("health_timeout_ms", &c->health_timeout_ms);
  r.Field("prefill_retries", &c->prefill_retries);
  r.Field("fallback_to_decode", &c->fallback_to_decode);
  r.Field("max_tokens_limit", &c->max_tokens_limit);
  r.Field("max_request_bytes", &c->max_request_bytes);
  r.Field("request_timeout_ms", &c->request_timeout_ms);
  r.Field("prefix_history_blocks", &c->prefix_history_blocks);
  r.Field("max_inflight_requests", &c->max_inflight_requests);
  r.Field("retry_after_ms", &c->retry_after_ms);
  r.Field("decode_idle_timeout_ms", &c->decode_idle_timeout_ms);
  r.Field("log_level", &c->log_level);
  r.StringList("api_keys", &c->api_keys);
  r.Field("api_key_file", &c->api_key_file);
  r.Sub("internal_tls", [c](const YAML::Node& x, const std::string& p) {
    return ParseTls(x, p, &c->internal_tls);
  });
  return r.Finish();
}

std::string LastPathComponent(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Parses one list (prefill or decode) and expands replicas.
Status ParseInstances(const YAML::Node& n, InstanceRole role, const InstanceConfig& defaults,
                      std::vector<InstanceConfig>* out) {
  const std::string list = RoleName(role);
  if (!n || n.IsNull()) return OkStatus();
  if (!n.IsSequence()) return InvalidArgument(list + ": expected a list of instances");
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string path = list + "[" + std::to_string(i) + "]";
    InstanceConfig c = defaults;
    c.role = role;
    c.name.clear();
    int replicas = 1;
    PD_RETURN_IF_ERROR(ParseInstance(n[i], path, &c, &replicas));
    if (replicas < 1 || replicas > 1024) {
      return InvalidArgument(path + ".replicas: " + std::to_string(replicas) +
                             " is not in [1, 1024]");
    }
    if (c.model_name.empty()) c.model_name = LastPathComponent(c.model);
    for (int k = 0; k < replicas; ++k) {
      InstanceConfig x = c;
      if (x.name.empty()) {
        x.name = list + "-" + std::to_string(out->size());
      } else if (replicas > 1) {
        x.name = c.name + "-" + std::to_string(k);
      }
      x.port = c.port + k;
      if (c.transport.port != 0) x.transport.port = c.transport.port + k;
      if (c.metrics_port != 0) x.metrics_port = c.metrics_port + k;
      x.gpu = c.gpu + k * std::max(1, c.tensor_parallel);
      out->push_back(std::move(x));
    }
  }
  return OkStatus();
}

Status ParseRoot(const YAML::Node& root, DeployConfig* cfg) {
  MapReader r(root, "");
  r.Field("version", &cfg->version);
  r.Field("name", &cfg->name);
  r.Sub("router", [cfg](const YAML::Node& x, const std::string& p) {
    return ParseRouter(x, p, &cfg->router);
  });
  InstanceConfig defaults;
  r.Sub("defaults", [&defaults](const YAML::Node& x, const std::string& p) {
    return ParseInstance(x, p, &defaults, nullptr);
  });
  r.Sub("prefill", [&](const YAML::Node& x, const std::string&) {
    return ParseInstances(x, InstanceRole::kPrefill, defaults, &cfg->prefill);
  });
  r.Sub("decode", [&](const YAML::Node& x, const std::string&) {
    return ParseInstances(x, InstanceRole::kDecode, defaults, &cfg->decode);
  });
  return r.Finish();
}

// ---- validation -----------------------------------------------------------------------------

Status Bad(const std::string& field, const std::string& what) {
  return InvalidArgument(field + ": " + what);
}

Status CheckPort(const std::string& field, int port, bool allow_zero) {
  if ((port == 0 && allow_zero) || (port >= 1 && port <= 65535)) return OkStatus();
  return Bad(field, std::to_string(port) + " is not a valid port");
}

template <typename T>
Status CheckRange(const std::string& field, T v, T lo, T hi) {
  if (v >= lo && v <= hi) return OkStatus();
  std::ostringstream os;
  os << v << " is not in [" << lo << ", " << hi << "]";
  return Bad(field, os.str());
}

Status ValidateTls(const std::string& p, const TlsConfig& t) {
  if (!t.enabled()) return OkStatus();
  for (const auto& [name, v] : {std::pair<const char*, const std::string*>{"ca", &t.ca},
                                {"cert", &t.cert},
                                {"key", &t.key}}) {
    if (v->empty()) return Bad(p + "." + name, "is required when any of ca/cert/key is set");
  }
  return OkStatus();
}

bool ValidLogLevel(const std::string& l) {
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "off"};
  return kLevels.count(l) > 0;
}

Status ValidateKv(const std::string& p, const InstanceConfig& c) {
  const KvPoolConfig& kv = c.kv;
  PD_RETURN_IF_ERROR(CheckRange(p + ".kv.blocks", kv.blocks, 0, 1 << 28));
  if (kv.blocks == 0 && c.backend == Backend::kCpu) {
    PD_RETURN_IF_ERROR(CheckRange<int64_t>(p + ".kv.memory_mb", kv.memory_mb, 1, int64_t{1} << 30));
  }
  if (kv.blocks == 0 && c.backend == Backend::kCuda &&
      !(kv.memory_fraction > 0.0 && kv.memory_fraction <= 1.0)) {
    return Bad(p + ".kv.memory_fraction", std::to_string(kv.memory_fraction) + " is not in (0, 1]");
  }
  static const std::set<std::string> kDTypes = {"auto", "bfloat16", "float16", "float32"};
  if (!kDTypes.count(kv.dtype)) {
    return Bad(p + ".kv.dtype", "'" + kv.dtype + "' is not auto | bfloat16 | float16 | float32");
  }
  return CheckRange(p + ".kv.block_size", kv.block_size, 1, 1024);
}

Status ValidateInstance(const std::string& p, const InstanceConfig& c) {
  if (c.name.empty()) return Bad(p + ".name", "must not be empty");
  if (c.model.empty()) return Bad(p + ".model", "is required (HF model directory)");
  if (c.host.empty()) return Bad(p + ".host", "must not be empty");
  PD_RETURN_IF_ERROR(CheckPort(p + ".port", c.port, false));
  PD_RETURN_IF_ERROR(CheckRange(p + ".gpu", c.gpu, 0, 1023));
  PD_RETURN_IF_ERROR(CheckRange(p + ".tensor_parallel", c.tensor_parallel, 1, 64));
  PD_RETURN_IF_ERROR(CheckRange(p + ".cpu_threads", c.cpu_threads, 0, 4096));
  PD_RETURN_IF_ERROR(ValidateKv(p, c));
  PD_RETURN_IF_ERROR(CheckRange(p + ".max_batch_tokens", c.max_batch_tokens, 1, 1 << 24));
  PD_RETURN_IF_ERROR(CheckRange(p + ".max_seqs", c.max_seqs, 1, 1 << 20));
  PD_RETURN_IF_ERROR(CheckRange(p + ".prefill_chunk_tokens", c.prefill_chunk_tokens, 1, 1 << 24));
  PD_RETURN_IF_ERROR(CheckRange(p + ".max_model_len", c.max_model_len, 0, 1 << 24));
  PD_RETURN_IF_ERROR(CheckRange(p + ".lease_ms", c.lease_ms, 1, 3600 * 1000));
  PD_RETURN_IF_ERROR(CheckRange(p + ".lease_fence_ms", c.lease_fence_ms, 0, 3600 * 1000));
  PD_RETURN_IF_ERROR(CheckRange(p + ".max_queue", c.max_queue, 0, 1 << 24));
  static const std::set<std::string> kKinds = {"tcp", "rdma", "local"};
  if (!kKinds.count(c.transport.kind)) {
    return Bad(p + ".transport.kind", "'" + c.transport.kind + "' is not tcp | rdma | local");
  }
  if (c.transport.gpu_kv != "auto" && c.transport.gpu_kv != "direct" &&
      c.transport.gpu_kv != "mirror") {
    return Bad(p + ".transport.gpu_kv",
               "'" + c.transport.gpu_kv + "' is not auto | direct | mirror");
  }
  PD_RETURN_IF_ERROR(CheckPort(p + ".transport.port", c.transport.port, true));
  PD_RETURN_IF_ERROR(CheckPort(p + ".metrics_port", c.metrics_port, true));
  PD_RETURN_IF_ERROR(CheckRange(p + ".transport.paths", c.transport.paths, 1, 64));
  PD_RETURN_IF_ERROR(CheckRange<int64_t>(p + ".transport.chunk_bytes", c.transport.chunk_bytes,
                                         4096, int64_t{1} << 30));
  PD_RETURN_IF_ERROR(CheckRange(p + ".timeouts.rpc_ms", c.timeouts.rpc_ms, 1, 3600 * 1000));
  PD_RETURN_IF_ERROR(CheckRange(p + ".timeouts.prefill_ms", c.timeouts.prefill_ms, 1, 3600 * 1000));
  PD_RETURN_IF_ERROR(
      CheckRange(p + ".timeouts.transfer_ms", c.timeouts.transfer_ms, 1, 3600 * 1000));
  PD_RETURN_IF_ERROR(ValidateTls(p + ".tls", c.tls));
  if (!ValidLogLevel(c.log_level)) {
    return Bad(p + ".log_level", "'" + c.log_level + "' is not trace|debug|info|warn|error|off");
  }
  return OkStatus();
}

Status ValidateRouter(const RouterConfig& r) {
  if (r.host.empty()) return Bad("router.host", "must not be empty");
  PD_RETURN_IF_ERROR(CheckPort("router.port", r.port, false));
  PD_RETURN_IF_ERROR(CheckPort("router.metrics_port", r.metrics_port, true));
  PD_RETURN_IF_ERROR(CheckPort("router.http_port", r.http_port, true));
  const ScorerWeights& w = r.scorers;
  PD_RETURN_IF_ERROR(CheckRange("router.scorers.queue_depth", w.queue_depth, 0.0, 1e6));
  PD_RETURN_IF_ERROR(CheckRange("router.scorers.kv_usage", w.kv_usage, 0.0, 1e6));
  PD_RETURN_IF_ERROR(CheckRange("router.scorers.prefix_affinity", w.prefix_affinity, 0.0, 1e6));
  PD_RETURN_IF_ERROR(CheckRange("router.scorers.round_robin", w.round_robin, 0.0, 1e6));
  PD_RETURN_IF_ERROR(
      CheckRange("router.disagg_threshold_tokens", r.disagg_threshold_tokens, 0, 1 << 24));
  PD_RETURN_IF_ERROR(CheckRange("router.health_interval_ms", r.health_interval_ms, 1, 3600000));
  PD_RETURN_IF_ERROR(CheckRange("router.health_timeout_ms", r.health_timeout_ms, 1, 3600000));
  PD_RETURN_IF_ERROR(CheckRange("router.prefill_retries", r.prefill_retries, 0, 100));
  PD_RETURN_IF_ERROR(CheckRange("router.max_tokens_limit", r.max_tokens_limit, 1, 1 << 24));
  PD_RETURN_IF_ERROR(CheckRange("router.max_request_bytes", r.max_request_bytes, 1024, 1 << 30));
  PD_RETURN_IF_ERROR(CheckRange("router.request_timeout_ms", r.request_timeout_ms, 0, 86400000));
  PD_RETURN_IF_ERROR(
      CheckRange("router.max_inflight_requests", r.max_inflight_requests, 0, 1 << 24));
  PD_RETURN_IF_ERROR(CheckRange("router.retry_after_ms", r.retry_after_ms, 0, 3600000));
  PD_RETURN_IF_ERROR(
      CheckRange("router.decode_idle_timeout_ms", r.decode_idle_timeout_ms, 0, 86400000));
  PD_RETURN_IF_ERROR(
      CheckRange("router.prefix_history_blocks", r.prefix_history_blocks, 0, 1 << 26));
  if (!ValidLogLevel(r.log_level)) {
    return Bad("router.log_level", "'" + r.log_level + "' is not trace|debug|info|warn|error|off");
  }
  for (size_t i = 0; i < r.api_keys.size(); ++i) {  // contents are checked by ApiKeySet::Load
    if (r.api_keys[i].empty()) {
      return Bad("router.api_keys[" + std::to_string(i) + "]", "must not be empty");
    }
  }
  return ValidateTls("router.internal_tls", r.internal_tls);
}

struct Endpoint {
  std::string field, host;
  int port;
};

bool SameEndpoint(const Endpoint& a, const Endpoint& b) {
  if (a.port != b.port) return false;
  return a.host == b.host || a.host == "0.0.0.0" || b.host == "0.0.0.0";
}

}  // namespace

Status DeployConfig::Validate() const {
  if (version != 1) return Bad("version", std::to_string(version) + " is not supported (use 1)");
  PD_RETURN_IF_ERROR(ValidateRouter(router));
  if (decode.empty()) return Bad("decode", "at least one decode instance is required");
  std::set<std::string> names;
  std::vector<Endpoint> eps = {{"router.port", router.host, router.port}};
  if (router.metrics_port != 0) {
    eps.push_back({"router.metrics_port", router.host, router.metrics_port});
  }
  if (router.http_port != 0) eps.push_back({"router.http_port", router.host, router.http_port});
  for (const auto* list : {&prefill, &decode}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const InstanceConfig& c = (*list)[i];
      const std::string p = std::string(RoleName(c.role)) + "[" + std::to_string(i) + "]";
      PD_RETURN_IF_ERROR(ValidateInstance(p, c));
      if (!names.insert(c.name).second) return Bad(p + ".name", "'" + c.name + "' is used twice");
      eps.push_back({p + ".port", c.host, c.port});
      if (c.transport.port != 0) {
        eps.push_back({p + ".transport.port", c.transport.host.empty() ? c.host : c.transport.host,
                       c.transport.port});
      }
      if (c.metrics_port != 0) eps.push_back({p + ".metrics_port", c.host, c.metrics_port});
      if (c.tls.enabled() && !router.internal_tls.enabled()) {
        return Bad("router.internal_tls", p + " requires TLS client certificates (" + p +
                                              ".tls); set router.internal_tls {ca, cert, key}");
      }
    }
  }
  for (size_t i = 0; i < eps.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (SameEndpoint(eps[i], eps[j])) {
        return Bad(eps[i].field,
                   std::to_string(eps[i].port) + " is already used by " + eps[j].field);
      }
    }
  }
  for (size_t i = 0; i < prefill.size(); ++i) {
    const InstanceConfig& p = prefill[i];
    auto d = std::find_if(decode.begin(), decode.end(),
                          [&](const InstanceConfig& x) { return x.model_name == p.model_name; });
    const std::string f = "prefill[" + std::to_string(i) + "]";
    if (d == decode.end()) {
      return Bad(f + ".model_name", "no decode instance serves model '" + p.model_name + "'");
    }
  }
  for (const auto* list : {&prefill, &decode}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const InstanceConfig& c = (*list)[i];
      const InstanceConfig& first = *std::find_if(
          decode.begin(), decode.end(), [&](auto& x) { return x.model_name == c.model_name; });
      if (c.kv.block_size != first.kv.block_size) {
        return Bad(std::string(RoleName(c.role)) + "[" + std::to_string(i) + "].kv.block_size",
                   std::to_string(c.kv.block_size) + " differs from " + first.name + "'s " +
                       std::to_string(first.kv.block_size) + " (same model must agree)");
      }
    }
  }
  return OkStatus();
}

const InstanceConfig* DeployConfig::FindInstance(const std::string& n) const {
  for (const auto* list : {&prefill, &decode}) {
    for (const InstanceConfig& c : *list) {
      if (c.name == n) return &c;
    }
  }
  return nullptr;
}

StatusOr<InstanceConfig> DeployConfig::GetInstance(const std::string& n) const {
  if (const InstanceConfig* c = FindInstance(n)) return *c;
  std::string known;
  for (const auto* list : {&prefill, &decode}) {
    for (const InstanceConfig& c : *list) known += (known.empty() ? "" : ", ") + c.name;
  }
  return NotFound("instance '" + n + "' is not in the config (known: " + known + ")");
}

std::vector<std::string> DeployConfig::ModelNames() const {
  std::vector<std::string> out;
  for (const InstanceConfig& c : decode) {
    if (std::find(out.begin(), out.end(), c.model_name) == out.end()) out.push_back(c.model_name);
  }
  return out;
}

StatusOr<DeployConfig> ParseDeployConfig(const std::string& yaml_text) {
  DeployConfig cfg;
  try {
    const YAML::Node root = YAML::Load(yaml_text);
    if (!root || root.IsNull()) return InvalidArgument("config is empty");
    PD_RETURN_IF_ERROR(ParseRoot(root, &cfg));
  } catch (const YAML::Exception& e) {
    return InvalidArgument("YAML error at line " + std::to_string(e.mark.line + 1) + ", column " +
                           std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  PD_RETURN_IF_ERROR(cfg.Validate());
  return cfg;
}

StatusOr<DeployConfig> LoadDeployConfig(const std::string& path) {
  std::ifstream f(path);
  if (!f) return NotFound(path + ": cannot read config file");
  std::stringstream ss;
  ss << f.rdbuf();
  StatusOr<DeployConfig> cfg = ParseDeployConfig(ss.str());
  if (!cfg.ok()) return cfg.status().WithContext(path);
  return cfg;
}

}  // namespace pd
