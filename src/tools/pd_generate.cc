// pd-generate: offline generation in one process over the ModelRunner interface.
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
one line to stdout; timing goes to stderr.

  --model DIR          Hugging Face model directory (config.json + *.safetensors)
  --prompt-ids LIST    prompt token ids, comma-separated
  --max-tokens N       tokens to generate (default 16)
  --backend cpu|cuda   execution backend (default cpu)
  --temperature T      0 = greedy (default 0)
  --top-k K            0 = off (default 0)
  --top-p P            1 = off (default 1)
  --seed S             sampling seed (default 0)
  --stop-ids LIST      stop when one of these ids is generated (it is printed)
  --ignore-eos         do not stop at the model's eos ids
  --chunk N            prefill the prompt in chunks of N tokens (default: whole prompt)
  --kv-dtype D         fp32 | bf16 | fp16 (default bf16)
  --block-size N       KV block size in tokens (default 16)
  --threads N          cpu threads (default: all cores)
  --gpu N              cuda device (default 0)
  --log-level L        trace|debug|info|warn|error (default warn)
  --help               this text
)";

bool ParseIds(const std::string& s, std::vector<int32_t>* out) {
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v < 0 || v > INT32_MAX) return false;
    out->push_back(static_cast<int32_t>(v));
  }
  return true;
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

