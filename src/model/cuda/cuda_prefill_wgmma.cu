// Causal prefill attention on Hopper with warpgroup MMA (wgmma, sm_90a), FA3-style:
// * one CTA = 128 query rows of one head = 2 consumer warpgroups of 64 rows; 128-key K/V tiles;
// * Q, K, V in shared memory in the wgmma 128-byte-swizzled K-major layout
//   ([2 panels of 64 dims][rows][128 B], 16-byte chunk index XOR row % 8); S = Q K^T reads both
//   operands from shared memory, O += P V takes P from registers (the S accumulators re-packed to
//   bf16) and V through a transposed (MN-major) descriptor;
// * K/V gathered through the block table with 16-byte cp.async (zero-fill past the end), double
//   buffered: tile n+1's K and tile n's V load while tile n computes;
// * intra-warpgroup overlap: S_n = Q K_n^T and O += P_{n-1} V_{n-1} are issued back to back, the
//   softmax of S_n runs while the tensor cores finish P_{n-1} V_{n-1};
// * exp2 with the softmax scale fused into one FFMA; masks only on tiles that cross the diagonal.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "model/cuda/cuda_attn_common.cuh"
#include "model/cuda/cuda_prefill_wgmma.cuh"

namespace pd::cuda {
namespace {

constexpr int kD = 128, kM = 128, kN = 128, kThreads = 256;
static_assert(kM == kPrefillTileRows, "query tiles are planned by the runner");
constexpr int kPanelBytes = 128 * 128;         // 64 dims x 128 rows x 2 B
constexpr int kTileBytes = 2 * kPanelBytes;    // 128 rows x 128 dims bf16 = 32 KB
constexpr size_t kSmem = 5 * kTileBytes + 1024;  // Q, K[2], V[2] + slack for 1024-B alignment

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Byte offset of (row, 16-byte chunk ch of 16) in a [2 panels][128 rows][128 B] SW128 tile.
__device__ __forceinline__ uint32_t SwOff(int row, int ch) {
  return (ch >> 3) * kPanelBytes + row * 128 + (((ch & 7) ^ (row & 7)) << 4);
}
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
// wgmma shared-memory descriptor, 128-byte swizzle.
__device__ __forceinline__ uint64_t Desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(lbo >> 4) << 16) |
         (uint64_t(sbo >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void WgFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void WgCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void WgWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving register reads/writes across wgmma issue and wait.
template <int N>
__device__ __forceinline__ void FenceRegs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void FenceRegs(uint32_t (&r)[8][4]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
  }
}

#define PD_WG_D8(i)                                                                        \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define PD_WG_D64                                                                        \
  PD_WG_D8(0), PD_WG_D8(8), PD_WG_D8(16), PD_WG_D8(24), PD_WG_D8(32), PD_WG_D8(40), PD_WG_D8(48), \
      PD_WG_D8(56)
#define PD_WG_REGS                                                                    \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "  \
  "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "   \
  "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d[64] (+)= A(64x16, shared, K-major) * B(16x128, shared, K-major).
__device__ __forceinline__ void WgmmaSS(float (&d)[64], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " PD_WG_REGS
      ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : PD_WG_D64
      : "l"(da), "l"(db), "r"(accumulate));
}
// d[64] += A(64x16, registers) * B(16x128, shared, MN-major: transposed).
__device__ __forceinline__ void WgmmaRS(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " PD_WG_REGS
      ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : PD_WG_D64
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

__device__ __forceinline__ float Ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ uint32_t PackBf2(float lo, float hi) {
  return uint32_t(ToBf(lo)) | (uint32_t(ToBf(hi)) << 16);
}

// Gathers keys [j0, j0 + 128) of one kv head's K or V plane (head_base) into a swizzled tile.
struct KvSrc {
  const bf16_t* k;  // layer + kv head offset applied; V = k + vplane
  int64_t vplane, blk_elems;
  const int* table;
  int lg, bmask, kend;
};
__device__ __forceinline__ void LoadKvTile(uint32_t dst, const KvSrc& src, bool v, int j0) {
  const int ch = threadIdx.x & 15, r0 = threadIdx.x >> 4;
  const bf16_t* base = v ? src.k + src.vplane : src.k;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = r0 + 16 * i, key = j0 + row;
    const bool valid = key < src.kend;
    const bf16_t* p = base;
    if (valid) p += int64_t(src.table[key >> src.lg]) * src.blk_elems + (key & src.bmask) * kD + ch * 8;
    CpAsync16(dst + SwOff(row, ch), p, valid);
  }
}

// K of tile n + 1 and V of tile n (their buffers' previous tiles are no longer read).
// Past the last tile the K keys are all >= kend: zero-filled, no table reads, never used.
__device__ __forceinline__ void LoadNext(uint32_t ks, uint32_t vs, const KvSrc& src, int n,
                                         int j0) {
  LoadKvTile(ks + ((n + 1) & 1) * kTileBytes, src, false, j0 + kN);
  LoadKvTile(vs + (n & 1) * kTileBytes, src, true, j0);
  asm volatile("cp.async.commit_group;\n" ::);
}

// Row state of one thread: rows g and g + 8 of its warp's 16.
struct RowState {
  float m[2], l[2];
};

// Mask (if needed), online-softmax update, exponentiate S in place; returns the O correction.
__device__ __forceinline__ void Softmax(float (&s)[64], RowState& st, float (&corr)[2], bool mask,
                                        int j0, int qp0, int window, float sl2) {
  const int t = threadIdx.x & 3;
  if (mask) {
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      const int key = j0 + (i >> 2) * 8 + 2 * t + (i & 1);
      const int qp = qp0 + ((i & 2) ? 8 : 0);
      bool ok = key <= qp;
      if (window > 0) ok = ok && (qp - key < window);
      if (!ok) s[i] = -INFINITY;
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < 16; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(st.m[r], mx);
    corr[r] = mn == -INFINITY ? 1.f : Ex2((st.m[r] - mn) * sl2);
    st.m[r] = mn;
    const float ms = mn == -INFINITY ? 0.f : mn * sl2;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      s[4 * j + 2 * r] = Ex2(fmaf(s[4 * j + 2 * r], sl2, -ms));
      s[4 * j + 2 * r + 1] = Ex2(fmaf(s[4 * j + 2 * r + 1], sl2, -ms));
      sum += s[4 * j + 2 * r] + s[4 * j + 2 * r + 1];
    }
    st.l[r] = st.l[r] * corr[r] + sum;
  }
}

