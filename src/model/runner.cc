#include "model/runner.h"

#include <string>

#include "model/cpu/cpu_runner.h"
#ifdef PD_WITH_CUDA
#include "model/cuda/cuda_runner.h"
#endif

namespace pd {

StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& opts) {
  if (opts.backend == "cpu") return CreateCpuRunner(opts);
  if (opts.backend == "cuda") {
#ifdef PD_WITH_CUDA
    return CreateCudaRunner(opts);
#else
    return Unimplemented("backend 'cuda' requested but this build has no CUDA (PD_WITH_CUDA=OFF)");
#endif
  }
  return InvalidArgument("unknown backend '" + opts.backend + "' (expected cpu or cuda)");
}

Status ValidateForwardBatch(const ForwardBatch& b, const ModelConfig& cfg, const KvLayout& layout,
                            int max_batch_tokens) {
  if (b.seqs.empty()) return InvalidArgument("forward batch has no sequences");
  if (b.block_indptr.size() != b.seqs.size() + 1) {
    return InvalidArgument("block_indptr has " + std::to_string(b.block_indptr.size()) +
                           " entries, expected " + std::to_string(b.seqs.size() + 1));
  }
  if (static_cast<int64_t>(b.token_ids.size()) > max_batch_tokens) {
    return InvalidArgument("batch carries " + std::to_string(b.token_ids.size()) +
                           " tokens, more than max_batch_tokens=" + std::to_string(max_batch_tokens));
  }
  size_t total = 0;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const SeqStep& q = b.seqs[s];
    if (q.num_new_tokens <= 0) return InvalidArgument("seq " + std::to_string(s) + " has no new tokens");
    if (q.num_cached < 0) return InvalidArgument("seq " + std::to_string(s) + " has negative num_cached");
    total += static_cast<size_t>(q.num_new_tokens);
    int64_t ctx = static_cast<int64_t>(q.num_cached) + q.num_new_tokens;
    if (ctx > cfg.max_position_embeddings) {
      return InvalidArgument("seq " + std::to_string(s) + " reaches position " + std::to_string(ctx) +
                             " beyond max_position_embeddings=" +
                             std::to_string(cfg.max_position_embeddings));
    }
    int32_t lo = b.block_indptr[s], hi = b.block_indptr[s + 1];
    if (lo < 0 || hi < lo || hi > static_cast<int32_t>(b.block_ids.size())) {
      return InvalidArgument("block_indptr is not monotone within block_ids");
    }
    int64_t need = (ctx + layout.block_size - 1) / layout.block_size;
    if (hi - lo < need) {
      return InvalidArgument("seq " + std::to_string(s) + " needs " + std::to_string(need) +
                             " KV blocks but its block table has " + std::to_string(hi - lo));
    }
    for (int32_t i = lo; i < hi; ++i) {
      if (b.block_ids[i] < 0 || b.block_ids[i] >= layout.num_blocks) {
        return InvalidArgument("block id " + std::to_string(b.block_ids[i]) + " out of range [0, " +
                               std::to_string(layout.num_blocks) + ")");
      }
    }
  }
  if (total != b.token_ids.size()) {
    return InvalidArgument("token_ids has " + std::to_string(b.token_ids.size()) +
                           " entries but seqs ask for " + std::to_string(total));
  }
  for (int32_t t : b.token_ids) {
    if (t < 0 || t >= cfg.vocab_size) {
      return InvalidArgument("token id " + std::to_string(t) + " outside the vocabulary [0, " +
                             std::to_string(cfg.vocab_size) + ")");
    }
  }
  return OkStatus();
}

}  // namespace pd
