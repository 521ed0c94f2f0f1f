// CUDA backend: bf16 forward with cuBLAS(Lt) and our kernels. This header has no CUDA types so
// the factory can include it from host-only code.
#pragma once

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "model/model_config.h"
#include "model/runner.h"

namespace pd {

StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunner(const RunnerOptions& opts);

// Benchmarks: a CUDA runner for `config` whose bf16 weights are random, made on the GPU
// (no files). opts.model_dir is ignored.
StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunnerRandom(const ModelConfig& config,
                                                              const RunnerOptions& opts,
                                                              uint64_t seed);

// Number of CUDA devices, 0 when there is no GPU or no driver (never fails).
int CudaDeviceCount();

}  // namespace pd
