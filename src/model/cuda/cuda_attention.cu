// Attention over the paged KV cache (layout: kvcache/kv_layout.h, HND blocks).
//  * DecodeAttnKernel: split-KV flash-decoding on CUDA cores, one query row per CTA row slice,
//    all heads of a GQA group in one CTA (each K/V row is read once per group), any head dim
//    in {16, 32, 64, 128, 256}; partial (m, l, o) per split, merged by CombineKernel.
//  * DecodeAttnTiledKernel: head dim 128, K/V tiles streamed into shared memory with cp.async.
//  * tensor-core decode kernels (cuda_decode_mma.cu): head dim 128, the default.
// Prefill attention lives in cuda_prefill_attention.cu.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "model/cuda/cuda_attn_common.cuh"
#include "model/cuda/cuda_decode_mma.h"
#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_pdl.cuh"

namespace pd::cuda {
namespace {

constexpr int kMaxG = 8;  // query heads per CTA in the decode kernel


template <int D>
__global__ void __launch_bounds__(128) DecodeAttnKernel(AttnArgs a, BatchMeta m, int splits,
                                                        float* ws) {
  PdlTrigger();
  PdlWait();
  constexpr int kVec = D >= 256 ? 8 : 4;
  constexpr int kLpk = D / kVec;       // lanes per key
  constexpr int kKpw = 32 / kLpk;      // keys per warp step
  const int r = blockIdx.x;
  if (r >= *m.num_valid_rows) return;
  const int group = a.num_heads / a.num_kv_heads;
  const int chunks = (group + kMaxG - 1) / kMaxG;
  const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
  const int h0 = kvh * group + chunk * kMaxG;
  const int gcount = min(kMaxG, group - chunk * kMaxG);
  const int z = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / kLpk, li = lane % kLpk;

  const int s = m.row_seq[r], pos = m.row_pos[r];
  const int kend = pos + 1;
  const int kbeg = a.sliding_window > 0 ? max(0, pos - a.sliding_window + 1) : 0;
  const int per = (kend - kbeg + splits - 1) / splits;
  const int zb = kbeg + z * per, ze = min(kend, zb + per);
  const int* table = m.block_ids + m.block_indptr[s];

  float q[kMaxG][kVec], acc[kMaxG][kVec], mx[kMaxG], l[kMaxG];
  const float qs = a.scale * kLog2e;
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) {
    mx[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      acc[g][v] = 0.f;
      q[g][v] = g < gcount ? Bf(a.q[(int64_t(r) * a.num_heads + h0 + g) * D + li * kVec + v]) * qs
                           : 0.f;
    }
  }
  const int bs = a.kv.block_size;
  for (int k0 = zb + warp * kKpw; k0 < ze; k0 += 4 * kKpw) {
    const int key = k0 + sub;
    const bool valid = key < ze;
    float kf[kVec], vf[kVec];
    if (valid) {
      const int block = table[key / bs], slot = key % bs;
      const bf16_t* kp = a.kv.base + KvOffset(a.kv, a.layer, block, 0, kvh, slot) + li * kVec;
      const bf16_t* vp = kp + int64_t(a.num_kv_heads) * bs * D;
      if constexpr (kVec == 4) {
        const uint2 kr = *reinterpret_cast<const uint2*>(kp), vr = *reinterpret_cast<const uint2*>(vp);
        const uint32_t kw[2] = {kr.x, kr.y}, vw[2] = {vr.x, vr.y};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          kf[2 * i] = __uint_as_float(kw[i] << 16);
          kf[2 * i + 1] = __uint_as_float(kw[i] & 0xffff0000u);
          vf[2 * i] = __uint_as_float(vw[i] << 16);
          vf[2 * i + 1] = __uint_as_float(vw[i] & 0xffff0000u);
        }
      } else {
        const uint4 kr = *reinterpret_cast<const uint4*>(kp), vr = *reinterpret_cast<const uint4*>(vp);
        const uint32_t kw[4] = {kr.x, kr.y, kr.z, kr.w}, vw[4] = {vr.x, vr.y, vr.z, vr.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          kf[2 * i] = __uint_as_float(kw[i] << 16);
          kf[2 * i + 1] = __uint_as_float(kw[i] & 0xffff0000u);
          vf[2 * i] = __uint_as_float(vw[i] << 16);
          vf[2 * i + 1] = __uint_as_float(vw[i] & 0xffff0000u);
        }
      }
    } else {
#pragma unroll
      for (int v = 0; v < kVec; ++v) kf[v] = vf[v] = 0.f;
    }
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      if (g >= gcount) break;
      float sc = 0.f;
#pragma unroll
      for (int v = 0; v < kVec; ++v) sc += q[g][v] * kf[v];
#pragma unroll
      for (int o = kLpk / 2; o > 0; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
      if (!valid) continue;
      const float mn = fmaxf(mx[g], sc);
      const float corr = exp2f(mx[g] - mn), p = exp2f(sc - mn);
      l[g] = l[g] * corr + p;
#pragma unroll
      for (int v = 0; v < kVec; ++v) acc[g][v] = acc[g][v] * corr + p * vf[v];
      mx[g] = mn;
    }
  }
  // Merge the key slots of a warp (lanes with equal li).
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) {
#pragma unroll
    for (int o = kLpk; o < 32; o <<= 1) {
      const float om = __shfl_xor_sync(0xffffffffu, mx[g], o);
      const float ol = __shfl_xor_sync(0xffffffffu, l[g], o);
      const float mn = fmaxf(mx[g], om);
      const float c0 = mn == -INFINITY ? 0.f : exp2f(mx[g] - mn);
      const float c1 = mn == -INFINITY ? 0.f : exp2f(om - mn);
      l[g] = l[g] * c0 + ol * c1;
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        const float oa = __shfl_xor_sync(0xffffffffu, acc[g][v], o);
        acc[g][v] = acc[g][v] * c0 + oa * c1;
      }
      mx[g] = mn;
    }
  }
  __shared__ float sm_ml[4][kMaxG][2];
  __shared__ float sm_acc[4][kMaxG][D];
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      if (li == 0) {
        sm_ml[warp][g][0] = mx[g];
        sm_ml[warp][g][1] = l[g];
      }
