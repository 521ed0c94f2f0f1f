// Element types and bf16/fp16 <-> fp32 conversion on the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace pd {

enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType t);  // "float32", "float16", "bfloat16"
// Accepts safetensors names (F32, F16, BF16) and HF config names (float32, bfloat16, ...).
bool ParseDType(const std::string& name, DType* out);

inline float Bf16ToF32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even, NaN preserved (same as torch).
inline uint16_t F32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// Converts n elements of type `t` at `src` to fp32.
void ToF32(DType t, const void* src, float* dst, size_t n);
// Converts n fp32 values to type `t` at `dst`.
void FromF32(DType t, const float* src, void* dst, size_t n);

}  // namespace pd
