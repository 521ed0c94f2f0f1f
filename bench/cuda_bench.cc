// cuda_bench: the CUDA backend against ceilings measured in the same run (issue 3).
//
//   ceilings:   device-to-device copy bandwidth (bytes read + written) and a large cuBLAS bf16
//               GEMM (8192^3, fp32 accumulation), both on random data;
//   decode:     8B-shape decode step (random bf16 weights made on the GPU), batch 1/32/128/256
//               at context 1k and 4k, through CudaRunner::Forward (CUDA graphs), host wall time;
//   attention:  decode attention alone (batch 16/64, ctx 4k/8k) and causal prefill attention
//               alone (8k/16k tokens), CUDA events;
//   prefill:    one prompt of 1k/4k/16k/32k tokens through Forward;
//   gemv:       the decode GEMV vs cuBLAS at batch 1 and 4 on the 8B layer shapes.
// Every number is the median of repeated runs after warm-up.
// Usage: cuda_bench [quick] [nogemv] [noattn] [nodecode] [noprefill] [prefillattn] [profileb1]
// (prefillattn: prefill attention alone at 8k/16k/32k, wgmma and mma.sync kernels;
//  PD_CUDA_PREFILL_ATTN=mma runs the runner's prefill on the mma.sync kernel.)
// (PD_CUDA_GEMV=0 / PD_CUDA_DECODE_ATTN=simt switch the runner back to cuBLAS / the old kernel.)
#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_runner.h"
#include "model/model_config.h"

namespace {

using pd::cuda::bf16_t;

#define CHECK_CUDA(x)                                                                        \
  do {                                                                                       \
    cudaError_t e_ = (x);                                                                    \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds of `fn` over `reps` runs, timed with CUDA events around each run.
double TimeEvents(const std::function<void()>& fn, int warm, int reps) {
  for (int i = 0; i < warm; ++i) fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return Median(ms);
}

bf16_t* RandomBf16(size_t n, uint64_t seed, float scale = 1.f) {
  bf16_t* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * 2));
  pd::cuda::LaunchFillRandomBf16(p, int64_t(n), scale, seed, nullptr);
  CHECK_CUDA(cudaDeviceSynchronize());
  return p;
}

struct Ceilings {
  double bw_gbs = 0, gemm_tflops = 0;
};

Ceilings MeasureCeilings() {
  Ceilings c;
  const size_t bytes = size_t(2) << 30;
  bf16_t* src = RandomBf16(bytes / 2, 1);
  void* dst = nullptr;
  CHECK_CUDA(cudaMalloc(&dst, bytes));
  double ms = TimeEvents([&] { cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice); }, 3, 20);
  c.bw_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
  cudaFree(dst);
  cudaFree(src);
  const int n = 8192;
  bf16_t* A = RandomBf16(size_t(n) * n, 2);
  bf16_t* B = RandomBf16(size_t(n) * n, 3);
  bf16_t* C = RandomBf16(size_t(n) * n, 4);
  cublasHandle_t h;
  cublasCreate(&h);
  const float al = 1.f, be = 0.f;
  ms = TimeEvents([&] {
    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &al, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n,
                 &be, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }, 5, 30);
  c.gemm_tflops = 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
  cublasDestroy(h);
  cudaFree(A);
  cudaFree(B);
  cudaFree(C);
  std::printf("ceiling  d2d-copy %.0f GB/s (2 GiB, read+write)   cublas bf16 gemm 8192^3 %.0f TFLOP/s\n",
              c.bw_gbs, c.gemm_tflops);
  return c;
}

pd::ModelConfig Llama8B() {
  pd::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000;
  c.rope_scaling.type = pd::RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8;
  c.max_position_embeddings = 131072;
  c.dtype = pd::DType::kBF16;
  return c;
}

// The llama-3.2-1b shape (word `1b`): head_dim 64, tied embeddings, llama3 RoPE factor 32.
pd::ModelConfig Llama1B() {
  pd::ModelConfig c = Llama8B();
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_layers = 16;
  c.head_dim = 64;
  c.tie_word_embeddings = true;
  c.rope_scaling.factor = 32;
  return c;
}