#pragma unroll
      for (int v = 0; v < kVec; ++v) sm_acc[warp][g][li * kVec + v] = acc[g][v];
    }
  }
  __syncthreads();
  const int nh = a.num_heads;
  for (int e = threadIdx.x; e < gcount * D; e += 128) {
    const int g = e / D, d = e % D;
    float mm = -INFINITY;
    for (int w = 0; w < 4; ++w) mm = fmaxf(mm, sm_ml[w][g][0]);
    float ll = 0.f, oo = 0.f;
    if (mm != -INFINITY) {
      for (int w = 0; w < 4; ++w) {
        const float c = exp2f(sm_ml[w][g][0] - mm);
        ll += sm_ml[w][g][1] * c;
        oo += sm_acc[w][g][d] * c;
      }
    }
    const int64_t idx = (int64_t(r) * nh + h0 + g) * splits + z;
    float* wo = ws + idx * (D + 2);
    wo[2 + d] = oo;
    if (d == 0) {
      wo[0] = mm;
      wo[1] = ll;
    }
  }
}

// Merges the split partials of one (row, head): warp 0 reduces the (m, l) of all splits (up to
// kMaxSplits, two per lane) and leaves each split's weight in shared memory, then every thread
// sums its dims over the splits with independent loads (the old per-split loop was a chain of
// dependent L2 round trips: ~9.5 us per layer at b1 with 16 splits).
constexpr int kMaxSplits = 64;

__global__ void CombineKernel(AttnArgs a, BatchMeta m, int splits, const float* ws) {
  PdlTrigger();
  PdlWait();
  __shared__ float sw[kMaxSplits];
  __shared__ float s_inv;
  const int slot = blockIdx.x, h = blockIdx.y, D = a.head_dim;
  const int r = a.row_list ? a.row_list[slot] : slot;
  if (!a.row_list && r >= *m.num_valid_rows) return;
  const float* base = ws + (int64_t(slot) * a.num_heads + h) * splits * (D + 2);
  if (threadIdx.x < 32) {
    const float inv = SplitMergeWeights<false>(base, D + 2, splits, threadIdx.x, sw);
    if (threadIdx.x == 0) s_inv = inv;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o0 = 0.f, o1 = 0.f;
    int z = 0;
#pragma unroll 4
    for (; z + 1 < splits; z += 2) {
      o0 += sw[z] * base[z * (D + 2) + 2 + d];
      o1 += sw[z + 1] * base[(z + 1) * (D + 2) + 2 + d];
    }
    if (z < splits) o0 += sw[z] * base[z * (D + 2) + 2 + d];
    a.out[(int64_t(r) * a.num_heads + h) * D + d] = ToBf((o0 + o1) * s_inv);
  }
}

