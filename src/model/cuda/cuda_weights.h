// Device copies of a model's weights in the layout the CUDA forward wants: bf16 matrices with
// QKV and gate/up concatenated along the output dimension, fp32 norms and biases.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "model/cuda/cuda_kernels.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace pd::cuda {

struct DevLayer {
  bf16_t* wqkv = nullptr;  // [(nh + 2 nkv) D, H]
  bf16_t* wo = nullptr;    // [H, nh D]
  bf16_t* wgu = nullptr;   // [2 I, H]
  bf16_t* wd = nullptr;    // [H, I]
  float* in_norm = nullptr;
  float* post_norm = nullptr;
  float* qkv_bias = nullptr;  // optional
  float* o_bias = nullptr;
  float* gu_bias = nullptr;
  float* d_bias = nullptr;
  float* q_norm = nullptr;
  float* k_norm = nullptr;
};

class DevWeights {
 public:
  ~DevWeights();
  // Uploads host weights (any dtype) converted to bf16 / fp32.
  Status Upload(const ModelWeights& w);
  // Random bf16 weights made on the GPU (benchmarks): uniform(+-1/sqrt(fan_in)), norms = 1.
  Status InitRandom(const ModelConfig& c, uint64_t seed);

  std::vector<DevLayer> layers;
  bf16_t* embed = nullptr;
  bf16_t* lm_head = nullptr;  // == embed when tied
  float* final_norm = nullptr;
  size_t bytes = 0;           // device bytes held
  size_t per_step_bytes = 0;  // bytes a decode step must read (all layers + lm_head)

 private:
  Status Alloc(void** p, size_t n);
  Status UploadBf16(const std::vector<const TensorView*>& parts, bf16_t** dst);
  Status UploadF32(const std::vector<const TensorView*>& parts, float** dst);
  std::vector<void*> allocs_;
};

}  // namespace pd::cuda