const char* ShapeName(const pd::ModelConfig& c) { return c.hidden_size == 2048 ? "1B" : "8B"; }

double WeightBytes(const pd::ModelConfig& c) {
  const double H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const double layer = H * (c.num_heads + 2 * c.num_kv_heads) * D + c.num_heads * D * H + 3 * H * I;
  return 2.0 * (layer * c.num_layers + double(c.vocab_size) * H);
}

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Builds a batch of `n` sequences with `ctx` cached tokens each (+1 new), block tables drawn
// round-robin from the pool (wrapping when the pool is smaller than the batch's KV).
pd::ForwardBatch MakeBatch(int n, int ctx, int new_tokens, int bs, int pool, int* cursor) {
  pd::ForwardBatch b;
  b.block_indptr = {0};
  for (int s = 0; s < n; ++s) {
    pd::SeqStep st;
    st.num_new_tokens = new_tokens;
    st.num_cached = ctx;
    st.sample = true;
    b.seqs.push_back(st);
    for (int t = 0; t < new_tokens; ++t) b.token_ids.push_back((s * 7919 + t * 31) % 128000);
    const int nb = (ctx + new_tokens + 64 + bs - 1) / bs;  // room for 64 decode steps
    for (int i = 0; i < nb; ++i) b.block_ids.push_back((*cursor)++ % pool);
    b.block_indptr.push_back(int32_t(b.block_ids.size()));
  }
  return b;
}

void BenchDecode(pd::ModelRunner* r, const Ceilings& c, bool quick) {
  const pd::ModelConfig& cfg = r->config();
  const double wbytes = WeightBytes(cfg);
  const int pool = r->kv_arena().layout.num_blocks, bs = r->kv_arena().layout.block_size;
  const double kv_tok = double(cfg.KvBytesPerToken(2));
  std::printf("decode   %s shape, weights %.2f GB/step, KV pool %d blocks (%.1f GB); graphs on\n",
              ShapeName(cfg), wbytes / 1e9, pool, r->kv_arena().bytes / 1e9);
  for (int ctx : {1024, 4096}) {
    for (int batch : {1, 32, 128, 256}) {
      if (quick && batch > 32) continue;
      int cursor = 0;
      pd::ForwardBatch b = MakeBatch(batch, ctx, 1, bs, pool, &cursor);
      pd::ForwardResult res;
      std::vector<double> ms;
      const int steps = 24;
      for (int i = 0; i < steps; ++i) {
        const double t0 = NowMs();
        pd::Status st = r->Forward(b, &res);
        const double t1 = NowMs();
        if (!st.ok()) {
          std::printf("decode failed: %s\n", st.ToString().c_str());
          return;
        }
        if (i >= 4) ms.push_back(t1 - t0);
        for (size_t s = 0; s < b.seqs.size(); ++s) {
          b.seqs[s].num_cached += 1;
          b.token_ids[s] = res.tokens[s];
        }
      }
      const double m = Median(ms);
      const double kvb = kv_tok * batch * (ctx + 14);
      const bool aliased = double(batch) * ((ctx + 65 + bs - 1) / bs) > pool;
      std::printf("decode   batch %3d ctx %4d: step %7.3f ms  %8.0f tok/s  weights %6.0f GB/s (%.0f%% of copy)  "
                  "weights+KV %6.0f GB/s (%.0f%%)%s\n",
                  batch, ctx, m, batch / (m * 1e-3), wbytes / (m * 1e-3) / 1e9,
                  100 * wbytes / (m * 1e-3) / 1e9 / c.bw_gbs, (wbytes + kvb) / (m * 1e-3) / 1e9,
                  100 * (wbytes + kvb) / (m * 1e-3) / 1e9 / c.bw_gbs,
                  aliased ? "  [KV blocks shared across seqs: pool too small]" : "");
    }
  }
}

