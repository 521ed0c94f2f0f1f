// Helpers for the CUDA tests: GPU presence check, device buffers, bf16 rounding.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/dtype.h"

namespace pd::cudatest {

inline bool HaveGpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

#define PD_REQUIRE_GPU() \
  if (!::pd::cudatest::HaveGpu()) GTEST_SKIP() << "no CUDA device"

#define CK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr << ": " << cudaGetErrorString(expr)

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    cudaMalloc(&p, count * sizeof(T) + 16);
    cudaMemset(p, 0xff, count * sizeof(T) + 16);  // poison: NaN for floats/bf16
  }
  DevBuf(const std::vector<T>& h) : DevBuf(h.size()) { Put(h); }
  ~DevBuf() { cudaFree(p); }
  void Put(const std::vector<T>& h) { cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice); }
  std::vector<T> Get() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
};

inline float RoundBf(float f) { return Bf16ToF32(F32ToBf16(f)); }

inline std::vector<uint16_t> RandBf(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = F32ToBf16(d(rng));
  return v;
}

inline std::vector<float> RandF(size_t n, std::mt19937& rng, float mean = 0.f, float scale = 1.f) {
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ||a - b|| / ||b||
inline double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return 1e30;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

}  // namespace pd::cudatest
