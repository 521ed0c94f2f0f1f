// Random-weight model directories (config.json + model.safetensors) for tests, demos and
// benchmarks. Deterministic: the same options give byte-identical files.
//
// Weights: each tensor draws from its own counter-based stream keyed by (seed, tensor name), an
// approximately normal variate (sum of four uniforms, rescaled). Scales are chosen so that a
// forward pass is non-degenerate at any size: linear weights std 1/sqrt(in_features) (each
// projection keeps activations O(1)), embeddings / lm_head std 2/sqrt(hidden) (final logits have
// std ~2, so softmax is neither flat nor one-hot), norm weights 1 + 0.1 x, biases 0.1 x.
#pragma once

#include <cstdint>
#include <string>

#include "common/dtype.h"
#include "common/status.h"
#include "model/model_config.h"

namespace pd {

struct MakeModelOptions {
  std::string preset = "tiny";  // tiny | llama-3.2-1b | llama-3.1-8b
  std::string out_dir;          // created if missing
  std::string arch = "llama";   // llama | mistral | qwen2 | qwen3
  uint64_t seed = 0;
  DType dtype = DType::kBF16;
  // Overrides of the preset's shapes; <= 0 (or < 0 for the doubles) keeps the preset value.
  int layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int vocab = 0, max_pos = 0;
  double rope_theta = 0;
  int sliding_window = -1;      // mistral only; -1 keeps the preset (none)
  int tie = -1;                 // -1 preset, 0 untied, 1 tied
  bool attention_bias = false;  // llama / qwen3 attention_bias
  bool mlp_bias = false;        // llama mlp_bias
  std::string tokenizer_path;   // copied to out_dir/tokenizer.json; sets vocab_size
  bool progress = false;        // progress bar on stderr
};

// Resolves preset + arch + overrides (+ tokenizer vocabulary) into a validated config.
StatusOr<ModelConfig> MakeModelConfig(const MakeModelOptions& opts);

// config.json text in transformers 5.x spelling (rope_parameters, dtype), readable by
// ParseModelConfig and by transformers.
std::string ModelConfigToJson(const ModelConfig& c);

// Vocabulary size implied by a tokenizer.json: max id over model.vocab and added_tokens, + 1.
StatusOr<int> TokenizerVocabSize(const std::string& tokenizer_json_path);

// Writes out_dir/{config.json, model.safetensors[, tokenizer.json]}. Each file is written to a
// temporary name and renamed when complete, so a crash leaves no half-written file.
Status WriteRandomModel(const MakeModelOptions& opts);

// Writes random weights for `config` (the tensors LoadModelWeights expects) to `path` directly.
Status WriteRandomSafetensors(const ModelConfig& config, uint64_t seed, const std::string& path,
                              bool progress);

}  // namespace pd
