#include "model/model_config.h"
#include "common/json_excerpt.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace pd {
namespace {

using json = nlohmann::json;

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Small typed accessors over a JSON object. Each error names the field (with `prefix`, e.g.
// "rope_scaling.") and what was found.
class Fields {
 public:
  Fields(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {}

  bool Has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  std::string Name(const char* key) const { return prefix_ + key; }

  // Integer field; absent/null -> *out unchanged unless `required`.
  Status Int(const char* key, int* out, bool required = false) const {
    if (!Has(key)) return required ? Missing(key) : OkStatus();
    const json& v = j_.at(key);
    double d = 0;
    if (v.is_number_integer()) {
      int64_t i = v.get<int64_t>();
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return OutOfRangeField(key, v);
      }
      d = static_cast<double>(i);
    } else if (v.is_number_float()) {
      d = v.get<double>();
      if (d != std::floor(d))
        return InvalidArgument(Name(key) + " must be an integer, got " + JsonExcerpt(v));
    } else {
      return InvalidArgument(Name(key) + " must be an integer, got " + JsonExcerpt(v));
    }
    if (d < std::numeric_limits<int>::min() || d > std::numeric_limits<int>::max()) {
      return OutOfRangeField(key, v);
    }
    *out = static_cast<int>(d);
    return OkStatus();
  }

  Status Double(const char* key, double* out, bool required = false) const {
    if (!Has(key)) return required ? Missing(key) : OkStatus();
    const json& v = j_.at(key);
    if (!v.is_number()) return InvalidArgument(Name(key) + " must be a number, got " + JsonExcerpt(v));
    *out = v.get<double>();
    return OkStatus();
  }

  Status Bool(const char* key, bool* out) const {
    if (!Has(key)) return OkStatus();
    const json& v = j_.at(key);
    if (!v.is_boolean())
      return InvalidArgument(Name(key) + " must be true or false, got " + JsonExcerpt(v));
    *out = v.get<bool>();
    return OkStatus();
  }

  Status String(const char* key, std::string* out, bool required = false) const {
    if (!Has(key)) return required ? Missing(key) : OkStatus();
    const json& v = j_.at(key);
    if (!v.is_string()) return InvalidArgument(Name(key) + " must be a string, got " + JsonExcerpt(v));
    *out = v.get<std::string>();
    return OkStatus();
  }

 private:
  Status Missing(const char* key) const { return InvalidArgument("missing field " + Name(key)); }
  Status OutOfRangeField(const char* key, const json& v) const {
    return InvalidArgument(Name(key) + " = " + JsonExcerpt(v) + " is out of range");
  }

  const json& j_;
  std::string prefix_;
};

Status ParseArch(const json& j, ModelConfig* c) {
  auto it = j.find("architectures");
  if (it == j.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) {
    return InvalidArgument("architectures must be a non-empty list of strings");
  }
  c->architecture = (*it)[0].get<std::string>();
  if (c->architecture == "LlamaForCausalLM") {
    c->arch = Arch::kLlama;
  } else if (c->architecture == "MistralForCausalLM") {
    c->arch = Arch::kMistral;
  } else if (c->architecture == "Qwen2ForCausalLM") {
    c->arch = Arch::kQwen2;
  } else if (c->architecture == "Qwen3ForCausalLM") {
    c->arch = Arch::kQwen3;
  } else {
    return Unimplemented("architectures: " + Quote(c->architecture) +
                         " is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
                         "Qwen2ForCausalLM, Qwen3ForCausalLM)");
  }
  return OkStatus();
}

// Parses a rope scaling object (4.x "rope_scaling" or 5.x "rope_parameters"); `name` is the field.
Status ParseRopeObject(const json& r, const std::string& name, ModelConfig* c) {
  if (!r.is_object()) return InvalidArgument(name + " must be an object, got " + JsonExcerpt(r));
  Fields f(r, name + ".");
  std::string type = "default";
  const char* type_key = r.contains("rope_type") ? "rope_type" : "type";
  PD_RETURN_IF_ERROR(f.String(type_key, &type));
  PD_RETURN_IF_ERROR(f.Double("rope_theta", &c->rope_theta));  // 5.x keeps theta here
  RopeScaling& s = c->rope_scaling;
  if (type == "default" || type == "none") {
    s.type = RopeScaling::Type::kNone;
  } else if (type == "linear") {
    s.type = RopeScaling::Type::kLinear;
    PD_RETURN_IF_ERROR(f.Double("factor", &s.factor, /*required=*/true));
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
    PD_RETURN_IF_ERROR(f.Double("factor", &s.factor, true));
    PD_RETURN_IF_ERROR(f.Double("low_freq_factor", &s.low_freq_factor, true));
    PD_RETURN_IF_ERROR(f.Double("high_freq_factor", &s.high_freq_factor, true));
    PD_RETURN_IF_ERROR(
        f.Int("original_max_position_embeddings", &s.original_max_position_embeddings, true));
  } else {
    return Unimplemented(name + "." + type_key + " = " + Quote(type) +
                         " is not supported (supported: default, linear, llama3)");
  }
  if (r.contains("partial_rotary_factor") && r["partial_rotary_factor"].is_number() &&
      r["partial_rotary_factor"].get<double>() != 1.0) {
    return Unimplemented(name + ".partial_rotary_factor = " + JsonExcerpt(r["partial_rotary_factor"]) +
                         " is not supported (only 1.0)");
  }
  return OkStatus();
}

Status ParseRope(const json& j, ModelConfig* c) {
  Fields f(j, "");
  PD_RETURN_IF_ERROR(f.Double("rope_theta", &c->rope_theta));  // 4.x
  if (f.Has("rope_parameters")) return ParseRopeObject(j["rope_parameters"], "rope_parameters", c);
  if (f.Has("rope_scaling")) return ParseRopeObject(j["rope_scaling"], "rope_scaling", c);
  return OkStatus();
}

// Sliding-window attention: the window applies to all layers or to none.
Status ParseSlidingWindow(const json& j, ModelConfig* c) {
  Fields f(j, "");
  int window = 0;
  PD_RETURN_IF_ERROR(f.Int("sliding_window", &window));
  bool use_sliding = true;  // Qwen2/Qwen3 gate the window with use_sliding_window
  if (c->arch == Arch::kQwen2 || c->arch == Arch::kQwen3) {
    use_sliding = false;
    PD_RETURN_IF_ERROR(f.Bool("use_sliding_window", &use_sliding));
  }
  if (c->arch == Arch::kLlama || !use_sliding) window = 0;
  if (f.Has("layer_types")) {
    const json& lt = j["layer_types"];
    if (!lt.is_array()) return InvalidArgument("layer_types must be a list");
    int sliding = 0, full = 0;
    for (const json& t : lt) {
      if (t == "sliding_attention") {
        ++sliding;
      } else if (t == "full_attention") {
        ++full;
      } else {
        return Unimplemented("layer_types: layer type " + JsonExcerpt(t) + " is not supported");
      }
    }
    if (sliding > 0 && full > 0) {
      return Unimplemented("layer_types: mixed sliding_attention (" + std::to_string(sliding) +
                           ") and full_attention (" + std::to_string(full) +
                           ") layers are not supported");
    }
    if (static_cast<int>(lt.size()) != c->num_layers) {
      return InvalidArgument("layer_types has " + std::to_string(lt.size()) +
                             " entries but num_hidden_layers = " + std::to_string(c->num_layers));
    }
    if (full > 0) window = 0;
    if (sliding > 0 && window <= 0) {
      return InvalidArgument(
          "layer_types: sliding_attention layers need a positive sliding_window");
    }
  } else if (window > 0 && (c->arch == Arch::kQwen2 || c->arch == Arch::kQwen3)) {
    // Qwen: layers >= max_window_layers slide, earlier layers attend fully.
    int max_window_layers = 0;
    PD_RETURN_IF_ERROR(f.Int("max_window_layers", &max_window_layers));
    if (max_window_layers >= c->num_layers) {
      window = 0;
    } else if (max_window_layers > 0) {
      return Unimplemented(
          "use_sliding_window with max_window_layers = " + std::to_string(max_window_layers) +
          " mixes sliding and full attention layers, which is not supported");
    }
  }
  c->sliding_window = window;
  return OkStatus();
}

Status ParseTokenIds(const json& j, ModelConfig* c) {
  Fields f(j, "");
  PD_RETURN_IF_ERROR(f.Int("bos_token_id", &c->bos_token_id));
  c->eos_token_ids.clear();
  if (!f.Has("eos_token_id")) return OkStatus();
  const json& e = j["eos_token_id"];
  if (e.is_array()) {
    for (size_t i = 0; i < e.size(); ++i) {
      if (!e[i].is_number_integer()) {
        return InvalidArgument("eos_token_id[" + std::to_string(i) + "] must be an integer, got " +
                               JsonExcerpt(e[i]));
      }
      int64_t v = e[i].get<int64_t>();
      if (v < 0 || v > std::numeric_limits<int>::max()) {
        return InvalidArgument("eos_token_id[" + std::to_string(i) + "] = " + JsonExcerpt(e[i]) +
                               " is out of range");
      }
      c->eos_token_ids.push_back(static_cast<int>(v));
    }
    return OkStatus();
  }
  int id = -1;
  PD_RETURN_IF_ERROR(f.Int("eos_token_id", &id));
  c->eos_token_ids.push_back(id);
  return OkStatus();
}

Status ParseDims(const json& j, ModelConfig* c) {
  Fields f(j, "");
  PD_RETURN_IF_ERROR(f.Int("vocab_size", &c->vocab_size, true));
  PD_RETURN_IF_ERROR(f.Int("hidden_size", &c->hidden_size, true));
  PD_RETURN_IF_ERROR(f.Int("intermediate_size", &c->intermediate_size, true));
  PD_RETURN_IF_ERROR(f.Int("num_hidden_layers", &c->num_layers, true));
  PD_RETURN_IF_ERROR(f.Int("num_attention_heads", &c->num_heads, true));
  c->num_kv_heads = c->num_heads;
  PD_RETURN_IF_ERROR(f.Int("num_key_value_heads", &c->num_kv_heads));
  c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  if (c->num_heads > 0 && !f.Has("head_dim") && c->hidden_size % c->num_heads != 0) {
    return InvalidArgument("hidden_size = " + std::to_string(c->hidden_size) +
                           " is not divisible by num_attention_heads = " +
                           std::to_string(c->num_heads) + " and head_dim is not given");
  }
  PD_RETURN_IF_ERROR(f.Int("head_dim", &c->head_dim));
  PD_RETURN_IF_ERROR(f.Double("rms_norm_eps", &c->rms_norm_eps));
  PD_RETURN_IF_ERROR(f.Int("max_position_embeddings", &c->max_position_embeddings));
  return f.Bool("tie_word_embeddings", &c->tie_word_embeddings);
}

Status ParseFeatures(const json& j, ModelConfig* c) {
  Fields f(j, "");
  std::string act = "silu";
  PD_RETURN_IF_ERROR(f.String("hidden_act", &act));
  if (act != "silu") {
    return Unimplemented("hidden_act = " + Quote(act) + " is not supported (only 'silu')");
  }
  if (f.Has("quantization_config")) {
    return Unimplemented("quantization_config: quantized checkpoints are not supported");
  }
  bool attention_bias = false, mlp_bias = false;
  PD_RETURN_IF_ERROR(f.Bool("attention_bias", &attention_bias));
  PD_RETURN_IF_ERROR(f.Bool("mlp_bias", &mlp_bias));
  c->qkv_bias = c->o_bias = c->mlp_bias = c->qk_norm = false;
  switch (c->arch) {
    case Arch::kLlama:
      c->qkv_bias = c->o_bias = attention_bias;
      c->mlp_bias = mlp_bias;
      break;
    case Arch::kMistral:
      break;
    case Arch::kQwen2:
      c->qkv_bias = true;
      break;
    case Arch::kQwen3:
      c->qkv_bias = c->o_bias = attention_bias;
      c->qk_norm = true;
      break;
  }
  std::string dtype;
  const char* dtype_key = f.Has("dtype") ? "dtype" : "torch_dtype";
  PD_RETURN_IF_ERROR(f.String(dtype_key, &dtype));
  if (!dtype.empty() && !ParseDType(dtype, &c->dtype)) {
    return Unimplemented(std::string(dtype_key) + " = " + Quote(dtype) +
                         " is not supported (expected float32, float16 or bfloat16)");
  }
  return OkStatus();
}

Status CheckRange(const char* field, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi)) {  // also rejects NaN
    std::ostringstream ss;
    ss << field << " = " << v << " is out of range [" << lo << ", " << hi << "]";
    return InvalidArgument(ss.str());
  }
  return OkStatus();
}

}  // namespace

