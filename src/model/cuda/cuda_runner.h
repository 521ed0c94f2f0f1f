// CUDA backend: bf16 forward with cuBLAS(Lt) and our kernels. This header has no CUDA types so
// the factory can include it from host-only code.
#pragma once

#include <memory>

#include "common/status.h"
#include "model/runner.h"

namespace pd {

StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunner(const RunnerOptions& opts);

// Number of CUDA devices, 0 when there is no GPU or no driver (never fails).
int CudaDeviceCount();

}  // namespace pd
