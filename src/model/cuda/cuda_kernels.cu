// Element-wise and per-row kernels of the CUDA backend (see cuda_kernels.h for contracts).
#include <cuda_bf16.h>

#include "model/cuda/cuda_gemv_dot.cuh"
#include "model/cuda/cuda_gemv_stream.h"
#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_pdl.cuh"

namespace pd::cuda {
namespace {

__device__ __forceinline__ float Bf(bf16_t v) { return __uint_as_float(uint32_t(v) << 16); }
__device__ __forceinline__ bf16_t ToBf(float f) {
  __nv_bfloat16 b = __float2bfloat16_rn(f);
  return *reinterpret_cast<bf16_t*>(&b);
}

template <int kThreads>
__device__ float BlockSum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.f;
  for (int i = 0; i < kThreads / 32; ++i) s += red[i];
  __syncthreads();
  return s;
}

__global__ void EmbedKernel(const bf16_t* embed, const int32_t* tokens, int hidden, float* res) {
  PdlTrigger();
  PdlWait();
  const int r = blockIdx.x;
  const bf16_t* src = embed + int64_t(tokens[r]) * hidden;
  float* dst = res + int64_t(r) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = Bf(src[i]);
}

constexpr int kNormThreads = 256, kNormThreadsFew = 1024, kNormPer = 4;

// kThreads threads per row; the first kNormPer * kThreads elements of each row live in registers
// (the norm weight among them is loaded before PdlWait), the rest is streamed twice.
template <int kThreads>
__global__ void __launch_bounds__(kThreads) AddRmsNormKernel(
    float* res, const bf16_t* delta, const float* bias, const float* w, float eps, int hidden,
    bf16_t* out, const int32_t* out_rows) {
  __shared__ float red[kThreads / 32];
  float wr[kNormPer], xv[kNormPer];
#pragma unroll
  for (int j = 0; j < kNormPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    wr[j] = i < hidden ? w[i] : 0.f;
  }
  PdlTrigger();
  PdlWait();
  const int r = blockIdx.x;
  const int src_row = out_rows ? out_rows[r] : r;
  float* x = res + int64_t(src_row) * hidden;
  const bf16_t* dr = delta ? delta + int64_t(r) * hidden : nullptr;
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kNormPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    xv[j] = 0.f;
    if (i < hidden) {
      float v = x[i];
      if (dr) {
        v += Bf(dr[i]) + (bias ? bias[i] : 0.f);
        x[i] = v;
      }
      xv[j] = v;
      ss += v * v;
    }
  }
  for (int i = threadIdx.x + kNormPer * kThreads; i < hidden; i += kThreads) {
    float v = x[i];
    if (dr) {
      v += Bf(dr[i]) + (bias ? bias[i] : 0.f);
      x[i] = v;
    }
    ss += v * v;
  }
  ss = BlockSum<kThreads>(ss, red);
  const float inv = rsqrtf(ss / hidden + eps);
  bf16_t* o = out + int64_t(r) * hidden;
#pragma unroll
  for (int j = 0; j < kNormPer; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i < hidden) o[i] = ToBf(xv[j] * inv * wr[j]);
  }
  for (int i = threadIdx.x + kNormPer * kThreads; i < hidden; i += kThreads) {
    o[i] = ToBf(x[i] * inv * w[i]);
  }
}

// One warp per head of the fused qkv row; grid (ceil(heads/8), rows).
__global__ void RopeKvKernel(RopeArgs a, BatchMeta m) {
  PdlTrigger();
  PdlWait();
  const int r = blockIdx.y;
  if (r >= *m.num_valid_rows) return;
  const int head = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nh = a.num_heads, nkv = a.num_kv_heads, D = a.head_dim, half = D / 2;
  if (head >= nh + 2 * nkv) return;
  const int total = (nh + 2 * nkv) * D;
  const bf16_t* src = a.qkv + int64_t(r) * total + head * D;
  const float* bias = a.bias ? a.bias + head * D : nullptr;
  constexpr int kMaxPairs = 4;  // head_dim <= 256
  float lo[kMaxPairs], hi[kMaxPairs];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxPairs; ++j) {
    const int i = lane + 32 * j;
    lo[j] = hi[j] = 0.f;
    if (i < half) {
      lo[j] = Bf(src[i]) + (bias ? bias[i] : 0.f);
      hi[j] = Bf(src[i + half]) + (bias ? bias[i + half] : 0.f);
      ss += lo[j] * lo[j] + hi[j] * hi[j];
    }
  }
  const bool is_q = head < nh, is_k = !is_q && head < nh + nkv;
  const float* norm = is_q ? a.q_norm : (is_k ? a.k_norm : nullptr);
  if (norm) {
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float inv = rsqrtf(ss / D + a.eps);
#pragma unroll
    for (int j = 0; j < kMaxPairs; ++j) {
      const int i = lane + 32 * j;
      if (i < half) {
        lo[j] = lo[j] * inv * norm[i];
        hi[j] = hi[j] * inv * norm[i + half];
      }
    }
  }
  const int pos = m.row_pos[r];
  bf16_t* dst;
  if (is_q) {
    dst = a.q_out + (int64_t(r) * nh + head) * D;
  } else {
    const int s = m.row_seq[r], bs = a.kv.block_size;
    const int block = m.block_ids[m.block_indptr[s] + pos / bs];
    const int kvh = is_k ? head - nh : head - nh - nkv;
    const int64_t off = int64_t(a.layer) * a.kv.layer_elems() +
                        ((int64_t(block) * 2 + (is_k ? 0 : 1)) * nkv + kvh) * bs * D +
                        int64_t(pos % bs) * D;
    dst = a.kv.base + off;
  }