Status ModelConfig::Validate() const {
  constexpr double kBig = 1 << 24;
  PD_RETURN_IF_ERROR(CheckRange("vocab_size", vocab_size, 1, kBig));
  PD_RETURN_IF_ERROR(CheckRange("hidden_size", hidden_size, 1, 1 << 20));
  PD_RETURN_IF_ERROR(CheckRange("intermediate_size", intermediate_size, 1, 1 << 22));
  PD_RETURN_IF_ERROR(CheckRange("num_hidden_layers", num_layers, 1, 4096));
  PD_RETURN_IF_ERROR(CheckRange("num_attention_heads", num_heads, 1, 4096));
  PD_RETURN_IF_ERROR(CheckRange("num_key_value_heads", num_kv_heads, 1, num_heads));
  if (num_heads % num_kv_heads != 0) {
    return InvalidArgument(
        "num_attention_heads = " + std::to_string(num_heads) +
        " is not a multiple of num_key_value_heads = " + std::to_string(num_kv_heads));
  }
  PD_RETURN_IF_ERROR(CheckRange("head_dim", head_dim, 2, 4096));
  if (head_dim % 2 != 0) {
    return InvalidArgument("head_dim = " + std::to_string(head_dim) + " must be even (RoPE)");
  }
  PD_RETURN_IF_ERROR(CheckRange("rms_norm_eps", rms_norm_eps, 1e-30, 1.0));
  PD_RETURN_IF_ERROR(CheckRange("rope_theta", rope_theta, 1e-9, 1e15));
  PD_RETURN_IF_ERROR(CheckRange("max_position_embeddings", max_position_embeddings, 1, 1 << 30));
  PD_RETURN_IF_ERROR(CheckRange("sliding_window", sliding_window, 0, 1 << 30));
  if (rope_scaling.type != RopeScaling::Type::kNone) {
    PD_RETURN_IF_ERROR(CheckRange("rope_scaling.factor", rope_scaling.factor, 1e-9, 1e9));
  }
  if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    PD_RETURN_IF_ERROR(
        CheckRange("rope_scaling.low_freq_factor", rope_scaling.low_freq_factor, 1e-9, 1e9));
    PD_RETURN_IF_ERROR(CheckRange("rope_scaling.high_freq_factor", rope_scaling.high_freq_factor,
                                  rope_scaling.low_freq_factor, 1e9));
    if (rope_scaling.high_freq_factor == rope_scaling.low_freq_factor) {
      return InvalidArgument("rope_scaling.high_freq_factor must differ from low_freq_factor");
    }
    PD_RETURN_IF_ERROR(CheckRange("rope_scaling.original_max_position_embeddings",
                                  rope_scaling.original_max_position_embeddings, 1, 1 << 30));
  }
  PD_RETURN_IF_ERROR(CheckRange("bos_token_id", bos_token_id, -1, vocab_size - 1));
  for (int id : eos_token_ids)
    PD_RETURN_IF_ERROR(CheckRange("eos_token_id", id, 0, vocab_size - 1));
  return OkStatus();
}

StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return InvalidArgument("top level is not a JSON object");
  ModelConfig c;
  try {
    PD_RETURN_IF_ERROR(ParseArch(j, &c));
    PD_RETURN_IF_ERROR(ParseDims(j, &c));
    PD_RETURN_IF_ERROR(ParseFeatures(j, &c));
    PD_RETURN_IF_ERROR(ParseRope(j, &c));
    PD_RETURN_IF_ERROR(ParseSlidingWindow(j, &c));
    PD_RETURN_IF_ERROR(ParseTokenIds(j, &c));
  } catch (const json::exception& e) {  // defensive: accessors check types first
    return InvalidArgument(std::string("unexpected JSON structure: ") + e.what());
  }
  PD_RETURN_IF_ERROR(c.Validate());
  return c;
}

StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  auto c = ParseModelConfig(ss.str());
  if (!c.ok()) return c.status().WithContext(path);
  return c;
}

}  // namespace pd
