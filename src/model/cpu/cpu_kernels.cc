#include "model/cpu/cpu_kernels.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

// Weak: present with OpenBLAS, absent (nullptr) with another CBLAS.
#pragma weak openblas_set_num_threads

namespace pd {
namespace cpu {
namespace {

bool HaveAvx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

__attribute__((target("avx2,fma"))) float HsumAvx(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) float DotF32Avx(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  float s = HsumAvx(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

__attribute__((target("avx2,fma"))) __m256 LoadBf16Avx(const uint16_t* p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

__attribute__((target("avx2,fma"))) float DotBf16Avx(const float* a, const uint16_t* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), LoadBf16Avx(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), LoadBf16Avx(b + i + 8), s1);
  }
  float s = HsumAvx(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * Bf16ToF32(b[i]);
  return s;
}

__attribute__((target("avx2,fma"))) void Bf16ToF32Avx(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadBf16Avx(src + i));
  for (; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

// Four rows at once (four independent weight streams, x loaded once): out[r] = x . w[r*ld..].
__attribute__((target("avx2,fma"))) void Dot4Bf16Avx(const float* x, const uint16_t* w, int64_t ld,
                                                     int64_t n, float* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  const uint16_t *w0 = w, *w1 = w + ld, *w2 = w + 2 * ld, *w3 = w + 3 * ld;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    s0 = _mm256_fmadd_ps(xv, LoadBf16Avx(w0 + i), s0);
    s1 = _mm256_fmadd_ps(xv, LoadBf16Avx(w1 + i), s1);
    s2 = _mm256_fmadd_ps(xv, LoadBf16Avx(w2 + i), s2);
    s3 = _mm256_fmadd_ps(xv, LoadBf16Avx(w3 + i), s3);
  }
  out[0] = HsumAvx(s0);
  out[1] = HsumAvx(s1);
  out[2] = HsumAvx(s2);
  out[3] = HsumAvx(s3);
  for (; i < n; ++i) {
    out[0] += x[i] * Bf16ToF32(w0[i]);
    out[1] += x[i] * Bf16ToF32(w1[i]);
    out[2] += x[i] * Bf16ToF32(w2[i]);
    out[3] += x[i] * Bf16ToF32(w3[i]);
  }
}

// y[b, e) = x . W[b, e) rows (bf16, M == 1).
void GemvBf16Rows(const float* x, const uint16_t* w, int64_t K, int64_t b, int64_t e,
                  const float* bias, float* y) {
  int64_t n = b;
  if (HaveAvx2()) {
    for (; n + 4 <= e; n += 4) Dot4Bf16Avx(x, w + n * K, K, K, y + n);
  }
  for (; n < e; ++n) y[n] = DotBf16(x, w + n * K, K);
  if (bias) {
    for (n = b; n < e; ++n) y[n] += bias[n];
  }
}

// Rows per task of the GEMV and the largest M it handles.
constexpr int64_t kGemvMaxM = 4;
// fp32 panel of a bf16 weight converted before sgemm: at most this many floats.
constexpr int64_t kPanelFloats = int64_t{1} << 20;

void Gemv(CpuThreadPool& pool, const float* x, int64_t M, const Matrix& w, const float* bias,
          float* y) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<std::vector<float>> rowbuf(pool.size());
  // At least ~64K weights per task: waking workers costs more than smaller tasks save.
  const int64_t grain = std::max<int64_t>(16, (int64_t{1} << 16) / std::max<int64_t>(1, K * M));
  pool.ParallelFor(N, grain, [&](int64_t b, int64_t e, int tid) {
    if (w.dtype == DType::kBF16 && M == 1) return GemvBf16Rows(x, w.bf16(), K, b, e, bias, y);
    std::vector<float>& tmp = rowbuf[tid];
    for (int64_t n = b; n < e; ++n) {
      const float* wr;
      if (w.dtype == DType::kF32) {
        wr = w.f32() + n * K;
      } else {
        tmp.resize(K);
        Bf16ToF32Row(w.bf16() + n * K, tmp.data(), K);
        wr = tmp.data();
      }
      for (int64_t m = 0; m < M; ++m)
        y[m * N + n] = DotF32(x + m * K, wr, K) + (bias ? bias[n] : 0.0f);
    }
  });
}

}  // namespace

float DotF32(const float* a, const float* b, int64_t n) {
  if (HaveAvx2()) return DotF32Avx(a, b, n);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

float DotBf16(const float* a, const uint16_t* b, int64_t n) {
  if (HaveAvx2()) return DotBf16Avx(a, b, n);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * Bf16ToF32(b[i]);
  return s;
}

void Bf16ToF32Row(const uint16_t* src, float* dst, int64_t n) {
  if (HaveAvx2()) return Bf16ToF32Avx(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

void Linear(CpuThreadPool& pool, const float* x, int64_t M, const Matrix& w, const float* bias,
            float* y) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= kGemvMaxM) return Gemv(pool, x, M, w, bias, y);
  // One thread pool for everything: OpenBLAS runs single-threaded and each of our tasks calls
  // sgemm on its own slice of output columns (no second set of spinning BLAS threads).
  static const bool single = [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    return true;
  }();
  (void)single;
  const int64_t panel_rows = std::max<int64_t>(16, kPanelFloats / K);
  const bool small = M * N * K < (int64_t{1} << 21);
  const int64_t grain = small ? N : std::max<int64_t>(32, N / (4 * pool.size()) + 1);
  std::vector<std::vector<float>> panels(pool.size());
  pool.ParallelFor(N, grain, [&](int64_t b, int64_t e, int tid) {
    for (int64_t n0 = b; n0 < e; n0 += panel_rows) {
      const int64_t rows = std::min(panel_rows, e - n0);
      const float* wp;
      if (w.dtype == DType::kF32) {
        wp = w.f32() + n0 * K;
      } else {
        panels[tid].resize(static_cast<size_t>(rows * K));
        Bf16ToF32Row(w.bf16() + n0 * K, panels[tid].data(), rows * K);
        wp = panels[tid].data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, rows, K, 1.0f, x, K, wp, K, 0.0f,
                  y + n0, N);
      if (bias) {
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = n0; n < n0 + rows; ++n) y[m * N + n] += bias[n];
      }
    }
  });
}

void RmsNorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

void ApplyRope(float* v, int D, const float* cos, const float* sin) {
  const int h = D / 2;
  for (int i = 0; i < h; ++i) {
    const float a = v[i], b = v[i + h];
    v[i] = a * cos[i] - b * sin[i];
    v[i + h] = b * cos[i] + a * sin[i];
  }
}

void SiluMul(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

}  // namespace cpu
}  // namespace pd
