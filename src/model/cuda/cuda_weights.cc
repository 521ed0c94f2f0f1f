#include "model/cuda/cuda_weights.h"

#include <cmath>
#include <cstring>

#include "model/cuda/cuda_common.h"

namespace pd::cuda {

DevWeights::~DevWeights() {
  for (void* p : allocs_) cudaFree(p);
}

Status DevWeights::Alloc(void** p, size_t n) {
  PD_CUDA_RET(cudaMalloc(p, n));
  allocs_.push_back(*p);
  bytes += n;
  return OkStatus();
}

Status DevWeights::UploadBf16(const std::vector<const TensorView*>& parts, bf16_t** dst) {
  size_t n = 0;
  for (const TensorView* t : parts) n += static_cast<size_t>(t->numel());
  std::vector<uint16_t> host(n);
  std::vector<float> tmp;
  size_t off = 0;
  for (const TensorView* t : parts) {
    const size_t k = static_cast<size_t>(t->numel());
    if (t->dtype == DType::kBF16) {
      std::memcpy(host.data() + off, t->data, k * 2);
    } else {
      tmp.resize(k);
      ToF32(t->dtype, t->data, tmp.data(), k);
      for (size_t i = 0; i < k; ++i) host[off + i] = F32ToBf16(tmp[i]);
    }
    off += k;
  }
  PD_RETURN_IF_ERROR(Alloc(reinterpret_cast<void**>(dst), n * 2));
  PD_CUDA_RET(cudaMemcpy(*dst, host.data(), n * 2, cudaMemcpyHostToDevice));
  return OkStatus();
}

Status DevWeights::UploadF32(const std::vector<const TensorView*>& parts, float** dst) {
  size_t n = 0;
  for (const TensorView* t : parts) n += static_cast<size_t>(t->numel());
  std::vector<float> host(n);
  size_t off = 0;
  for (const TensorView* t : parts) {
    ToF32(t->dtype, t->data, host.data() + off, static_cast<size_t>(t->numel()));
    off += static_cast<size_t>(t->numel());
  }
  PD_RETURN_IF_ERROR(Alloc(reinterpret_cast<void**>(dst), n * 4));
  PD_CUDA_RET(cudaMemcpy(*dst, host.data(), n * 4, cudaMemcpyHostToDevice));
  return OkStatus();
}

Status DevWeights::Upload(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  PD_RETURN_IF_ERROR(UploadBf16({&w.embed}, &embed));
  if (c.tie_word_embeddings || !w.lm_head.present() || w.lm_head.data == w.embed.data) {
    lm_head = embed;
  } else {
    PD_RETURN_IF_ERROR(UploadBf16({&w.lm_head}, &lm_head));
  }
  PD_RETURN_IF_ERROR(UploadF32({&w.final_norm}, &final_norm));
  layers.resize(c.num_layers);
  size_t step = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    DevLayer& d = layers[l];
    PD_RETURN_IF_ERROR(UploadBf16({&L.q_proj, &L.k_proj, &L.v_proj}, &d.wqkv));
    PD_RETURN_IF_ERROR(UploadBf16({&L.o_proj}, &d.wo));
    PD_RETURN_IF_ERROR(UploadBf16({&L.gate_proj, &L.up_proj}, &d.wgu));
    PD_RETURN_IF_ERROR(UploadBf16({&L.down_proj}, &d.wd));
    PD_RETURN_IF_ERROR(UploadF32({&L.input_norm}, &d.in_norm));
    PD_RETURN_IF_ERROR(UploadF32({&L.post_norm}, &d.post_norm));
    if (L.q_bias.present()) {
      PD_RETURN_IF_ERROR(UploadF32({&L.q_bias, &L.k_bias, &L.v_bias}, &d.qkv_bias));
    }
    if (L.o_bias.present()) PD_RETURN_IF_ERROR(UploadF32({&L.o_bias}, &d.o_bias));
    if (L.gate_bias.present()) {
      PD_RETURN_IF_ERROR(UploadF32({&L.gate_bias, &L.up_bias}, &d.gu_bias));
    }
    if (L.down_bias.present()) PD_RETURN_IF_ERROR(UploadF32({&L.down_bias}, &d.d_bias));
    if (L.q_norm.present()) PD_RETURN_IF_ERROR(UploadF32({&L.q_norm}, &d.q_norm));
    if (L.k_norm.present()) PD_RETURN_IF_ERROR(UploadF32({&L.k_norm}, &d.k_norm));
    step += (L.q_proj.numel() + L.k_proj.numel() + L.v_proj.numel() + L.o_proj.numel() +
             L.gate_proj.numel() + L.up_proj.numel() + L.down_proj.numel()) * 2;
  }
  per_step_bytes = step + static_cast<size_t>(w.embed.numel()) * 2;  // lm_head read once
  return OkStatus();
}

Status DevWeights::InitRandom(const ModelConfig& c, uint64_t seed) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int64_t qkv = int64_t(c.num_heads + 2 * c.num_kv_heads) * D, qd = int64_t(c.num_heads) * D;
  auto rnd = [&](bf16_t** p, int64_t n, float scale) -> Status {
    PD_RETURN_IF_ERROR(Alloc(reinterpret_cast<void**>(p), size_t(n) * 2));
    LaunchFillRandomBf16(*p, n, scale, seed++, nullptr);
    PD_CUDA_RET(cudaGetLastError());
    return OkStatus();
  };
  auto ones = [&](float** p, int64_t n) -> Status {
    std::vector<float> h(size_t(n), 1.0f);
    PD_RETURN_IF_ERROR(Alloc(reinterpret_cast<void**>(p), size_t(n) * 4));
    PD_CUDA_RET(cudaMemcpy(*p, h.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
    return OkStatus();
  };
  PD_RETURN_IF_ERROR(rnd(&embed, int64_t(c.vocab_size) * H, 1.0f));
  if (c.tie_word_embeddings) {
    lm_head = embed;
  } else {
    PD_RETURN_IF_ERROR(rnd(&lm_head, int64_t(c.vocab_size) * H, 1.0f / std::sqrt(float(H))));
  }
  PD_RETURN_IF_ERROR(ones(&final_norm, H));
  layers.resize(c.num_layers);
  for (DevLayer& d : layers) {
    PD_RETURN_IF_ERROR(rnd(&d.wqkv, qkv * H, 1.0f / std::sqrt(float(H))));
    PD_RETURN_IF_ERROR(rnd(&d.wo, H * qd, 1.0f / std::sqrt(float(qd))));
    PD_RETURN_IF_ERROR(rnd(&d.wgu, 2 * I * H, 1.0f / std::sqrt(float(H))));
    PD_RETURN_IF_ERROR(rnd(&d.wd, H * I, 1.0f / std::sqrt(float(I))));
    PD_RETURN_IF_ERROR(ones(&d.in_norm, H));
    PD_RETURN_IF_ERROR(ones(&d.post_norm, H));
    if (c.qk_norm) {
      PD_RETURN_IF_ERROR(ones(&d.q_norm, D));
      PD_RETURN_IF_ERROR(ones(&d.k_norm, D));
    }
  }
  per_step_bytes = size_t(c.num_layers) * size_t(qkv * H + H * qd + 3 * I * H) * 2 +
                   size_t(c.vocab_size) * H * 2;
  PD_CUDA_RET(cudaDeviceSynchronize());
  return OkStatus();
}

}  // namespace pd::cuda
