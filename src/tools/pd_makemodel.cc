// pd-makemodel: writes a random-weight Hugging Face model directory (config.json +
// model.safetensors) for tests, demos and benchmarks.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include "model/makemodel.h"

namespace {

constexpr char kUsage[] = R"(usage: pd-makemodel --out DIR [options]

Writes DIR/config.json (transformers 5.x spelling) and DIR/model.safetensors with deterministic
random weights. Files are written under temporary names and renamed when complete.

  --out DIR            output directory (created if missing)                         [required]
  --preset NAME        shapes: tiny (~3 MB), llama-3.2-1b, llama-3.1-8b              [tiny]
  --arch NAME          llama | mistral | qwen2 (q/k/v bias) | qwen3 (q/k norm)       [llama]
  --seed N             random seed; same seed and options give identical files       [0]
  --dtype T            bf16 | fp16 | fp32                                            [bf16]
  --layers N           num_hidden_layers
  --hidden N           hidden_size (head_dim follows hidden/heads unless --head-dim)
  --intermediate N     intermediate_size (MLP)
  --heads N            num_attention_heads
  --kv-heads N         num_key_value_heads (GQA; must divide --heads)
  --head-dim N         head_dim (even)
  --vocab N            vocab_size
  --max-pos N          max_position_embeddings
  --rope-theta X       RoPE base
  --tie                tie lm_head to the embeddings (no lm_head.weight)
  --no-tie             untied lm_head
  --sliding-window N   sliding-window attention (mistral only)
  --attention-bias     biases on q/k/v/o projections (llama, qwen3)
  --mlp-bias           biases on gate/up/down projections (llama)
  --tokenizer FILE     copy this tokenizer.json into DIR; vocab_size = its max token id + 1
                       (--vocab may only make it larger); bos/eos ids from its special tokens
  --quiet              no progress bar
  --help               this text

Presets: tiny = hidden 128, 4 layers, 4 heads, 2 kv heads, head_dim 32, intermediate 384,
vocab 2048, max_pos 4096. llama-3.2-1b / llama-3.1-8b = the real shapes (vocab 128256, llama3
rope scaling, 1b tied). Exit status 0 on success, 2 on bad flags, 1 on other errors.
)";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "pd-makemodel: %s\n(see pd-makemodel --help)\n", msg.c_str());
  return 2;
}

bool ParseInt(const std::string& s, int* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v <= 0 || v > (1 << 30)) return false;
  *out = static_cast<int>(v);
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

bool ParseDouble(const std::string& s, double* out) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || v > 1e15) return false;
  *out = v;
  return true;
}

// Parses argv into `o`. Returns -1 to go on, else the exit code (0 for --help).
int ParseFlags(int argc, char** argv, pd::MakeModelOptions* o) {
  std::map<std::string, int*> ints = {{"--layers", &o->layers},
                                      {"--hidden", &o->hidden},
                                      {"--intermediate", &o->intermediate},
                                      {"--heads", &o->heads},
                                      {"--kv-heads", &o->kv_heads},
                                      {"--head-dim", &o->head_dim},
                                      {"--vocab", &o->vocab},
                                      {"--max-pos", &o->max_pos},
                                      {"--sliding-window", &o->sliding_window}};
  std::map<std::string, std::string*> strs = {{"--out", &o->out_dir},
                                              {"--preset", &o->preset},
                                              {"--arch", &o->arch},
                                              {"--tokenizer", &o->tokenizer_path}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--tie" || a == "--no-tie") {
      o->tie = a == "--tie";
      continue;
    }
    if (a == "--attention-bias" || a == "--mlp-bias" || a == "--quiet") {
      if (a == "--attention-bias") o->attention_bias = true;
      if (a == "--mlp-bias") o->mlp_bias = true;
      if (a == "--quiet") o->progress = false;
      continue;
    }
    const bool takes_value =
        ints.count(a) || strs.count(a) || a == "--seed" || a == "--dtype" || a == "--rope-theta";
    if (!takes_value) return Fail("unknown flag '" + a + "'");
    if (i + 1 >= argc) return Fail("flag " + a + " needs a value");
    const std::string v = argv[++i];
    if (ints.count(a)) {
      if (!ParseInt(v, ints[a])) return Fail(a + " expects a positive integer, got '" + v + "'");
    } else if (strs.count(a)) {
      *strs[a] = v;
    } else if (a == "--seed") {
      if (!ParseU64(v, &o->seed))
        return Fail("--seed expects a non-negative integer, got '" + v + "'");
    } else if (a == "--rope-theta") {
      if (!ParseDouble(v, &o->rope_theta))
        return Fail("--rope-theta expects a positive number, got '" + v + "'");
    } else if (v == "bf16" || v == "fp16" || v == "fp32") {
      o->dtype = v == "bf16" ? pd::DType::kBF16 : v == "fp16" ? pd::DType::kF16 : pd::DType::kF32;
    } else {
      return Fail("--dtype expects bf16, fp16 or fp32, got '" + v + "'");
    }
  }
  if (o->out_dir.empty()) return Fail("--out DIR is required");
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  pd::MakeModelOptions o;
  o.progress = true;
  if (int rc = ParseFlags(argc, argv, &o); rc >= 0) return rc;
  auto cfg = pd::MakeModelConfig(o);
  if (!cfg.ok()) return Fail(cfg.status().message());
  const auto t0 = std::chrono::steady_clock::now();
  pd::Status s = pd::WriteRandomModel(o);
  if (!s.ok()) {
    std::fprintf(stderr, "pd-makemodel: %s\n", s.ToString().c_str());
    return 1;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const pd::ModelConfig& c = *cfg;
  std::fprintf(stderr,
               "pd-makemodel: wrote %s (%s, %d layers, hidden %d, heads %d/%d, head_dim %d, vocab "
               "%d, %s) in %.1f s\n",
               o.out_dir.c_str(), c.architecture.c_str(), c.num_layers, c.hidden_size, c.num_heads,
               c.num_kv_heads, c.head_dim, c.vocab_size, pd::DTypeName(c.dtype), secs);
  return 0;
}