// ---- tiled decode (D = 128) ---------------------------------------------------------------
// One CTA (4 warps) per (row, kv head, head chunk, split). kTK-key K/V tiles stream into shared
// memory with 16-byte cp.async through a kStages-deep ring (K rows padded to 272 B so the per-key
// 16-byte reads are conflict-free). QK: 128/kTK threads per key, each over a slice of the dims,
// against every query head of the GQA group (q in shared memory, fp32, slices padded by 4 floats
// so the slices' broadcasts hit different banks). Softmax and PV: warp w owns heads w and w + 4,
// all 128 dims (4 per lane), so only the score exchange needs a CTA barrier.
constexpr int kTD = 128, kKStride = kTD + 8;
constexpr int kNumCudaCoreTiled = 3;
constexpr int kNumTiledVariants = kNumCudaCoreTiled + kNumMmaDecodeVariants;
int g_tiled_variant = kNumCudaCoreTiled;  // index into Variant(): the first tensor-core one
bool g_tiled_decode = true;

template <int kTK, int kStages>
struct TiledCfg {
  static constexpr int kTpk = 128 / kTK;          // threads per key in QK
  static constexpr int kSlice = kTD / kTpk;       // dims per thread in QK
  static constexpr int kQStride = kTD + 4 * kTpk;  // floats per head in q smem
  static constexpr size_t kSmem = size_t(kStages) * kTK * (kKStride + kTD) * sizeof(bf16_t) +
                                  (kMaxG * kQStride + kMaxG * kTK) * sizeof(float);
};

