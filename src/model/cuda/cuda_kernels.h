// Launchers for the CUDA backend's kernels (implemented in cuda_kernels.cu and
// cuda_attention.cu). Host-callable, plain pointer arguments; all bf16 tensors are passed as
// uint16_t* (raw bf16 bits) so this header needs only cuda_runtime.h. Every launcher enqueues on
// `stream` and returns without synchronising; each has a CPU twin in tests/model_cuda/.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace pd::cuda {

using bf16_t = uint16_t;

// Per-batch metadata on the device. Rows are new tokens (concatenated over sequences).
struct BatchMeta {
  const int32_t* tokens = nullptr;        // [rows]
  const int32_t* row_pos = nullptr;       // [rows] absolute position of each row
  const int32_t* row_seq = nullptr;       // [rows] sequence index of each row
  const int32_t* seq_ctx = nullptr;       // [seqs] num_cached + num_new
  const int32_t* seq_qstart = nullptr;    // [seqs] first row of the sequence
  const int32_t* seq_nnew = nullptr;      // [seqs] rows of the sequence
  const int32_t* block_indptr = nullptr;  // [seqs+1]
  const int32_t* block_ids = nullptr;     // concatenated block tables
  const int32_t* num_valid_rows = nullptr;  // [1] rows >= this are padding (CUDA graphs)
};

// Paged cache geometry (kv_layout.h, HND): element offsets of K[layer][block][head][slot][0].
struct KvGeom {
  bf16_t* base = nullptr;
  int num_blocks = 0, block_size = 16, num_kv_heads = 0, head_dim = 0;
  __host__ __device__ int64_t layer_elems() const { return int64_t(num_blocks) * 2 * num_kv_heads * block_size * head_dim; }
};

struct SampleParamsDev {  // one per sequence
  float temperature;
  int32_t top_k;
  float top_p;
  int32_t do_sample;  // 0: skip (token -1)
  uint64_t seed;
  uint64_t step;
};

// residual[r] = fp32(embed[tokens[r]]).
void LaunchEmbed(const bf16_t* embed, const int32_t* tokens, int rows, int hidden, float* residual,
                 cudaStream_t stream);

// If delta != nullptr: residual += delta (+ bias). Then out = bf16(rmsnorm(residual) * w).
// Only rows < rows are touched. If out_rows != nullptr, row i of out reads residual row
// out_rows[i] (gather, for the final norm over last positions) and `rows` counts out rows; then
// delta must be nullptr.
void LaunchAddRmsNorm(float* residual, const bf16_t* delta, const float* bias, const float* w,
                      float eps, int rows, int hidden, bf16_t* out, const int32_t* out_rows,
                      cudaStream_t stream);

struct RopeArgs {
  const bf16_t* qkv;   // [rows, (nh + 2 nkv) * D] output of the fused QKV GEMM
  const float* bias;   // [(nh + 2 nkv) * D] or nullptr
  const float* q_norm; // [D] or nullptr (Qwen3)
  const float* k_norm; // [D] or nullptr
  float eps;
  const float* inv_freq;  // [D/2], scaling already applied
  int num_heads, num_kv_heads, head_dim, rows, layer;
  bf16_t* q_out;       // [rows, nh, D]
  KvGeom kv;
};
// Bias, q/k norm and RoPE (HF rotate_half) on q and k; writes q to q_out and k, v into the
// paged cache at (block_ids[block_indptr[s] + pos / bs], pos % bs).
void LaunchRopeKvWrite(const RopeArgs& a, const BatchMeta& m, cudaStream_t stream);

// out[r, i] = bf16(silu(gu[r, i] + bg[i]) * (gu[r, I + i] + bu[I + i])), gu = [rows, 2I].
void LaunchSwiglu(const bf16_t* gu, const float* bias, int rows, int inter, bf16_t* out,
                  cudaStream_t stream);