// One graph-replayed decode step (batch 1, ctx 1k) between cudaProfilerStart/Stop, after warm-up
// (eager + capture): for `ncu --profile-from-start off` per-kernel times.
void ProfileDecodeB1(pd::ModelRunner* r) {
  const int pool = r->kv_arena().layout.num_blocks, bs = r->kv_arena().layout.block_size;
  int cursor = 0;
  pd::ForwardBatch b = MakeBatch(1, 1024, 1, bs, pool, &cursor);
  pd::ForwardResult res;
  for (int i = 0; i < 4; ++i) {
    if (i == 3) CHECK_CUDA(cudaProfilerStart());
    pd::Status st = r->Forward(b, &res);
    if (i == 3) CHECK_CUDA(cudaProfilerStop());
    if (!st.ok()) {
      std::printf("decode failed: %s\n", st.ToString().c_str());
      return;
    }
    b.seqs[0].num_cached += 1;
    b.token_ids[0] = res.tokens[0];
  }
  std::printf("profile  decode batch 1 ctx 1024: one step between cudaProfilerStart/Stop\n");
}

void BenchPrefill(pd::ModelRunner* r, const Ceilings& c, bool quick) {
  const pd::ModelConfig& cfg = r->config();
  const int pool = r->kv_arena().layout.num_blocks, bs = r->kv_arena().layout.block_size;
  const double mm_params = WeightBytes(cfg) / 2 - double(cfg.vocab_size) * cfg.hidden_size;
  for (int n : {1024, 4096, 16384, 32768}) {
    if (quick && n > 4096) continue;
    int cursor = 0;
    pd::ForwardBatch b = MakeBatch(1, 0, n, bs, pool, &cursor);
    pd::ForwardResult res;
    std::vector<double> ms;
    const int reps = n >= 16384 ? 3 : 5;
    for (int i = 0; i < reps + 1; ++i) {
      const double t0 = NowMs();
      pd::Status st = r->Forward(b, &res);
      const double t1 = NowMs();
      if (!st.ok()) {
        std::printf("prefill failed: %s\n", st.ToString().c_str());
        return;
      }
      if (i > 0) ms.push_back(t1 - t0);
    }
    const double m = Median(ms);
    const double attn = 4.0 * cfg.num_heads * cfg.head_dim * (double(n) * n / 2) * cfg.num_layers;
    const double flops = 2.0 * mm_params * n + attn + 2.0 * cfg.hidden_size * cfg.vocab_size;
    std::printf("prefill  %5d tokens: %8.1f ms  %7.0f tok/s  %5.0f TFLOP/s (%.0f%% of gemm ceiling; attention %.0f%% of flops)\n",
                n, m, n / (m * 1e-3), flops / (m * 1e-3) / 1e12,
                100 * flops / (m * 1e-3) / 1e12 / c.gemm_tflops, 100 * attn / flops);
  }
}

