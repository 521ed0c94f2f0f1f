// CPU backend kernels: fp32 compute over fp32 or bf16 weights. Each has a scalar definition;
// hot loops dispatch at run time to AVX2/FMA versions where the CPU has them (portable build).
#pragma once

#include <cstdint>
#include <vector>

#include "common/dtype.h"
#include "model/cpu/cpu_thread_pool.h"

namespace pd {
namespace cpu {

// A [rows, cols] row-major weight matrix, fp32 or bf16 (fp16 is converted to fp32 at load).
struct Matrix {
  DType dtype = DType::kF32;  // kF32 or kBF16 only
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  std::vector<float> owned;  // backing store when converted at load
  const float* f32() const { return static_cast<const float*>(data); }
  const uint16_t* bf16() const { return static_cast<const uint16_t*>(data); }
};

// sum_i a[i] * b[i].
float DotF32(const float* a, const float* b, int64_t n);
// sum_i a[i] * bf16(b[i]).
float DotBf16(const float* a, const uint16_t* b, int64_t n);
// dst[i] = fp32(src[i]).
void Bf16ToF32Row(const uint16_t* src, float* dst, int64_t n);

// y[M, N] = x[M, K] * W[N, K]^T (+ bias[N] if non-null). Small M: threaded GEMV reading the
// weights in place; larger M: OpenBLAS sgemm (bf16 weights converted in row panels first).
void Linear(CpuThreadPool& pool, const float* x, int64_t M, const Matrix& w, const float* bias,
            float* y);

// y = x / sqrt(mean(x^2) + eps) * w over n elements (HF LlamaRMSNorm; may alias).
void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps);

// HF rotate_half RoPE in place on one head vector v[D]; cos/sin have D/2 entries.
void ApplyRope(float* v, int D, const float* cos, const float* sin);

// a[i] = silu(a[i]) * b[i].
void SiluMul(float* a, const float* b, int64_t n);

}  // namespace cpu
}  // namespace pd