__device__ __forceinline__ void RescaleAndPack(float (&o)[64], const float (&corr)[2],
                                               const float (&s)[64], uint32_t (&p)[8][4]) {
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    o[4 * j] *= corr[0];
    o[4 * j + 1] *= corr[0];
    o[4 * j + 2] *= corr[1];
    o[4 * j + 3] *= corr[1];
  }
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    p[kk][0] = PackBf2(s[8 * kk], s[8 * kk + 1]);
    p[kk][1] = PackBf2(s[8 * kk + 2], s[8 * kk + 3]);
    p[kk][2] = PackBf2(s[8 * kk + 4], s[8 * kk + 5]);
    p[kk][3] = PackBf2(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// O += P V over one 128-key tile (8 k-steps of 16 keys).
__device__ __forceinline__ void IssuePV(float (&o)[64], const uint32_t (&p)[8][4], uint32_t vbase,
                                        uint32_t lbo, uint32_t sbo) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) WgmmaRS(o, p[kk], Desc(vbase + kk * 16 * 128, lbo, sbo));
}
// S = Q K^T over the 128 dims (8 k-steps; dims 64..127 in the second panel).
__device__ __forceinline__ void IssueQK(float (&s)[64], uint32_t qbase, uint32_t kbase) {
#pragma unroll
  for (int kc = 0; kc < 8; ++kc) {
    const uint32_t off = (kc >> 2) * kPanelBytes + (kc & 3) * 32;
    WgmmaSS(s, Desc(qbase + off, 16, 1024), Desc(kbase + off, 16, 1024), kc > 0);
  }
}

__device__ __forceinline__ void StoreOut(const AttnArgs& a, const float (&o)[64], RowState& st,
                                         int64_t row0, int r0, int qrows, int h) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = st.l[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const int row = r0 + 8 * r;
    if (row >= qrows) continue;
    bf16_t* dst = a.out + ((row0 + row) * a.num_heads + h) * kD + 2 * t;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      *reinterpret_cast<uint32_t*>(dst + 8 * j) =
          PackBf2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
    }
  }
}

