// Hopper (sm_90a) causal prefill attention with warpgroup MMA (cuda_prefill_wgmma.cu); the
// dispatcher in cuda_prefill_attention.cu chooses it or the mma.sync kernel.
#pragma once

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

// Same contract as LaunchPrefillAttention (head_dim 128, kPrefillTileRows-row query tiles).
// Needs a power-of-two KV block size and an sm_90 device.
void LaunchPrefillAttentionWgmma(const AttnArgs& a, const BatchMeta& m, const int32_t* tiles,
                                 int num_tiles, cudaStream_t stream);

}  // namespace pd::cuda
