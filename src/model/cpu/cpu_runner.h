// CPU backend: reference forward over the paged KV cache (OpenBLAS GEMMs, threads).
//
// fp32 compute. Weights stay memory-mapped: bf16 matrices are read in place (fused bf16 GEMV for
// decode rows, row panels widened to fp32 before OpenBLAS sgemm when a Forward carries > 4
// tokens), fp32 ones are used as they are, fp16 ones are widened to fp32 once at load. The KV
// arena is host memory in opts.kv_dtype (fp32, bf16 or fp16), laid out per kvcache/kv_layout.h,
// sized by opts.num_kv_blocks or else opts.kv_memory_mb. Threads: opts.num_threads (0 = all
// cores) for GEMVs, attention and element-wise work; OpenBLAS uses its own threads for sgemm.
// Forward() is not reentrant: one call at a time per runner.
#pragma once

#include <memory>

#include "common/status.h"
#include "model/runner.h"

namespace pd {

// Loads opts.model_dir and allocates the KV arena. Errors: the loader's (named file/tensor),
// INVALID_ARGUMENT for a KV budget that holds no block, RESOURCE_EXHAUSTED if the arena can't
// be allocated.
StatusOr<std::unique_ptr<ModelRunner>> CreateCpuRunner(const RunnerOptions& opts);

}  // namespace pd
