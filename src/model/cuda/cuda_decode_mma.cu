// Decode attention for head dim 128 on tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation).
// One CTA (4 warps) per (query row, kv head, <=8-head chunk of its GQA group, split). K/V tiles
// of 4 * kKW keys stream into shared memory with 16-byte cp.async through a kStages-deep ring
// (rows padded to 272 B so every ldmatrix phase is conflict-free). Warp w owns keys
// [w * kKW, (w + 1) * kKW) of each tile and keeps its own online softmax: the group's query heads
// are the M rows of the MMA (rows 8..15 are zero), S = Q K^T and O += P V never leave registers
// (P is re-packed from the S accumulators as the A operand), so the only per-tile barrier is the
// one guarding the ring. The four warps' (m, l, o) merge once at the end into the same split
// partials that CombineKernel reduces - or, in the fused variant, that the last CTA of the
// (row, kv head) to finish reduces itself (an atomic ticket per (row, kv head), as in the CUDA
// samples' threadFenceReduction): one kernel boundary less on a decode step's critical path.
// Splits cover whole 64/128-key tiles: a short context in a graph captured for a longer one
// leaves the trailing split CTAs empty instead of slicing every tile. FlashInfer's tensor-core
// decode structure.
#include <cuda_bf16.h>

#include "model/cuda/cuda_attn_common.cuh"
#include "model/cuda/cuda_decode_mma.h"
#include "model/cuda/cuda_pdl.cuh"

namespace pd::cuda {
namespace {

constexpr int kD = 128;
constexpr int kStride = kD + 8;  // bf16 per shared-memory row
constexpr int kHeads = 8;        // query heads per CTA (must match cuda_attention.cu's kMaxG)
constexpr int kOStride = kD + 8;  // floats per head in the epilogue's merge buffer

template <int kKW, int kStages>
struct MmaCfg {
  static constexpr int kTK = 4 * kKW;  // keys per tile
  static constexpr int kStageElems = 2 * kTK * kStride;
  static constexpr size_t kSmem = size_t(kStages) * kStageElems * sizeof(bf16_t);
  static_assert(kSmem >= (4 * kHeads * kOStride + 4 * kHeads * 2) * sizeof(float),
                "the epilogue reuses the ring");
};

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

__device__ __forceinline__ void LdMatrixX4(uint32_t* r, const void* p) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ void LdMatrixX4T(uint32_t* r, const void* p) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// c += A B with A rows 8..15 zero: a0 = (row lane/4, k 0..7 pair), a2 = (row lane/4, k 8..15).
__device__ __forceinline__ void Mma(float* c, uint32_t a0, uint32_t a2, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackBf2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Issues keys [j0, min(j0 + kTK, ze)) of K and V (zero-filled beyond) into one ring stage and
// commits a group (an empty one when j0 >= ze, so every thread counts the same groups).
template <int kTK>
__device__ __forceinline__ void LoadTile(bf16_t* st, const AttnArgs& a, const int* table, int kvh,
                                         int j0, int ze) {
  if (j0 < ze) {
    const int bs = a.kv.block_size, ch = threadIdx.x & 15;
    const int64_t v_off = int64_t(a.num_kv_heads) * bs * kD;
#pragma unroll
    for (int i = 0; i < kTK / 8; ++i) {
      const int row = (threadIdx.x >> 4) + 8 * i, key = j0 + row;
      const bool valid = key < ze;
      const bf16_t* src = a.kv.base;
      if (valid) src += KvOffset(a.kv, a.layer, table[key / bs], 0, kvh, key % bs) + ch * 8;
      CpAsync16(st + row * kStride + ch * 8, src, valid);
      CpAsync16(st + (kTK + row) * kStride + ch * 8, valid ? src + v_off : src, valid);
    }
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

// The fused variant's merge, run by the last CTA of a (row, kv head): the same arithmetic in the
// same order as CombineKernel (cuda_attention.cu) over the first n splits (the rest are empty), so
// the fused and the two-kernel paths give bitwise equal outputs. Warp w computes the merge weights
// (SplitMergeWeights, shared with CombineKernel) of heads w and w + 4; then every thread sums its
// dims.
__device__ __forceinline__ void MergeSplits(const AttnArgs& a, const float* ws, int slot, int r,
                                            int h0, int gcount, int splits, int n, float* sw) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* s_inv = sw + kHeads * 64;
  for (int h = warp; h < gcount; h += 4) {
    const float* base = ws + (int64_t(slot) * a.num_heads + h0 + h) * splits * (kD + 2);
    const float inv = SplitMergeWeights<true>(base, kD + 2, n, lane, sw + h * 64);
    if (lane == 0) s_inv[h] = inv;
  }
  __syncthreads();
  // Thread t sums dims 2p, 2p + 1 (p = t % 64) of every head over the even (t < 64) or the odd
  // splits - CombineKernel's o0 / o1 - with the heads innermost, so up to 8 independent loads
  // are in flight per split step; the odd half hands its sums over through shared memory.
  const int p = threadIdx.x % 64, odd = threadIdx.x / 64;
  float2 acc[kHeads];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) acc[h] = make_float2(0.f, 0.f);
  const float* base = ws + (int64_t(slot) * a.num_heads + h0) * splits * (kD + 2) + 2 + 2 * p;
#pragma unroll 2
  for (int z = odd; z < n; z += 2) {
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      if (h < gcount) {
        const float2 v = __ldcg(reinterpret_cast<const float2*>(
            base + (int64_t(h) * splits + z) * (kD + 2)));
        const float wz = sw[h * 64 + z];
        acc[h].x += wz * v.x;
        acc[h].y += wz * v.y;
      }
    }
  }
  float2* xch = reinterpret_cast<float2*>(sw + kHeads * 72);  // [kHeads][64] odd-split sums
  if (odd) {
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      if (h < gcount) xch[h * 64 + p] = acc[h];
    }
  }
  __syncthreads();
  if (!odd) {
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      if (h < gcount) {
        const float2 o1 = xch[h * 64 + p];
        bf16_t* out = a.out + (int64_t(r) * a.num_heads + h0 + h) * kD + 2 * p;
        out[0] = ToBf((acc[h].x + o1.x) * s_inv[h]);
        out[1] = ToBf((acc[h].y + o1.y) * s_inv[h]);
      }
    }
  }
}

