// Hopper (sm_90a) causal prefill attention with warpgroup MMA (cuda_prefill_wgmma.cu); the
// dispatcher in cuda_prefill_attention.cu chooses it or the mma.sync kernel.
#pragma once

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

// Same contract as LaunchPrefillAttention (head_dim 128, kPrefillTileRows-row query tiles).
// Needs a power-of-two KV block size and an sm_90 device. late_load: the next K/V tiles' loads
// are issued after the current tile's MMAs (default) rather than before them.
void LaunchPrefillAttentionWgmma(const AttnArgs& a, const BatchMeta& m, const int32_t* tiles,
                                 int num_tiles, bool late_load, cudaStream_t stream);

}  // namespace pd::cuda
