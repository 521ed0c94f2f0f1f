// Sampling parameters and the reference (host) sampler. Every backend must pick the same token
// as SampleFromLogits for the same logits (up to ties within float rounding).
#pragma once

#include <cstdint>
#include <vector>

namespace pd {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest index on ties)
  int top_k = 0;             // 0: disabled
  float top_p = 1.0f;        // 1: disabled
  uint64_t seed = 0;         // with `step`, fully determines the random draw
};

// Counter-based uniform in [0, 1): a pure function of (seed, step). Backends share it so the same
// seed gives the same output on CPU and GPU.
double SamplingUniform(uint64_t seed, uint64_t step);

// Picks a token from `logits[0..vocab)`. `step` is the index of the token being generated within
// its request (0 for the first). Algorithm: greedy if temperature <= 0; else softmax(logits / T),
// keep the top_k largest (ties broken by lower index), then the smallest prefix (in descending
// probability order) whose mass >= top_p, renormalise, and invert the CDF at SamplingUniform().
int32_t SampleFromLogits(const float* logits, int vocab, const SamplingParams& p, uint64_t step);

}  // namespace pd
