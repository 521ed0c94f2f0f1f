// The GEMV inner step shared by the warp-per-row kernel (cuda_kernels.cu) and the streaming
// kernel (cuda_gemv_stream.cu): one lane's 16-byte slice of a weight row (8 bf16 at column i)
// times the same slice of each of R input rows, accumulated in fp32. Both kernels call it in the
// same per-lane order, which is what makes their sums bitwise equal.
#pragma once

#include <cuda_runtime.h>

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

template <int R>
__device__ __forceinline__ void GemvDot16B(const uint4 wv, const bf16_t* __restrict__ x, int in,
                                           int i, float (&acc)[R]) {
  const uint32_t ww[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + int64_t(r) * in + i));
    const uint32_t xx[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      acc[r] += __uint_as_float(ww[k] << 16) * __uint_as_float(xx[k] << 16) +
                __uint_as_float(ww[k] & 0xffff0000u) * __uint_as_float(xx[k] & 0xffff0000u);
    }
  }
}

}  // namespace pd::cuda
