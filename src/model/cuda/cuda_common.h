// Small host helpers shared by the CUDA backend's host files (not part of any public API).
#pragma once

#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/status.h"

#define PD_CUDA_RET(expr)                                                                  \
  do {                                                                                     \
    cudaError_t pd_cuda_err_ = (expr);                                                     \
    if (pd_cuda_err_ != cudaSuccess) {                                                     \
      return ::pd::Internal(std::string(#expr) + ": " + cudaGetErrorString(pd_cuda_err_)); \
    }                                                                                      \
  } while (0)

#define PD_CUBLAS_RET(expr)                                                              \
  do {                                                                                   \
    cublasStatus_t pd_cublas_st_ = (expr);                                               \
    if (pd_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                        \
      return ::pd::Internal(std::string(#expr) + ": cuBLAS status " +                    \
                            std::to_string(static_cast<int>(pd_cublas_st_)));            \
    }                                                                                    \
  } while (0)
