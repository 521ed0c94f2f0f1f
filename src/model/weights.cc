#include "model/weights.h"

#include <cstdlib>
#include <cstring>
#include <set>

#include "common/logging.h"
#include "model/safetensors.h"

namespace pd {
namespace {

std::string Quote(const std::string& s) { return "'" + s + "'"; }

std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// One tensor the config asks for.
struct Expected {
  std::string name;
  std::vector<int64_t> shape;
  std::string why;  // where the shape comes from, for error messages
  TensorView* dst;
  bool required;
};

std::string Dim(const char* field, int64_t v) {
  return std::string(field) + "=" + std::to_string(v);
}

std::vector<Expected> ExpectedTensors(ModelWeights* w) {
  const ModelConfig& c = w->config;
  const int64_t h = c.hidden_size, v = c.vocab_size, im = c.intermediate_size, hd = c.head_dim;
  const int64_t q = int64_t{c.num_heads} * hd, kv = int64_t{c.num_kv_heads} * hd;
  const std::string sh = Dim("hidden_size", h), sv = Dim("vocab_size", v);
  const std::string si = Dim("intermediate_size", im), shd = Dim("head_dim", hd);
  const std::string sq = Dim("num_attention_heads", c.num_heads) + " * " + shd;
  const std::string skv = Dim("num_key_value_heads", c.num_kv_heads) + " * " + shd;
  std::vector<Expected> e;
  e.push_back({"model.embed_tokens.weight", {v, h}, sv + ", " + sh, &w->embed, true});
  e.push_back({"model.norm.weight", {h}, sh, &w->final_norm, true});
  e.push_back({"lm_head.weight", {v, h}, sv + ", " + sh, &w->lm_head, !c.tie_word_embeddings});
  w->layers.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights& L = w->layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto add = [&](const std::string& n, std::vector<int64_t> shape, const std::string& why,
                   TensorView* dst) {
      e.push_back({p + n, std::move(shape), why, dst, true});
    };
    add("input_layernorm.weight", {h}, sh, &L.input_norm);
    add("post_attention_layernorm.weight", {h}, sh, &L.post_norm);
    add("self_attn.q_proj.weight", {q, h}, sq + ", " + sh, &L.q_proj);
    add("self_attn.k_proj.weight", {kv, h}, skv + ", " + sh, &L.k_proj);
    add("self_attn.v_proj.weight", {kv, h}, skv + ", " + sh, &L.v_proj);
    add("self_attn.o_proj.weight", {h, q}, sh + ", " + sq, &L.o_proj);
    add("mlp.gate_proj.weight", {im, h}, si + ", " + sh, &L.gate_proj);
    add("mlp.up_proj.weight", {im, h}, si + ", " + sh, &L.up_proj);
    add("mlp.down_proj.weight", {h, im}, sh + ", " + si, &L.down_proj);
    if (c.qkv_bias) {
      add("self_attn.q_proj.bias", {q}, sq, &L.q_bias);
      add("self_attn.k_proj.bias", {kv}, skv, &L.k_bias);
      add("self_attn.v_proj.bias", {kv}, skv, &L.v_bias);
    }
    if (c.o_bias) add("self_attn.o_proj.bias", {h}, sh, &L.o_bias);
    if (c.qk_norm) {
      add("self_attn.q_norm.weight", {hd}, shd, &L.q_norm);
      add("self_attn.k_norm.weight", {hd}, shd, &L.k_norm);
    }
    if (c.mlp_bias) {
      add("mlp.gate_proj.bias", {im}, si, &L.gate_bias);
      add("mlp.up_proj.bias", {im}, si, &L.up_bias);
      add("mlp.down_proj.bias", {h}, sh, &L.down_bias);
    }
  }
  return e;
}

bool IsIgnored(const std::string& name) {
  const std::string suffix = "rotary_emb.inv_freq";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Explains why a known-looking tensor is unexpected, e.g. a bias the config turns off.
std::string ExtraHint(const std::string& name, const ModelConfig& c) {
  if (name.find("self_attn.") != std::string::npos && name.find(".bias") != std::string::npos) {
    return " (config has no bias on this projection; check attention_bias)";
  }
  if (name.find("mlp.") != std::string::npos && name.find(".bias") != std::string::npos) {
    return " (config has mlp_bias=false)";
  }
  if (name.find("_norm.weight") != std::string::npos &&
      name.find("self_attn.") != std::string::npos) {
    return " (q/k norms exist only for Qwen3ForCausalLM)";
  }
  if (name.rfind("model.layers.", 0) == 0) {
    const long layer = std::strtol(name.c_str() + std::strlen("model.layers."), nullptr, 10);
    if (layer >= c.num_layers) {
      return " (config has num_hidden_layers=" + std::to_string(c.num_layers) + ")";
    }
  }
  return " (not a tensor of " + c.architecture + ")";
}

Status Bind(const std::vector<Expected>& expected, const SafetensorsCheckpoint& ck) {
  std::vector<std::string> missing;
  for (const Expected& x : expected) {
    auto it = ck.tensors.find(x.name);
    if (it == ck.tensors.end()) {
      if (x.required) missing.push_back(x.name);
      continue;
    }
    const SafetensorsTensor& t = *it->second.tensor;
    if (t.shape != x.shape) {
      return InvalidArgument("tensor " + Quote(x.name) + " in " + it->second.file->path() +
                             " has shape " + ShapeStr(t.shape) + ", expected " + ShapeStr(x.shape) +
                             " (" + x.why + ")");
    }
    x.dst->dtype = t.dtype;
    x.dst->shape = t.shape;
    x.dst->data = t.data;
  }
  if (!missing.empty()) {
    const Expected* first = nullptr;
    for (const Expected& x : expected) {
      if (x.name == missing[0]) first = &x;
    }
    std::string more =
        missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more missing)" : "";
    return InvalidArgument("missing tensor " + Quote(missing[0]) + ", expected shape " +
                           ShapeStr(first->shape) + " in " + ck.source + more);
  }
  return OkStatus();
}

void NoteDTypes(const ModelWeights& w, const SafetensorsCheckpoint& ck) {
  std::set<DType> seen;
  for (const auto& [name, e] : ck.tensors) {
    if (!IsIgnored(name)) seen.insert(e.tensor->dtype);
  }
  if (seen.size() > 1) {
    PD_LOG_WARN("{}: tensors mix several dtypes; backends convert per tensor", ck.source);
  } else if (seen.size() == 1 && *seen.begin() != w.config.dtype) {
    PD_LOG_INFO("{}: tensors are {} while config.json says {}", ck.source, DTypeName(*seen.begin()),
                DTypeName(w.config.dtype));
  }
}

}  // namespace

StatusOr<std::shared_ptr<ModelWeights>> LoadModelWeights(const std::string& model_dir) {
  auto w = std::make_shared<ModelWeights>();
  PD_ASSIGN_OR_RETURN(w->config, LoadModelConfig(model_dir));
  PD_ASSIGN_OR_RETURN(SafetensorsCheckpoint ck, OpenSafetensorsCheckpoint(model_dir));
  std::vector<Expected> expected = ExpectedTensors(w.get());
  PD_RETURN_IF_ERROR(Bind(expected, ck));
  std::set<std::string> names;
  for (const Expected& x : expected) names.insert(x.name);
  for (const auto& [name, e] : ck.tensors) {
    if (names.count(name) || IsIgnored(name)) continue;
    return InvalidArgument("unexpected tensor " + Quote(name) + " in " + e.file->path() +
                           ExtraHint(name, w->config));
  }
  if (!w->lm_head.present()) w->lm_head = w->embed;  // tied
  NoteDTypes(*w, ck);
  for (auto& f : ck.files) w->storage.push_back(f);
  return w;
}

}  // namespace pd