// The decode GEMV (batch 1 and 4) against cuBLAS on the 8B layer shapes, bytes of W per time.
void BenchGemv(const Ceilings& c) {
  struct Shape { const char* name; int out, in; bool f32; };
  const Shape shapes[] = {{"qkv", 6144, 4096, false}, {"o", 4096, 4096, false},
                          {"gate_up", 28672, 4096, false}, {"down", 4096, 14336, false},
                          {"lm_head", 128256, 4096, true}};
  cublasHandle_t h;
  cublasCreate(&h);
  pd::cuda::SetProgrammaticLaunch(false);  // the kernel alone: no overlap between repetitions
  for (const Shape& sh : shapes) {
    bf16_t* w = RandomBf16(size_t(sh.out) * sh.in, 30, 0.02f);
    bf16_t* x = RandomBf16(size_t(4) * sh.in, 31);
    void* y = nullptr;
    CHECK_CUDA(cudaMalloc(&y, size_t(4) * sh.out * 4));
    // warp-per-row (default) and the streaming kernel (PD_CUDA_GEMV_STREAM=1), 1 and 4 rows
    for (auto [rows, stream] : std::vector<std::pair<int, bool>>{{1, false}, {1, true}, {4, false}, {4, true}}) {
      pd::cuda::SetGemvStream(stream);
      const double ours = TimeEvents([&] {
        pd::cuda::LaunchGemv(x, rows, sh.in, w, sh.out, y, sh.f32, nullptr);
      }, 5, 30);
      const float al = 1.f, be = 0.f;
      const double cub = TimeEvents([&] {
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, sh.out, rows, sh.in, &al, w, CUDA_R_16BF, sh.in,
                     x, CUDA_R_16BF, sh.in, &be, y, sh.f32 ? CUDA_R_32F : CUDA_R_16BF, sh.out,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      }, 5, 30);
      const double bytes = 2.0 * sh.out * sh.in;
      std::printf("gemv     %-8s %6dx%5d rows %d %-6s: ours %7.1f us %5.0f GB/s (%.0f%% of copy)   cublas %7.1f us %5.0f GB/s (%.0f%%)\n",
                  sh.name, sh.out, sh.in, rows, stream ? "stream" : "warp", ours * 1e3, bytes / (ours * 1e-3) / 1e9,
                  100 * bytes / (ours * 1e-3) / 1e9 / c.bw_gbs, cub * 1e3,
                  bytes / (cub * 1e-3) / 1e9, 100 * bytes / (cub * 1e-3) / 1e9 / c.bw_gbs);
    }
    cudaFree(w); cudaFree(x); cudaFree(y);
  }
  pd::cuda::SetGemvStream(false);
  pd::cuda::SetProgrammaticLaunch(true);
  cublasDestroy(h);
}

// Causal prefill attention alone (32 heads, 8 kv heads, D 128, block size 16): the kernel in use,
// or (both) the wgmma and the mma.sync kernel.
void BenchPrefillAttention(const Ceilings& c, const std::vector<int>& sizes, bool both) {
  const int nh = 32, nkv = 8, D = 128, bs = 16;
  for (int n : sizes) {
    const int blocks = n / bs;
    const size_t kv_elems = size_t(blocks) * 2 * nkv * bs * D;
    bf16_t* kv = RandomBf16(kv_elems, 20);
    bf16_t* q = RandomBf16(size_t(n) * nh * D, 21);
    bf16_t* out = nullptr;
    CHECK_CUDA(cudaMalloc(&out, size_t(n) * nh * D * 2));
    std::vector<int32_t> ids(blocks), ip{0, blocks}, ctx{n}, qst{0}, nn{n}, tiles;
    for (int i = 0; i < blocks; ++i) ids[i] = i;
    for (int off = 0; off < n; off += pd::cuda::kPrefillTileRows) {
      tiles.push_back(0);
      tiles.push_back(off);
    }
    auto up = [](const std::vector<int32_t>& v) {
      int32_t* p = nullptr;
      cudaMalloc(&p, v.size() * 4);
      cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
      return p;
    };
    pd::cuda::BatchMeta m;
    m.block_ids = up(ids);
    m.block_indptr = up(ip);
    m.seq_ctx = up(ctx);
    m.seq_qstart = up(qst);
    m.seq_nnew = up(nn);
    int32_t* dt = up(tiles);
    pd::cuda::AttnArgs a{q, out, nh, nkv, D, n, 1, 0, 0, 1.f / std::sqrt(128.f),
                         pd::cuda::KvGeom{kv, blocks, bs, nkv, D}};
    for (int variant : {0, 2, 1}) {  // wgmma, wgmma (loads before the MMAs), mma.sync
      if (!both && variant != pd::cuda::PrefillAttentionVariantUsed(bs)) continue;
      if (both) pd::cuda::SetPrefillAttentionVariant(variant);
      const double ms = TimeEvents([&] { pd::cuda::LaunchPrefillAttention(a, m, dt, int(tiles.size() / 2), nullptr); }, 3, 20);
      const double flops = 4.0 * nh * D * (double(n) * n / 2);
      std::printf("attn     prefill %s causal %5d tokens (32 heads, D128): %8.3f ms  %5.0f TFLOP/s (%.0f%% of gemm ceiling)\n",
                  variant == 0 ? "wgmma " : variant == 2 ? "wgmma2" : "mma   ", n, ms, flops / (ms * 1e-3) / 1e12,
                  100 * flops / (ms * 1e-3) / 1e12 / c.gemm_tflops);
    }
    pd::cuda::SetPrefillAttentionVariant(-1);  // back to the default / environment
    cudaFree(kv); cudaFree(q); cudaFree(out); cudaFree(dt);
    cudaFree(const_cast<int32_t*>(m.block_ids)); cudaFree(const_cast<int32_t*>(m.block_indptr));
    cudaFree(const_cast<int32_t*>(m.seq_ctx)); cudaFree(const_cast<int32_t*>(m.seq_qstart));
    cudaFree(const_cast<int32_t*>(m.seq_nnew));
  }
}

