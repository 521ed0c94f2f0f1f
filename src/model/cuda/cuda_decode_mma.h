// Internal to the CUDA backend: the tensor-core decode attention kernels (cuda_decode_mma.cu),
// selected and launched by cuda_attention.cu (LaunchDecodeAttention) with the same grid
// (rows, kv heads x 8-head chunks, splits), 128 threads and split partials as its other kernels.
#pragma once

#include <cstddef>

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

using DecodeKernelFn = void (*)(AttnArgs, BatchMeta, int, float*);

// 0 = 64-key tiles x 2 stages, 1 = 64 x 3, 2 = 128 x 2.
constexpr int kNumMmaDecodeVariants = 3;
// The kernel of a variant and its dynamic shared memory in bytes. `fused`: the kernel that merges
// the split partials in the last CTA of each (row, kv head) (AttnArgs::split_counters required).
DecodeKernelFn MmaDecodeKernel(int variant, bool fused = false);
size_t MmaDecodeSmem(int variant);

}  // namespace pd::cuda
