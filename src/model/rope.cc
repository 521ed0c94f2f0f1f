#include "model/rope.h"

#include <cmath>

namespace pd {

std::vector<float> RopeInvFreq(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<float> f(half);
  const RopeScaling& rs = c.rope_scaling;
  for (int i = 0; i < half; ++i) {
    float inv = 1.0f / std::pow(static_cast<float>(c.rope_theta),
                                static_cast<float>(2 * i) / static_cast<float>(c.head_dim));
    if (rs.type == RopeScaling::Type::kLinear) {
      inv /= static_cast<float>(rs.factor);
    } else if (rs.type == RopeScaling::Type::kLlama3) {
      const float old_ctx = static_cast<float>(rs.original_max_position_embeddings);
      const float lf = static_cast<float>(rs.low_freq_factor);
      const float hf = static_cast<float>(rs.high_freq_factor);
      const float factor = static_cast<float>(rs.factor);
      const float low_wl = old_ctx / lf, high_wl = old_ctx / hf;
      const float wl = 2.0f * static_cast<float>(M_PI) / inv;
      float out = wl > low_wl ? inv / factor : inv;
      if (!(wl < high_wl) && !(wl > low_wl)) {
        const float smooth = (old_ctx / wl - lf) / (hf - lf);
        out = (1.0f - smooth) * out / factor + smooth * out;
      }
      inv = out;
    }
    f[i] = inv;
  }
  return f;
}

}  // namespace pd
