#include "model/makemodel.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "model/safetensors.h"

namespace pd {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

ModelConfig TinyPreset() {
  ModelConfig c;
  c.vocab_size = 2048;
  c.hidden_size = 128;
  c.intermediate_size = 384;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 4096;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig Llama3Preset(bool small) {
  ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = small ? 2048 : 4096;
  c.intermediate_size = small ? 8192 : 14336;
  c.num_layers = small ? 16 : 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = small ? 64 : 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = small ? 32.0 : 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  c.max_position_embeddings = 131072;
  c.tie_word_embeddings = small;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  return c;
}

Status ApplyArch(const MakeModelOptions& o, ModelConfig* c) {
  if (o.mlp_bias && o.arch != "llama") return InvalidArgument("--mlp-bias needs --arch llama");
  if (o.attention_bias && o.arch != "llama" && o.arch != "qwen3") {
    return InvalidArgument("--attention-bias needs --arch llama or qwen3");
  }
  if (o.sliding_window >= 0 && o.arch != "mistral") {
    return InvalidArgument("--sliding-window needs --arch mistral");
  }
  if (o.arch == "llama") {
    c->arch = Arch::kLlama;
    c->architecture = "LlamaForCausalLM";
    c->qkv_bias = c->o_bias = o.attention_bias;
    c->mlp_bias = o.mlp_bias;
  } else if (o.arch == "mistral") {
    c->arch = Arch::kMistral;
    c->architecture = "MistralForCausalLM";
    c->sliding_window = std::max(o.sliding_window, 0);
  } else if (o.arch == "qwen2") {
    c->arch = Arch::kQwen2;
    c->architecture = "Qwen2ForCausalLM";
    c->qkv_bias = true;
  } else if (o.arch == "qwen3") {
    c->arch = Arch::kQwen3;
    c->architecture = "Qwen3ForCausalLM";
    c->qkv_bias = c->o_bias = o.attention_bias;
    c->qk_norm = true;
  } else {
    return InvalidArgument("unknown arch '" + o.arch + "' (expected llama, mistral, qwen2, qwen3)");
  }
  return OkStatus();
}

void ApplyOverrides(const MakeModelOptions& o, ModelConfig* c) {
  const bool reshape = o.hidden > 0 || o.heads > 0;
  if (o.layers > 0) c->num_layers = o.layers;
  if (o.hidden > 0) c->hidden_size = o.hidden;
  if (o.intermediate > 0) c->intermediate_size = o.intermediate;
  if (o.heads > 0) c->num_heads = o.heads;
  if (o.kv_heads > 0) c->num_kv_heads = o.kv_heads;
  if (o.head_dim > 0) {
    c->head_dim = o.head_dim;
  } else if (reshape) {
    c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  }
  if (o.vocab > 0) c->vocab_size = o.vocab;
  if (o.max_pos > 0) c->max_position_embeddings = o.max_pos;
  if (o.rope_theta > 0) c->rope_theta = o.rope_theta;
  if (o.tie >= 0) c->tie_word_embeddings = o.tie != 0;
  c->dtype = o.dtype;
}

// Finds the id of the first of `names` present in the tokenizer's vocabulary or added tokens.
int FindSpecial(const json& tok, const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
      for (const json& a : tok["added_tokens"]) {
        if (a.is_object() && a.value("content", "") == n && a.contains("id") &&
            a["id"].is_number_integer()) {
          return a["id"].get<int>();
        }
      }
    }
    const json* model = tok.contains("model") ? &tok["model"] : nullptr;
    if (model && model->contains("vocab") && (*model)["vocab"].is_object() &&
        (*model)["vocab"].contains(n) && (*model)["vocab"][n].is_number_integer()) {
      return (*model)["vocab"][n].get<int>();
    }
  }
  return -1;
}

Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return OkStatus();
}