template <int kKW, int kStages, bool kFused>
__global__ void __launch_bounds__(128) DecodeAttnMmaKernel(AttnArgs a, BatchMeta m, int splits,
                                                           float* ws) {
  using C = MmaCfg<kKW, kStages>;
  constexpr int kTK = C::kTK, kNT = kKW / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16_t* ring = reinterpret_cast<bf16_t*>(smem_raw);
  PdlTrigger();
  PdlWait();
  // slot: this launch's row index (workspace, tickets); r: the batch row (a.row_list subset)
  const int slot = blockIdx.x, r = a.row_list ? a.row_list[slot] : slot;
  if (!a.row_list && r >= *m.num_valid_rows) return;
  const int group = a.num_heads / a.num_kv_heads;
  const int chunks = (group + kHeads - 1) / kHeads;
  const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
  const int h0 = kvh * group + chunk * kHeads;
  const int gcount = min(kHeads, group - chunk * kHeads);
  const int z = blockIdx.z, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int s = m.row_seq[r], pos = m.row_pos[r];
  const int kend = pos + 1;
  const int kbeg = a.sliding_window > 0 ? max(0, pos - a.sliding_window + 1) : 0;
  // whole tiles per split; splits past the end of a short context stay empty
  const int per = ((kend - kbeg + splits - 1) / splits + kTK - 1) / kTK * kTK;
  const int zb = min(kend, kbeg + z * per), ze = min(kend, zb + per);
  const int* table = m.block_ids + m.block_indptr[s];
  const int ntiles = zb < ze ? (ze - zb + kTK - 1) / kTK : 0;
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    LoadTile<kTK>(ring + st * C::kStageElems, a, table, kvh, zb + st * kTK, ze);
  }
  const int g = lane / 4, q4 = lane % 4;  // this thread's MMA row (= head) and column pair
  uint32_t qf[8][2];
  {
    const bool has = g < gcount;
    const bf16_t* qrow = a.q + (int64_t(r) * a.num_heads + h0 + (has ? g : 0)) * kD + 2 * q4;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      qf[k][0] = has ? *reinterpret_cast<const uint32_t*>(qrow + 16 * k) : 0u;
      qf[k][1] = has ? *reinterpret_cast<const uint32_t*>(qrow + 16 * k + 8) : 0u;
    }
  }
  const float qscale = a.scale * kLog2e;
  float o[16][4];
#pragma unroll
  for (int n = 0; n < 16; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float mrun = -INFINITY, lrun = 0.f;  // row g; lrun is this thread's part of the row sum
  for (int it = 0; it < ntiles; ++it) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
    __syncthreads();  // tile `it` visible; every warp is done with the stage tile it-1 used
    LoadTile<kTK>(ring + ((it + kStages - 1) % kStages) * C::kStageElems, a, table, kvh,
                  zb + (it + kStages - 1) * kTK, ze);
    const bf16_t* kt = ring + (it % kStages) * C::kStageElems + warp * kKW * kStride;
    const bf16_t* vt = kt + kTK * kStride;
    float sc[kNT][4];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < 8; kk += 2) {
        uint32_t b[4];
        LdMatrixX4(b, kt + (nt * 8 + lane % 8) * kStride + kk * 16 + (lane / 8) * 8);
        Mma(sc[nt], qf[kk][0], qf[kk][1], b[0], b[1]);
        Mma(sc[nt], qf[kk + 1][0], qf[kk + 1][1], b[2], b[3]);
      }
    }
    const int kbase = zb + it * kTK + warp * kKW + 2 * q4;
    float tmax = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float v = kbase + nt * 8 + e < ze ? sc[nt][e] * qscale : -INFINITY;
        sc[nt][e] = v;
        tmax = fmaxf(tmax, v);
      }
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
    const float mn = fmaxf(mrun, tmax);
    const float msub = mn == -INFINITY ? 0.f : mn;  // a warp slice with no valid key yet
    const float corr = exp2f(mrun - msub);
    mrun = mn;
    float ps = 0.f;
    uint32_t pf[kNT];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const float p0 = exp2f(sc[nt][0] - msub), p1 = exp2f(sc[nt][1] - msub);
      ps += p0 + p1;
      pf[nt] = PackBf2(p0, p1);
    }
    lrun = lrun * corr + ps;
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      o[n][0] *= corr;
      o[n][1] *= corr;
    }
