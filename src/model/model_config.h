// ModelConfig: the architecture facts pdserve needs, parsed from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace pd {

enum class Arch { kLlama, kMistral, kQwen2, kQwen3 };

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;                        // linear and llama3
  double low_freq_factor = 1.0;               // llama3
  double high_freq_factor = 4.0;              // llama3
  int original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM" as written in config.json
  Arch arch = Arch::kLlama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // GQA: num_heads % num_kv_heads == 0
  int head_dim = 0;      // explicit in Qwen3/transformers 5; else hidden_size / num_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int max_position_embeddings = 2048;
  int sliding_window = 0;  // 0 = full attention; else key j visible to query i iff i - j < window
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 (and Llama's attention_bias: true)
  bool o_bias = false;    // Llama attention_bias also biases o_proj
  bool mlp_bias = false;  // Llama mlp_bias
  bool qk_norm = false;   // Qwen3: RMSNorm over head_dim on q and k before RoPE
  DType dtype = DType::kBF16;  // torch_dtype / dtype in config.json
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;

  // Returns OK or an INVALID_ARGUMENT naming the first out-of-range field.
  Status Validate() const;

  // Number of bytes of KV cache one token takes across all layers at the given element size.
  size_t KvBytesPerToken(size_t elem_bytes) const {
    return 2ull * num_layers * num_kv_heads * head_dim * elem_bytes;
  }
};

// Parses config.json text. Accepts transformers 4.x (rope_theta, rope_scaling, torch_dtype) and
// 5.x (rope_parameters, dtype) spellings. Errors name the field.
StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text);
// Reads and parses DIR/config.json; errors name the file.
StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

}  // namespace pd