Status ApplyTokenizer(const MakeModelOptions& o, ModelConfig* c) {
  PD_ASSIGN_OR_RETURN(int n, TokenizerVocabSize(o.tokenizer_path));
  if (o.vocab > 0 && o.vocab < n) {
    return InvalidArgument("--vocab " + std::to_string(o.vocab) + " is smaller than the " +
                           std::to_string(n) + " ids of " + o.tokenizer_path);
  }
  c->vocab_size = o.vocab > 0 ? o.vocab : n;
  std::string text;
  PD_RETURN_IF_ERROR(ReadFile(o.tokenizer_path, &text));
  json tok = json::parse(text, nullptr, /*allow_exceptions=*/false);
  int bos = FindSpecial(tok, {"<|begin_of_text|>", "<s>", "<bos>"});
  int eos = FindSpecial(tok, {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"});
  int eot = FindSpecial(tok, {"<|eot_id|>", "<|im_end|>", "<end_of_turn>"});
  c->bos_token_id = bos;
  c->eos_token_ids.clear();
  if (eos >= 0) c->eos_token_ids.push_back(eos);
  if (eot >= 0 && eot != eos) c->eos_token_ids.push_back(eot);
  return OkStatus();
}

// Counter-based RNG (splitmix64): value i of a stream depends only on (key, i).
inline uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t StreamKey(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return SplitMix(seed ^ SplitMix(h));
}

// Approximately standard normal: four 16-bit uniforms summed and rescaled to unit variance.
inline float NormalIsh(uint64_t key, uint64_t i) {
  uint64_t r = SplitMix(key + i * 0xd1342543de82ef95ull);
  float s = 0;
  for (int k = 0; k < 4; ++k) s += (static_cast<float>((r >> (16 * k)) & 0xffff) + 0.5f);
  return (s / 65536.0f - 2.0f) * 1.7320508f;
}

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float mean, stddev;
};

std::vector<TensorSpec> Specs(const ModelConfig& c) {
  const int64_t h = c.hidden_size, v = c.vocab_size, im = c.intermediate_size, hd = c.head_dim;
  const int64_t q = int64_t{c.num_heads} * hd, kv = int64_t{c.num_kv_heads} * hd;
  const float emb = 2.0f / std::sqrt(static_cast<float>(h));
  auto lin = [](int64_t in) { return 1.0f / std::sqrt(static_cast<float>(in)); };
  std::vector<TensorSpec> s;
  s.push_back({"model.embed_tokens.weight", {v, h}, 0.f, emb});
  s.push_back({"model.norm.weight", {h}, 1.f, 0.1f});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {v, h}, 0.f, emb});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", {h}, 1.f, 0.1f});
    s.push_back({p + "post_attention_layernorm.weight", {h}, 1.f, 0.1f});
    s.push_back({p + "self_attn.q_proj.weight", {q, h}, 0.f, lin(h)});
    s.push_back({p + "self_attn.k_proj.weight", {kv, h}, 0.f, lin(h)});
    s.push_back({p + "self_attn.v_proj.weight", {kv, h}, 0.f, lin(h)});
    s.push_back({p + "self_attn.o_proj.weight", {h, q}, 0.f, lin(q)});
    s.push_back({p + "mlp.gate_proj.weight", {im, h}, 0.f, lin(h)});
    s.push_back({p + "mlp.up_proj.weight", {im, h}, 0.f, lin(h)});
    s.push_back({p + "mlp.down_proj.weight", {h, im}, 0.f, lin(im)});
    if (c.qkv_bias) {
      s.push_back({p + "self_attn.q_proj.bias", {q}, 0.f, 0.1f});
      s.push_back({p + "self_attn.k_proj.bias", {kv}, 0.f, 0.1f});
      s.push_back({p + "self_attn.v_proj.bias", {kv}, 0.f, 0.1f});
    }
    if (c.o_bias) s.push_back({p + "self_attn.o_proj.bias", {h}, 0.f, 0.1f});
    if (c.qk_norm) {
      s.push_back({p + "self_attn.q_norm.weight", {hd}, 1.f, 0.1f});
      s.push_back({p + "self_attn.k_norm.weight", {hd}, 1.f, 0.1f});
    }
    if (c.mlp_bias) {
      s.push_back({p + "mlp.gate_proj.bias", {im}, 0.f, 0.1f});
      s.push_back({p + "mlp.up_proj.bias", {im}, 0.f, 0.1f});
      s.push_back({p + "mlp.down_proj.bias", {h}, 0.f, 0.1f});
    }
  }
  return s;
}