#pragma unroll
    for (int ks = 0; ks < kKW / 16; ++ks) {
#pragma unroll
      for (int nd = 0; nd < 8; ++nd) {
        uint32_t b[4];
        LdMatrixX4T(b, vt + (ks * 16 + lane % 16) * kStride + nd * 16 + (lane / 16) * 8);
        Mma(o[2 * nd], pf[2 * ks], pf[2 * ks + 1], b[0], b[1]);
        Mma(o[2 * nd + 1], pf[2 * ks], pf[2 * ks + 1], b[2], b[3]);
      }
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);  // no copy may outlive the CTA (or hit the merge)
  __syncthreads();
  lrun += __shfl_xor_sync(0xffffffffu, lrun, 1);
  lrun += __shfl_xor_sync(0xffffffffu, lrun, 2);
  float* om = reinterpret_cast<float*>(smem_raw);  // [4 warps][kHeads][kOStride]
  float* ml = om + 4 * kHeads * kOStride;           // [4 warps][kHeads][2]
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    *reinterpret_cast<float2*>(om + (warp * kHeads + g) * kOStride + n * 8 + 2 * q4) =
        make_float2(o[n][0], o[n][1]);
  }
  if (q4 == 0) {
    ml[(warp * kHeads + g) * 2] = mrun;
    ml[(warp * kHeads + g) * 2 + 1] = lrun;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < gcount * kD; e += 128) {
    const int h = e / kD, d = e % kD;
    float mm = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; ++w) mm = fmaxf(mm, ml[(w * kHeads + h) * 2]);
    float ll = 0.f, oo = 0.f;
    if (mm != -INFINITY) {
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float c = exp2f(ml[(w * kHeads + h) * 2] - mm);
        ll += ml[(w * kHeads + h) * 2 + 1] * c;
        oo += om[(w * kHeads + h) * kOStride + d] * c;
      }
    }
    float* wo = ws + ((int64_t(slot) * a.num_heads + h0 + h) * splits + z) * (kD + 2);
    wo[2 + d] = oo;
    if (d == 0) {
      wo[0] = mm;
      wo[1] = ll;
    }
  }
  if constexpr (kFused) {
    __shared__ int s_last;
    __threadfence();  // this CTA's partial is visible device-wide before its ticket is taken
    __syncthreads();
    if (threadIdx.x == 0) {
      int* cnt = a.split_counters + int64_t(slot) * gridDim.y + blockIdx.y;
      s_last = atomicAdd(cnt, 1) == splits - 1;
      if (s_last) atomicExch(cnt, 0);  // every other split has taken its ticket: reset for reuse
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    const int n = (kend - kbeg + per - 1) / per;  // splits that hold keys
    MergeSplits(a, ws, slot, r, h0, gcount, splits, n, reinterpret_cast<float*>(smem_raw));
  }
}

struct MmaVariant {
  DecodeKernelFn kernel, fused;
  size_t smem;
};
const MmaVariant kMmaVariants[kNumMmaDecodeVariants] = {
    // 64-key tiles, 70 KB: 3 CTAs/SM
    {DecodeAttnMmaKernel<16, 2, false>, DecodeAttnMmaKernel<16, 2, true>, MmaCfg<16, 2>::kSmem},
    // 64-key tiles, 104 KB: 2 CTAs/SM
    {DecodeAttnMmaKernel<16, 3, false>, DecodeAttnMmaKernel<16, 3, true>, MmaCfg<16, 3>::kSmem},
    // 128-key tiles, 139 KB: 1 CTA/SM
    {DecodeAttnMmaKernel<32, 2, false>, DecodeAttnMmaKernel<32, 2, true>, MmaCfg<32, 2>::kSmem},
};

}  // namespace

DecodeKernelFn MmaDecodeKernel(int variant, bool fused) {
  return fused ? kMmaVariants[variant].fused : kMmaVariants[variant].kernel;
}
size_t MmaDecodeSmem(int variant) { return kMmaVariants[variant].smem; }

}  // namespace pd::cuda
