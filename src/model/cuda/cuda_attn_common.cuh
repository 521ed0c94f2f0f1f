// Shared device helpers of the attention kernels (cuda_attention.cu, cuda_prefill_attention.cu):
// bf16 conversion and the paged-KV element offset (layout: kvcache/kv_layout.h, HND blocks).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float Bf(bf16_t v) { return __uint_as_float(uint32_t(v) << 16); }
__device__ __forceinline__ bf16_t ToBf(float f) {
  __nv_bfloat16 b = __float2bfloat16_rn(f);
  return *reinterpret_cast<bf16_t*>(&b);
}

__device__ __forceinline__ int64_t KvOffset(const KvGeom& kv, int layer, int block, int which,
                                            int kvh, int slot) {
  return int64_t(layer) * kv.layer_elems() +
         ((int64_t(block) * 2 + which) * kv.num_kv_heads + kvh) * kv.block_size * kv.head_dim +
         int64_t(slot) * kv.head_dim;
}

}  // namespace pd::cuda
