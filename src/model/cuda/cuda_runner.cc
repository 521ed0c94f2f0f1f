// CudaRunner: the bf16 forward over the paged KV cache on one GPU (see cuda_runner.h).
//
// Per layer: fused add+RMSNorm -> QKV GEMM -> bias/q-k-norm/RoPE + paged K/V write -> attention
// (tensor-core prefill kernel for head_dim 128 batches with prompt chunks, split-KV decode
// kernel otherwise) -> O GEMM -> add+RMSNorm -> gate/up GEMM -> SwiGLU -> down GEMM.
// The residual stream is fp32; activations and weights are bf16; GEMMs accumulate in fp32.
// Decode-only batches run as CUDA graphs captured per bucketed batch size (padding rows are
// masked on the device by num_valid_rows).
#include "model/cuda/cuda_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "common/logging.h"
#include "model/cuda/cuda_common.h"
#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_weights.h"
#include "model/weights.h"
#include "model/rope.h"

namespace pd {
namespace {

using cuda::bf16_t;

// Staging layout (bytes), fixed by capacities so CUDA graphs see stable addresses.
struct MetaLayout {
  size_t params = 0, tokens = 0, row_pos = 0, row_seq = 0, seq_ctx = 0, seq_qstart = 0,
         seq_nnew = 0, indptr = 0, sample_rows = 0, num_valid = 0, tiles = 0, decode_rows = 0,
         block_ids = 0, total = 0;
  int max_tiles = 0;
  int64_t max_block_ids = 0;
  void Plan(int T, int S, int64_t B) {
    max_tiles = T / 64 + S;
    max_block_ids = B;
    size_t o = 0;
    params = o; o += sizeof(cuda::SampleParamsDev) * S;
    auto ints = [&o](size_t n) { size_t at = o; o += 4 * n; return at; };
    tokens = ints(T); row_pos = ints(T); row_seq = ints(T);
    seq_ctx = ints(S); seq_qstart = ints(S); seq_nnew = ints(S); indptr = ints(S + 1);
    sample_rows = ints(S); num_valid = ints(1); tiles = ints(2 * max_tiles);
    decode_rows = ints(S);
    block_ids = ints(static_cast<size_t>(B));
    total = o;
  }
};

struct StepPlan {
  int rows = 0, seqs = 0, splits = 1, ntiles = 0;
  bool tc = false;
  // Mixed batch with tc: the decode rows (one new token) go to the decode kernel, listed in the
  // staging area's decode_rows, with their own split count.
  int ndecode = 0, decode_splits = 1;
  size_t copy_bytes = 0;
};

class CudaRunner final : public ModelRunner {
 public:
  ~CudaRunner() override;
  Status Init(const RunnerOptions& opts, const ModelConfig& cfg,
              const std::shared_ptr<ModelWeights>& w, uint64_t random_seed);
  const ModelConfig& config() const override { return cfg_; }
  const KvArena& kv_arena() const override { return arena_; }
  Status Forward(const ForwardBatch& batch, ForwardResult* result) override;
  std::string backend_name() const override { return "cuda"; }

 private:
  template <typename T>
  T* At(size_t off, bool device) {
    return reinterpret_cast<T*>((device ? meta_dev_ : meta_host_) + off);
  }
  Status CopyKv(void* host_base, const std::vector<std::pair<size_t, size_t>>& ranges,
                bool to_host) override;
  Status AllocBuffers();
  Status AllocKv();
  Status Stage(const ForwardBatch& b, int rows_pad, int seqs_pad, StepPlan* p);
  int DecodeSplits(int rows, int max_ctx) const;
  Status Enqueue(const StepPlan& p, const std::function<void(int)>* on_layer);
  Status Gemm(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y, bool f32);
  Status RunGraph(const StepPlan& p, int bucket);