__device__ __forceinline__ void CpAsync16Tiled(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

__device__ __forceinline__ void Unpack8(const uint4& r, float* f) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// Issues the loads of keys [j0, min(j0 + kTK, ze)) (zero-filled beyond) and commits a group
// (an empty one when j0 >= ze, so every thread counts the same groups).
template <int kTK>
__device__ __forceinline__ void LoadDecodeTile(bf16_t* kd, bf16_t* vd, const AttnArgs& a,
                                               const int* table, int kvh, int j0, int ze) {
  if (j0 < ze) {
    const int bs = a.kv.block_size;
    for (int c = threadIdx.x; c < 2 * kTK * 16; c += 128) {
      const int which = c / (kTK * 16), rem = c % (kTK * 16), row = rem >> 4, ch = rem & 15;
      const int key = j0 + row;
      const bool valid = key < ze;
      const bf16_t* src = a.kv.base;
      if (valid) src += KvOffset(a.kv, a.layer, table[key / bs], which, kvh, key % bs) + ch * 8;
      bf16_t* dst = which == 0 ? kd + row * kKStride + ch * 8 : vd + row * kTD + ch * 8;
      CpAsync16Tiled(dst, src, valid);
    }
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

template <int kTK, int kStages>
__global__ void __launch_bounds__(128) DecodeAttnTiledKernel(AttnArgs a, BatchMeta m, int splits,
                                                             float* ws) {
  using C = TiledCfg<kTK, kStages>;
  constexpr int kKpl = kTK / 32;  // scores per lane in the softmax
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16_t* ks = reinterpret_cast<bf16_t*>(smem_raw);  // [kStages][kTK][kKStride]
  bf16_t* vs = ks + kStages * kTK * kKStride;         // [kStages][kTK][kTD]
  float* qsm = reinterpret_cast<float*>(vs + kStages * kTK * kTD);  // [kMaxG][kTpk][kSlice + 4]
  float* psm = qsm + kMaxG * C::kQStride;             // [kMaxG][kTK]
  PdlTrigger();
  PdlWait();
  const int r = blockIdx.x;
  if (r >= *m.num_valid_rows) return;
  const int group = a.num_heads / a.num_kv_heads;
  const int chunks = (group + kMaxG - 1) / kMaxG;
  const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
  const int h0 = kvh * group + chunk * kMaxG;
  const int gcount = min(kMaxG, group - chunk * kMaxG);
  const int z = blockIdx.z, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int s = m.row_seq[r], pos = m.row_pos[r];
  const int kend = pos + 1;
  const int kbeg = a.sliding_window > 0 ? max(0, pos - a.sliding_window + 1) : 0;
  const int per = (kend - kbeg + splits - 1) / splits;
  const int zb = kbeg + z * per, ze = min(kend, zb + per);
  const int* table = m.block_ids + m.block_indptr[s];
  const int ntiles = zb < ze ? (ze - zb + kTK - 1) / kTK : 0;
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    LoadDecodeTile<kTK>(ks + st * kTK * kKStride, vs + st * kTK * kTD, a, table, kvh,
                        zb + st * kTK, ze);
  }
  const float qscale = a.scale * kLog2e;
  for (int e = threadIdx.x; e < kMaxG * kTD; e += 128) {
    const int g = e / kTD, d = e % kTD;
    qsm[g * C::kQStride + (d / C::kSlice) * (C::kSlice + 4) + d % C::kSlice] =
        g < gcount ? Bf(a.q[(int64_t(r) * a.num_heads + h0 + g) * kTD + d]) * qscale : 0.f;
  }
  float mrun[2] = {-INFINITY, -INFINITY}, lrun[2] = {0.f, 0.f}, acc[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  constexpr int kKeysPerWarp = 32 / C::kTpk;
  const int key = warp * kKeysPerWarp + lane % kKeysPerWarp, part = lane / kKeysPerWarp;
  for (int it = 0; it < ntiles; ++it) {
    const int buf = it % kStages, j0 = zb + it * kTK;
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
    __syncthreads();  // tile `it` visible; everyone is done with tile it-1 and its scores
    {
      const int nb = (it + kStages - 1) % kStages;  // the buffer tile it-1 used
      LoadDecodeTile<kTK>(ks + nb * kTK * kKStride, vs + nb * kTK * kTD, a, table, kvh,
                          j0 + (kStages - 1) * kTK, ze);
    }
    {  // QK: scores of key `key` for every head over this thread's slice of the dims
      const bf16_t* krow = ks + (buf * kTK + key) * kKStride + part * C::kSlice;
      const float* qh = qsm + part * (C::kSlice + 4);
      float sc[kMaxG];
#pragma unroll
      for (int g = 0; g < kMaxG; ++g) sc[g] = 0.f;
#pragma unroll
      for (int c = 0; c < C::kSlice / 8; ++c) {
        float kf[8];
        Unpack8(*reinterpret_cast<const uint4*>(krow + c * 8), kf);
#pragma unroll
        for (int g = 0; g < kMaxG; ++g) {
          if (g < gcount) {
            const float4 q0 = *reinterpret_cast<const float4*>(qh + g * C::kQStride + c * 8);
            const float4 q1 = *reinterpret_cast<const float4*>(qh + g * C::kQStride + c * 8 + 4);
            sc[g] += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] +
                     q1.y * kf[5] + q1.z * kf[6] + q1.w * kf[7];
          }
        }
      }
      const bool valid = j0 + key < ze;
#pragma unroll
      for (int g = 0; g < kMaxG; ++g) {
#pragma unroll
        for (int o = kKeysPerWarp; o < 32; o <<= 1) sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], o);
        if (g < gcount && part == 0) psm[g * kTK + key] = valid ? sc[g] : -INFINITY;
      }
    }
    __syncthreads();
    const bf16_t* vt = vs + buf * kTK * kTD + lane * 4;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int g = warp + 4 * i;
      if (g >= gcount) continue;
      float* pg = psm + g * kTK;
      float sv[kKpl];
      float tm = -INFINITY;
#pragma unroll
      for (int k = 0; k < kKpl; ++k) tm = fmaxf(tm, sv[k] = pg[lane + 32 * k]);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, o));
      const float mn = fmaxf(mrun[i], tm);  // finite: every tile has a valid key
      const float corr = exp2f(mrun[i] - mn);
      float ps = 0.f;
#pragma unroll
      for (int k = 0; k < kKpl; ++k) ps += (sv[k] = exp2f(sv[k] - mn));
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      lrun[i] = lrun[i] * corr + ps;
      mrun[i] = mn;
