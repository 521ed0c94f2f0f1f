// CPU backend: reference forward over the paged KV cache (OpenBLAS GEMMs, threads).
#pragma once

#include <memory>

#include "common/status.h"
#include "model/runner.h"

namespace pd {

StatusOr<std::unique_ptr<ModelRunner>> CreateCpuRunner(const RunnerOptions& opts);

}  // namespace pd