int Fail(const std::string& msg) {
  std::cerr << "pd-generate: " << msg << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  pd::RunnerOptions ro;
  std::vector<int32_t> prompt, stop_ids;
  int max_tokens = 16, chunk = 0;
  bool ignore_eos = false;
  pd::SamplingParams sp;
  std::string log_level = "warn";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](std::string* v) {
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--ignore-eos") {
      ignore_eos = true;
    } else if (!next(&v)) {
      return Fail("flag " + a + " needs a value (or is unknown); see --help");
    } else if (a == "--model") {
      ro.model_dir = v;
    } else if (a == "--prompt-ids") {
      if (!ParseIds(v, &prompt)) return Fail("--prompt-ids: '" + v + "' is not a list of ids");
    } else if (a == "--stop-ids") {
      if (!ParseIds(v, &stop_ids)) return Fail("--stop-ids: '" + v + "' is not a list of ids");
    } else if (a == "--max-tokens") {
      if (!ParseInt(v, 1, 1 << 30, &max_tokens)) return Fail("--max-tokens: '" + v + "' is not a positive integer");
    } else if (a == "--backend") {
      ro.backend = v;
    } else if (a == "--temperature") {
      if (!ParseFloat(v, &sp.temperature) || sp.temperature < 0) return Fail("--temperature: '" + v + "' is not a number >= 0");
    } else if (a == "--top-k") {
      if (!ParseInt(v, 0, 1 << 30, &sp.top_k)) return Fail("--top-k: '" + v + "' is not an integer >= 0");
    } else if (a == "--top-p") {
      if (!ParseFloat(v, &sp.top_p)) return Fail("--top-p: '" + v + "' is not a number");
    } else if (a == "--seed") {
      char* end = nullptr;
      errno = 0;
      sp.seed = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno != 0 || v[0] == '-') {
        return Fail("--seed: '" + v + "' is not an unsigned integer");
      }
    } else if (a == "--chunk") {
      if (!ParseInt(v, 1, 1 << 30, &chunk)) return Fail("--chunk: '" + v + "' is not a positive integer");
    } else if (a == "--kv-dtype") {
      std::string d = v == "fp32" ? "float32" : v == "bf16" ? "bfloat16" : v == "fp16" ? "float16" : v;
      if (!pd::ParseDType(d, &ro.kv_dtype)) return Fail("--kv-dtype: unknown '" + v + "'");
    } else if (a == "--block-size") {
      if (!ParseInt(v, 1, 1 << 20, &ro.block_size)) return Fail("--block-size: '" + v + "' is not a positive integer");
    } else if (a == "--threads") {
      if (!ParseInt(v, 0, 4096, &ro.num_threads)) return Fail("--threads: '" + v + "' is not an integer >= 0");
    } else if (a == "--gpu") {
      if (!ParseInt(v, 0, 1024, &ro.gpu_id)) return Fail("--gpu: '" + v + "' is not an integer >= 0");
    } else if (a == "--log-level") {
      log_level = v;
    } else {
      return Fail("unknown flag " + a + "; see --help");
    }
  }
  pd::SetLogLevel(log_level);
  if (ro.model_dir.empty()) return Fail("--model is required");
  if (prompt.empty()) return Fail("--prompt-ids is required and must not be empty");
  if (max_tokens <= 0) return Fail("--max-tokens must be positive");
  if (ro.block_size <= 0) return Fail("--block-size must be positive");
  if (sp.top_p <= 0.f || sp.top_p > 1.f) return Fail("--top-p must be in (0, 1]");
  if (sp.top_k < 0) return Fail("--top-k must be >= 0");
  const int total = static_cast<int>(prompt.size()) + max_tokens;
  ro.num_kv_blocks = (total + ro.block_size - 1) / ro.block_size;
  if (chunk <= 0) chunk = static_cast<int>(prompt.size());
  ro.max_batch_tokens = std::max<int>(chunk, 1);

  auto t0 = std::chrono::steady_clock::now();
  auto runner_or = pd::CreateModelRunner(ro);
  if (!runner_or.ok()) {
    std::cerr << "pd-generate: " << runner_or.status().ToString() << "\n";
    return 1;
  }
  auto& runner = *runner_or;
  const auto& eos = runner->config().eos_token_ids;
  auto t1 = std::chrono::steady_clock::now();

  pd::ForwardBatch b;
  b.seqs.resize(1);
  b.block_indptr = {0, ro.num_kv_blocks};
  for (int i = 0; i < ro.num_kv_blocks; ++i) b.block_ids.push_back(i);
  std::vector<int32_t> out;
  pd::ForwardResult r;
  int done = 0;
  double prefill_ms = 0;
  while (done < static_cast<int>(prompt.size())) {  // prefill, possibly chunked
    int n = std::min<int>(chunk, static_cast<int>(prompt.size()) - done);
    b.seqs[0] = {n, done, done + n == static_cast<int>(prompt.size()), sp, 0};
    b.token_ids.assign(prompt.begin() + done, prompt.begin() + done + n);
    pd::Status s = runner->Forward(b, &r);
    if (!s.ok()) {
      std::cerr << "pd-generate: " << s.ToString() << "\n";
      return 1;
    }
    done += n;
  }
  auto t2 = std::chrono::steady_clock::now();
  prefill_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  int32_t tok = r.tokens[0];
  for (int step = 0;; ++step) {
    out.push_back(tok);
    bool stop = (!ignore_eos && std::find(eos.begin(), eos.end(), tok) != eos.end()) ||
                std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end();
    if (stop || static_cast<int>(out.size()) >= max_tokens) break;
    b.seqs[0] = {1, done, true, sp, static_cast<uint64_t>(step + 1)};
    b.token_ids = {tok};
    pd::Status s = runner->Forward(b, &r);
    if (!s.ok()) {
      std::cerr << "pd-generate: " << s.ToString() << "\n";
      return 1;
    }
    ++done;
    tok = r.tokens[0];
  }
  auto t3 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < out.size(); ++i) std::cout << (i ? "," : "") << out[i];
  std::cout << "\n";
  double dec_s = std::chrono::duration<double>(t3 - t2).count();
  std::fprintf(stderr,
               "load %.1f ms | prefill %zu tokens %.1f ms (%.1f tok/s) | decode %zu tokens %.1f ms "
               "(%.2f tok/s) | backend %s\n",
               std::chrono::duration<double, std::milli>(t1 - t0).count(), prompt.size(), prefill_ms,
               prompt.size() / (prefill_ms / 1000.0), out.size() - 1, dec_s * 1000,
               out.size() > 1 ? (out.size() - 1) / dec_s : 0.0, runner->backend_name().c_str());
  return 0;
}