// Skinny GEMM for decode: y[r, o] = sum_i x[r, i] * w[o, i] (x [rows, in], w [out, in] row-major
// bf16, fp32 accumulation, y bf16 or fp32 [rows, out]) for rows <= kGemvMaxRows, one warp per
// output row with 16-byte loads. Returns false and enqueues nothing when the shape is not
// covered (rows, in % 8, 16-byte alignment): the caller falls back to cuBLAS.
constexpr int kGemvMaxRows = 4;
bool LaunchGemv(const bf16_t* x, int rows, int in, const bf16_t* w, int out, void* y, bool f32_out,
                cudaStream_t stream);

// Programmatic dependent launch (process-wide, default on; PD_CUDA_PDL=0 in the runner turns it
// off): the step's element-wise, GEMV and decode-attention kernels start while their predecessor
// drains (the GEMV streams its first weight chunk before it waits for its input).
void SetProgrammaticLaunch(bool on);
bool ProgrammaticLaunchEnabled();
// 16-byte weight loads in flight per lane of the single-row GEMV (process-wide): 8 (default) or
// 16 (PD_CUDA_GEMV_UNROLL=16 in the runner); other values mean 8. Multi-row launches use 8.
void SetGemvUnroll(int unroll);
// LaunchGemv's kernel for bf16/fp32 outputs (process-wide): false (default) = one warp per row,
// 8 (or SetGemvUnroll) 16-byte loads in flight per lane; true (PD_CUDA_GEMV_STREAM=1 in the
// runner) = persistent streaming GEMV (two CTAs per SM, each warp streams its rows' 4 KB chunks
// through a 3-stage cp.async ring, cuda_gemv_stream.cu; measured slower on the H100, kept for
// A/B). Same sums, same order.
void SetGemvStream(bool on);

// LaunchGemv of the fused [gate; up] weight wgu [2 inter, in] with LaunchSwiglu fused into its
// epilogue: act[r, i] = bf16(silu(bf16(g) + bias[i]) * (bf16(u) + bias[inter + i])), bias
// [2 inter] or nullptr. Same coverage as LaunchGemv plus inter % 4 == 0; false = nothing enqueued.
bool LaunchGemvSwiglu(const bf16_t* x, int rows, int in, const bf16_t* wgu, int inter,
                      const float* bias, bf16_t* act, cudaStream_t stream);

// Converts n fp32 values to bf16 / fills bf16 with uniform(-scale, scale) from a hash of
// (seed, index) (random weights for benchmarks, made directly on the GPU).
void LaunchFillRandomBf16(bf16_t* dst, int64_t n, float scale, uint64_t seed, cudaStream_t stream);
void LaunchF32ToBf16(const float* src, bf16_t* dst, int64_t n, cudaStream_t stream);

// One token per row of logits [rows, vocab] following SampleFromLogits' contract with the same
// SamplingUniform(seed, step); tokens[r] = -1 where !do_sample.
void LaunchSample(const float* logits, int rows, int vocab, const SampleParamsDev* params,
                  int32_t* tokens, cudaStream_t stream);

// ---- attention (cuda_attention.cu) ---------------------------------------------------------
struct AttnArgs {
  const bf16_t* q;  // [rows, nh, D] (RoPE applied)
  bf16_t* out;      // [rows, nh, D]
  int num_heads, num_kv_heads, head_dim, rows, num_seqs, layer;
  int sliding_window;  // 0 = full
  float scale;
  KvGeom kv;
  // Optional, decode attention on tensor cores only: DecodeCounterInts(rows, nh, nkv) zeroed ints.
  // With it the last split CTA of each (row, kv head) merges the split partials itself (no
  // CombineKernel launch) and leaves its counter at zero again for the next launch.
  int* split_counters = nullptr;
  // Optional, tensor-core decode kernels only (DecodeRowListSupported): the launch covers the
  // batch rows row_list[0..rows) instead of rows 0..rows (the decode rows of a mixed batch, whose
  // prefill rows go to the prefill kernel). Workspace and counters are indexed by list position.
  const int32_t* row_list = nullptr;
};