#pragma unroll
      for (int k = 0; k < kKpl; ++k) pg[lane + 32 * k] = sv[k];
      __syncwarp();
      float o4[4] = {acc[i][0] * corr, acc[i][1] * corr, acc[i][2] * corr, acc[i][3] * corr};
#pragma unroll 8
      for (int j = 0; j < kTK; ++j) {
        const uint2 vr = *reinterpret_cast<const uint2*>(vt + j * kTD);
        const float p = pg[j];
        o4[0] += p * __uint_as_float(vr.x << 16);
        o4[1] += p * __uint_as_float(vr.x & 0xffff0000u);
        o4[2] += p * __uint_as_float(vr.y << 16);
        o4[3] += p * __uint_as_float(vr.y & 0xffff0000u);
      }
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][v] = o4[v];
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);  // no copy may outlive the CTA
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int g = warp + 4 * i;
    if (g >= gcount) continue;
    float* wo = ws + ((int64_t(r) * a.num_heads + h0 + g) * splits + z) * (kTD + 2);
#pragma unroll
    for (int v = 0; v < 4; ++v) wo[2 + lane * 4 + v] = acc[i][v];
    if (lane == 0) {
      wo[0] = mrun[i];
      wo[1] = lrun[i];
    }
  }
}

// The measured-to-be-chosen variants: CUDA-core (keys per tile, pipeline stages), then the
// tensor-core kernels of cuda_decode_mma.cu.
struct TiledVariant {
  DecodeKernelFn kernel;
  size_t smem;
  const char* name;
};
const TiledVariant& Variant(int v) {
  static const TiledVariant table[kNumTiledVariants] = {
      {DecodeAttnTiledKernel<64, 2>, TiledCfg<64, 2>::kSmem, "tiled64x2"},
      {DecodeAttnTiledKernel<32, 4>, TiledCfg<32, 4>::kSmem, "tiled32x4"},
      {DecodeAttnTiledKernel<64, 3>, TiledCfg<64, 3>::kSmem, "tiled64x3"},
      {MmaDecodeKernel(0), MmaDecodeSmem(0), "mma64x2  "},
      {MmaDecodeKernel(1), MmaDecodeSmem(1), "mma64x3  "},
      {MmaDecodeKernel(2), MmaDecodeSmem(2), "mma128x2 "},
  };
  return table[v];
}

}  // namespace

size_t AttnWorkspaceFloats(int rows, int num_heads, int head_dim, int splits) {
  return size_t(rows) * num_heads * splits * (head_dim + 2);
}

size_t DecodeCounterInts(int rows, int num_heads, int num_kv_heads) {
  const int group = num_heads / std::max(1, num_kv_heads);
  return size_t(rows) * num_kv_heads * ((group + kMaxG - 1) / kMaxG);
}

int ChooseSplits(int rows, int num_kv_heads, int max_ctx, int num_sms) {
  const int ctas = rows * num_kv_heads;
  int splits = (2 * num_sms + ctas - 1) / ctas;
  const int by_len = (max_ctx + 255) / 256;  // at least 256 keys per split
  if (splits > by_len) splits = by_len;
  if (splits > 64) splits = 64;
  return splits < 1 ? 1 : splits;
}

void SetTiledDecodeAttention(bool on) { g_tiled_decode = on; }

bool TiledDecodeAttentionUsed(int head_dim) { return g_tiled_decode && head_dim == kTD; }

int NumTiledDecodeVariants() { return kNumTiledVariants; }

void SetTiledDecodeVariant(int v) {
  if (v >= 0 && v < kNumTiledVariants) g_tiled_variant = v;
}

int TiledDecodeVariant() { return g_tiled_variant; }

int DefaultTiledDecodeVariant() { return kNumCudaCoreTiled; }

const char* TiledDecodeVariantName(int v) {
  return v >= 0 && v < kNumTiledVariants ? Variant(v).name : "simt     ";
}

namespace {
// Sets each variant's shared-memory limit once and returns its resident CTAs per SM.
int TiledCtasPerSm() {
  static int per_sm[kNumTiledVariants] = {};
  const TiledVariant& v = Variant(g_tiled_variant);
  int& n = per_sm[g_tiled_variant];
  if (n == 0) {
    cudaFuncSetAttribute(v.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(v.smem));
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, v.kernel, 128, v.smem) != cudaSuccess ||
        n < 1) {
      cudaGetLastError();
      n = 1;
    }
  }
  return n;
}
}  // namespace

