// Persistent streaming GEMV for decode (see cuda_gemv_stream.h). Two 8-warp CTAs per SM; warp g
// of the grid owns rows g, g + W, g + 2W, ... (W = warps in the grid) and streams them as one
// continuous sequence of 4 KB chunks (16 bytes x 8 per lane) through its own 3-stage cp.async
// ring in shared memory, so the next chunk (also of the next row) is in flight while the current
// one is multiplied: no per-row or per-wave drain. Each lane reads back only the ring slots it
// filled itself, so no barrier is needed. The first two chunks are issued before PdlWait.
#include <cuda_bf16.h>

#include <algorithm>

#include "model/cuda/cuda_gemv_dot.cuh"
#include "model/cuda/cuda_gemv_stream.h"
#include "model/cuda/cuda_pdl.cuh"

namespace pd::cuda {
namespace {

constexpr int kWarps = 8, kStages = 3, kU = 8;  // kU 16-byte loads per lane per chunk
constexpr int kChunk = 256 * kU;                // elements per chunk (4 KB)
constexpr size_t kSmem = size_t(kWarps) * kStages * kU * 32 * sizeof(uint4);  // 96 KB

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ uint16_t ToBfBits(float f) {
  __nv_bfloat16 b = __float2bfloat16_rn(f);
  return *reinterpret_cast<uint16_t*>(&b);
}

template <int R, bool kF32>
__global__ void __launch_bounds__(kWarps * 32) GemvStreamKernel(const bf16_t* __restrict__ x,
                                                                int in,
                                                                const bf16_t* __restrict__ w,
                                                                int out, void* __restrict__ y) {
  extern __shared__ uint4 ring[];  // [warp][stage][kU][32 lanes]
  PdlTrigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint4* my = ring + warp * kStages * kU * 32 + lane;
  const int nw = gridDim.x * kWarps, gw = blockIdx.x * kWarps + warp;
  const int cpr = (in + kChunk - 1) / kChunk;  // chunks per row
  int irow = gw, ipart = 0, istage = 0;        // the next chunk to issue
  auto issue = [&]() {
    if (irow < out) {
      const int base = ipart * kChunk + lane * 8;
      const bf16_t* src = w + int64_t(irow) * in + base;
      uint4* dst = my + istage * kU * 32;
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const bool valid = base + u * 256 < in;
        CpAsync16(dst + u * 32, valid ? src + u * 256 : w, valid);
      }
      if (++ipart == cpr) {
        ipart = 0;
        irow += nw;
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    istage = istage + 1 == kStages ? 0 : istage + 1;
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue();
  PdlWait();
  int cstage = 0;
  for (int row = gw; row < out; row += nw) {
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;
    for (int part = 0; part < cpr; ++part) {
      asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2) : "memory");
      issue();
      const uint4* src = my + cstage * kU * 32;
      cstage = cstage + 1 == kStages ? 0 : cstage + 1;
      const int base = part * kChunk + lane * 8;
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int i = base + u * 256;
        if (i >= in) break;
        GemvDot16B<R>(src[u * 32], x, in, i, acc);
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
      if (lane == 0) {
        if constexpr (kF32) {
          static_cast<float*>(y)[int64_t(r) * out + row] = acc[r];
        } else {
          static_cast<bf16_t*>(y)[int64_t(r) * out + row] = ToBfBits(acc[r]);
        }
      }
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

template <int R, bool kF32>
void Launch(const bf16_t* x, int in, const bf16_t* w, int out, void* y, cudaStream_t stream) {
  static int grid = 0;
  if (grid == 0) {
    cudaFuncSetAttribute(GemvStreamKernel<R, kF32>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(kSmem));
    int dev = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, GemvStreamKernel<R, kF32>,
                                                      kWarps * 32, kSmem) != cudaSuccess ||
        per_sm < 1) {
      cudaGetLastError();
      per_sm = 1;
    }
    grid = std::max(1, sms) * per_sm;
  }
  const int blocks = std::min(grid, (out + kWarps - 1) / kWarps);
  LaunchPdl(GemvStreamKernel<R, kF32>, blocks, kWarps * 32, kSmem, stream, x, in, w, out, y);
}

}  // namespace

void LaunchGemvStreamRows(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y,
                          bool f32_out, cudaStream_t stream) {
  if (rows == 4) {
    f32_out ? Launch<4, true>(x, in, w, out, y, stream) : Launch<4, false>(x, in, w, out, y, stream);
  } else if (rows == 2) {
    f32_out ? Launch<2, true>(x, in, w, out, y, stream) : Launch<2, false>(x, in, w, out, y, stream);
  } else {
    f32_out ? Launch<1, true>(x, in, w, out, y, stream) : Launch<1, false>(x, in, w, out, y, stream);
  }
}

}  // namespace pd::cuda
