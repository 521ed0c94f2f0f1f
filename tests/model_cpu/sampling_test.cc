// Reference sampler (model/sampling.h) on tiny hand-computable distributions.
#include "model/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace pd {
namespace {

std::vector<float> LogProbs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

// Empirical frequencies over `n` draws (steps 0..n-1).
std::vector<double> Freq(const std::vector<float>& logits, const SamplingParams& sp, int n) {
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) {
    int32_t t = SampleFromLogits(logits.data(), static_cast<int>(logits.size()), sp, i);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int>(logits.size()));
    f[t] += 1.0 / n;
  }
  return f;
}

TEST(Sampling, GreedyIsArgmaxLowestIndexOnTies) {
  SamplingParams sp;  // temperature 0
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(SampleFromLogits(l.data(), 4, sp, 0), 1);
  EXPECT_EQ(SampleFromLogits(l.data(), 4, sp, 17), 1);
}

TEST(Sampling, TopK1IsGreedyAtAnyTemperature) {
  std::vector<float> l = {0.5f, 0.4f, 0.45f, -3.0f};
  SamplingParams sp;
  sp.temperature = 5.0f;
  sp.top_k = 1;
  for (int s = 0; s < 200; ++s) {
    sp.seed = s;
    EXPECT_EQ(SampleFromLogits(l.data(), 4, sp, s), 0);
  }
}

TEST(Sampling, UniformInUnitIntervalAndDeterministic) {
  for (uint64_t s = 0; s < 1000; ++s) {
    double u = SamplingUniform(7, s);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    EXPECT_EQ(u, SamplingUniform(7, s));
  }
  EXPECT_NE(SamplingUniform(1, 0), SamplingUniform(2, 0));
}

TEST(Sampling, TemperatureOneMatchesDistribution) {
  // p = (0.5, 0.25, 0.25): 20000 draws, each frequency within 0.015 (> 4 sigma).
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 3;
  auto f = Freq(LogProbs({0.5, 0.25, 0.25}), sp, 20000);
  EXPECT_NEAR(f[0], 0.5, 0.015);
  EXPECT_NEAR(f[1], 0.25, 0.015);
  EXPECT_NEAR(f[2], 0.25, 0.015);
}

TEST(Sampling, TemperatureSharpens) {
  // T = 0.5 squares the probabilities: (0.5, 0.25, 0.25) -> (4, 1, 1) / 6.
  SamplingParams sp;
  sp.temperature = 0.5f;
  sp.seed = 11;
  auto f = Freq(LogProbs({0.5, 0.25, 0.25}), sp, 20000);
  EXPECT_NEAR(f[0], 4.0 / 6, 0.015);
  EXPECT_NEAR(f[1], 1.0 / 6, 0.015);
}

TEST(Sampling, TopKDropsTail) {
  // top_k = 2 over (0.4, 0.3, 0.2, 0.1) -> (4, 3) / 7.
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 2;
  sp.seed = 5;
  auto f = Freq(LogProbs({0.4, 0.3, 0.2, 0.1}), sp, 20000);
  EXPECT_NEAR(f[0], 4.0 / 7, 0.015);
  EXPECT_NEAR(f[1], 3.0 / 7, 0.015);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_EQ(f[3], 0.0);
}

TEST(Sampling, TopPKeepsSmallestPrefix) {
  // (0.5, 0.3, 0.2): top_p 0.5 keeps {0}; top_p 0.6 keeps {0, 1} -> (0.625, 0.375).
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 9;
  sp.top_p = 0.5f;
  auto f = Freq(LogProbs({0.5, 0.3, 0.2}), sp, 5000);
  EXPECT_NEAR(f[0], 1.0, 1e-9);
  EXPECT_EQ(f[1], 0.0);
  EXPECT_EQ(f[2], 0.0);
  sp.top_p = 0.6f;
  f = Freq(LogProbs({0.5, 0.3, 0.2}), sp, 20000);
  EXPECT_NEAR(f[0], 0.625, 0.015);
  EXPECT_NEAR(f[1], 0.375, 0.015);
  EXPECT_EQ(f[2], 0.0);
}

TEST(Sampling, SameSeedSameDrawsDifferentSeedDiffers) {
  std::vector<float> l(64);
  for (int i = 0; i < 64; ++i) l[i] = 0.01f * i;
  SamplingParams a;
  a.temperature = 1.0f;
  a.seed = 42;
  SamplingParams b = a;
  b.seed = 43;
  int differ = 0;
  for (uint64_t s = 0; s < 50; ++s) {
    EXPECT_EQ(SampleFromLogits(l.data(), 64, a, s), SampleFromLogits(l.data(), 64, a, s));
    differ += SampleFromLogits(l.data(), 64, a, s) != SampleFromLogits(l.data(), 64, b, s);
  }
  EXPECT_GT(differ, 25);
}

}  // namespace
}  // namespace pd