// Progress on stderr: a redrawn bar on a terminal, else a line every 10%.
class ProgressBar {
 public:
  ProgressBar() : tty_(::isatty(2) != 0) {}
  void Update(uint64_t done, uint64_t total) {
    int pct = total ? static_cast<int>(done * 100 / total) : 100;
    if (pct == last_ || (!tty_ && pct % 10 != 0)) return;
    last_ = pct;
    if (tty_) {
      const int width = 40, filled = pct * width / 100;
      std::fprintf(stderr, "\r[%s%s] %3d%% %.2f/%.2f GB", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), pct, done / 1e9, total / 1e9);
      if (pct == 100) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "pd-makemodel: %3d%% %.2f/%.2f GB\n", pct, done / 1e9, total / 1e9);
    }
    std::fflush(stderr);
  }

 private:
  bool tty_;
  int last_ = -1;
};

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp);
      return Internal("error writing " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::filesystem::remove(tmp);
    return Internal("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return OkStatus();
}

}  // namespace

StatusOr<ModelConfig> MakeModelConfig(const MakeModelOptions& o) {
  ModelConfig c;
  if (o.preset == "tiny") {
    c = TinyPreset();
  } else if (o.preset == "llama-3.2-1b" || o.preset == "llama-3.1-8b") {
    c = Llama3Preset(o.preset == "llama-3.2-1b");
  } else {
    return InvalidArgument("unknown preset '" + o.preset +
                           "' (expected tiny, llama-3.2-1b, llama-3.1-8b)");
  }
  PD_RETURN_IF_ERROR(ApplyArch(o, &c));
  ApplyOverrides(o, &c);
  if (!o.tokenizer_path.empty()) PD_RETURN_IF_ERROR(ApplyTokenizer(o, &c));
  if (c.bos_token_id >= c.vocab_size) c.bos_token_id = -1;
  std::erase_if(c.eos_token_ids, [&](int id) { return id >= c.vocab_size; });
  PD_RETURN_IF_ERROR(c.Validate());
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  static const char* kModelType[] = {"llama", "mistral", "qwen2", "qwen3"};
  ojson j;
  j["architectures"] = {c.architecture};
  j["model_type"] = kModelType[static_cast<int>(c.arch)];
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  ojson rope = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
  if (c.rope_scaling.type == RopeScaling::Type::kLinear) {
    rope["rope_type"] = "linear";
    rope["factor"] = c.rope_scaling.factor;
  } else if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
    rope["rope_type"] = "llama3";
    rope["factor"] = c.rope_scaling.factor;
    rope["low_freq_factor"] = c.rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = c.rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
  }
  j["rope_parameters"] = rope;
  if (c.arch == Arch::kLlama) {
    j["attention_bias"] = c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  } else if (c.arch == Arch::kQwen3) {
    j["attention_bias"] = c.qkv_bias;
  }
  if (c.arch == Arch::kMistral) {
    j["sliding_window"] = c.sliding_window > 0 ? ojson(c.sliding_window) : ojson(nullptr);
  } else if (c.arch == Arch::kQwen2 || c.arch == Arch::kQwen3) {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["dtype"] = DTypeName(c.dtype);
  j["bos_token_id"] = c.bos_token_id >= 0 ? ojson(c.bos_token_id) : ojson(nullptr);
  if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else if (!c.eos_token_ids.empty()) {
    j["eos_token_id"] = c.eos_token_ids;
  }
  j["use_cache"] = true;
  j["pdserve_random_weights"] = true;
  return j.dump(2) + "\n";
}

