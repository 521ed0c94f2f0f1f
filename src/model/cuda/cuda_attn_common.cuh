// Shared device helpers of the attention kernels (cuda_attention.cu, cuda_decode_mma.cu,
// cuda_prefill_attention.cu): bf16 conversion, the split-KV merge weights and the paged-KV
// element offset (layout: kvcache/kv_layout.h, HND blocks).
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

// The merge weights of one (row, head)'s split-KV partials, reduced by one warp: partial z (z < n,
// n <= 64) holds (m, l, o[...]) at base + z * stride. Leaves sw[z] = exp2(m_z - max m) and
// returns 1 / sum_z l_z sw[z] (0 when no split saw a key) on every lane. CombineKernel and the
// tensor-core decode kernel's fused merge both call it, which keeps their outputs bitwise equal.
// kCg: loads through L2 only (partials written by other CTAs of the running grid).
template <bool kCg>
__device__ __forceinline__ float SplitMergeWeights(const float* base, int stride, int n, int lane,
                                                   float* sw) {
  float mz[2], lz[2], mm = -INFINITY;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int z = lane + 32 * k;
    const float* p = base + z * stride;
    mz[k] = z < n ? (kCg ? __ldcg(p) : p[0]) : -INFINITY;
    lz[k] = z < n ? (kCg ? __ldcg(p + 1) : p[1]) : 0.f;
    mm = fmaxf(mm, mz[k]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mm = fmaxf(mm, __shfl_xor_sync(0xffffffffu, mm, o));
  float ll = 0.f;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int z = lane + 32 * k;
    const float c = mm == -INFINITY ? 0.f : exp2f(mz[k] - mm);  // exp2f(-inf) = 0
    ll += lz[k] * c;
    if (z < n) sw[z] = c;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ll += __shfl_xor_sync(0xffffffffu, ll, o);
  return ll > 0.f ? 1.f / ll : 0.f;
}

__device__ __forceinline__ int64_t KvOffset(const KvGeom& kv, int layer, int block, int which,
                                            int kvh, int slot) {
  return int64_t(layer) * kv.layer_elems() +
         ((int64_t(block) * 2 + which) * kv.num_kv_heads + kvh) * kv.block_size * kv.head_dim +
         int64_t(slot) * kv.head_dim;
}

}  // namespace pd::cuda