// Attention kernels alone on a random paged cache of distinct blocks.
void BenchAttention(const Ceilings& c, int sms, bool quick) {
  const int nh = 32, nkv = 8, D = 128, bs = 16;
  pd::cuda::SetProgrammaticLaunch(false);  // kernels alone: no overlap between repetitions
  for (auto [batch, ctx] : std::vector<std::pair<int, int>>{{16, 4096}, {64, 4096}, {16, 8192}, {64, 8192}}) {
    if (quick && batch > 16) continue;
    const int nb_seq = ctx / bs, blocks = batch * nb_seq;
    const size_t kv_elems = size_t(blocks) * 2 * nkv * bs * D;
    bf16_t* kv = RandomBf16(kv_elems, 10);
    bf16_t* q = RandomBf16(size_t(batch) * nh * D, 11);
    bf16_t* out = nullptr;
    CHECK_CUDA(cudaMalloc(&out, size_t(batch) * nh * D * 2));
    std::vector<int32_t> ids(blocks), ip(batch + 1), pos(batch), seq(batch), nv{batch};
    for (int i = 0; i < blocks; ++i) ids[i] = int32_t((size_t(i) * 7919) % blocks);  // scattered
    for (int s = 0; s <= batch; ++s) ip[s] = s * nb_seq;
    for (int s = 0; s < batch; ++s) {
      pos[s] = ctx - 1;
      seq[s] = s;
    }
    auto up = [](const std::vector<int32_t>& v) {
      int32_t* p = nullptr;
      cudaMalloc(&p, v.size() * 4);
      cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
      return p;
    };
    pd::cuda::BatchMeta m;
    m.block_ids = up(ids);
    m.block_indptr = up(ip);
    m.row_pos = up(pos);
    m.row_seq = up(seq);
    m.num_valid_rows = up(nv);
    float* ws = nullptr;
    CHECK_CUDA(cudaMalloc(&ws, pd::cuda::AttnWorkspaceFloats(batch, nh, D, 256) * 4));
    pd::cuda::AttnArgs a{q, out, nh, nkv, D, batch, batch, 0, 0, 1.f / std::sqrt(128.f),
                         pd::cuda::KvGeom{kv, blocks, bs, nkv, D}};
    // Tiled kernel variants (CUDA-core 0 = 64 keys x 2 stages, 1 = 32 x 4, 2 = 64 x 3; tensor-core
    // 3 = 64 x 2 (default), 4 = 64 x 3, 5 = 128 x 2), then the CUDA-core kernel.
    for (int variant = 0; variant <= pd::cuda::NumTiledDecodeVariants(); ++variant) {
      const bool tiled = variant < pd::cuda::NumTiledDecodeVariants();
      pd::cuda::SetTiledDecodeAttention(tiled);
      if (tiled) pd::cuda::SetTiledDecodeVariant(variant);
      const int auto_splits = pd::cuda::ChooseDecodeSplits(batch, nh, nkv, D, ctx, sms);
      std::vector<int> all{auto_splits, 2 * auto_splits, auto_splits > 1 ? auto_splits / 2 : 4};
      if (quick || variant != pd::cuda::DefaultTiledDecodeVariant()) all.resize(1);
      for (int splits : all) {
        const double ms = TimeEvents([&] { pd::cuda::LaunchDecodeAttention(a, m, splits, ws, nullptr); }, 5, 50);
        const double bytes = double(kv_elems) * 2;
        std::printf("attn     decode %s batch %3d ctx %5d (GQA 32/8, D128, %2d splits%s): %7.1f us  %6.0f GB/s (%.0f%% of copy)\n",
                    pd::cuda::TiledDecodeVariantName(variant), batch, ctx, splits, splits == auto_splits ? ", auto" : "",
                    ms * 1e3, bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / c.bw_gbs);
      }
    }
    pd::cuda::SetTiledDecodeAttention(true);
    pd::cuda::SetTiledDecodeVariant(pd::cuda::DefaultTiledDecodeVariant());
    {  // the default again with programmatic launch, as the runner launches it
      pd::cuda::SetProgrammaticLaunch(true);
      const int sp = pd::cuda::ChooseDecodeSplits(batch, nh, nkv, D, ctx, sms);
      const double ms = TimeEvents([&] { pd::cuda::LaunchDecodeAttention(a, m, sp, ws, nullptr); }, 5, 50);
      const double bytes = double(kv_elems) * 2;
      std::printf("attn     decode %s batch %3d ctx %5d (GQA 32/8, D128, %2d splits, auto, PDL on): %7.1f us  %6.0f GB/s (%.0f%% of copy)\n",
                  pd::cuda::TiledDecodeVariantName(pd::cuda::DefaultTiledDecodeVariant()), batch, ctx,
                  sp, ms * 1e3, bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / c.bw_gbs);
      pd::cuda::SetProgrammaticLaunch(false);
    }
    cudaFree(kv); cudaFree(q); cudaFree(out); cudaFree(ws);
    cudaFree(const_cast<int32_t*>(m.block_ids)); cudaFree(const_cast<int32_t*>(m.block_indptr));
    cudaFree(const_cast<int32_t*>(m.row_pos)); cudaFree(const_cast<int32_t*>(m.row_seq));
    cudaFree(const_cast<int32_t*>(m.num_valid_rows));
  }
  pd::cuda::SetProgrammaticLaunch(true);
  BenchPrefillAttention(c, quick ? std::vector<int>{8192} : std::vector<int>{8192, 16384}, false);
}

}  // namespace

