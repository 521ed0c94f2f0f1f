// pd-profile: measures a model's phase costs on one backend with the real ModelRunner and writes
// a planner profile (src/planner/profile.h): prefill forward time vs prompt tokens, decode step
// time vs batch x context, KV bytes per token and the KV pool an instance gets.
// Also scales a measured profile to another model shape / TP (--scale-from).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/runner.h"
#include "planner/profile.h"

namespace {

constexpr char kUsage[] = R"(usage: pd-profile --model DIR --out F.json [options]
       pd-profile --scale-from F.json --out G.json --target-config DIR|config.json --tp N [...]

Measures forward times with the real ModelRunner and writes a pdserve.profile.v1 JSON.
  --model DIR              HF model directory (pd-makemodel output)
  --backend cpu|cuda       runner backend                                      [cpu]
  --out F.json             where to write the profile
  --prefill-tokens LIST    prompt lengths, comma-separated       [128,...,16384 cuda; 16..256 cpu]
  --decode-batches LIST    decode batch sizes                    [1,8,32,64,128,256 cuda; 1,2,4,8 cpu]
  --decode-contexts LIST   context lengths of decoding sequences [128,1024,4096,12288 cuda; 16,64,256 cpu]
  --chunks LIST            chunked-prefill steps, comma-separated N@CACHED (N prompt tokens
                           after CACHED cached ones) or N@CACHED+B@CTX (the same next to B
                           decoding sequences of CTX tokens); "none" for no chunk points
                           [1024@1024,1024@4096,1024@9216,2048@8192,1024@4096+8@1024,
                            1024@9216+8@2048 cuda; 16@16,16@64,16@64+2@32 cpu]
  --reps N                 timed repetitions per point (median)                [5]
  --warmup N               untimed forwards per point                           [1]
  --kv-fraction X          cuda: fraction of free GPU memory for the KV pool    [0.85]
  --kv-memory-mb N         cpu: KV arena size                                   [256]
  --threads N              cpu threads (0 = all)                                [0]
  --device-name S          hardware description (default: nvidia-smi / cpuinfo)
  --note S                 free text stored in hardware.note
Scaling (no measurement; states the assumption in hardware.note):
  --scale-from F.json      measured profile to scale
  --target-config P        config.json (or its directory) of the target shape
  --tp N                   GPUs per instance of the target                      [1]
  --tp-efficiency X        fraction of linear TP speedup                        [0.8]
  --memory-gb X            GPU memory per GPU                                   [80]
Sequences of a decode batch reuse KV blocks (block ids wrap around the pool) when batch x
context exceeds the pool: times stay those of reading that many KV bytes.
)";

struct Options {
  pd::RunnerOptions ro;
  std::string out, device_name, note, scale_from, target_config;
  std::vector<int> prefill, batches, contexts;
  std::vector<pd::planner::ChunkPoint> chunks;
  bool chunks_set = false;
  int reps = 5, warmup = 1, tp = 1;
  double tp_eff = 0.8, memory_gb = 80;
};

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    v.push_back(std::atoi(s.substr(i, j - i).c_str()));
    i = j + 1;
  }
  return v;
}

// "N@C" or "N@C+B@X" items, comma-separated; false on a malformed item.
bool ParseChunks(const std::string& s, std::vector<pd::planner::ChunkPoint>* out) {
  out->clear();
  if (s == "none") return true;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    const std::string item = s.substr(i, j - i);
    pd::planner::ChunkPoint c;
    char tail = 0;
    const int n = std::sscanf(item.c_str(), "%d@%d+%d@%d%c", &c.tokens, &c.cached,
                              &c.decode_batch, &c.decode_context, &tail);
    if (!(n == 2 || n == 4) || c.tokens <= 0 || c.cached < 0 ||
        (n == 4 && (c.decode_batch <= 0 || c.decode_context <= 0))) {
      return false;
    }
    if (n == 2) c.decode_batch = c.decode_context = 0;
    out->push_back(c);
    i = j + 1;
  }
  return true;
}

