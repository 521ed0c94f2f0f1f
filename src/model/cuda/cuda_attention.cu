// Attention over the paged KV cache (layout: kvcache/kv_layout.h, HND blocks).
//  * DecodeAttnKernel: split-KV flash-decoding on CUDA cores, one query row per CTA row slice,
//    all heads of a GQA group in one CTA (each K/V row is read once per group), any head dim
//    in {16, 32, 64, 128, 256}; partial (m, l, o) per split, merged by CombineKernel.
//  * PrefillAttnKernel: causal flash attention with mma.sync m16n8k16 (bf16 in, fp32 acc),
//    128 query rows (8 warps) x 64 keys per step, K/V gathered through the block table with cp.async
//    (double-buffered), XOR-swizzled shared memory for conflict-free ldmatrix.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxG = 8;  // query heads per CTA in the decode kernel

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

template <int D>
__global__ void __launch_bounds__(128) DecodeAttnKernel(AttnArgs a, BatchMeta m, int splits,
                                                        float* ws) {
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

__global__ void CombineKernel(AttnArgs a, BatchMeta m, int splits, const float* ws) {
  const int r = blockIdx.x, h = blockIdx.y, D = a.head_dim;
  if (r >= *m.num_valid_rows) return;
  const float* base = ws + (int64_t(r) * a.num_heads + h) * splits * (D + 2);
  float mm = -INFINITY;
  for (int z = 0; z < splits; ++z) mm = fmaxf(mm, base[z * (D + 2)]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float ll = 0.f, oo = 0.f;
    if (mm != -INFINITY) {
      for (int z = 0; z < splits; ++z) {
        const float* w = base + z * (D + 2);
        const float c = exp2f(w[0] - mm);
        ll += w[1] * c;
        oo += w[2 + d] * c;
      }
    }
    a.out[(int64_t(r) * a.num_heads + h) * D + d] = ToBf(ll > 0.f ? oo / ll : 0.f);
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
int g_tiled_variant = 0;  // index into kTiledVariants
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

// The measured-to-be-chosen variants: (keys per tile, pipeline stages).
struct TiledVariant {
  void (*kernel)(AttnArgs, BatchMeta, int, float*);
  size_t smem;
};
const TiledVariant kTiledVariants[] = {
    {DecodeAttnTiledKernel<64, 2>, TiledCfg<64, 2>::kSmem},
    {DecodeAttnTiledKernel<32, 4>, TiledCfg<32, 4>::kSmem},
    {DecodeAttnTiledKernel<64, 3>, TiledCfg<64, 3>::kSmem},
};
constexpr int kNumTiledVariants = 3;

// ---- tensor-core prefill ------------------------------------------------------------------
constexpr int kPD = 128, kBM = kPrefillTileRows, kBN = 64, kPThreads = kBM * 2;  // 16 rows/warp
constexpr int kTileElems = kBN * kPD;  // one K or V tile: 64 x 128 bf16 = 16 KB
constexpr int kQElems = kBM * kPD;
constexpr size_t kPrefillSmem = (kQElems + 4 * kTileElems) * sizeof(bf16_t);  // Q, K[2], V[2]

__device__ __forceinline__ int Swz(int row, int col) {  // element offset in an Nx128 tile
  return row * kPD + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void Ldsm4(uint32_t* r, const bf16_t* p) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void Ldsm4T(uint32_t* r, const bf16_t* p) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void Mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t PackBf2(float lo, float hi) {
  return uint32_t(ToBf(lo)) | (uint32_t(ToBf(hi)) << 16);
}

// Loads 64 K (which = 0) or V (which = 1) rows of keys [j0, j0 + 64) into a swizzled tile.
__device__ __forceinline__ void LoadKvTile(bf16_t* dst, const AttnArgs& a, const int* table,
                                           int kvh, int which, int j0, int kend) {
  for (int c = threadIdx.x; c < kBN * 16; c += kPThreads) {
    const int row = c >> 4, ch = c & 15, key = j0 + row;
    const bool valid = key < kend;
    const bf16_t* src = a.kv.base;
    if (valid) {
      const int bs = a.kv.block_size;
      src += KvOffset(a.kv, a.layer, table[key / bs], which, kvh, key % bs) + ch * 8;
    }
    CpAsync16(dst + Swz(row, ch * 8), src, valid);
  }
}

__global__ void __launch_bounds__(kPThreads, 2) PrefillAttnKernel(AttnArgs a, BatchMeta m,
                                                                  const int32_t* tiles) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16_t* qs = reinterpret_cast<bf16_t*>(smem_raw);
  bf16_t* ks = qs + kQElems;  // [2]
  bf16_t* vs = ks + 2 * kTileElems;  // [2]
  // Last tiles first: in causal order they are the longest, so the grid's tail is short.
  const int tile = gridDim.x - 1 - blockIdx.x;
  const int s = tiles[2 * tile], qoff = tiles[2 * tile + 1];
  const int h = blockIdx.y, nh = a.num_heads;
  const int kvh = h / (nh / a.num_kv_heads);
  const int ctx = m.seq_ctx[s], nnew = m.seq_nnew[s], qstart = m.seq_qstart[s];
  const int cached = ctx - nnew;
  const int qrows = min(kBM, nnew - qoff);
  const int kend = cached + qoff + qrows;
  int kbeg = a.sliding_window > 0 ? max(0, cached + qoff - a.sliding_window + 1) : 0;
  kbeg = (kbeg / kBN) * kBN;
  const int* table = m.block_ids + m.block_indptr[s];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;

  for (int c = threadIdx.x; c < kBM * 16; c += kPThreads) {
    const int row = c >> 4, ch = c & 15;
    const bool valid = row < qrows;
    const bf16_t* src = valid ? a.q + (int64_t(qstart + qoff + row) * nh + h) * kPD + ch * 8 : a.q;
    CpAsync16(qs + Swz(row, ch * 8), src, valid);
  }
  LoadKvTile(ks, a, table, kvh, 0, kbeg, kend);
  LoadKvTile(vs, a, table, kvh, 1, kbeg, kend);
  CpAsyncCommit();

  const float sl2 = a.scale * kLog2e;
  const int qp0 = cached + qoff + warp * 16 + g, qp1 = qp0 + 8;  // positions of my two rows
  float o[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int ntiles = (kend - kbeg + kBN - 1) / kBN;
  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1, j0 = kbeg + it * kBN;
    CpAsyncWaitAll();
    __syncthreads();
    if (it + 1 < ntiles) {
      LoadKvTile(ks + (buf ^ 1) * kTileElems, a, table, kvh, 0, j0 + kBN, kend);
      LoadKvTile(vs + (buf ^ 1) * kTileElems, a, table, kvh, 1, j0 + kBN, kend);
      CpAsyncCommit();
    }
    const bf16_t* kt = ks + buf * kTileElems;
    const bf16_t* vt = vs + buf * kTileElems;
    float sc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < 8; ++kc) {
      uint32_t qf[4];  // Q fragments re-read from shared memory: registers for 2 CTAs per SM
      Ldsm4(qf, qs + Swz(warp * 16 + (lane & 15), kc * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        const int mat = lane >> 3, rr = lane & 7;
        Ldsm4(b, kt + Swz(np * 16 + rr + (mat >> 1) * 8, kc * 16 + (mat & 1) * 8));
        Mma(sc[2 * np], qf, b[0], b[1]);
        Mma(sc[2 * np + 1], qf, b[2], b[3]);
      }
    }
    // Mask, scale, online softmax.
    float tm0 = -INFINITY, tm1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j0 + nt * 8 + 2 * t + (e & 1);
        const int qp = e < 2 ? qp0 : qp1;
        bool ok = key <= qp && key < kend;
        if (a.sliding_window > 0) ok = ok && (qp - key < a.sliding_window);
        sc[nt][e] = ok ? sc[nt][e] * sl2 : -INFINITY;
      }
      tm0 = fmaxf(tm0, fmaxf(sc[nt][0], sc[nt][1]));
      tm1 = fmaxf(tm1, fmaxf(sc[nt][2], sc[nt][3]));
    }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      tm0 = fmaxf(tm0, __shfl_xor_sync(0xffffffffu, tm0, o2));
      tm1 = fmaxf(tm1, __shfl_xor_sync(0xffffffffu, tm1, o2));
    }
    const float n0 = fmaxf(m0, tm0), n1 = fmaxf(m1, tm1);
    const float s0 = n0 == -INFINITY ? 0.f : n0, s1 = n1 == -INFINITY ? 0.f : n1;
    const float c0 = exp2f(m0 - s0), c1 = exp2f(m1 - s1);
    m0 = n0;
    m1 = n1;
    float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      sc[nt][0] = exp2f(sc[nt][0] - s0);
      sc[nt][1] = exp2f(sc[nt][1] - s0);
      sc[nt][2] = exp2f(sc[nt][2] - s1);
      sc[nt][3] = exp2f(sc[nt][3] - s1);
      ps0 += sc[nt][0] + sc[nt][1];
      ps1 += sc[nt][2] + sc[nt][3];
    }
    l0 = l0 * c0 + ps0;
    l1 = l1 * c1 + ps1;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      o[i][0] *= c0;
      o[i][1] *= c0;
      o[i][2] *= c1;
      o[i][3] *= c1;
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t pa[4];
      pa[0] = PackBf2(sc[2 * kk][0], sc[2 * kk][1]);
      pa[1] = PackBf2(sc[2 * kk][2], sc[2 * kk][3]);
      pa[2] = PackBf2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pa[3] = PackBf2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < 8; ++dp) {
        uint32_t b[4];
        const int mat = lane >> 3, rr = lane & 7;
        Ldsm4T(b, vt + Swz(kk * 16 + rr + (mat & 1) * 8, dp * 16 + (mat >> 1) * 8));
        Mma(o[2 * dp], pa, b[0], b[1]);
        Mma(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
  }
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, o2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, o2);
  }
  const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
  const int r0 = warp * 16 + g, r1 = r0 + 8;
