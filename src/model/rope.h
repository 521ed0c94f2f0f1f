// RoPE inverse frequencies shared by every backend (the CPU and CUDA runners use the same table).
#pragma once

#include <vector>

#include "model/model_config.h"

namespace pd {

// head_dim / 2 inverse frequencies exactly as transformers computes them in float32:
// theta^(-2i/d), then rope scaling (linear: / factor; llama3: the wavelength-banded blend of
// _compute_llama3_parameters).
std::vector<float> RopeInvFreq(const ModelConfig& c);

}  // namespace pd
