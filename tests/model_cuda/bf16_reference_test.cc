// Is the CUDA backend's 1-4% first-logit error against the golden (transformers fp32) data just
// bf16 rounding? A double-precision CPU forward of the same weights that rounds to bf16 exactly
// where the CUDA backend does (weights; normed activations; every GEMM output; q/k/v after
// bias/norm/RoPE; attention output; SwiGLU output) answers it:
//  * without rounding it reproduces the golden logits (checks this reference itself);
//  * with rounding its error against the golden data is what we see on the GPU (CPU only);
//  * on a GPU, the CUDA logits are compared with the rounded reference: same rounding points,
//    different summation order, so they must agree far more closely than either does with fp32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/dtype.h"
#include "cuda_test_util.h"
#include "model/cuda/cuda_runner.h"
#include "model/rope.h"
#include "model/runner.h"
#include "model/weights.h"

namespace pd {
namespace {

const char* kModels[] = {"llama_gqa_tied",  "llama3_scaled_mqa_v4cfg", "llama_bias_linear",
                         "mistral_window",  "qwen2_bias_tied",         "qwen3_qknorm"};

std::string Dir(const std::string& m) {
  const char* env = std::getenv("PD_TEST_DATA_DIR");
  return std::string(env ? env : PD_TEST_DATA_DIR) + "/golden/" + m;
}

nlohmann::json Golden(const std::string& m) {
  std::ifstream f(Dir(m) + "/golden.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

using Vec = std::vector<double>;

class RefForward {
 public:
  RefForward(const ModelWeights& w, bool bf16) : w_(w), c_(w.config), bf16_(bf16) {
    inv_freq_ = RopeInvFreq(c_);
  }

  // Logits of the last position of `prompt` (one sequence, prefilled at once).
  std::vector<float> LastLogits(const std::vector<int32_t>& prompt) {
    const int T = int(prompt.size()), H = c_.hidden_size, D = c_.head_dim;
    const int nh = c_.num_heads, nkv = c_.num_kv_heads, I = c_.intermediate_size;
    std::vector<Vec> res(T);
    for (int t = 0; t < T; ++t) res[t] = Row(w_.embed, prompt[t], true);
    for (const LayerWeights& L : w_.layers) {
      std::vector<Vec> q(T), k(T), v(T), attn(T);
      for (int t = 0; t < T; ++t) {
        const Vec h = Norm(res[t], L.input_norm);
        Vec qkv = Cat({MatVec(L.q_proj, h), MatVec(L.k_proj, h), MatVec(L.v_proj, h)});
        const Vec bias = L.q_bias.present() ? Cat({F(L.q_bias), F(L.k_bias), F(L.v_bias)}) : Vec();
        for (size_t i = 0; i < bias.size(); ++i) qkv[i] += bias[i];
        q[t] = Heads(qkv, 0, nh, L.q_norm, t);
        k[t] = Heads(qkv, nh * D, nkv, L.k_norm, t);
        v[t] = Vec(qkv.begin() + (nh + nkv) * D, qkv.end());
        for (double& x : v[t]) x = R(x);
      }
      for (int t = 0; t < T; ++t) attn[t] = Attend(q, k, v, t);
      for (int t = 0; t < T; ++t) {
        Vec o = MatVec(L.o_proj, attn[t]);
        Add(&res[t], o, L.o_bias);
        const Vec h = Norm(res[t], L.post_norm);
        Vec g = MatVec(L.gate_proj, h), u = MatVec(L.up_proj, h);
        const Vec bg = L.gate_bias.present() ? F(L.gate_bias) : Vec(I, 0.0);
        const Vec bu = L.up_bias.present() ? F(L.up_bias) : Vec(I, 0.0);
        Vec act(I);
        for (int i = 0; i < I; ++i) {
          const double gg = g[i] + bg[i], uu = u[i] + bu[i];
          act[i] = R(gg / (1.0 + std::exp(-gg)) * uu);
        }
        Add(&res[t], MatVec(L.down_proj, act), L.down_bias);
      }
    }
    const Vec hs = Norm(res[T - 1], w_.final_norm);
    const TensorView& head = w_.lm_head.present() ? w_.lm_head : w_.embed;
    std::vector<float> out(c_.vocab_size);
    for (int o = 0; o < c_.vocab_size; ++o) {
      const Vec row = Row(head, o, true);
      double s = 0;
      for (int i = 0; i < H; ++i) s += row[i] * hs[i];
      out[o] = float(s);  // fp32 output, no rounding
    }
    return out;
  }

 private:
  double R(double x) const { return bf16_ ? double(Bf16ToF32(F32ToBf16(float(x)))) : x; }
  static Vec F(const TensorView& t) {
    std::vector<float> f(size_t(t.numel()));
    ToF32(t.dtype, t.data, f.data(), f.size());
    return Vec(f.begin(), f.end());
  }
  static Vec Cat(std::initializer_list<Vec> parts) {
    Vec v;
    for (const Vec& p : parts) v.insert(v.end(), p.begin(), p.end());
    return v;
  }
  // Row `r` of a [rows, cols] matrix; weights are rounded to bf16 in bf16 mode (as uploaded).
  Vec Row(const TensorView& t, int r, bool weight) const {
    const int64_t cols = t.shape.back();
    std::vector<float> f(static_cast<size_t>(cols));
    const char* base = static_cast<const char*>(t.data) + size_t(r) * cols * DTypeSize(t.dtype);
    ToF32(t.dtype, base, f.data(), f.size());
    Vec v(f.begin(), f.end());
    if (weight) {
      for (double& x : v) x = R(x);
    }
    return v;
  }
  // bf16(W x): fp32-accumulated GEMM with a bf16 output.
  Vec MatVec(const TensorView& w, const Vec& x) const {
    Vec y(size_t(w.shape[0]));
    for (int64_t o = 0; o < w.shape[0]; ++o) {
      const Vec row = Row(w, int(o), true);
      double s = 0;
      for (size_t i = 0; i < x.size(); ++i) s += row[i] * x[i];
      y[o] = R(s);
    }
    return y;
  }
  Vec Norm(const Vec& x, const TensorView& w) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / double(x.size()) + c_.rms_norm_eps);
    const Vec g = F(w);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = R(x[i] * inv * g[i]);
    return y;
  }
  void Add(Vec* res, const Vec& d, const TensorView& bias) const {
    const Vec b = bias.present() ? F(bias) : Vec(d.size(), 0.0);
    for (size_t i = 0; i < d.size(); ++i) (*res)[i] += d[i] + b[i];
  }
  // q or k heads [n, D] from the fused row at `off`: optional RMSNorm over D, RoPE, bf16.
  Vec Heads(const Vec& qkv, int off, int n, const TensorView& norm, int pos) const {
    const int D = c_.head_dim, half = D / 2;
    Vec out(size_t(n) * D);
    const Vec g = norm.present() ? F(norm) : Vec();
    for (int h = 0; h < n; ++h) {
      Vec x(qkv.begin() + off + h * D, qkv.begin() + off + (h + 1) * D);
      if (!g.empty()) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double inv = 1.0 / std::sqrt(ss / D + c_.rms_norm_eps);
        for (int i = 0; i < D; ++i) x[i] = x[i] * inv * g[i];
      }
      for (int i = 0; i < half; ++i) {
        const double a = double(float(pos) * inv_freq_[i]);  // fp32 angle, as HF and CUDA
        const double cs = std::cos(a), sn = std::sin(a);
        out[h * D + i] = R(x[i] * cs - x[i + half] * sn);
        out[h * D + i + half] = R(x[i + half] * cs + x[i] * sn);
      }
    }
    return out;
  }
  Vec Attend(const std::vector<Vec>& q, const std::vector<Vec>& k, const std::vector<Vec>& v,
             int t) const {
    const int D = c_.head_dim, nh = c_.num_heads, group = nh / c_.num_kv_heads;
    const int lo = c_.sliding_window > 0 ? std::max(0, t - c_.sliding_window + 1) : 0;
    Vec out(size_t(nh) * D);
    for (int h = 0; h < nh; ++h) {
      const int kvh = h / group;
      Vec sc(t + 1 - lo);
      double mx = -1e300;
      for (int j = lo; j <= t; ++j) {
        double s = 0;
        for (int i = 0; i < D; ++i) s += q[t][h * D + i] * k[j][kvh * D + i];
        sc[j - lo] = s / std::sqrt(double(D));
        mx = std::max(mx, sc[j - lo]);
      }
      double sum = 0;
      for (double& s : sc) sum += (s = std::exp(s - mx));
      for (int i = 0; i < D; ++i) {
        double acc = 0;
        for (int j = lo; j <= t; ++j) acc += sc[j - lo] * v[j][kvh * D + i];
        out[h * D + i] = R(acc / sum);
      }
    }
    return out;
  }

