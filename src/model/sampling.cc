#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace pd {

namespace {
uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

double SamplingUniform(uint64_t seed, uint64_t step) {
  uint64_t r = SplitMix64(SplitMix64(seed) ^ (step * 0xd1b54a32d192ed03ull));
  return static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int32_t SampleFromLogits(const float* logits, int vocab, const SamplingParams& p, uint64_t step) {
  if (p.temperature <= 0.0f || p.top_k == 1) {
    int best = 0;
    for (int i = 1; i < vocab; ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    return best;
  }
  // Candidates sorted by descending logit, ties by ascending index.
  std::vector<int> idx(vocab);
  std::iota(idx.begin(), idx.end(), 0);
  auto cmp = [logits](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  int k = (p.top_k > 0 && p.top_k < vocab) ? p.top_k : vocab;
  if (k < vocab) {
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), cmp);
    idx.resize(k);
  } else {
    std::sort(idx.begin(), idx.end(), cmp);
  }
  const double inv_t = 1.0 / p.temperature;
  const double mx = logits[idx[0]];
  std::vector<double> prob(idx.size());
  double sum = 0;
  for (size_t i = 0; i < idx.size(); ++i) {
    prob[i] = std::exp((logits[idx[i]] - mx) * inv_t);
    sum += prob[i];
  }
  size_t keep = idx.size();
  if (p.top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < idx.size(); ++i) {
      acc += prob[i] / sum;
      if (acc >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += prob[i];
  double u = SamplingUniform(p.seed, step) * kept;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (u < acc) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace pd
