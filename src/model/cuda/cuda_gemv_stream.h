// Internal to the CUDA backend: the persistent streaming GEMV (cuda_gemv_stream.cu), used by
// LaunchGemv (cuda_kernels.cu) for bf16/fp32 outputs when selected (SetGemvStream).
#pragma once

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

// y[r, o] = sum_i x[r, i] w[o, i] for rows in {1, 2, 4} (the caller splits larger counts and
// checks in % 8 == 0 and 16-byte alignment). Enqueues one launch.
void LaunchGemvStreamRows(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y,
                          bool f32_out, cudaStream_t stream);

}  // namespace pd::cuda
