// Programmatic dependent launch (sm_90) for the kernels of a forward step: a kernel launched with
// LaunchPdl may start while its predecessor in the stream drains. Contract for such a kernel:
// PdlTrigger() early (lets its own successor launch), and PdlWait() before it reads anything an
// earlier kernel wrote or writes anything (it returns once the predecessor grid has completed and
// its memory is visible; completion is transitive because every PDL kernel waits before it
// exits). Only constants (weights) may be read before PdlWait. Both are no-ops when the kernel
// was launched without the attribute (SetProgrammaticLaunch(false), PD_CUDA_PDL=0).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "model/cuda/cuda_kernels.h"

namespace pd::cuda {

__device__ __forceinline__ void PdlWait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void PdlTrigger() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

template <typename... P, typename... A>
inline void LaunchPdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                      cudaStream_t stream, A&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = ProgrammaticLaunchEnabled() ? 1 : 0;
  cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

}  // namespace pd::cuda
