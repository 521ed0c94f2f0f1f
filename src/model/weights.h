// ModelWeights: memory-mapped views of a HF model directory's tensors, shape-checked against the
// config. The views point straight into the mapped safetensors files (zero copy).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "model/model_config.h"

namespace pd {

// A read-only view of one tensor: row-major, `shape` outermost first.
struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // nullptr = absent (optional tensors: biases, q/k norms)

  bool present() const { return data != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
};

// HF names in comments. Linear weights are [out_features, in_features].
struct LayerWeights {
  TensorView input_norm;            // model.layers.N.input_layernorm.weight [hidden]
  TensorView q_proj, k_proj, v_proj, o_proj;  // self_attn.{q,k,v,o}_proj.weight
  TensorView q_bias, k_bias, v_bias, o_bias;  // self_attn.{q,k,v,o}_proj.bias (optional)
  TensorView q_norm, k_norm;        // self_attn.{q,k}_norm.weight [head_dim] (Qwen3)
  TensorView post_norm;             // post_attention_layernorm.weight [hidden]
  TensorView gate_proj, up_proj, down_proj;  // mlp.*.weight
  TensorView gate_bias, up_bias, down_bias;  // mlp.*.bias (optional, Llama mlp_bias)
};

struct ModelWeights {
  ModelConfig config;
  TensorView embed;       // model.embed_tokens.weight [vocab, hidden]
  TensorView final_norm;  // model.norm.weight [hidden]
  TensorView lm_head;     // lm_head.weight [vocab, hidden]; == embed when tied
  std::vector<LayerWeights> layers;

  // Keeps the mappings alive. Opaque to users.
  std::vector<std::shared_ptr<void>> storage;
};

// Loads DIR/config.json and DIR/model.safetensors (or the shards listed in
// DIR/model.safetensors.index.json), maps them and checks every tensor's presence, dtype and
// shape. Unknown extra tensors are an error (except rotary inv_freq buffers). Errors name the
// file and tensor and say what was expected.
StatusOr<std::shared_ptr<ModelWeights>> LoadModelWeights(const std::string& model_dir);

}  // namespace pd