#pragma unroll
  for (int j = 0; j < kMaxPairs; ++j) {
    const int i = lane + 32 * j;
    if (i >= half) continue;
    float x0 = lo[j], x1 = hi[j];
    if (is_q || is_k) {
      float sn, cs;
      sincosf(float(pos) * a.inv_freq[i], &sn, &cs);
      const float y0 = x0 * cs - x1 * sn, y1 = x1 * cs + x0 * sn;
      x0 = y0;
      x1 = y1;
    }
    dst[i] = ToBf(x0);
    dst[i + half] = ToBf(x1);
  }
}

__global__ void SwigluKernel(const bf16_t* gu, const float* bias, int inter, int64_t n,
                             bf16_t* out) {
  PdlTrigger();
  PdlWait();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / inter;
    const int i = int(e - r * inter);
    float g = Bf(gu[r * 2 * inter + i]), u = Bf(gu[r * 2 * inter + inter + i]);
    if (bias) {
      g += bias[i];
      u += bias[inter + i];
    }
    out[e] = ToBf(g / (1.f + __expf(-g)) * u);
  }
}

// y[r, o] = sum_i x[r, i] w[o, i] for R rows: one warp per output row, 16-byte streaming loads
// of w (8 in flight per lane; the first chunk is issued before PdlWait, so it streams while the
// previous kernel drains), x through the read-only cache, fp32 accumulation.
constexpr int kGemvWarps = 8;

template <int U>
__device__ __forceinline__ void GemvLoadChunk(uint4* wv, const bf16_t* wr, int base, int in) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int i = base + u * 256;
    wv[u] = i < in ? __ldcs(reinterpret_cast<const uint4*>(wr + i)) : make_uint4(0, 0, 0, 0);
  }
}

// kOut: 0 = bf16 y, 1 = fp32 y, 2 = SwiGLU: w is the fused [gate; up] weight of 2 * out rows,
// warps 0-3 of CTA b compute gate rows 4b..4b+3 and warps 4-7 the matching up rows, and y is
// bf16 act = silu(bf16(g) + bias[i]) * (bf16(u) + bias[out + i]) (LaunchSwiglu's rounding).
// U: 16-byte loads in flight per lane (8, or 16 for single-row launches: an 8 KB row in one go).
template <int R, int kOut, int U>
__global__ void __launch_bounds__(kGemvWarps * 32) GemvKernel(const bf16_t* __restrict__ x, int in,
                                                              const bf16_t* __restrict__ w,
                                                              int out, void* __restrict__ y,
                                                              const float* __restrict__ bias) {
  PdlTrigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int o = kOut == 2 ? (warp < 4 ? 4 * blockIdx.x + warp : out + 4 * blockIdx.x + warp - 4)
                          : blockIdx.x * kGemvWarps + warp;
  if constexpr (kOut == 2) out *= 2;
  const bf16_t* wr = w + int64_t(o < out ? o : 0) * in;
  uint4 wv[U];
  GemvLoadChunk<U>(wv, wr, lane * 8, o < out ? in : 0);
  PdlWait();
  if (o >= out) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int base = lane * 8; base < in; base += 256 * U) {
    if (base != lane * 8) GemvLoadChunk<U>(wv, wr, base, in);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + u * 256;
      if (i >= in) break;
      GemvDot16B<R>(wv[u], x, in, i, acc);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
  }
  if constexpr (kOut == 2) {
    __shared__ float up[R][4];
    const int inter = out / 2;
    if (warp >= 4 && lane == 0) {
      for (int r = 0; r < R; ++r) up[r][warp - 4] = Bf(ToBf(acc[r])) + (bias ? bias[o] : 0.f);
    }
    __syncthreads();
    if (warp < 4 && lane == 0) {
      for (int r = 0; r < R; ++r) {
        const float g = Bf(ToBf(acc[r])) + (bias ? bias[o] : 0.f);
        const float act = g / (1.f + __expf(-g)) * up[r][warp];
        static_cast<bf16_t*>(y)[int64_t(r) * inter + o] = ToBf(act);
      }
    }
  } else if (lane == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if constexpr (kOut == 1) {
        static_cast<float*>(y)[int64_t(r) * out + o] = acc[r];
      } else {
        static_cast<bf16_t*>(y)[int64_t(r) * out + o] = ToBf(acc[r]);
      }
    }
  }
}