int main(int argc, char** argv) {
  // Words: quick (fewer shapes), noattn / nogemv / nodecode / noprefill (skip a section),
  // 1b (decode and prefill on the llama-3.2-1b shape instead of the 8B one).
  auto has = [&](const char* w) {
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], w) == 0) return true;
    }
    return false;
  };
  const bool quick = has("quick");
  if (pd::CudaDeviceCount() == 0) {
    std::printf("cuda_bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("gpu      %s, %d SMs, %.0f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / 1073741824.0);
  const Ceilings c = MeasureCeilings();
  if (!has("nogemv")) BenchGemv(c);
  if (!has("noattn")) BenchAttention(c, prop.multiProcessorCount, quick);
  if (has("prefillattn")) BenchPrefillAttention(c, {8192, 16384, 32768}, true);
  if (has("nodecode") && has("noprefill")) return 0;
  pd::RunnerOptions o;
  o.backend = "cuda";
  o.max_batch_tokens = 32768;
  o.max_seqs = 256;
  o.kv_memory_fraction = 0.85;
  auto r = pd::CreateCudaRunnerRandom(has("1b") ? Llama1B() : Llama8B(), o, 42);
  if (!r.ok()) {
    std::printf("runner: %s\n", r.status().ToString().c_str());
    return 1;
  }
  if (has("profileb1")) {
    ProfileDecodeB1(r.value().get());
    return 0;
  }
  if (!has("nodecode")) BenchDecode(r.value().get(), c, quick);
  if (!has("noprefill")) BenchPrefill(r.value().get(), c, quick);
  return 0;
}
