#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace pd {
namespace {

TEST(DTypeTest, Bf16RoundTripAndRounding) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: rounds to even (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(NAN))));
}

TEST(DTypeTest, F16MatchesReferenceOnRandomValues) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-70000.f, 70000.f);
  for (int i = 0; i < 10000; ++i) {
    float x = d(rng) * std::pow(2.0f, static_cast<float>(static_cast<int>(rng() % 40)) - 30.f);
    float y = F16ToF32(F32ToF16(x));
    if (std::fabs(x) > 65504.f) {
      EXPECT_TRUE(std::isinf(y));
    } else if (std::fabs(x) >= 6.1035e-05f) {
      EXPECT_LE(std::fabs(y - x), std::fabs(x) * (1.0f / 2048.f)) << x;
    } else {
      EXPECT_LE(std::fabs(y - x), std::ldexp(1.0f, -25)) << x;
    }
  }
}

}  // namespace
}  // namespace pd