int ChooseDecodeSplits(int rows, int num_heads, int num_kv_heads, int head_dim, int max_ctx,
                       int num_sms) {
  if (!TiledDecodeAttentionUsed(head_dim)) return ChooseSplits(rows, num_kv_heads, max_ctx, num_sms);
  const int group = num_heads / num_kv_heads;
  const int ctas = rows * num_kv_heads * ((group + kMaxG - 1) / kMaxG);
  const int slots = TiledCtasPerSm() * num_sms;
  // At least 256 keys (4 tiles) per split for the CUDA-core kernels; the tensor-core kernels'
  // per-split cost is small enough for one 64-key tile per split (b1 ctx1k: 16 splits, not 4).
  const int min_keys = g_tiled_variant >= kNumCudaCoreTiled ? 64 : 256;
  const int by_len = std::max(1, (max_ctx + min_keys - 1) / min_keys);
  int best = 1;
  if (ctas < slots) {
    best = std::max(1, slots / ctas);  // one full wave
  } else {
    double best_eff = 0;
    for (int sp = 1; sp <= 4; ++sp) {  // fewest waves wasted; a new split must gain 5%
      const double n = double(ctas) * sp, waves = std::ceil(n / slots);
      const double eff = n / (waves * slots);
      if (eff > best_eff + 0.05) {
        best_eff = eff;
        best = sp;
      }
    }
  }
  return std::max(1, std::min({best, by_len, 64}));
}

bool DecodeRowListSupported(int head_dim) {
  return TiledDecodeAttentionUsed(head_dim) && g_tiled_variant >= kNumCudaCoreTiled;
}

void LaunchDecodeAttention(const AttnArgs& a, const BatchMeta& m, int splits, float* workspace,
                           cudaStream_t stream) {
  if (a.row_list && !DecodeRowListSupported(a.head_dim)) return;  // callers check first
  splits = std::max(1, std::min(splits, kMaxSplits));  // CombineKernel merges up to kMaxSplits
  const int group = a.num_heads / a.num_kv_heads;
  const int chunks = (group + kMaxG - 1) / kMaxG;
  dim3 grid(a.rows, a.num_kv_heads * chunks, splits);
  if (TiledDecodeAttentionUsed(a.head_dim)) {
    TiledCtasPerSm();  // sets the shared-memory attribute once
    const TiledVariant& v = Variant(g_tiled_variant);
    if (a.split_counters && g_tiled_variant >= kNumCudaCoreTiled) {  // merge in the last CTA
      const int mv = g_tiled_variant - kNumCudaCoreTiled;
      static bool smem_set[kNumMmaDecodeVariants] = {};
      if (!smem_set[mv]) {
        cudaFuncSetAttribute(MmaDecodeKernel(mv, true), cudaFuncAttributeMaxDynamicSharedMemorySize,
                             int(v.smem));
        smem_set[mv] = true;
      }
      LaunchPdl(MmaDecodeKernel(mv, true), grid, 128, v.smem, stream, a, m, splits, workspace);
      return;
    }
    LaunchPdl(v.kernel, grid, 128, v.smem, stream, a, m, splits, workspace);
    LaunchPdl(CombineKernel, dim3(a.rows, a.num_heads), a.head_dim, 0, stream, a, m, splits,
              static_cast<const float*>(workspace));
    return;
  }
  DecodeKernelFn k = nullptr;
  switch (a.head_dim) {
    case 16: k = DecodeAttnKernel<16>; break;
    case 32: k = DecodeAttnKernel<32>; break;
    case 64: k = DecodeAttnKernel<64>; break;
    case 128: k = DecodeAttnKernel<128>; break;
    case 256: k = DecodeAttnKernel<256>; break;
    default: return;  // the runner refuses other head dims at creation
  }
  LaunchPdl(k, grid, 128, 0, stream, a, m, splits, workspace);
  LaunchPdl(CombineKernel, dim3(a.rows, a.num_heads), a.head_dim < 32 ? 32 : a.head_dim, 0, stream,
            a, m, splits, static_cast<const float*>(workspace));
}

}  // namespace pd::cuda
