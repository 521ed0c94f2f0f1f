// pd-generate: offline generation in one process over the ModelRunner interface (runner.h only;
// a local block table, no BlockManager).
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/logging.h"
#include "model/runner.h"

namespace {

const char* kUsage = R"(usage: pd-generate --model DIR --prompt-ids 1,2,3 --max-tokens N [options]

Generates tokens for one prompt in one process and prints the generated ids, comma-separated, on
one line to stdout; timing (load, prefill ms and tok/s, decode tok/s, CPU time) goes to stderr.
Generation stops at the model's eos ids (config.json eos_token_id) unless --ignore-eos, at any
--stop-ids (the stop id is printed), or after --max-tokens tokens.

  --model DIR          Hugging Face model directory (config.json + *.safetensors)  [required]
  --prompt-ids LIST    prompt token ids, comma-separated                            [required]
  --max-tokens N       tokens to generate                                           [16]
  --backend cpu|cuda   execution backend                                            [cpu]
  --temperature T      0 = greedy                                                   [0]
  --top-k K            0 = off                                                      [0]
  --top-p P            in (0, 1]; 1 = off                                           [1]
  --seed S             sampling seed (same seed -> same ids)                        [0]
  --stop-ids LIST      stop when one of these ids is generated
  --ignore-eos         do not stop at the model's eos ids
  --chunk N            prefill the prompt in chunks of N tokens           [whole prompt]
  --kv-dtype D         KV cache element type: fp32 | bf16 | fp16                   [bf16]
  --block-size N       KV block size in tokens                                      [16]
  --threads N          cpu threads, 0 = all cores                                   [0]
  --gpu N              cuda device                                                  [0]
  --log-level L        trace|debug|info|warn|error                                  [warn]
  --help               this text

Exit status: 0 on success, 2 on bad flags, 1 on model/runtime errors.
)";

struct Options {
  pd::RunnerOptions ro;
  std::vector<int32_t> prompt, stop_ids;
  int max_tokens = 16, chunk = 0;
  bool ignore_eos = false;
  pd::SamplingParams sp;
  std::string log_level = "warn";
};

bool ParseIds(const std::string& s, std::vector<int32_t>* out) {
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 || v > INT32_MAX) return false;
    out->push_back(static_cast<int32_t>(v));
  }
  return !out->empty();
}