  const ModelWeights& w_;
  const ModelConfig& c_;
  bool bf16_;
  std::vector<float> inv_freq_;
};

class Bf16Reference : public ::testing::TestWithParam<const char*> {};

// CPU only: the reference without rounding reproduces transformers; with bf16 rounding it is as
// far from transformers as the CUDA backend (docs/cuda.md: 1.2-4.0%).
TEST_P(Bf16Reference, ExplainsGoldenError) {
  auto w = LoadModelWeights(Dir(GetParam()));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto g = Golden(GetParam());
  RefForward exact(*w.value(), false), rounded(*w.value(), true);
  double worst_exact = 0, worst_bf16 = 0;
  for (const auto& c : g["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    const auto first = c["first_logits"].get<std::vector<float>>();
    worst_exact = std::max(worst_exact, cudatest::RelErr(exact.LastLogits(prompt), first));
    worst_bf16 = std::max(worst_bf16, cudatest::RelErr(rounded.LastLogits(prompt), first));
  }
  std::printf("[bf16-ref %s] vs golden: exact reference %.2e, bf16-rounding reference %.4f\n",
              GetParam(), worst_exact, worst_bf16);
  EXPECT_LT(worst_exact, 1e-4);
  EXPECT_LT(worst_bf16, 6e-2);
}

// GPU: CUDA first logits against the bf16-rounding reference.
TEST_P(Bf16Reference, CudaMatchesRoundedReference) {
  PD_REQUIRE_GPU();
  auto w = LoadModelWeights(Dir(GetParam()));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  RunnerOptions o;
  o.backend = "cuda";
  o.model_dir = Dir(GetParam());
  o.num_kv_blocks = 64;
  o.max_batch_tokens = 256;
  o.max_seqs = 4;
  o.use_cuda_graphs = false;
  auto r = CreateCudaRunner(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  RefForward rounded(*w.value(), true);
  auto g = Golden(GetParam());
  double worst_ref = 0, worst_golden = 0;
  for (const auto& c : g["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    ForwardBatch b;
    b.return_logits = true;
    SeqStep st;
    st.num_new_tokens = int(prompt.size());
    st.sample = true;
    b.seqs.push_back(st);
    b.token_ids = prompt;
    const int bs = r.value()->kv_arena().layout.block_size;
    for (int i = 0; i * bs < int(prompt.size()); ++i) b.block_ids.push_back(i);
    b.block_indptr = {0, int32_t(b.block_ids.size())};
    ForwardResult res;
    ASSERT_TRUE(r.value()->Forward(b, &res).ok());
    worst_ref = std::max(worst_ref, cudatest::RelErr(res.logits, rounded.LastLogits(prompt)));
    worst_golden = std::max(
        worst_golden, cudatest::RelErr(res.logits, c["first_logits"].get<std::vector<float>>()));
  }
  std::printf("[bf16-ref %s] cuda vs bf16-rounding reference %.4f (vs golden %.4f)\n", GetParam(),
              worst_ref, worst_golden);
  EXPECT_LT(worst_ref, 0.25 * worst_golden + 2e-3);
}

INSTANTIATE_TEST_SUITE_P(Golden, Bf16Reference, ::testing::ValuesIn(kModels));

}  // namespace
}  // namespace pd