StatusOr<int> TokenizerVocabSize(const std::string& path) {
  std::string text;
  PD_RETURN_IF_ERROR(ReadFile(path, &text));
  json tok = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (tok.is_discarded() || !tok.is_object()) return InvalidArgument(path + ": not a JSON object");
  int64_t max_id = -1;
  auto consider = [&](const json& id) {
    if (id.is_number_integer()) max_id = std::max<int64_t>(max_id, id.get<int64_t>());
  };
  if (tok.contains("model") && tok["model"].is_object() && tok["model"].contains("vocab")) {
    const json& vocab = tok["model"]["vocab"];
    if (vocab.is_object()) {
      for (const auto& item : vocab.items()) consider(item.value());
    } else if (vocab.is_array()) {  // Unigram: [[piece, score], ...], id = index
      max_id = std::max<int64_t>(max_id, static_cast<int64_t>(vocab.size()) - 1);
    }
  }
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const json& a : tok["added_tokens"]) {
      if (a.is_object() && a.contains("id")) consider(a["id"]);
    }
  }
  if (max_id < 0) return InvalidArgument(path + ": no token ids in model.vocab or added_tokens");
  if (max_id >= (1 << 24))
    return InvalidArgument(path + ": token id " + std::to_string(max_id) + " is too large");
  return static_cast<int>(max_id + 1);
}

Status WriteRandomSafetensors(const ModelConfig& c, uint64_t seed, const std::string& path,
                              bool progress) {
  std::vector<TensorSpec> specs = Specs(c);
  SafetensorsWriter w;
  std::vector<uint64_t> keys;
  for (const TensorSpec& s : specs) {
    w.Add(s.name, c.dtype, s.shape);
    keys.push_back(StreamKey(seed, s.name));
  }
  w.Finish();
  const size_t es = DTypeSize(c.dtype);
  std::vector<float> tmp;
  auto fill = [&](size_t t, uint64_t off, void* buf, size_t bytes) {
    const size_t n = bytes / es;
    const uint64_t first = off / es;
    tmp.resize(n);
    const TensorSpec& s = specs[t];
    for (size_t i = 0; i < n; ++i) tmp[i] = s.mean + s.stddev * NormalIsh(keys[t], first + i);
    FromF32(c.dtype, tmp.data(), buf, n);
  };
  ProgressBar bar;
  std::function<void(uint64_t, uint64_t)> on_progress;
  if (progress && w.data_bytes() > (100u << 20)) {
    on_progress = [&](uint64_t d, uint64_t t) { bar.Update(d, t); };
  }
  return w.Write(path, fill, on_progress);
}

Status WriteRandomModel(const MakeModelOptions& o) {
  if (o.out_dir.empty()) return InvalidArgument("no output directory (--out)");
  PD_ASSIGN_OR_RETURN(ModelConfig c, MakeModelConfig(o));
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) return Internal("cannot create directory " + o.out_dir + ": " + ec.message());
  const std::string st = o.out_dir + "/model.safetensors";
  const std::string tmp = st + ".tmp-" + std::to_string(::getpid());
  Status s = WriteRandomSafetensors(c, o.seed, tmp, o.progress);
  if (s.ok() && std::rename(tmp.c_str(), st.c_str()) != 0) {
    s = Internal("cannot rename " + tmp + " to " + st + ": " + std::strerror(errno));
  }
  if (!s.ok()) {
    std::filesystem::remove(tmp, ec);
    return s;
  }
  if (!o.tokenizer_path.empty()) {
    std::string text;
    PD_RETURN_IF_ERROR(ReadFile(o.tokenizer_path, &text));
    PD_RETURN_IF_ERROR(WriteFileAtomically(o.out_dir + "/tokenizer.json", text));
  }
  return WriteFileAtomically(o.out_dir + "/config.json", ModelConfigToJson(c));
}

}  // namespace pd
