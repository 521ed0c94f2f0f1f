// ModelRunner: the one narrow call between serving and execution.
//
// A ForwardBatch mixes prefill chunks and decode tokens of different sequences. Each sequence
// brings its new tokens, how many of its tokens are already in the KV cache, and its block table
// (block ids covering positions [0, num_cached + num_new)). The runner writes the new tokens' K/V
// into those blocks (layout in kvcache/kv_layout.h) and, for sequences that ask, samples the next
// token from the last position's logits.
//
// Serving code includes only this header: no backend details, no CUDA headers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "kvcache/kv_layout.h"
#include "model/model_config.h"
#include "model/sampling.h"

namespace pd {

struct SeqStep {
  int32_t num_new_tokens = 0;  // tokens fed this step (a prefill chunk, or 1 for decode)
  int32_t num_cached = 0;      // tokens already in KV; the first new token has this position
  bool sample = false;         // sample a token from the last new position
  SamplingParams sampling;
  uint64_t sample_step = 0;    // index of the token being generated (RNG counter)
};

struct ForwardBatch {
  std::vector<SeqStep> seqs;
  std::vector<int32_t> token_ids;     // new tokens of all seqs, concatenated in seq order
  std::vector<int32_t> block_indptr;  // size seqs.size()+1, into block_ids
  std::vector<int32_t> block_ids;     // each seq's block table, concatenated
  bool return_logits = false;         // fill ForwardResult::logits (for tests/tools)
  // If set, called on the calling thread after layer L's K/V writes for this batch are complete
  // and visible in the arena (for layer-wise KV transfer). May be called from inside Forward().
  std::function<void(int layer)> on_layer_done;
};

struct ForwardResult {
  std::vector<int32_t> tokens;  // one per seq; -1 where !sample
  std::vector<float> logits;    // [num_seqs, vocab] fp32 when return_logits (rows of
                                // non-sampling seqs are the last position's logits too)
};

// Where the KV cache lives, for registration with the transfer engine.
struct KvArena {
  void* base = nullptr;
  size_t bytes = 0;
  bool on_gpu = false;
  int gpu_id = -1;
  KvLayout layout;
};

struct RunnerOptions {
  std::string backend = "cpu";  // "cpu" | "cuda"
  std::string model_dir;
  int block_size = 16;
  int num_kv_blocks = 0;          // 0: derive from kv_memory_fraction (cuda) or kv_memory_mb (cpu)
  double kv_memory_fraction = 0.5;  // cuda: fraction of free GPU memory for the KV pool
  size_t kv_memory_mb = 256;      // cpu: arena size when num_kv_blocks == 0
  DType kv_dtype = DType::kBF16;  // element type of the KV cache
  int num_threads = 0;            // cpu: 0 = hardware concurrency
  int gpu_id = 0;                 // cuda
  int max_batch_tokens = 8192;    // largest token count one Forward may carry
  int max_seqs = 256;             // largest number of sequences one Forward may carry
  bool use_cuda_graphs = true;    // cuda: graphs for decode-only batches
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const KvArena& kv_arena() const = 0;
  // Runs one step. Returns INVALID_ARGUMENT for malformed batches (bad token id, block id out of
  // range, too many tokens) without touching the KV cache.
  virtual Status Forward(const ForwardBatch& batch, ForwardResult* result) = 0;
  virtual std::string backend_name() const = 0;

  // GPU backends: copies byte ranges (offset, length) of the KV arena to (to_host) or from host
  // memory `host_base`, at the same offsets; returns when the copies are complete. Transports
  // that cannot reach GPU memory stage KV through such a host mirror (GPU -> host -> wire ->
  // host -> GPU). Host-arena backends return UNIMPLEMENTED (they need no staging).
  virtual Status CopyKv(void* host_base, const std::vector<std::pair<size_t, size_t>>& ranges,
                        bool to_host) {
    return Unimplemented(backend_name() + " backend has no KV staging copy");
  }
};

// Creates a runner for opts.backend. "cuda" returns UNIMPLEMENTED in builds without CUDA and
// UNAVAILABLE where no GPU is present.
StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& opts);

// Checks a batch against the runner's limits (shared by all backends).
Status ValidateForwardBatch(const ForwardBatch& batch, const ModelConfig& cfg,
                            const KvLayout& layout, int max_batch_tokens);

}  // namespace pd
