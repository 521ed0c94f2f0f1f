// Linked into the CUDA tests/bench ONLY while src/model/cpu/ has no implementation yet (see
// tests/model_cuda/CMakeLists.txt): runner.cc's factory references CreateCpuRunner.
#include "model/cpu/cpu_runner.h"

namespace pd {
StatusOr<std::unique_ptr<ModelRunner>> CreateCpuRunner(const RunnerOptions&) {
  return Unimplemented("cpu backend not built in this tree yet");
}
}  // namespace pd