int ParseArgs(int argc, char** argv, Options* o) {
  o->ro.kv_memory_fraction = 0.85;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "pd-profile: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--model") o->ro.model_dir = v;
    else if (a == "--backend") o->ro.backend = v;
    else if (a == "--out") o->out = v;
    else if (a == "--prefill-tokens") o->prefill = ParseList(v);
    else if (a == "--decode-batches") o->batches = ParseList(v);
    else if (a == "--decode-contexts") o->contexts = ParseList(v);
    else if (a == "--chunks") {
      if (!ParseChunks(v, &o->chunks)) {
        std::fprintf(stderr, "pd-profile: --chunks: bad list '%s' (items N@CACHED or "
                     "N@CACHED+B@CTX, comma-separated, or none)\n", v.c_str());
        return 2;
      }
      o->chunks_set = true;
    }
    else if (a == "--reps") o->reps = std::max(1, std::atoi(v.c_str()));
    else if (a == "--warmup") o->warmup = std::max(0, std::atoi(v.c_str()));
    else if (a == "--kv-fraction") o->ro.kv_memory_fraction = std::atof(v.c_str());
    else if (a == "--kv-memory-mb") o->ro.kv_memory_mb = std::atoi(v.c_str());
    else if (a == "--threads") o->ro.num_threads = std::atoi(v.c_str());
    else if (a == "--device-name") o->device_name = v;
    else if (a == "--note") o->note = v;
    else if (a == "--scale-from") o->scale_from = v;
    else if (a == "--target-config") o->target_config = v;
    else if (a == "--tp") o->tp = std::max(1, std::atoi(v.c_str()));
    else if (a == "--tp-efficiency") o->tp_eff = std::atof(v.c_str());
    else if (a == "--memory-gb") o->memory_gb = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "pd-profile: unknown flag %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (o->out.empty() || (o->ro.model_dir.empty() && o->scale_from.empty())) {
    std::fprintf(stderr, "pd-profile: --out and --model (or --scale-from) are required\n");
    return 2;
  }
  const bool cuda = o->ro.backend == "cuda";
  if (o->prefill.empty()) {
    o->prefill = cuda ? std::vector<int>{128, 512, 1024, 2048, 4096, 8192, 12288, 16384}
                      : std::vector<int>{16, 32, 64, 128, 256};
  }
  if (o->batches.empty()) {
    o->batches = cuda ? std::vector<int>{1, 8, 32, 64, 128, 256} : std::vector<int>{1, 2, 4, 8};
  }
  if (o->contexts.empty()) {
    o->contexts = cuda ? std::vector<int>{128, 1024, 4096, 12288} : std::vector<int>{16, 64, 256};
  }
  if (!o->chunks_set) {
    ParseChunks(cuda ? "1024@1024,1024@4096,1024@9216,2048@8192,1024@4096+8@1024,1024@9216+8@2048"
                     : "16@16,16@64,16@64+2@32",
                &o->chunks);
  }
  return 0;
}

std::string Shell(const char* cmd) {
  std::string out;
  FILE* f = popen(cmd, "r");
  if (!f) return out;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) out += buf;
  pclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

double Params(const pd::ModelConfig& c) {
  const double h = c.hidden_size, q = 1.0 * c.num_heads * c.head_dim,
               kv = 1.0 * c.num_kv_heads * c.head_dim;
  const double layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
  return c.num_layers * layer + (c.tie_word_embeddings ? 1 : 2) * h * c.vocab_size;
}

pd::planner::ModelShape Shape(const pd::ModelConfig& c, const std::string& name) {
  pd::planner::ModelShape m;
  m.name = name;
  m.num_layers = c.num_layers;
  m.hidden_size = c.hidden_size;
  m.num_heads = c.num_heads;
  m.num_kv_heads = c.num_kv_heads;
  m.head_dim = c.head_dim;
  m.intermediate_size = c.intermediate_size;
  m.vocab_size = c.vocab_size;
  m.params = Params(c);
  return m;
}