bool ParseInt(const std::string& s, long lo, long hi, int* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

bool ParseFloat(const std::string& s, float* out) {
  char* end = nullptr;
  errno = 0;
  float v = std::strtof(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool ParseU64(const std::string& s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || s[0] == '-' || *end != '\0' || errno != 0) return false;
  *out = v;
  return true;
}

// CPU seconds (user + system) this process has used so far, all threads.
double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int Fail(const std::string& msg) {
  std::cerr << "pd-generate: " << msg << " (see pd-generate --help)\n";
  return 2;
}

// Applies flag `a` with value `v`; returns an error message or "".
std::string ApplyFlag(const std::string& a, const std::string& v, Options* o) {
  const std::string bad = a + ": invalid value '" + v + "'";
  bool ok = true;
  if (a == "--model") {
    o->ro.model_dir = v;
  } else if (a == "--prompt-ids") {
    ok = ParseIds(v, &o->prompt);
  } else if (a == "--stop-ids") {
    ok = ParseIds(v, &o->stop_ids);
  } else if (a == "--max-tokens") {
    ok = ParseInt(v, 1, 1 << 30, &o->max_tokens);
  } else if (a == "--backend") {
    o->ro.backend = v;
    ok = v == "cpu" || v == "cuda";
  } else if (a == "--temperature") {
    ok = ParseFloat(v, &o->sp.temperature) && o->sp.temperature >= 0;
  } else if (a == "--top-k") {
    ok = ParseInt(v, 0, 1 << 30, &o->sp.top_k);
  } else if (a == "--top-p") {
    ok = ParseFloat(v, &o->sp.top_p) && o->sp.top_p > 0 && o->sp.top_p <= 1;
  } else if (a == "--seed") {
    ok = ParseU64(v, &o->sp.seed);
  } else if (a == "--chunk") {
    ok = ParseInt(v, 1, 1 << 30, &o->chunk);
  } else if (a == "--kv-dtype") {
    std::string d = v == "fp32"   ? "float32"
                    : v == "bf16" ? "bfloat16"
                    : v == "fp16" ? "float16"
                                  : "";
    ok = !d.empty() && pd::ParseDType(d, &o->ro.kv_dtype);
  } else if (a == "--block-size") {
    ok = ParseInt(v, 1, 1 << 20, &o->ro.block_size);
  } else if (a == "--threads") {
    ok = ParseInt(v, 0, 4096, &o->ro.num_threads);
  } else if (a == "--gpu") {
    ok = ParseInt(v, 0, 1024, &o->ro.gpu_id);
  } else if (a == "--log-level") {
    o->log_level = v;
  } else {
    return "unknown flag " + a;
  }
  return ok ? "" : bad;
}

// Returns -1 to go on, else the exit code.
int ParseFlags(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--ignore-eos") {
      o->ignore_eos = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return Fail("unexpected argument '" + a + "'");
    if (i + 1 >= argc) return Fail("flag " + a + " needs a value");
    std::string err = ApplyFlag(a, argv[++i], o);
    if (!err.empty()) return Fail(err);
  }
  if (o->ro.model_dir.empty()) return Fail("--model is required");
  if (o->prompt.empty()) return Fail("--prompt-ids is required");
  return -1;
}

// Runs one Forward for the single sequence; prints the error and returns false on failure.
bool Step(pd::ModelRunner* r, pd::ForwardBatch* b, pd::SeqStep st, pd::ForwardResult* res) {
  b->seqs[0] = st;
  pd::Status s = r->Forward(*b, res);
  if (!s.ok()) std::cerr << "pd-generate: " << s.ToString() << "\n";
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = ParseFlags(argc, argv, &o); rc >= 0) return rc;
  pd::SetLogLevel(o.log_level);
  const int plen = static_cast<int>(o.prompt.size());
  o.ro.num_kv_blocks = (plen + o.max_tokens + o.ro.block_size - 1) / o.ro.block_size;
  const int chunk = o.chunk > 0 ? std::min(o.chunk, plen) : plen;
  o.ro.max_batch_tokens = std::max(chunk, 1);

  const auto t0 = std::chrono::steady_clock::now();
  auto runner_or = pd::CreateModelRunner(o.ro);
  if (!runner_or.ok()) {
    std::cerr << "pd-generate: " << runner_or.status().ToString() << "\n";
    return 1;
  }
  pd::ModelRunner* runner = runner_or->get();
  const auto& eos = runner->config().eos_token_ids;
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = CpuSeconds();

  pd::ForwardBatch b;  // one sequence owning blocks [0, num_kv_blocks)
  b.seqs.resize(1);
  b.block_indptr = {0, o.ro.num_kv_blocks};
  for (int i = 0; i < o.ro.num_kv_blocks; ++i) b.block_ids.push_back(i);
  pd::ForwardResult r;
  int done = 0;
  while (done < plen) {  // prefill, possibly chunked
    const int n = std::min(chunk, plen - done);
    b.token_ids.assign(o.prompt.begin() + done, o.prompt.begin() + done + n);
    if (!Step(runner, &b, {n, done, done + n == plen, o.sp, 0}, &r)) return 1;
    done += n;
  }
  const auto t2 = std::chrono::steady_clock::now();
  const double c2 = CpuSeconds();
  std::vector<int32_t> out;
  for (int32_t tok = r.tokens[0];;) {
    out.push_back(tok);
    const bool stop = (!o.ignore_eos && std::count(eos.begin(), eos.end(), tok) > 0) ||
                      std::count(o.stop_ids.begin(), o.stop_ids.end(), tok) > 0;
    if (stop || static_cast<int>(out.size()) >= o.max_tokens) break;
    b.token_ids = {tok};
    if (!Step(runner, &b, {1, done, true, o.sp, out.size()}, &r)) return 1;
    ++done;
    tok = r.tokens[0];
  }
  const auto t3 = std::chrono::steady_clock::now();
  const double c3 = CpuSeconds();
  for (size_t i = 0; i < out.size(); ++i) std::cout << (i ? "," : "") << out[i];
  std::cout << std::endl;
  const double pre_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  const double dec_s = std::chrono::duration<double>(t3 - t2).count();
  const double n_dec = static_cast<double>(out.size() - 1);
  std::fprintf(stderr,
               "load %.1f ms | prefill %d tokens %.1f ms (%.1f tok/s, cpu %.2f s) | decode %.0f "
               "tokens %.1f ms (%.2f tok/s, cpu %.1f ms/token) | backend %s\n",
               std::chrono::duration<double, std::milli>(t1 - t0).count(), plen, pre_ms,
               plen / (pre_ms / 1000.0), c2 - c1, n_dec, dec_s * 1000,
               n_dec > 0 ? n_dec / dec_s : 0.0, n_dec > 0 ? 1000.0 * (c3 - c2) / n_dec : 0.0,
               runner->backend_name().c_str());
  return 0;
}