int g_gemv_unroll = 8;
bool g_gemv_stream = false;  // measured slower (b1 step 6.83 vs 6.12 ms, docs/cuda.md)

template <int R, int U>
void LaunchGemvRU(const bf16_t* x, int in, const bf16_t* w, int out, void* y, int mode,
                  const float* bias, cudaStream_t stream) {
  const int grid = mode == 2 ? out / 4 : (out + kGemvWarps - 1) / kGemvWarps;
  const dim3 blk(kGemvWarps * 32);
  if (mode == 0) LaunchPdl(GemvKernel<R, 0, U>, grid, blk, 0, stream, x, in, w, out, y, bias);
  if (mode == 1) LaunchPdl(GemvKernel<R, 1, U>, grid, blk, 0, stream, x, in, w, out, y, bias);
  if (mode == 2) LaunchPdl(GemvKernel<R, 2, U>, grid, blk, 0, stream, x, in, w, out, y, bias);
}

template <int R>
void LaunchGemvR(const bf16_t* x, int in, const bf16_t* w, int out, void* y, int mode,
                 const float* bias, cudaStream_t stream) {
  if (g_gemv_stream && mode != 2) {
    LaunchGemvStreamRows(x, R, in, w, out, y, mode == 1, stream);
  } else if (R == 1 && g_gemv_unroll == 16) {
    LaunchGemvRU<1, 16>(x, in, w, out, y, mode, bias, stream);
  } else {
    LaunchGemvRU<R, 8>(x, in, w, out, y, mode, bias, stream);
  }
}

__device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void FillRandomKernel(bf16_t* dst, int64_t n, float scale, uint64_t seed) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t h = SplitMix64(seed ^ SplitMix64(uint64_t(e)));
    const float u = float(h >> 40) * (1.f / 16777216.f);
    dst[e] = ToBf((2.f * u - 1.f) * scale);
  }
}

__global__ void F32ToBf16Kernel(const float* src, bf16_t* dst, int64_t n) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    dst[e] = ToBf(src[e]);
  }
}

// ---- sampling -----------------------------------------------------------------------------
constexpr int kSampleThreads = 1024;

__device__ __forceinline__ uint32_t OrderKey(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

struct SampleShared {
  float hist[256];
  float red[kSampleThreads / 32];
  uint32_t prefix;
  float target;
  unsigned long long best;
  int found;
};

// Weight of logit l: 1 (count) or exp((l - mx) * inv_t) (mass), for keys >= floor_key.
template <bool kMass>
__device__ __forceinline__ float Weight(float l, uint32_t key, uint32_t floor_key, float mx,
                                        float inv_t) {
  if (key < floor_key) return 0.f;
  return kMass ? __expf((l - mx) * inv_t) : 1.f;
}

// Largest key t with W(key >= t) >= target (strict: > target) over the row, by 4 rounds of 8-bit
// radix selection. Returns the key; all threads get it.
template <bool kMass>
__device__ uint32_t RadixSelect(const float* row, int vocab, uint32_t floor_key, float mx,
                                float inv_t, float target, bool strict, SampleShared& sh) {
  uint32_t prefix = 0, mask = 0;
  if (threadIdx.x == 0) sh.target = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += kSampleThreads) sh.hist[i] = 0.f;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kSampleThreads) {
      const float l = row[i];
      const uint32_t key = OrderKey(l);
      if ((key & mask) != prefix) continue;
      const float wgt = Weight<kMass>(l, key, floor_key, mx, inv_t);
      if (wgt > 0.f) atomicAdd(&sh.hist[(key >> shift) & 255u], wgt);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float acc = 0.f, tgt = sh.target;
      int bin = -1;
      for (int b = 255; b >= 0; --b) {
        const float next = acc + sh.hist[b];
        if (sh.hist[b] > 0.f && (strict ? next > tgt : next >= tgt)) {
          bin = b;
          break;
        }
        acc = next;
      }
      if (bin < 0) {  // rounding left the target unreached: take the lowest non-empty bin
        for (int b = 0; b < 256; ++b) {
          if (sh.hist[b] > 0.f) {
            bin = b;
            break;
          }
        }
        acc = 0.f;
        for (int b = 255; b > bin; --b) acc += sh.hist[b];
      }
      sh.target = tgt - acc;
      sh.prefix = prefix | (uint32_t(bin < 0 ? 0 : bin) << shift);
    }
    __syncthreads();
    prefix = sh.prefix;
    mask |= 255u << shift;
    __syncthreads();
  }
  return prefix;
}