#pragma unroll
  for (int nt = 0; nt < 16; ++nt) {
    const int col = nt * 8 + 2 * t;
    if (r0 < qrows) {
      *reinterpret_cast<uint32_t*>(a.out + (int64_t(qstart + qoff + r0) * nh + h) * kPD + col) =
          PackBf2(o[nt][0] * i0, o[nt][1] * i0);
    }
    if (r1 < qrows) {
      *reinterpret_cast<uint32_t*>(a.out + (int64_t(qstart + qoff + r1) * nh + h) * kPD + col) =
          PackBf2(o[nt][2] * i1, o[nt][3] * i1);
    }
  }
}

}  // namespace

size_t AttnWorkspaceFloats(int rows, int num_heads, int head_dim, int splits) {
  return size_t(rows) * num_heads * splits * (head_dim + 2);
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

namespace {
// Sets each variant's shared-memory limit once and returns its resident CTAs per SM.
int TiledCtasPerSm() {
  static int per_sm[kNumTiledVariants] = {};
  const TiledVariant& v = kTiledVariants[g_tiled_variant];
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
  const int by_len = std::max(1, (max_ctx + 255) / 256);  // at least 4 tiles per split
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

void LaunchDecodeAttention(const AttnArgs& a, const BatchMeta& m, int splits, float* workspace,
                           cudaStream_t stream) {
  const int group = a.num_heads / a.num_kv_heads;
  const int chunks = (group + kMaxG - 1) / kMaxG;
  dim3 grid(a.rows, a.num_kv_heads * chunks, splits);
  if (TiledDecodeAttentionUsed(a.head_dim)) {
    TiledCtasPerSm();  // sets the shared-memory attribute once
    const TiledVariant& v = kTiledVariants[g_tiled_variant];
    v.kernel<<<grid, 128, v.smem, stream>>>(a, m, splits, workspace);
    CombineKernel<<<dim3(a.rows, a.num_heads), a.head_dim, 0, stream>>>(a, m, splits, workspace);
    return;
  }
  switch (a.head_dim) {
    case 16: DecodeAttnKernel<16><<<grid, 128, 0, stream>>>(a, m, splits, workspace); break;
    case 32: DecodeAttnKernel<32><<<grid, 128, 0, stream>>>(a, m, splits, workspace); break;
    case 64: DecodeAttnKernel<64><<<grid, 128, 0, stream>>>(a, m, splits, workspace); break;
    case 128: DecodeAttnKernel<128><<<grid, 128, 0, stream>>>(a, m, splits, workspace); break;
    case 256: DecodeAttnKernel<256><<<grid, 128, 0, stream>>>(a, m, splits, workspace); break;
    default: return;  // the runner refuses other head dims at creation
  }
  CombineKernel<<<dim3(a.rows, a.num_heads), a.head_dim < 32 ? 32 : a.head_dim, 0, stream>>>(
      a, m, splits, workspace);
}

bool PrefillAttentionSupported(int head_dim) { return head_dim == kPD; }

void LaunchPrefillAttention(const AttnArgs& a, const BatchMeta& m, const int32_t* tiles,
                            int num_tiles, cudaStream_t stream) {
  static bool configured = false;
  if (!configured) {
    cudaFuncSetAttribute(PrefillAttnKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(kPrefillSmem));
    configured = true;
  }
  dim3 grid(num_tiles, a.num_heads);
  PrefillAttnKernel<<<grid, kPThreads, kPrefillSmem, stream>>>(a, m, tiles);
}

}  // namespace pd::cuda