// Median forward time (ms) of `b`, after `warmup` untimed runs; negative on error.
double TimeBatch(pd::ModelRunner* r, const pd::ForwardBatch& b, int warmup, int reps) {
  pd::ForwardResult res;
  std::vector<double> t;
  for (int i = 0; i < warmup + reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const pd::Status s = r->Forward(b, &res);  // returns after the step's sampled tokens exist
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!s.ok()) {
      std::fprintf(stderr, "pd-profile: forward failed: %s\n", s.ToString().c_str());
      return -1;
    }
    if (i >= warmup) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Appends `n` sequences to `b`, each `new_tokens` new tokens after `cached` cached ones; block
// ids continue from *next and wrap around the pool.
void AddSeqs(pd::ForwardBatch* b, int n, int new_tokens, int cached, int block_size,
             int pool_blocks, int vocab, int* next) {
  if (b->block_indptr.empty()) b->block_indptr.push_back(0);
  const int per_seq = (cached + new_tokens + block_size - 1) / block_size;
  for (int s = 0; s < n; ++s) {
    pd::SeqStep st;
    st.num_new_tokens = new_tokens;
    st.num_cached = cached;
    st.sample = true;
    b->seqs.push_back(st);
    for (int t = 0; t < new_tokens; ++t) b->token_ids.push_back(1 + (s * 7 + t * 13) % (vocab - 1));
    for (int k = 0; k < per_seq; ++k) b->block_ids.push_back((*next)++ % pool_blocks);
    b->block_indptr.push_back(static_cast<int32_t>(b->block_ids.size()));
  }
}

pd::ForwardBatch MakeBatch(int n, int new_tokens, int cached, int block_size, int pool_blocks,
                           int vocab) {
  pd::ForwardBatch b;
  int next = 0;
  AddSeqs(&b, n, new_tokens, cached, block_size, pool_blocks, vocab, &next);
  return b;
}

int Scale(const Options& o) {
  auto base = pd::planner::LoadProfile(o.scale_from);
  if (!base.ok()) {
    std::fprintf(stderr, "pd-profile: %s\n", base.status().ToString().c_str());
    return 1;
  }
  auto cfg = pd::LoadModelConfig(o.target_config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "pd-profile: %s\n", cfg.status().ToString().c_str());
    return 1;
  }
  pd::planner::ScaleSpec s;
  s.target = Shape(*cfg, o.target_config);
  s.kv_bytes_per_token = static_cast<int64_t>(cfg->KvBytesPerToken(2));
  s.tp = o.tp;
  s.tp_efficiency = o.tp_eff;
  s.memory_gb = o.memory_gb;
  pd::planner::Profile p = pd::planner::ScaleProfile(*base, s);
  if (!o.note.empty()) p.hardware.note += "; " + o.note;
  const pd::Status st = pd::planner::SaveProfile(p, o.out);
  if (!st.ok()) {
    std::fprintf(stderr, "pd-profile: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s: %s\n", o.out.c_str(), p.hardware.note.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = ParseArgs(argc, argv, &o); rc != 0) return rc;
  if (!o.scale_from.empty()) return Scale(o);
  int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  o.ro.max_batch_tokens = std::max(*std::max_element(o.prefill.begin(), o.prefill.end()), max_batch);
  o.ro.max_seqs = max_batch;
  for (const pd::planner::ChunkPoint& c : o.chunks) {  // the runner must fit every chunk step
    o.ro.max_seqs = std::max(o.ro.max_seqs, c.decode_batch + 1);
    o.ro.max_batch_tokens = std::max(o.ro.max_batch_tokens, c.tokens + c.decode_batch);
  }
  std::fprintf(stderr, "pd-profile: loading %s on %s\n", o.ro.model_dir.c_str(),
               o.ro.backend.c_str());
  auto runner_or = pd::CreateModelRunner(o.ro);
  if (!runner_or.ok()) {
    std::fprintf(stderr, "pd-profile: %s\n", runner_or.status().ToString().c_str());
    return 1;
  }
  pd::ModelRunner* r = runner_or->get();
  const pd::ModelConfig& cfg = r->config();
  const pd::KvLayout& lay = r->kv_arena().layout;
  pd::planner::Profile p;
  std::string name = o.ro.model_dir;
  while (!name.empty() && name.back() == '/') name.pop_back();
  p.model = Shape(cfg, name.substr(name.find_last_of('/') + 1));
  p.kv_bytes_per_token = static_cast<int64_t>(cfg.KvBytesPerToken(pd::DTypeSize(lay.dtype)));
  p.kv_pool_tokens = static_cast<int64_t>(lay.num_blocks) * lay.block_size;
  p.hardware.backend = r->backend_name();
  p.hardware.device = o.device_name;
  if (p.hardware.device.empty()) {
    p.hardware.device = o.ro.backend == "cuda"
        ? Shell("nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1")
        : Shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'") + " (" +
              std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " cpus)";
  }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  p.hardware.host = host;
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  p.hardware.date = date;
  p.hardware.note = o.note;
  std::fprintf(stderr, "pd-profile: %s, KV %lld B/token, pool %lld tokens (%d blocks)\n",
               p.hardware.device.c_str(), static_cast<long long>(p.kv_bytes_per_token),
               static_cast<long long>(p.kv_pool_tokens), lay.num_blocks);
  const size_t total = o.prefill.size() + o.batches.size() * o.contexts.size();
  size_t done = 0;
  for (int t : o.prefill) {
    if (t > cfg.max_position_embeddings) continue;
    const double ms = TimeBatch(r, MakeBatch(1, t, 0, lay.block_size, lay.num_blocks,
                                             cfg.vocab_size), o.warmup, o.reps);
    if (ms < 0) {  // keep what was measured: a partial profile beats none
      std::fprintf(stderr, "pd-profile: skipping prefill %d\n", t);
      continue;
    }
    p.prefill.push_back({t, ms});
    std::fprintf(stderr, "[%zu/%zu] prefill %6d tokens: %9.3f ms (%.0f tok/s)\n", ++done, total, t,
                 ms, t / ms * 1e3);
  }
  for (int b : o.batches) {
    for (int c : o.contexts) {
      const double ms = TimeBatch(r, MakeBatch(b, 1, c - 1, lay.block_size, lay.num_blocks,
                                               cfg.vocab_size), o.warmup, o.reps);
      if (ms < 0) {
        std::fprintf(stderr, "pd-profile: skipping decode batch %d ctx %d (grid incomplete)\n", b,
                     c);
        continue;
      }
      p.decode.push_back({b, c, ms});
      std::fprintf(stderr, "[%zu/%zu] decode batch %3d ctx %6d: %9.3f ms (%.0f tok/s)\n", ++done,
                   total, b, c, ms, b / ms * 1e3);
    }
  }
  for (pd::planner::ChunkPoint c : o.chunks) {  // a prompt chunk (first), then decode rows
    // (the runner's batch limits were sized for every chunk point above)
    if (std::max(c.cached + c.tokens, c.decode_context) > cfg.max_position_embeddings) {
      std::fprintf(stderr,
                   "pd-profile: skipping chunk %d@%d+%d@%d (beyond max_position_embeddings)\n",
                   c.tokens, c.cached, c.decode_batch, c.decode_context);
      continue;
    }
    pd::ForwardBatch b;
    int next = 0;
    AddSeqs(&b, 1, c.tokens, c.cached, lay.block_size, lay.num_blocks, cfg.vocab_size, &next);
    AddSeqs(&b, c.decode_batch, 1, c.decode_context - 1, lay.block_size, lay.num_blocks,
            cfg.vocab_size, &next);
    c.ms = TimeBatch(r, b, o.warmup, o.reps);
    if (c.ms < 0) {
      std::fprintf(stderr, "pd-profile: skipping chunk %d@%d\n", c.tokens, c.cached);
      continue;
    }
    p.chunks.push_back(c);
    std::fprintf(stderr, "chunk %5d tokens after %6d cached + %3d decoding x %5d: %9.3f ms\n",
                 c.tokens, c.cached, c.decode_batch, c.decode_context, c.ms);
  }
  const pd::Status st = pd::planner::SaveProfile(p, o.out);
  if (!st.ok()) {
    std::fprintf(stderr, "pd-profile: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (%zu prefill, %zu decode, %zu chunk points)\n", o.out.c_str(),
              p.prefill.size(), p.decode.size(), p.chunks.size());
  return 0;
}