__device__ float BlockReduce(float v, bool is_max, float* red) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, w) : v + w;
  }
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float r = red[0];
  for (int i = 1; i < kSampleThreads / 32; ++i) r = is_max ? fmaxf(r, red[i]) : r + red[i];
  __syncthreads();
  return r;
}

// Lowest index whose key equals `key` (greedy: the maximal key).
__device__ int LowestIndexWithKey(const float* row, int vocab, uint32_t key, SampleShared& sh) {
  if (threadIdx.x == 0) sh.found = vocab;
  __syncthreads();
  for (int i = threadIdx.x; i < vocab; i += kSampleThreads) {
    if (OrderKey(row[i]) == key) {
      atomicMin(&sh.found, i);
      break;
    }
  }
  __syncthreads();
  return sh.found;
}

__global__ void __launch_bounds__(kSampleThreads) SampleKernel(const float* logits, int vocab,
                                                               const SampleParamsDev* params,
                                                               int32_t* tokens) {
  __shared__ SampleShared sh;
  const int r = blockIdx.x;
  const SampleParamsDev p = params[r];
  if (!p.do_sample) {
    if (threadIdx.x == 0) tokens[r] = -1;
    return;
  }
  const float* row = logits + int64_t(r) * vocab;
  // Max key (NaN-free logits assumed, as on the host).
  uint32_t kmax = 0;
  for (int i = threadIdx.x; i < vocab; i += kSampleThreads) kmax = max(kmax, OrderKey(row[i]));
  for (int o = 16; o > 0; o >>= 1) kmax = max(kmax, __shfl_xor_sync(0xffffffffu, kmax, o));
  if (threadIdx.x % 32 == 0) sh.red[threadIdx.x / 32] = __uint_as_float(kmax);
  __syncthreads();
  for (int i = 0; i < kSampleThreads / 32; ++i) kmax = max(kmax, __float_as_uint(sh.red[i]));
  __syncthreads();
  if (p.temperature <= 0.f || p.top_k == 1) {
    const int tok = LowestIndexWithKey(row, vocab, kmax, sh);
    if (threadIdx.x == 0) tokens[r] = tok;
    return;
  }
  const float mx = (kmax & 0x80000000u) ? __uint_as_float(kmax & 0x7fffffffu)
                                        : __uint_as_float(~kmax);
  const float inv_t = 1.f / p.temperature;
  uint32_t floor_key = 0;
  if (p.top_k > 0 && p.top_k < vocab) {
    floor_key = RadixSelect<false>(row, vocab, 0, mx, inv_t, float(p.top_k), false, sh);
  }
  // Mass of the top-k candidates.
  float part = 0.f;
  for (int i = threadIdx.x; i < vocab; i += kSampleThreads) {
    const float l = row[i];
    part += Weight<true>(l, OrderKey(l), floor_key, mx, inv_t);
  }
  float mass = BlockReduce(part, false, sh.red);
  if (p.top_p < 1.f) {
    floor_key = RadixSelect<true>(row, vocab, floor_key, mx, inv_t, p.top_p * mass, false, sh);
    part = 0.f;
    for (int i = threadIdx.x; i < vocab; i += kSampleThreads) {
      const float l = row[i];
      part += Weight<true>(l, OrderKey(l), floor_key, mx, inv_t);
    }
    mass = BlockReduce(part, false, sh.red);
  }
  // Same uniform as SamplingUniform(seed, step) on the host.
  const uint64_t bits = SplitMix64(SplitMix64(p.seed) ^ (p.step * 0xd1b54a32d192ed03ull));
  const double u = double(bits >> 11) * (1.0 / 9007199254740992.0);
  const uint32_t key =
      RadixSelect<true>(row, vocab, floor_key, mx, inv_t, float(u * mass), true, sh);
  const int tok = LowestIndexWithKey(row, vocab, key, sh);
  if (threadIdx.x == 0) tokens[r] = tok;
}