  RunnerOptions opts_;
  ModelConfig cfg_;
  KvArena arena_;
  cuda::DevWeights w_;
  cuda::KvGeom kv_;
  cuda::BatchMeta meta_;
  MetaLayout ml_;
  int num_sms_ = 0;
  bool use_gemv_ = true;  // our GEMV for <= kGemvMaxRows rows (PD_CUDA_GEMV=0: cuBLAS only)
  bool fuse_swiglu_ = true;  // SwiGLU in the gate/up GEMV's epilogue (PD_CUDA_FUSE=0: separate)
  bool split_mixed_ = true;  // decode rows of mixed batches to the decode kernel (PD_CUDA_MIXED=0)
  bool fuse_combine_ = true;  // split merge inside the decode attention (PD_CUDA_FUSE_COMBINE=0)
  int* split_cnt_ = nullptr;  // its per-(row, kv head) tickets
  struct Ablate {
    bool norm = false, rope = false, attn = false, gemv = false;
  };
  Ablate ablate_;  // PD_CUDA_ABLATE (timing experiments only)
  cudaStream_t stream_ = nullptr;
  cudaEvent_t layer_event_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::vector<void*> allocs_;
  unsigned char* meta_host_ = nullptr;
  unsigned char* meta_dev_ = nullptr;
  void* cublas_ws_ = nullptr;
  float *x_ = nullptr, *logits_ = nullptr, *attn_ws_ = nullptr, *inv_freq_ = nullptr;
  bf16_t *h_ = nullptr, *qkv_ = nullptr, *q_ = nullptr, *attn_ = nullptr, *proj_ = nullptr,
         *gu_ = nullptr, *act_ = nullptr, *hs_ = nullptr;
  int32_t* tokens_dev_ = nullptr;
  int32_t* tokens_host_ = nullptr;
  size_t attn_ws_floats_ = 0;
  std::map<int, cudaGraphExec_t> graphs_;
  std::map<int, int> bucket_runs_;
};

// Staging copies run on the calling thread's own stream, so they never wait for (or delay) the
// forward pass; the caller guarantees the ranges are not in use by running sequences.
Status CudaRunner::CopyKv(void* host_base, const std::vector<std::pair<size_t, size_t>>& ranges,
                          bool to_host) {
  PD_CUDA_RET(cudaSetDevice(opts_.gpu_id));
  auto* dev = static_cast<unsigned char*>(arena_.base);
  auto* host = static_cast<unsigned char*>(host_base);
  for (const auto& [off, len] : ranges) {
    if (off > arena_.bytes || len > arena_.bytes - off) {
      return InvalidArgument("KV staging range beyond the arena");
    }
    PD_CUDA_RET(cudaMemcpyAsync(to_host ? host + off : dev + off, to_host ? dev + off : host + off,
                                len, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice,
                                cudaStreamPerThread));
  }
  PD_CUDA_RET(cudaStreamSynchronize(cudaStreamPerThread));
  return OkStatus();
}

CudaRunner::~CudaRunner() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
  if (cublas_) cublasDestroy(cublas_);
  for (void* p : allocs_) cudaFree(p);
  if (arena_.base) cudaFree(arena_.base);
  if (meta_host_) cudaFreeHost(meta_host_);
  if (tokens_host_) cudaFreeHost(tokens_host_);
  if (layer_event_) cudaEventDestroy(layer_event_);
  if (stream_) cudaStreamDestroy(stream_);
}

Status CudaRunner::Init(const RunnerOptions& opts, const ModelConfig& cfg,
                        const std::shared_ptr<ModelWeights>& w, uint64_t random_seed) {
  opts_ = opts;
  cfg_ = cfg;
  const int D = cfg.head_dim;
  if (D != 16 && D != 32 && D != 64 && D != 128 && D != 256) {
    return Unimplemented("cuda backend: head_dim " + std::to_string(D) +
                         " unsupported (16, 32, 64, 128, 256)");
  }
  if (opts.kv_dtype != DType::kBF16) return Unimplemented("cuda backend: KV cache must be bfloat16");
  if (opts.max_seqs < 1 || opts.max_batch_tokens < 1) {
    return InvalidArgument("max_seqs and max_batch_tokens must be positive");
  }
  PD_CUDA_RET(cudaSetDevice(opts.gpu_id));
  cudaDeviceProp prop{};
  PD_CUDA_RET(cudaGetDeviceProperties(&prop, opts.gpu_id));
  num_sms_ = prop.multiProcessorCount;
  // Escape hatches for A/B runs: PD_CUDA_GEMV=0 (cuBLAS for every GEMM), PD_CUDA_DECODE_ATTN=simt
  // (the CUDA-core decode attention kernel for every head dim) | tiled (the CUDA-core tiled
  // kernel, variant 0) | mma (tensor cores, default), PD_CUDA_DECODE_TILE=0..5 (variant of the
  // tiled decode kernel, see cuda_kernels.h).
  const char* gemv_env = std::getenv("PD_CUDA_GEMV");
  use_gemv_ = !(gemv_env && std::strcmp(gemv_env, "0") == 0);
  const char* attn_env = std::getenv("PD_CUDA_DECODE_ATTN");
  if (attn_env && std::strcmp(attn_env, "simt") == 0) cuda::SetTiledDecodeAttention(false);
  if (attn_env && std::strcmp(attn_env, "tiled") == 0) cuda::SetTiledDecodeVariant(0);
  const char* fuse_env = std::getenv("PD_CUDA_FUSE");  // 0: SwiGLU as its own kernel
  fuse_swiglu_ = !(fuse_env && std::strcmp(fuse_env, "0") == 0);
  const char* mixed_env = std::getenv("PD_CUDA_MIXED");  // 0: decode rows in 128-row tiles too
  split_mixed_ = !(mixed_env && std::strcmp(mixed_env, "0") == 0);
  const char* fc_env = std::getenv("PD_CUDA_FUSE_COMBINE");  // 0: CombineKernel after attention
  fuse_combine_ = !(fc_env && std::strcmp(fc_env, "0") == 0);
  const char* pdl_env = std::getenv("PD_CUDA_PDL");  // 0: no programmatic dependent launch
  if (pdl_env && std::strcmp(pdl_env, "0") == 0) cuda::SetProgrammaticLaunch(false);
  const char* stream_env = std::getenv("PD_CUDA_GEMV_STREAM");  // 1: streaming GEMV, 0: warp/row
  if (stream_env) cuda::SetGemvStream(std::strcmp(stream_env, "0") != 0);
  const char* unroll_env = std::getenv("PD_CUDA_GEMV_UNROLL");  // 8 (default) or 16
  if (unroll_env) cuda::SetGemvUnroll(std::atoi(unroll_env));
  const char* tile_env = std::getenv("PD_CUDA_DECODE_TILE");  // tiled-kernel variant 0..5
  if (tile_env) cuda::SetTiledDecodeVariant(std::atoi(tile_env));
  // Timing experiments only (the outputs are wrong): PD_CUDA_ABLATE=norm,rope,attn,gemv leaves
  // those kernels of every layer out, so a step's time can be split by differences (no profiler
  // traces PDL overlap). Logged loudly so nobody serves with it.
  if (const char* ab = std::getenv("PD_CUDA_ABLATE")) {
    const std::string s = ab;
    const auto has = [&s](const char* k) { return s.find(k) != std::string::npos; };
    ablate_ = Ablate{has("norm"), has("rope"), has("attn"), has("gemv")};
    if (ablate_.norm || ablate_.rope || ablate_.attn || ablate_.gemv) {
      PD_LOG_WARN("PD_CUDA_ABLATE={}: layer kernels skipped, outputs wrong", s);
    }
  }
  PD_CUDA_RET(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  PD_CUDA_RET(cudaEventCreateWithFlags(&layer_event_, cudaEventDisableTiming));
  PD_CUBLAS_RET(cublasCreate(&cublas_));
  PD_CUBLAS_RET(cublasSetStream(cublas_, stream_));
  if (w) {
    PD_RETURN_IF_ERROR(w_.Upload(*w));
  } else {
    PD_RETURN_IF_ERROR(w_.InitRandom(cfg, random_seed));
  }
  PD_RETURN_IF_ERROR(AllocBuffers());
  PD_RETURN_IF_ERROR(AllocKv());
  PD_LOG_INFO("cuda runner: {} on {} ({} SMs), weights {:.1f} MiB, KV {} blocks ({:.1f} MiB)",
              cfg.architecture, prop.name, num_sms_, w_.bytes / 1048576.0, arena_.layout.num_blocks,
              arena_.bytes / 1048576.0);
  return OkStatus();
}

Status CudaRunner::AllocBuffers() {
  const int64_t T = opts_.max_batch_tokens, S = opts_.max_seqs, H = cfg_.hidden_size;
  const int64_t D = cfg_.head_dim, nh = cfg_.num_heads, I = cfg_.intermediate_size;
  const int64_t qkv = (nh + 2 * cfg_.num_kv_heads) * D;
  auto alloc = [this](auto** p, size_t bytes) -> Status {
    void* v = nullptr;
    PD_CUDA_RET(cudaMalloc(&v, bytes < 16 ? 16 : bytes));
    allocs_.push_back(v);
    *p = static_cast<std::remove_reference_t<decltype(*p)>>(v);
    return OkStatus();
  };
  PD_RETURN_IF_ERROR(alloc(&x_, T * H * 4));
  PD_RETURN_IF_ERROR(alloc(&h_, T * H * 2));
  PD_RETURN_IF_ERROR(alloc(&qkv_, T * qkv * 2));
  PD_RETURN_IF_ERROR(alloc(&q_, T * nh * D * 2));
  PD_RETURN_IF_ERROR(alloc(&attn_, T * nh * D * 2));
  PD_RETURN_IF_ERROR(alloc(&proj_, T * H * 2));
  PD_RETURN_IF_ERROR(alloc(&gu_, T * 2 * I * 2));
  PD_RETURN_IF_ERROR(alloc(&act_, T * I * 2));
  PD_RETURN_IF_ERROR(alloc(&hs_, S * H * 2));
  PD_RETURN_IF_ERROR(alloc(&logits_, S * int64_t(cfg_.vocab_size) * 4));
  PD_RETURN_IF_ERROR(alloc(&tokens_dev_, S * 4));
  attn_ws_floats_ = cuda::AttnWorkspaceFloats(int(T + 2 * num_sms_), int(nh), int(D), 1);
  PD_RETURN_IF_ERROR(alloc(&attn_ws_, attn_ws_floats_ * 4));
  if (fuse_combine_) {  // zero once; the attention kernel leaves them zero after each launch
    const size_t n = cuda::DecodeCounterInts(int(T + 2 * num_sms_), int(nh), cfg_.num_kv_heads);
    PD_RETURN_IF_ERROR(alloc(&split_cnt_, n * sizeof(int)));
    PD_CUDA_RET(cudaMemset(split_cnt_, 0, n * sizeof(int)));
  }
  PD_RETURN_IF_ERROR(alloc(&inv_freq_, size_t(D / 2) * 4));
  const std::vector<float> inv = RopeInvFreq(cfg_);
  PD_CUDA_RET(cudaMemcpy(inv_freq_, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
  const size_t kCublasWs = 32u << 20;
  PD_RETURN_IF_ERROR(alloc(&cublas_ws_, kCublasWs));
  PD_CUBLAS_RET(cublasSetWorkspace(cublas_, cublas_ws_, kCublasWs));
  const int64_t per_seq = (cfg_.max_position_embeddings + opts_.block_size - 1) / opts_.block_size;
  ml_.Plan(int(T), int(S), std::min<int64_t>(S * per_seq, int64_t{16} << 20));
  PD_CUDA_RET(cudaMallocHost(&meta_host_, ml_.total));
  PD_RETURN_IF_ERROR(alloc(&meta_dev_, ml_.total));
  PD_CUDA_RET(cudaMallocHost(&tokens_host_, S * 4));
  meta_.tokens = At<int32_t>(ml_.tokens, true);
  meta_.row_pos = At<int32_t>(ml_.row_pos, true);
  meta_.row_seq = At<int32_t>(ml_.row_seq, true);
  meta_.seq_ctx = At<int32_t>(ml_.seq_ctx, true);
  meta_.seq_qstart = At<int32_t>(ml_.seq_qstart, true);
  meta_.seq_nnew = At<int32_t>(ml_.seq_nnew, true);
  meta_.block_indptr = At<int32_t>(ml_.indptr, true);
  meta_.block_ids = At<int32_t>(ml_.block_ids, true);
  meta_.num_valid_rows = At<int32_t>(ml_.num_valid, true);
  return OkStatus();
}

Status CudaRunner::AllocKv() {
  KvLayout L;
  L.num_layers = cfg_.num_layers;
  L.block_size = opts_.block_size;
  L.num_kv_heads = cfg_.num_kv_heads;
  L.head_dim = cfg_.head_dim;
  L.dtype = DType::kBF16;
  const size_t per_block = L.block_layer_bytes() * size_t(L.num_layers);
  if (opts_.num_kv_blocks > 0) {
    L.num_blocks = opts_.num_kv_blocks;
  } else {
    size_t free_b = 0, total_b = 0;
    PD_CUDA_RET(cudaMemGetInfo(&free_b, &total_b));
    L.num_blocks = int(std::min<double>(free_b * opts_.kv_memory_fraction / per_block, 1 << 30));
  }
  if (L.num_blocks < 1) return ResourceExhausted("cuda backend: no GPU memory left for the KV pool");
  PD_CUDA_RET(cudaMalloc(&arena_.base, L.total_bytes()));
  arena_.bytes = L.total_bytes();
  arena_.on_gpu = true;
  arena_.gpu_id = opts_.gpu_id;
  arena_.layout = L;
  kv_.base = static_cast<bf16_t*>(arena_.base);
  kv_.num_blocks = L.num_blocks;
  kv_.block_size = L.block_size;
  kv_.num_kv_heads = L.num_kv_heads;
  kv_.head_dim = L.head_dim;
  return OkStatus();
}

Status CudaRunner::Gemm(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y,
                        bool f32) {
  if (use_gemv_ && rows <= cuda::kGemvMaxRows &&
      cuda::LaunchGemv(x, rows, in, w, out, y, f32, stream_)) {
    return OkStatus();
  }
  const float alpha = 1.f, beta = 0.f;
  PD_CUBLAS_RET(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w,
                             CUDA_R_16BF, in, x, CUDA_R_16BF, in, &beta, y,
                             f32 ? CUDA_R_32F : CUDA_R_16BF, out, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
  return OkStatus();
}

// Split count of the decode attention for `rows` query rows of up to max_ctx keys: the GPU-filling
// choice, lowered until the split partials fit the workspace.
int CudaRunner::DecodeSplits(int rows, int max_ctx) const {
  int splits = cuda::ChooseDecodeSplits(rows, cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim,
                                        max_ctx, num_sms_);
  while (splits > 1 && cuda::AttnWorkspaceFloats(rows, cfg_.num_heads, cfg_.head_dim, splits) >
                           attn_ws_floats_) {
    --splits;
  }
  return splits;
}

// Fills the pinned staging area for `b`, padded to rows_pad rows / seqs_pad seqs (graphs).
Status CudaRunner::Stage(const ForwardBatch& b, int rows_pad, int seqs_pad, StepPlan* p) {
  const int S = int(b.seqs.size()), T = int(b.token_ids.size());
  if (int64_t(b.block_ids.size()) > ml_.max_block_ids) {
    return InvalidArgument("batch carries " + std::to_string(b.block_ids.size()) +
                           " block ids, more than this runner's capacity");
  }
  auto* params = At<cuda::SampleParamsDev>(ml_.params, false);
  int32_t* tok = At<int32_t>(ml_.tokens, false);
  int32_t* pos = At<int32_t>(ml_.row_pos, false);
  int32_t* rseq = At<int32_t>(ml_.row_seq, false);
  int32_t* ctx = At<int32_t>(ml_.seq_ctx, false);
  int32_t* qst = At<int32_t>(ml_.seq_qstart, false);
  int32_t* nn = At<int32_t>(ml_.seq_nnew, false);
  int32_t* ip = At<int32_t>(ml_.indptr, false);
  int32_t* srows = At<int32_t>(ml_.sample_rows, false);
  int32_t* tiles = At<int32_t>(ml_.tiles, false);
  int32_t* drows = At<int32_t>(ml_.decode_rows, false);
  int row = 0, ntiles = 0, max_ctx = 1, ndecode = 0, max_decode_ctx = 1;
  bool any_prefill = false;
  const bool split_mixed = split_mixed_ && cuda::PrefillAttentionSupported(cfg_.head_dim) &&
                           cuda::DecodeRowListSupported(cfg_.head_dim);
  for (int s = 0; s < seqs_pad; ++s) {
    cuda::SampleParamsDev sp{};
    if (s >= S) {
      ctx[s] = 0; qst[s] = 0; nn[s] = 0; srows[s] = 0; ip[s + 1] = ip[s];
      params[s] = sp;
      continue;
    }
    const SeqStep& q = b.seqs[s];
    ctx[s] = q.num_cached + q.num_new_tokens;
    max_ctx = std::max(max_ctx, ctx[s]);
    qst[s] = row;
    nn[s] = q.num_new_tokens;
    any_prefill |= q.num_new_tokens > 1;
    if (s == 0) ip[0] = 0;
    ip[s + 1] = b.block_indptr[s + 1] - b.block_indptr[0];
    for (int i = 0; i < q.num_new_tokens; ++i, ++row) {
      tok[row] = b.token_ids[row];
      pos[row] = q.num_cached + i;
      rseq[row] = s;
    }
    srows[s] = row - 1;
    const bool decode_row = split_mixed && q.num_new_tokens == 1;
    if (decode_row) {  // to the decode kernel, not a 128-row prefill tile holding one row
      drows[ndecode++] = row - 1;
      max_decode_ctx = std::max(max_decode_ctx, ctx[s]);
    }
    for (int off = 0; !decode_row && off < q.num_new_tokens; off += pd::cuda::kPrefillTileRows) {
      tiles[2 * ntiles] = s;
      tiles[2 * ntiles + 1] = off;
      ++ntiles;
    }
    sp.temperature = q.sampling.temperature;
    sp.top_k = q.sampling.top_k;
    sp.top_p = q.sampling.top_p;
    sp.do_sample = q.sample ? 1 : 0;
    sp.seed = q.sampling.seed;
    sp.step = q.sample_step;
    params[s] = sp;
  }
  if (S > 0 && seqs_pad > S) ip[0] = 0;
  for (; row < rows_pad; ++row) {
    tok[row] = 0;
    pos[row] = 0;
    rseq[row] = 0;
  }
  *At<int32_t>(ml_.num_valid, false) = T;
  std::memcpy(At<int32_t>(ml_.block_ids, false), b.block_ids.data() + b.block_indptr[0],
              (b.block_ids.size() - b.block_indptr[0]) * 4);
  p->rows = rows_pad;
  p->seqs = seqs_pad;
  p->ntiles = ntiles;
  p->tc = any_prefill && cuda::PrefillAttentionSupported(cfg_.head_dim);
  p->ndecode = p->tc ? ndecode : 0;
  if (p->ndecode > 0) {
    p->decode_splits = DecodeSplits(ndecode, max_decode_ctx);
  }
  p->copy_bytes = ml_.block_ids + b.block_ids.size() * 4;
  if (!p->tc) p->splits = DecodeSplits(rows_pad, max_ctx);
  return OkStatus();
}

Status CudaRunner::Enqueue(const StepPlan& p, const std::function<void(int)>* on_layer) {
  const int H = cfg_.hidden_size, D = cfg_.head_dim, nh = cfg_.num_heads, nkv = cfg_.num_kv_heads;
  const int I = cfg_.intermediate_size, qkv = (nh + 2 * nkv) * D;
  const float eps = float(cfg_.rms_norm_eps);
  const int rows = p.rows;
  cuda::LaunchEmbed(w_.embed, meta_.tokens, rows, H, x_, stream_);
  const float* prev_bias = nullptr;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const cuda::DevLayer& L = w_.layers[l];
    const bool norm = !ablate_.norm, gemv = !ablate_.gemv;
    if (norm) {
      cuda::LaunchAddRmsNorm(x_, l == 0 ? nullptr : proj_, prev_bias, L.in_norm, eps, rows, H, h_,
                             nullptr, stream_);
    }
    if (gemv) PD_RETURN_IF_ERROR(Gemm(h_, rows, H, L.wqkv, qkv, qkv_, false));
    cuda::RopeArgs ra{qkv_, L.qkv_bias, L.q_norm, L.k_norm, eps, inv_freq_, nh, nkv, D, rows, l,
                      q_, kv_};
    if (!ablate_.rope) cuda::LaunchRopeKvWrite(ra, meta_, stream_);
    if (on_layer && *on_layer) {
      PD_CUDA_RET(cudaEventRecord(layer_event_, stream_));
      PD_CUDA_RET(cudaEventSynchronize(layer_event_));
      (*on_layer)(l);
    }
    cuda::AttnArgs aa{q_, attn_, nh, nkv, D, rows, p.seqs, l, cfg_.sliding_window,
                      1.0f / std::sqrt(float(D)), kv_, split_cnt_};
    if (ablate_.attn) {
    } else if (p.tc) {
      if (p.ntiles > 0) {
        cuda::LaunchPrefillAttention(aa, meta_, At<int32_t>(ml_.tiles, true), p.ntiles, stream_);
      }
      if (p.ndecode > 0) {
        cuda::AttnArgs ad = aa;
        ad.rows = p.ndecode;
        ad.row_list = At<int32_t>(ml_.decode_rows, true);
        cuda::LaunchDecodeAttention(ad, meta_, p.decode_splits, attn_ws_, stream_);
      }
    } else {
      cuda::LaunchDecodeAttention(aa, meta_, p.splits, attn_ws_, stream_);
    }
    if (gemv) PD_RETURN_IF_ERROR(Gemm(attn_, rows, nh * D, L.wo, H, proj_, false));
    if (norm) {
      cuda::LaunchAddRmsNorm(x_, proj_, L.o_bias, L.post_norm, eps, rows, H, h_, nullptr, stream_);
    }
    if (!gemv) {
    } else if (!(use_gemv_ && fuse_swiglu_ && rows <= cuda::kGemvMaxRows &&
                 cuda::LaunchGemvSwiglu(h_, rows, H, L.wgu, I, L.gu_bias, act_, stream_))) {
      PD_RETURN_IF_ERROR(Gemm(h_, rows, H, L.wgu, 2 * I, gu_, false));
      cuda::LaunchSwiglu(gu_, L.gu_bias, rows, I, act_, stream_);
    }
    if (gemv) PD_RETURN_IF_ERROR(Gemm(act_, rows, I, L.wd, H, proj_, false));
    prev_bias = L.d_bias;
  }
  cuda::LaunchAddRmsNorm(x_, proj_, prev_bias, w_.final_norm, eps, rows, H, h_, nullptr, stream_);
  cuda::LaunchAddRmsNorm(x_, nullptr, nullptr, w_.final_norm, eps, p.seqs, H, hs_,
                         At<int32_t>(ml_.sample_rows, true), stream_);
  PD_RETURN_IF_ERROR(Gemm(hs_, p.seqs, H, w_.lm_head, cfg_.vocab_size, logits_, true));
  cuda::LaunchSample(logits_, p.seqs, cfg_.vocab_size,
                     At<cuda::SampleParamsDev>(ml_.params, true), tokens_dev_, stream_);
  PD_CUDA_RET(cudaGetLastError());
  return OkStatus();
}

Status CudaRunner::RunGraph(const StepPlan& p, int bucket) {
  auto it = graphs_.find(bucket);
  if (it == graphs_.end()) {
    if (bucket_runs_[bucket]++ == 0) return Enqueue(p, nullptr);  // first use: warm up eagerly
    cudaGraph_t graph = nullptr;
    PD_CUDA_RET(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    Status st = Enqueue(p, nullptr);
    cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    PD_RETURN_IF_ERROR(st);
    PD_CUDA_RET(end);
    cudaGraphExec_t exec = nullptr;
    cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    PD_CUDA_RET(inst);
    it = graphs_.emplace(bucket, exec).first;
  }
  PD_CUDA_RET(cudaGraphLaunch(it->second, stream_));
  return OkStatus();
}

Status CudaRunner::Forward(const ForwardBatch& batch, ForwardResult* result) {
  PD_RETURN_IF_ERROR(ValidateForwardBatch(batch, cfg_, arena_.layout, opts_.max_batch_tokens));
  const int S = int(batch.seqs.size()), T = int(batch.token_ids.size());
  if (S > opts_.max_seqs) {
    return InvalidArgument("batch has " + std::to_string(S) + " sequences, more than max_seqs=" +
                           std::to_string(opts_.max_seqs));
  }
  PD_CUDA_RET(cudaSetDevice(opts_.gpu_id));
  const bool decode_only = T == S;
  const bool graph = opts_.use_cuda_graphs && decode_only && !batch.on_layer_done;
  int bucket = S;
  if (graph) {
    bucket = 1;
    while (bucket < S) bucket <<= 1;
    bucket = std::min({bucket, opts_.max_seqs, opts_.max_batch_tokens});
  }
  StepPlan p;
  PD_RETURN_IF_ERROR(Stage(batch, graph ? bucket : T, graph ? bucket : S, &p));
  if (graph) p.splits = DecodeSplits(bucket, cfg_.max_position_embeddings);
  PD_CUDA_RET(cudaMemcpyAsync(meta_dev_, meta_host_, p.copy_bytes, cudaMemcpyHostToDevice, stream_));
  if (graph) {
    PD_RETURN_IF_ERROR(RunGraph(p, bucket));
  } else {
    PD_RETURN_IF_ERROR(Enqueue(p, &batch.on_layer_done));
  }
  PD_CUDA_RET(cudaMemcpyAsync(tokens_host_, tokens_dev_, size_t(S) * 4, cudaMemcpyDeviceToHost, stream_));
  if (batch.return_logits) {
    result->logits.resize(size_t(S) * cfg_.vocab_size);
    PD_CUDA_RET(cudaMemcpyAsync(result->logits.data(), logits_, result->logits.size() * 4,
                                cudaMemcpyDeviceToHost, stream_));
  } else {
    result->logits.clear();
  }
  PD_CUDA_RET(cudaStreamSynchronize(stream_));
  result->tokens.assign(tokens_host_, tokens_host_ + S);
  return OkStatus();
}

}  // namespace

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunner(const RunnerOptions& opts) {
  if (CudaDeviceCount() == 0) return Unavailable("backend 'cuda': no CUDA device found");
  PD_ASSIGN_OR_RETURN(auto w, LoadModelWeights(opts.model_dir));
  auto r = std::make_unique<CudaRunner>();
  PD_RETURN_IF_ERROR(r->Init(opts, w->config, w, 0));
  return std::unique_ptr<ModelRunner>(std::move(r));
}

StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunnerRandom(const ModelConfig& config,
                                                              const RunnerOptions& opts,
                                                              uint64_t seed) {
  if (CudaDeviceCount() == 0) return Unavailable("backend 'cuda': no CUDA device found");
  PD_RETURN_IF_ERROR(config.Validate());
  auto r = std::make_unique<CudaRunner>();
  PD_RETURN_IF_ERROR(r->Init(opts, config, nullptr, seed));
  return std::unique_ptr<ModelRunner>(std::move(r));
}

}  // namespace pd