// Split-KV (flash-decoding) attention on CUDA cores: one query row at a time, any row of any
// sequence (decode rows and, for head dims without a tensor-core path, prefill rows). `splits`
// (clamped to 1..64) partitions each row's key range; workspace must hold
// AttnWorkspaceFloats(rows, nh, D, splits).
size_t AttnWorkspaceFloats(int rows, int num_heads, int head_dim, int splits);
size_t DecodeCounterInts(int rows, int num_heads, int num_kv_heads);
void LaunchDecodeAttention(const AttnArgs& a, const BatchMeta& m, int splits, float* workspace,
                           cudaStream_t stream);
// Whether LaunchDecodeAttention takes AttnArgs::row_list for this head dim (the kernel in use).
bool DecodeRowListSupported(int head_dim);
// Picks a split count filling the GPU for `rows` query rows of up to max_ctx keys.
int ChooseSplits(int rows, int num_kv_heads, int max_ctx, int num_sms);
// For head_dim 128 LaunchDecodeAttention runs a tiled kernel (K/V tiles streamed into shared
// memory with 16-byte cp.async, every query head of a GQA group sharing each tile) unless it is
// switched off here (process-wide; tests and benchmarks compare the kernels).
void SetTiledDecodeAttention(bool on);
bool TiledDecodeAttentionUsed(int head_dim);
// Which tiled kernel (process-wide): CUDA-core QK/PV 0 = 64 keys x 2 stages, 1 = 32 keys x 4
// stages, 2 = 64 keys x 3 stages; tensor-core (mma.sync, the GQA group as the MMA's rows)
// 3 = 64 keys x 2 stages (default), 4 = 64 x 3, 5 = 128 x 2. Out-of-range values are ignored.
int NumTiledDecodeVariants();
void SetTiledDecodeVariant(int variant);
int TiledDecodeVariant();
int DefaultTiledDecodeVariant();
const char* TiledDecodeVariantName(int variant);  // "simt" for an out-of-range variant
// Split count for LaunchDecodeAttention with the kernel it will use: the tiled kernel fills one
// wave of CTAs (or the fullest of 1-4 splits when the batch alone fills the GPU), >= 256 keys
// per split (>= 64 for the tensor-core variants); otherwise ChooseSplits.
int ChooseDecodeSplits(int rows, int num_heads, int num_kv_heads, int head_dim, int max_ctx,
                       int num_sms);

// Causal prefill attention with tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation,
// online softmax), queries of each sequence's chunk against its cached prefix + the chunk read
// through the block table. Head dim 128 (64 opt-in). `tiles` = [num_tiles][2] (seq, first row in
// the sequence's chunk) for kPrefillTileRows-row query tiles.
constexpr int kPrefillTileRows = 128;
// Head dim 64 on the tensor-core prefill kernel (opt-in until run on a GPU; see the .cu).
void SetPrefillHeadDim64(bool on);
bool PrefillAttentionSupported(int head_dim);
void LaunchPrefillAttention(const AttnArgs& a, const BatchMeta& m, const int32_t* tiles,
                            int num_tiles, cudaStream_t stream);
// Prefill kernel (process-wide): 0 = warpgroup MMA (wgmma, sm_90a), 1 = the mma.sync kernel,
// 2 = wgmma with the K/V loads issued before the MMAs (first version, for measurements),
// -1 = the default (environment PD_CUDA_PREFILL_ATTN=wgmma|mma, else the built-in choice). The
// wgmma kernels need a power-of-two KV block size and an sm_90 device, else mma.sync runs.
void SetPrefillAttentionVariant(int variant);
// The kernel LaunchPrefillAttention runs for this KV block size (0/2 = wgmma, 1 = mma.sync).
int PrefillAttentionVariantUsed(int block_size);

}  // namespace pd::cuda
