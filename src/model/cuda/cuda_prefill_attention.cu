// Causal prefill attention with tensor cores: flash attention with mma.sync m16n8k16 (bf16 in,
// fp32 acc), 128 query rows (8 warps) x 64 keys per step, K/V gathered through the block table
// with cp.async (double-buffered), XOR-swizzled shared memory for conflict-free ldmatrix.
// Head dim 64 or 128 (template D); the wgmma kernel (cuda_prefill_wgmma.cu) takes 128 only.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "model/cuda/cuda_attn_common.cuh"
#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_prefill_wgmma.cuh"

namespace pd::cuda {
namespace {

// ---- tensor-core prefill ------------------------------------------------------------------
constexpr int kBM = kPrefillTileRows, kBN = 64, kPThreads = kBM * 2;  // 16 rows/warp
template <int D>
struct PCfg {
  static constexpr int kTileElems = kBN * D;  // one K or V tile: 64 x D bf16 (16 KB at D 128)
  static constexpr int kQElems = kBM * D;
  static constexpr size_t kSmem = (kQElems + 4 * kTileElems) * sizeof(bf16_t);  // Q, K[2], V[2]
};

template <int D>
__device__ __forceinline__ int Swz(int row, int col) {  // element offset in an N x D tile
  return row * D + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
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
template <int D>
__device__ __forceinline__ void LoadKvTile(bf16_t* dst, const AttnArgs& a, const int* table,
                                           int kvh, int which, int j0, int kend) {
  constexpr int kCh = D / 8, kShift = D == 128 ? 4 : 3;  // 16-byte chunks per row
  static_assert(D == 64 || D == 128, "prefill attention head dims");
  for (int c = threadIdx.x; c < kBN * kCh; c += kPThreads) {
    const int row = c >> kShift, ch = c & (kCh - 1), key = j0 + row;
    const bool valid = key < kend;
    const bf16_t* src = a.kv.base;
    if (valid) {
      const int bs = a.kv.block_size;
      src += KvOffset(a.kv, a.layer, table[key / bs], which, kvh, key % bs) + ch * 8;
    }
    CpAsync16(dst + Swz<D>(row, ch * 8), src, valid);
  }
}

template <int D>
__global__ void __launch_bounds__(kPThreads, 2) PrefillAttnKernel(AttnArgs a, BatchMeta m,
                                                                  const int32_t* tiles) {
  constexpr int kTileElems = PCfg<D>::kTileElems, kQElems = PCfg<D>::kQElems, kCh = D / 8;
  constexpr int kShift = D == 128 ? 4 : 3;
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

  for (int c = threadIdx.x; c < kBM * kCh; c += kPThreads) {
    const int row = c >> kShift, ch = c & (kCh - 1);
    const bool valid = row < qrows;
    const bf16_t* src = valid ? a.q + (int64_t(qstart + qoff + row) * nh + h) * D + ch * 8 : a.q;
    CpAsync16(qs + Swz<D>(row, ch * 8), src, valid);
  }
  LoadKvTile<D>(ks, a, table, kvh, 0, kbeg, kend);
  LoadKvTile<D>(vs, a, table, kvh, 1, kbeg, kend);
  CpAsyncCommit();

  const float sl2 = a.scale * kLog2e;
  const int qp0 = cached + qoff + warp * 16 + g, qp1 = qp0 + 8;  // positions of my two rows
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int ntiles = (kend - kbeg + kBN - 1) / kBN;
  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1, j0 = kbeg + it * kBN;
    CpAsyncWaitAll();
    __syncthreads();
    if (it + 1 < ntiles) {
      LoadKvTile<D>(ks + (buf ^ 1) * kTileElems, a, table, kvh, 0, j0 + kBN, kend);
      LoadKvTile<D>(vs + (buf ^ 1) * kTileElems, a, table, kvh, 1, j0 + kBN, kend);
      CpAsyncCommit();
    }
    const bf16_t* kt = ks + buf * kTileElems;
    const bf16_t* vt = vs + buf * kTileElems;
    float sc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc) {
      uint32_t qf[4];  // Q fragments re-read from shared memory: registers for 2 CTAs per SM
      Ldsm4(qf, qs + Swz<D>(warp * 16 + (lane & 15), kc * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        const int mat = lane >> 3, rr = lane & 7;
        Ldsm4(b, kt + Swz<D>(np * 16 + rr + (mat >> 1) * 8, kc * 16 + (mat & 1) * 8));
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
    for (int i = 0; i < D / 8; ++i) {
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
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        const int mat = lane >> 3, rr = lane & 7;
        Ldsm4T(b, vt + Swz<D>(kk * 16 + rr + (mat & 1) * 8, dp * 16 + (mat >> 1) * 8));
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
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + 2 * t;
    if (r0 < qrows) {
      *reinterpret_cast<uint32_t*>(a.out + (int64_t(qstart + qoff + r0) * nh + h) * D + col) =
          PackBf2(o[nt][0] * i0, o[nt][1] * i0);
    }
    if (r1 < qrows) {
      *reinterpret_cast<uint32_t*>(a.out + (int64_t(qstart + qoff + r1) * nh + h) * D + col) =
          PackBf2(o[nt][2] * i1, o[nt][3] * i1);
    }
  }
}

}  // namespace

namespace {
// Head dim 64 on tensor cores: built and tested against the CPU twin, but not yet run on a GPU
// (2026-12-07: the session's device time ran out), so opt-in until it has been:
// PD_CUDA_PREFILL_D64=1 or SetPrefillHeadDim64(true). Otherwise head dim 64 prompts take the
// split-KV CUDA-core kernel as before.
int g_prefill_d64 = -1;  // -1: read the environment on first use
}  // namespace

void SetPrefillHeadDim64(bool on) { g_prefill_d64 = on ? 1 : 0; }

bool PrefillAttentionSupported(int head_dim) {
  if (head_dim == 128) return true;
  if (head_dim != 64) return false;
  if (g_prefill_d64 < 0) {
    const char* e = std::getenv("PD_CUDA_PREFILL_D64");
    g_prefill_d64 = e != nullptr && std::strcmp(e, "1") == 0 ? 1 : 0;
  }
  return g_prefill_d64 == 1;
}

namespace {
// wgmma: 269-358 TFLOP/s at 8k-32k vs 162-189 for mma.sync (H100, 2026-12-07, docs/cuda.md)
constexpr int kDefaultPrefillVariant = 0;
int g_prefill_variant = -1;  // -1: not chosen yet (PD_CUDA_PREFILL_ATTN=mma|wgmma, default)
int g_sm_major = -1;
}  // namespace

void SetPrefillAttentionVariant(int variant) {
  if (variant >= -1 && variant <= 2) g_prefill_variant = variant;
}

int PrefillAttentionVariantUsed(int block_size) {
  if (g_prefill_variant < 0) {
    const char* e = std::getenv("PD_CUDA_PREFILL_ATTN");
    g_prefill_variant = kDefaultPrefillVariant;
    if (e != nullptr && std::strcmp(e, "mma") == 0) g_prefill_variant = 1;
    if (e != nullptr && std::strcmp(e, "wgmma") == 0) g_prefill_variant = 0;
  }
  if (g_sm_major < 0) {
    int dev = 0;
    g_sm_major = 0;
    if (cudaGetDevice(&dev) == cudaSuccess) {
      cudaDeviceGetAttribute(&g_sm_major, cudaDevAttrComputeCapabilityMajor, dev);
    }
  }
  const bool pow2 = block_size > 0 && (block_size & (block_size - 1)) == 0;
  return g_prefill_variant != 1 && pow2 && g_sm_major == 9 ? g_prefill_variant : 1;
}

void LaunchPrefillAttention(const AttnArgs& a, const BatchMeta& m, const int32_t* tiles,
                            int num_tiles, cudaStream_t stream) {
  const int variant = PrefillAttentionVariantUsed(a.kv.block_size);
  if (variant != 1 && a.head_dim == 128) {
    LaunchPrefillAttentionWgmma(a, m, tiles, num_tiles, variant == 0, stream);
    return;
  }
  static bool configured[2] = {};
  const dim3 grid(num_tiles, a.num_heads);
  if (a.head_dim == 64) {
    if (!configured[0]) {
      cudaFuncSetAttribute(PrefillAttnKernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(PCfg<64>::kSmem));
      configured[0] = true;
    }
    PrefillAttnKernel<64><<<grid, kPThreads, PCfg<64>::kSmem, stream>>>(a, m, tiles);
    return;
  }
  if (!configured[1]) {
    cudaFuncSetAttribute(PrefillAttnKernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(PCfg<128>::kSmem));
    configured[1] = true;
  }
  PrefillAttnKernel<128><<<grid, kPThreads, PCfg<128>::kSmem, stream>>>(a, m, tiles);
}

}  // namespace pd::cuda