// kLateLoad: the next tiles' cp.async are issued after this tile's MMAs (they overlap the tensor
// cores); else before them (the first version, kept for measurements).
template <bool kLateLoad>
__global__ void __launch_bounds__(kThreads, 1)
    PrefillWgmmaKernel(AttnArgs a, BatchMeta m, const int32_t* tiles, int vswap) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t sraw = SmemAddr(smem_raw), sbase = (sraw + 1023) & ~1023u;
  const uint32_t qs = sbase, ks = sbase + kTileBytes, vs = sbase + 3 * kTileBytes;
  const int tile = gridDim.x - 1 - blockIdx.x;  // longest causal tiles first
  const int s = tiles[2 * tile], qoff = tiles[2 * tile + 1];
  const int h = blockIdx.y, nh = a.num_heads, kvh = h / (nh / a.num_kv_heads);
  const int ctx = m.seq_ctx[s], nnew = m.seq_nnew[s], qstart = m.seq_qstart[s];
  const int cached = ctx - nnew, qrows = min(kM, nnew - qoff);
  const int bs = a.kv.block_size;
  KvSrc src;
  src.kend = cached + qoff + qrows;
  src.lg = __ffs(bs) - 1;
  src.bmask = bs - 1;
  src.vplane = int64_t(a.kv.num_kv_heads) * bs * kD;
  src.blk_elems = 2 * src.vplane;
  src.k = a.kv.base + int64_t(a.layer) * a.kv.layer_elems() + int64_t(kvh) * bs * kD;
  src.table = m.block_ids + m.block_indptr[s];
  int kbeg = a.sliding_window > 0 ? max(0, cached + qoff - a.sliding_window + 1) : 0;
  kbeg = (kbeg / kN) * kN;
  const int ntiles = (src.kend - kbeg + kN - 1) / kN;
  {  // Q tile (zero rows past the chunk) and K_0.
    const int ch = threadIdx.x & 15, r0 = threadIdx.x >> 4;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int row = r0 + 16 * i;
      const bool valid = row < qrows;
      const bf16_t* p = valid ? a.q + (int64_t(qstart + qoff + row) * nh + h) * kD + ch * 8 : a.q;
      CpAsync16(qs + SwOff(row, ch), p, valid);
    }
  }
  LoadKvTile(ks, src, false, kbeg);
  asm volatile("cp.async.commit_group;\n" ::);
  {  // V[1] = 0: the first iteration's P V (P = 0) reads it.
    unsigned char* v1 = smem_raw + (vs - sraw) + kTileBytes;
    for (int i = threadIdx.x; i < kTileBytes / 16; i += kThreads) {
      reinterpret_cast<uint4*>(v1)[i] = make_uint4(0, 0, 0, 0);
    }
  }

  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int r0 = wg * 64 + warp * 16 + (lane >> 2);  // my rows r0, r0 + 8 of the tile
  const int qp0 = cached + qoff + r0, warp_qmin = cached + qoff + wg * 64 + warp * 16;
  const uint32_t qwg = qs + wg * 64 * 128;
  const uint32_t vlbo = vswap ? 1024 : kPanelBytes, vsbo = vswap ? kPanelBytes : 1024;
  const float sl2 = a.scale * kLog2e;
  float o[64], sc[64], corr[2];
  uint32_t p[8][4];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) p[i / 4][i % 4] = 0u;
  RowState st{{-INFINITY, -INFINITY}, {0.f, 0.f}};
  for (int n = 0; n < ntiles; ++n) {
    const int j0 = kbeg + n * kN;
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    if (!kLateLoad) LoadNext(ks, vs, src, n, j0);
    WgFence();
    FenceRegs(o);
    FenceRegs(p);
    IssueQK(sc, qwg, ks + (n & 1) * kTileBytes);
    WgCommit();
    // n == 0: P = 0 against the zeroed V[1] adds nothing; keeps the loop free of branches
    // between wgmma issue and wait (ptxas serializes the wgmmas otherwise).
    IssuePV(o, p, vs + ((n + 1) & 1) * kTileBytes, vlbo, vsbo);
    WgCommit();
    if (kLateLoad) LoadNext(ks, vs, src, n, j0);
    WgWait<1>();
    FenceRegs(sc);
    const bool mask = a.sliding_window > 0 || j0 + kN - 1 > warp_qmin;
    Softmax(sc, st, corr, mask, j0, qp0, a.sliding_window, sl2);
    WgWait<0>();
    FenceRegs(o);
    FenceRegs(p);
    RescaleAndPack(o, corr, sc, p);
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  WgFence();
  FenceRegs(o);
  FenceRegs(p);
  IssuePV(o, p, vs + ((ntiles - 1) & 1) * kTileBytes, vlbo, vsbo);
  WgCommit();
  WgWait<0>();
  FenceRegs(o);
  StoreOut(a, o, st, qstart + qoff, r0, qrows, h);
}

}  // namespace

void LaunchPrefillAttentionWgmma(const AttnArgs& a, const BatchMeta& m, const int32_t* tiles,
                                 int num_tiles, bool late_load, cudaStream_t stream) {
  static bool configured = false;
  static int vswap = 0;
  if (!configured) {
    cudaFuncSetAttribute(PrefillWgmmaKernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(kSmem));
    cudaFuncSetAttribute(PrefillWgmmaKernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(kSmem));
    const char* e = std::getenv("PD_CUDA_PREFILL_VDESC");  // debug: swapped V descriptor strides
    vswap = e != nullptr && std::strcmp(e, "swap") == 0;
    configured = true;
  }
  dim3 grid(num_tiles, a.num_heads);
  if (late_load) {
    PrefillWgmmaKernel<true><<<grid, kThreads, kSmem, stream>>>(a, m, tiles, vswap);
  } else {
    PrefillWgmmaKernel<false><<<grid, kThreads, kSmem, stream>>>(a, m, tiles, vswap);
  }
}

}  // namespace pd::cuda