bool g_pdl = true;

}  // namespace

void SetProgrammaticLaunch(bool on) { g_pdl = on; }
void SetGemvUnroll(int u) { g_gemv_unroll = u == 16 ? 16 : 8; }
void SetGemvStream(bool on) { g_gemv_stream = on; }
bool ProgrammaticLaunchEnabled() { return g_pdl; }

namespace {
int GridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return int(b > 65535 * 4 ? 65535 * 4 : (b < 1 ? 1 : b));
}

}  // namespace

void LaunchEmbed(const bf16_t* embed, const int32_t* tokens, int rows, int hidden, float* residual,
                 cudaStream_t stream) {
  LaunchPdl(EmbedKernel, rows, 256, 0, stream, embed, tokens, hidden, residual);
}

void LaunchAddRmsNorm(float* residual, const bf16_t* delta, const float* bias, const float* w,
                      float eps, int rows, int hidden, bf16_t* out, const int32_t* out_rows,
                      cudaStream_t stream) {
  if (rows <= 8) {  // decode: few rows, so more threads per row (one dependent load per value)
    LaunchPdl(AddRmsNormKernel<kNormThreadsFew>, rows, kNormThreadsFew, 0, stream, residual, delta,
              bias, w, eps, hidden, out, out_rows);
  } else {
    LaunchPdl(AddRmsNormKernel<kNormThreads>, rows, kNormThreads, 0, stream, residual, delta, bias,
              w, eps, hidden, out, out_rows);
  }
}

void LaunchRopeKvWrite(const RopeArgs& a, const BatchMeta& m, cudaStream_t stream) {
  const int heads = a.num_heads + 2 * a.num_kv_heads;
  dim3 grid((heads + 7) / 8, a.rows);
  LaunchPdl(RopeKvKernel, grid, 256, 0, stream, a, m);
}

namespace {
// mode as GemvKernel's kOut; y row stride = out elements (mode 1: fp32).
bool LaunchGemvMode(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y, int mode,
                    const float* bias, cudaStream_t stream) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (rows < 1 || rows > kGemvMaxRows || in % 8 != 0 || in < 8 || out < 1 || !aligned(x) ||
      !aligned(w) || (mode == 2 && out % 4 != 0)) {
    return false;
  }
  const size_t esz = mode == 1 ? 4 : 2;
  for (int r0 = 0; r0 < rows;) {  // 4, 2, 1 rows per launch
    const int n = rows - r0 >= 4 ? 4 : rows - r0 >= 2 ? 2 : 1;
    const bf16_t* xr = x + int64_t(r0) * in;
    void* yr = static_cast<char*>(y) + size_t(r0) * out * esz;
    if (n == 4) LaunchGemvR<4>(xr, in, w, out, yr, mode, bias, stream);
    if (n == 2) LaunchGemvR<2>(xr, in, w, out, yr, mode, bias, stream);
    if (n == 1) LaunchGemvR<1>(xr, in, w, out, yr, mode, bias, stream);
    r0 += n;
  }
  return true;
}
}  // namespace

bool LaunchGemv(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y, bool f32_out,
                cudaStream_t stream) {
  return LaunchGemvMode(x, rows, in, w, out, y, f32_out ? 1 : 0, nullptr, stream);
}

bool LaunchGemvSwiglu(const bf16_t* x, int rows, int in, const bf16_t* wgu, int inter,
                      const float* bias, bf16_t* act, cudaStream_t stream) {
  return LaunchGemvMode(x, rows, in, wgu, inter, act, 2, bias, stream);
}

void LaunchSwiglu(const bf16_t* gu, const float* bias, int rows, int inter, bf16_t* out,
                  cudaStream_t stream) {
  const int64_t n = int64_t(rows) * inter;
  LaunchPdl(SwigluKernel, GridFor(n, 256), 256, 0, stream, gu, bias, inter, n, out);
}

void LaunchFillRandomBf16(bf16_t* dst, int64_t n, float scale, uint64_t seed, cudaStream_t stream) {
  FillRandomKernel<<<GridFor(n, 256), 256, 0, stream>>>(dst, n, scale, seed);
}

void LaunchF32ToBf16(const float* src, bf16_t* dst, int64_t n, cudaStream_t stream) {
  F32ToBf16Kernel<<<GridFor(n, 256), 256, 0, stream>>>(src, dst, n);
}

void LaunchSample(const float* logits, int rows, int vocab, const SampleParamsDev* params,
                  int32_t* tokens, cudaStream_t stream) {
  SampleKernel<<<rows, kSampleThreads, 0, stream>>>(logits, vocab, params, tokens);
}

}  // namespace pd::cuda
