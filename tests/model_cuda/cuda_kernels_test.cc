// Each CUDA kernel against its CPU twin (double precision) on fresh random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <numeric>

#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_runner.h"
#include "model/sampling.h"
#include "attn_test_util.h"
#include "cuda_test_util.h"

namespace pd::cuda {
namespace {

using cudatest::DevBuf;
using cudatest::RandBf;
using cudatest::RandF;
using cudatest::RelErr;

using attntest::AttnCase;
using attntest::AttnRef;
using attntest::TestBatch;
using attntest::ToF;

TEST(CudaKernels, AddRmsNormMatchesCpu) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(11);
  const int rows = 7, H = 1000;
  auto res = RandF(size_t(rows) * H, rng), bias = RandF(H, rng, 0, 0.1f), w = RandF(H, rng, 1, 0.2f);
  auto delta = RandBf(size_t(rows) * H, rng);
  DevBuf<float> d_res(res), d_bias(bias), d_w(w);
  DevBuf<uint16_t> d_delta(delta), d_out(size_t(rows) * H);
  LaunchAddRmsNorm(d_res.p, d_delta.p, d_bias.p, d_w.p, 1e-5f, rows, H, d_out.p, nullptr, nullptr);
  CK(cudaDeviceSynchronize());
  std::vector<float> ref_res(res.size()), ref_out(res.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < H; ++i) {
      const size_t e = size_t(r) * H + i;
      ref_res[e] = res[e] + Bf16ToF32(delta[e]) + bias[i];
      ss += double(ref_res[e]) * ref_res[e];
    }
    const double inv = 1.0 / std::sqrt(ss / H + 1e-5);
    for (int i = 0; i < H; ++i) ref_out[size_t(r) * H + i] = float(ref_res[size_t(r) * H + i] * inv * w[i]);
  }
  EXPECT_LT(RelErr(d_res.Get(), ref_res), 1e-6);
  EXPECT_LT(RelErr(ToF(d_out.Get()), ref_out), 5e-3);
  // Gather mode: rows {6, 2} of the updated residual.
  DevBuf<int32_t> d_rows(std::vector<int32_t>{6, 2});
  DevBuf<uint16_t> d_g(2 * size_t(H));
  LaunchAddRmsNorm(d_res.p, nullptr, nullptr, d_w.p, 1e-5f, 2, H, d_g.p, d_rows.p, nullptr);
  CK(cudaDeviceSynchronize());
  std::vector<float> g = ToF(d_g.Get()), gref;
  gref.insert(gref.end(), ref_out.begin() + 6 * H, ref_out.begin() + 7 * H);
  gref.insert(gref.end(), ref_out.begin() + 2 * H, ref_out.begin() + 3 * H);
  EXPECT_LT(RelErr(g, gref), 5e-3);
}

TEST(CudaKernels, SwigluMatchesCpu) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(12);
  const int rows = 5, I = 300;
  auto gu = RandBf(size_t(rows) * 2 * I, rng, 2.f);
  auto bias = RandF(2 * I, rng, 0, 0.2f);
  DevBuf<uint16_t> d_gu(gu), d_out(size_t(rows) * I);
  DevBuf<float> d_b(bias);
  LaunchSwiglu(d_gu.p, d_b.p, rows, I, d_out.p, nullptr);
  CK(cudaDeviceSynchronize());
  std::vector<float> ref(size_t(rows) * I);
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < I; ++i) {
      const double g = Bf16ToF32(gu[size_t(r) * 2 * I + i]) + bias[i];
      const double u = Bf16ToF32(gu[size_t(r) * 2 * I + I + i]) + bias[I + i];
      ref[size_t(r) * I + i] = float(g / (1 + std::exp(-g)) * u);
    }
  }
  EXPECT_LT(RelErr(ToF(d_out.Get()), ref), 5e-3);
}

std::vector<float> TestInvFreq(int D) {
  std::vector<float> f(D / 2);
  for (int i = 0; i < D / 2; ++i) f[i] = float(1.0 / std::pow(10000.0, 2.0 * i / D)) * 0.7f;
  return f;
}

void RopeCase(int D, bool bias_on, bool norm_on) {
  std::mt19937 rng(100 + D + bias_on * 7 + norm_on * 13);
  const int nh = 6, nkv = 2, layer = 1, layers = 2, qkvw = (nh + 2 * nkv) * D;
  TestBatch b;
  b.Build({0, 21, 40}, {19, 1, 3}, 16, rng);
  const int rows = b.rows();
  auto qkv = RandBf(size_t(rows) * qkvw, rng);
  auto bias = RandF(qkvw, rng, 0, 0.3f), qn = RandF(D, rng, 1, 0.2f), kn = RandF(D, rng, 1, 0.2f);
  auto inv = TestInvFreq(D);
  DevBuf<uint16_t> d_qkv(qkv), d_q(size_t(rows) * nh * D);
  const size_t arena = size_t(layers) * b.num_blocks * 2 * nkv * 16 * D;
  DevBuf<uint16_t> d_kv(arena);
  DevBuf<float> d_bias(bias), d_qn(qn), d_kn(kn), d_inv(inv);
  RopeArgs a{d_qkv.p, bias_on ? d_bias.p : nullptr, norm_on ? d_qn.p : nullptr,
             norm_on ? d_kn.p : nullptr, 1e-6f, d_inv.p, nh, nkv, D, rows, layer, d_q.p,
             KvGeom{d_kv.p, b.num_blocks, 16, nkv, D}};
  LaunchRopeKvWrite(a, b.meta, nullptr);
  CK(cudaDeviceSynchronize());
  std::vector<uint16_t> kv = d_kv.Get();
  std::vector<float> q = ToF(d_q.Get()), qref(q.size()), kvgot, kvref;
  std::vector<bool> written(arena, false);
  for (int r = 0; r < rows; ++r) {
    const int pos = b.row_pos[r], s = b.row_seq[r];
    for (int h = 0; h < nh + 2 * nkv; ++h) {
      std::vector<double> x(D);
      double ss = 0;
      for (int i = 0; i < D; ++i) {
        x[i] = Bf16ToF32(qkv[size_t(r) * qkvw + h * D + i]) + (bias_on ? bias[h * D + i] : 0.f);
        ss += x[i] * x[i];
      }
      const bool is_q = h < nh, is_k = !is_q && h < nh + nkv;
      if (norm_on && (is_q || is_k)) {
        const double invn = 1.0 / std::sqrt(ss / D + 1e-6);
        for (int i = 0; i < D; ++i) x[i] *= invn * (is_q ? qn[i] : kn[i]);
      }
      std::vector<double> y = x;
      if (is_q || is_k) {
        for (int i = 0; i < D / 2; ++i) {
          const double ang = double(float(pos) * inv[i]);
          y[i] = x[i] * std::cos(ang) - x[i + D / 2] * std::sin(ang);
          y[i + D / 2] = x[i + D / 2] * std::cos(ang) + x[i] * std::sin(ang);
        }
      }
      for (int i = 0; i < D; ++i) {
        if (is_q) {
          qref[(size_t(r) * nh + h) * D + i] = float(y[i]);
        } else {
          const size_t off = b.Off(layer, s, pos, is_k ? 0 : 1, is_k ? h - nh : h - nh - nkv, nkv, D) + i;
          written[off] = true;
          kvgot.push_back(Bf16ToF32(kv[off]));
          kvref.push_back(float(y[i]));
        }
      }
    }
  }
  EXPECT_LT(RelErr(q, qref), 5e-3);
  EXPECT_LT(RelErr(kvgot, kvref), 5e-3);
  size_t stray = 0;
  for (size_t e = 0; e < arena; ++e) stray += !written[e] && kv[e] != 0xffff;
  EXPECT_EQ(stray, 0u) << "KV writes outside the rows' slots";
}

TEST(CudaKernels, RopeKvWriteMatchesCpu) {
  PD_REQUIRE_GPU();
  for (int D : {16, 64, 128, 256}) {
    SCOPED_TRACE(D);
    RopeCase(D, false, false);
    RopeCase(D, true, false);
    RopeCase(D, false, true);
  }
}

TEST(CudaKernels, SampleMatchesHostSampler) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(13);
  for (int vocab : {1000, 50000}) {
    const int rows = 48;
    auto logits = RandF(size_t(rows) * vocab, rng, 0, 3.f);
    std::vector<SampleParamsDev> ps(rows);
    std::vector<SamplingParams> hp(rows);
    for (int r = 0; r < rows; ++r) {
      SamplingParams p;
      switch (r % 8) {
        case 0: p.temperature = 0.f; break;
        case 1: p.temperature = 0.7f; break;
        case 2: p.temperature = 1.0f; p.top_k = 50; break;
        case 3: p.temperature = 0.9f; p.top_p = 0.9f; break;
        case 4: p.temperature = 1.3f; p.top_k = 20; p.top_p = 0.5f; break;
        case 5: p.temperature = 0.5f; p.top_k = 1; break;
        case 6: p.temperature = 2.0f; p.top_p = 0.3f; break;
        default: p.temperature = 1.0f; p.top_k = vocab + 5; p.top_p = 0.999f; break;
      }
      p.seed = 1000 + r;
      hp[r] = p;
      ps[r] = SampleParamsDev{p.temperature, p.top_k, p.top_p, r == 7 ? 0 : 1, p.seed, uint64_t(r * 3)};
    }
    DevBuf<float> d_l(logits);
    DevBuf<SampleParamsDev> d_p(ps);
    DevBuf<int32_t> d_t(rows);
    LaunchSample(d_l.p, rows, vocab, d_p.p, d_t.p, nullptr);
    CK(cudaDeviceSynchronize());
    auto got = d_t.Get();
    for (int r = 0; r < rows; ++r) {
      const int want = r == 7 ? -1 : SampleFromLogits(logits.data() + size_t(r) * vocab, vocab, hp[r], uint64_t(r * 3));
      EXPECT_EQ(got[r], want) << "vocab " << vocab << " row " << r;
    }
  }
}


TEST(CudaKernels, DecodeAttentionMatchesCpu) {
  PD_REQUIRE_GPU();
  for (int D : {16, 32, 64, 128, 256}) {
    for (int splits : {1, 3, 8}) {
      AttnCase(D, 8, 2, {0, 36, 299}, {1, 1, 1}, 0, false, splits);   // decode rows, GQA 4
      AttnCase(D, 12, 1, {5, 0}, {9, 20}, 0, false, splits);          // prefill rows, group 12
    }
    AttnCase(D, 4, 4, {40, 3}, {1, 30}, 8, false, 2);                 // sliding window
  }
}

// D = 128 runs the tiled kernel by default; the CUDA-core kernel must keep matching too. Long
// contexts (several 64-key tiles per split), many splits (some empty), GQA groups of 4 and 12,
// MQA, sliding windows, prefill rows.
TEST(CudaKernels, TiledDecodeAttentionMatchesCpu) {
  PD_REQUIRE_GPU();
  ASSERT_TRUE(TiledDecodeAttentionUsed(128));
  ASSERT_FALSE(TiledDecodeAttentionUsed(64));
  ASSERT_EQ(NumTiledDecodeVariants(), 6);
  for (int variant : {0, 1, 2, -1}) {  // -1: the CUDA-core kernel
    const bool tiled = variant >= 0;
    SetTiledDecodeAttention(tiled);
    if (tiled) SetTiledDecodeVariant(variant);
    EXPECT_EQ(TiledDecodeAttentionUsed(128), tiled);
    SCOPED_TRACE("variant " + std::to_string(variant));
    for (int splits : {1, 2, 7, 49}) {
      AttnCase(128, 32, 8, {0, 1000, 63, 64, 129}, {1, 1, 1, 1, 1}, 0, false, splits);
    }
    AttnCase(128, 12, 1, {5, 300}, {9, 1}, 0, false, 3);      // group 12: two head chunks
    AttnCase(128, 8, 8, {700, 2}, {1, 1}, 100, false, 4);      // MHA, sliding window
    AttnCase(128, 8, 1, {2000}, {1}, 0, false, 1);             // MQA, one split of 32 tiles
  }
  SetTiledDecodeAttention(true);
  SetTiledDecodeVariant(DefaultTiledDecodeVariant());
  // Split choice: one wave for small batches, 1..4 splits once the batch fills the GPU.
  const int s1 = ChooseDecodeSplits(1, 32, 8, 128, 131072, 132);
  EXPECT_GE(s1, 8);
  EXPECT_LE(s1, 64);
  EXPECT_EQ(ChooseDecodeSplits(1, 32, 8, 128, 200, 132), 4);  // >= 64 keys per split (mma)
  SetTiledDecodeVariant(0);
  EXPECT_EQ(ChooseDecodeSplits(1, 32, 8, 128, 200, 132), 1);  // >= 256 keys per split
  SetTiledDecodeVariant(DefaultTiledDecodeVariant());
  const int s64 = ChooseDecodeSplits(64, 32, 8, 128, 4096, 132);
  EXPECT_GE(s64, 1);
  EXPECT_LE(s64, 4);
}

// Add + RMSNorm in both launch shapes (<= 8 rows: 1024 threads per row, else 256) with hidden
// sizes below and above what the registers hold (4 values per thread), with and without delta.
TEST(CudaKernels, AddRmsNormShapesMatchCpu) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(12);
  for (int rows : {1, 3, 12}) {
    for (int H : {700, 5000, 8200}) {
      for (bool with_delta : {true, false}) {
        auto res = RandF(size_t(rows) * H, rng), bias = RandF(H, rng, 0, 0.1f);
        auto w = RandF(H, rng, 1, 0.2f);
        auto delta = RandBf(size_t(rows) * H, rng);
        DevBuf<float> d_res(res), d_bias(bias), d_w(w);
        DevBuf<uint16_t> d_delta(delta), d_out(size_t(rows) * H);
        LaunchAddRmsNorm(d_res.p, with_delta ? d_delta.p : nullptr, with_delta ? d_bias.p : nullptr,
                         d_w.p, 1e-5f, rows, H, d_out.p, nullptr, nullptr);
        CK(cudaDeviceSynchronize());
        CK(cudaGetLastError());
        std::vector<float> ref_res(res.size()), ref_out(res.size());
        for (int r = 0; r < rows; ++r) {
          double ss = 0;
          for (int i = 0; i < H; ++i) {
            const size_t e = size_t(r) * H + i;
            ref_res[e] = with_delta ? res[e] + Bf16ToF32(delta[e]) + bias[i] : res[e];
            ss += double(ref_res[e]) * ref_res[e];
          }
          const double inv = 1.0 / std::sqrt(ss / H + 1e-5);
          for (int i = 0; i < H; ++i) {
            ref_out[size_t(r) * H + i] = float(ref_res[size_t(r) * H + i] * inv * w[i]);
          }
        }
        EXPECT_LT(RelErr(d_res.Get(), ref_res), 1e-6) << rows << " rows, H " << H;
        EXPECT_LT(RelErr(ToF(d_out.Get()), ref_out), 5e-3) << rows << " rows, H " << H;
      }
    }
  }
}

// The tensor-core decode kernels (variants 3..5; 3 is the default): partial tiles and warp slices
// without a valid key, many splits (some empty), GQA groups of 4, 8 and 12 (two head chunks),
// MHA with a sliding window, prefill rows, sequences of different lengths in one batch.
TEST(CudaKernels, MmaDecodeAttentionMatchesCpu) {
  PD_REQUIRE_GPU();
  EXPECT_EQ(TiledDecodeVariant(), DefaultTiledDecodeVariant());
  for (int variant = DefaultTiledDecodeVariant(); variant < NumTiledDecodeVariants(); ++variant) {
    SetTiledDecodeVariant(variant);
    SCOPED_TRACE(TiledDecodeVariantName(variant));
    for (int splits : {1, 3, 16}) {
      AttnCase(128, 32, 8, {4095, 0, 17, 127, 128, 1500}, {1, 1, 1, 1, 1, 1}, 0, false, splits);
    }
    AttnCase(128, 64, 8, {3000, 40}, {1, 1}, 0, false, 5);   // group 8: all eight MMA rows
    AttnCase(128, 12, 1, {700, 33}, {1, 40}, 0, false, 2);   // group 12, prefill rows
    AttnCase(128, 4, 4, {900, 10}, {1, 1}, 300, false, 3);   // MHA, sliding window
  }
  SetTiledDecodeVariant(DefaultTiledDecodeVariant());
}

// The tensor-core decode kernels with the split merge in the last CTA (AttnArgs::split_counters)
// == the same kernel followed by CombineKernel, bitwise; launched twice in a row (the counters must
// be back at zero, as a replayed graph needs), with more splits than a short context fills.
void FusedMergeCase(int nh, int nkv, std::vector<int> cached, std::vector<int> nnew, int window,
                    int splits) {
  std::mt19937 rng(nh * 31 + splits + window);
  TestBatch b;
  b.Build(std::move(cached), std::move(nnew), 16, rng);
  const int D = 128, layer = 1, layers = 2, rows = b.rows();
  const size_t arena = size_t(layers) * b.num_blocks * 2 * nkv * 16 * D;
  auto kv = RandBf(arena, rng), q = RandBf(size_t(rows) * nh * D, rng);
  DevBuf<uint16_t> d_kv(kv), d_q(q), d_two(size_t(rows) * nh * D), d_one(size_t(rows) * nh * D);
  DevBuf<float> ws(AttnWorkspaceFloats(rows, nh, D, splits));
  DevBuf<int> cnt(std::vector<int>(DecodeCounterInts(rows, nh, nkv), 0));
  AttnArgs a{d_q.p, d_two.p, nh, nkv, D, rows, int(b.seq_ctx.size()), layer, window,
             float(1.0 / std::sqrt(double(D))), KvGeom{d_kv.p, b.num_blocks, 16, nkv, D}};
  LaunchDecodeAttention(a, b.meta, splits, ws.p, nullptr);
  CK(cudaDeviceSynchronize());
  const auto two = d_two.Get();
  a.out = d_one.p;
  a.split_counters = cnt.p;
  for (int rep = 0; rep < 2; ++rep) {
    CK(cudaMemset(d_one.p, 0xff, size_t(rows) * nh * D * 2));
    LaunchDecodeAttention(a, b.meta, splits, ws.p, nullptr);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    EXPECT_EQ(d_one.Get(), two) << "rep " << rep << " nh " << nh << " splits " << splits;
    for (int c : cnt.Get()) ASSERT_EQ(c, 0) << "a split counter was left non-zero";
  }
  EXPECT_LT(RelErr(ToF(two), AttnRef(b, q, kv, nh, nkv, D, layer, window)), 8e-3);
}

TEST(CudaKernels, MmaDecodeFusedMergeMatchesTwoKernels) {
  PD_REQUIRE_GPU();
  for (int variant = DefaultTiledDecodeVariant(); variant < NumTiledDecodeVariants(); ++variant) {
    SetTiledDecodeVariant(variant);
    SCOPED_TRACE(TiledDecodeVariantName(variant));
    for (int splits : {1, 3, 16, 49, 64}) {
      FusedMergeCase(32, 8, {4095, 0, 17, 127, 128, 1500, 63}, {1, 1, 1, 1, 1, 1, 1}, 0, splits);
    }
    FusedMergeCase(64, 8, {3000, 40}, {1, 1}, 0, 5);   // group 8
    FusedMergeCase(12, 1, {700, 33}, {1, 40}, 0, 7);   // group 12 (two head chunks), prefill rows
    FusedMergeCase(4, 4, {900, 10}, {1, 1}, 300, 9);   // MHA, sliding window
  }
  SetTiledDecodeVariant(DefaultTiledDecodeVariant());
}

// AttnArgs::row_list (the decode rows of a mixed batch): the listed rows come out bitwise equal
// to a launch over every row with the same splits, the other rows are not written; with the
// fused merge and with CombineKernel.
TEST(CudaKernels, MmaDecodeRowListMatchesAllRows) {
  PD_REQUIRE_GPU();
  ASSERT_TRUE(DecodeRowListSupported(128));
  ASSERT_FALSE(DecodeRowListSupported(64));
  std::mt19937 rng(77);
  TestBatch b;
  b.Build({900, 0, 33, 2000, 5}, {1, 1, 1, 1, 1}, 16, rng);
  const int D = 128, nh = 32, nkv = 8, layer = 1, layers = 2, rows = b.rows(), splits = 12;
  auto kv = RandBf(size_t(layers) * b.num_blocks * 2 * nkv * 16 * D, rng);
  auto q = RandBf(size_t(rows) * nh * D, rng);
  DevBuf<uint16_t> d_kv(kv), d_q(q), d_all(size_t(rows) * nh * D);
  DevBuf<float> ws(AttnWorkspaceFloats(rows, nh, D, splits));
  DevBuf<int> cnt(std::vector<int>(DecodeCounterInts(rows, nh, nkv), 0));
  AttnArgs a{d_q.p, d_all.p, nh, nkv, D, rows, int(b.seq_ctx.size()), layer, 0,
             float(1.0 / std::sqrt(double(D))), KvGeom{d_kv.p, b.num_blocks, 16, nkv, D}};
  LaunchDecodeAttention(a, b.meta, splits, ws.p, nullptr);
  CK(cudaDeviceSynchronize());
  const auto all = d_all.Get();
  const std::vector<int32_t> list = {3, 0, 4};
  DevBuf<int32_t> d_list(list);
  for (bool fused : {false, true}) {
    DevBuf<uint16_t> d_sub(size_t(rows) * nh * D);  // poisoned (0xffff)
    AttnArgs s = a;
    s.out = d_sub.p;
    s.rows = int(list.size());
    s.row_list = d_list.p;
    s.split_counters = fused ? cnt.p : nullptr;
    LaunchDecodeAttention(s, b.meta, splits, ws.p, nullptr);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    const auto sub = d_sub.Get();
    for (int r = 0; r < rows; ++r) {
      const bool listed = std::find(list.begin(), list.end(), r) != list.end();
      for (size_t i = size_t(r) * nh * D; i < size_t(r + 1) * nh * D; ++i) {
        ASSERT_EQ(sub[i], listed ? all[i] : uint16_t(0xffff)) << "row " << r << " fused " << fused;
      }
    }
  }
  for (int c : cnt.Get()) ASSERT_EQ(c, 0);
}

// The gate/up GEMV with SwiGLU in its epilogue == LaunchGemv of the fused weight followed by
// LaunchSwiglu (bitwise: the same fp32 sums and roundings), and == the double-precision
// reference within bf16 rounding; 1-4 rows, with and without bias; inter % 4 != 0 is refused.
TEST(CudaKernels, GemvSwigluMatchesCpu) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(23);
  const int in = 1032, inter = 236;
  for (int unroll : {8, 16}) {
    SetGemvUnroll(unroll);
    for (int rows : {1, 2, 3, 4}) {
      for (bool with_bias : {false, true}) {
        auto x = RandBf(size_t(rows) * in, rng), w = RandBf(size_t(2 * inter) * in, rng, 0.05f);
        auto bias = RandF(2 * inter, rng, 0.f, 0.3f);
        DevBuf<uint16_t> d_x(x), d_w(w), d_gu(size_t(rows) * 2 * inter);
        DevBuf<uint16_t> d_ref(size_t(rows) * inter), d_act(size_t(rows) * inter);
        DevBuf<float> d_b(bias);
        const float* b = with_bias ? d_b.p : nullptr;
        ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, 2 * inter, d_gu.p, false, nullptr));
        LaunchSwiglu(d_gu.p, b, rows, inter, d_ref.p, nullptr);
        ASSERT_TRUE(LaunchGemvSwiglu(d_x.p, rows, in, d_w.p, inter, b, d_act.p, nullptr));
        CK(cudaDeviceSynchronize());
        CK(cudaGetLastError());
        const auto got = d_act.Get();
        EXPECT_EQ(got, d_ref.Get()) << rows << " rows, bias " << with_bias;
        std::vector<float> ref(size_t(rows) * inter);
        for (int r = 0; r < rows; ++r) {
          for (int i = 0; i < inter; ++i) {
            double g = 0, u = 0;
            for (int k = 0; k < in; ++k) {
              const double xv = Bf16ToF32(x[size_t(r) * in + k]);
              g += xv * Bf16ToF32(w[size_t(i) * in + k]);
              u += xv * Bf16ToF32(w[size_t(inter + i) * in + k]);
            }
            if (with_bias) {
              g += bias[i];
              u += bias[inter + i];
            }
            ref[size_t(r) * inter + i] = float(g / (1 + std::exp(-g)) * u);
          }
        }
        EXPECT_LT(RelErr(ToF(got), ref), 1e-2) << rows << " rows, bias " << with_bias;
      }
    }
  }
  SetGemvUnroll(8);
  DevBuf<uint16_t> d_x(1032), d_w(2 * 6 * 1032), d_y(6);
  EXPECT_FALSE(LaunchGemvSwiglu(d_x.p, 1, 1032, d_w.p, 6, nullptr, d_y.p, nullptr));
}

// Programmatic dependent launch: a chain of dependent kernels (norm -> GEMV -> SwiGLU -> GEMV ->
// add + norm, 16 times) on one stream, eagerly and as a replayed graph, gives bitwise the result
// of the same chain launched without it (a kernel reading its input before the producer finished
// would differ).
TEST(CudaKernels, ProgrammaticLaunchChainMatchesSerial) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(91);
  const int H = 2048, I = 4096;
  auto wgu = RandBf(size_t(2 * I) * H, rng, 0.03f), wd = RandBf(size_t(H) * I, rng, 0.03f);
  auto res0 = RandF(H, rng), nw = RandF(H, rng, 1.f, 0.1f);
  DevBuf<uint16_t> d_wgu(wgu), d_wd(wd), d_h(H), d_gu(2 * I), d_act(I), d_proj(H);
  DevBuf<float> d_nw(nw), d_res(H);
  cudaStream_t st = nullptr;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  auto chain = [&] {
    LaunchAddRmsNorm(d_res.p, nullptr, nullptr, d_nw.p, 1e-5f, 1, H, d_h.p, nullptr, st);
    for (int l = 0; l < 16; ++l) {
      ASSERT_TRUE(LaunchGemv(d_h.p, 1, H, d_wgu.p, 2 * I, d_gu.p, false, st));
      LaunchSwiglu(d_gu.p, nullptr, 1, I, d_act.p, st);
      ASSERT_TRUE(LaunchGemv(d_act.p, 1, I, d_wd.p, H, d_proj.p, false, st));
      LaunchAddRmsNorm(d_res.p, d_proj.p, nullptr, d_nw.p, 1e-5f, 1, H, d_h.p, nullptr, st);
    }
  };
  std::vector<float> out[3];
  for (int mode : {0, 1, 2}) {  // serial, PDL eager, PDL in a graph (second replay)
    SetProgrammaticLaunch(mode > 0);
    if (mode < 2) {
      d_res.Put(res0);
      chain();
    } else {
      cudaGraph_t g = nullptr;
      cudaGraphExec_t ge = nullptr;
      CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
      chain();
      CK(cudaStreamEndCapture(st, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      for (int rep = 0; rep < 2; ++rep) {
        d_res.Put(res0);
        CK(cudaGraphLaunch(ge, st));
        CK(cudaStreamSynchronize(st));
      }
      cudaGraphExecDestroy(ge);
      cudaGraphDestroy(g);
    }
    CK(cudaStreamSynchronize(st));
    CK(cudaGetLastError());
    out[mode] = d_res.Get();
  }
  SetProgrammaticLaunch(true);
  cudaStreamDestroy(st);
  for (float v : out[0]) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(out[0], out[2]);
}

// The decode GEMV against a double-precision reference: 1-4 rows (3 = a 2-row and a 1-row
// launch), in not a multiple of the 2048-element unrolled step, bf16 and fp32 outputs; shapes it
// does not cover are refused without touching the output.
// The single-row GEMV with 16 loads in flight per lane (PD_CUDA_GEMV_UNROLL=16): row lengths
// below, at and above one 4096-element step, bf16 and fp32 outputs.
TEST(CudaKernels, GemvUnroll16MatchesCpu) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(19);
  SetGemvUnroll(16);
  for (auto [in, out] : std::vector<std::pair<int, int>>{{4096, 70}, {8200, 37}, {520, 300}}) {
    auto x = RandBf(in, rng), w = RandBf(size_t(out) * in, rng, 0.05f);
    DevBuf<uint16_t> d_x(x), d_w(w), d_y(out);
    DevBuf<float> d_yf(out);
    ASSERT_TRUE(LaunchGemv(d_x.p, 1, in, d_w.p, out, d_y.p, false, nullptr));
    ASSERT_TRUE(LaunchGemv(d_x.p, 1, in, d_w.p, out, d_yf.p, true, nullptr));
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    std::vector<float> ref(out);
    for (int o = 0; o < out; ++o) {
      double acc = 0;
      for (int i = 0; i < in; ++i) acc += double(Bf16ToF32(x[i])) * Bf16ToF32(w[size_t(o) * in + i]);
      ref[o] = float(acc);
    }
    EXPECT_LT(RelErr(d_yf.Get(), ref), 1e-5) << "in " << in << ", out " << out;
    EXPECT_LT(RelErr(ToF(d_y.Get()), ref), 5e-3) << "in " << in << ", out " << out;
  }
  SetGemvUnroll(8);
}

// The streaming GEMV (PD_CUDA_GEMV_STREAM=1) and the warp-per-row GEMV (default) give bitwise the same sums (same
// per-lane order); shapes with several rows per warp of the persistent grid, partial chunks,
// 1/2/4 rows, bf16 and fp32 outputs, and both against the double-precision reference.
TEST(CudaKernels, GemvStreamMatchesWarpGemv) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(29);
  for (int rows : {1, 2, 4}) {
    for (auto [in, out] : std::vector<std::pair<int, int>>{{4104, 5000}, {14336, 300}, {24, 9}}) {
      auto x = RandBf(size_t(rows) * in, rng), w = RandBf(size_t(out) * in, rng, 0.05f);
      DevBuf<uint16_t> d_x(x), d_w(w), d_y0(size_t(rows) * out), d_y1(size_t(rows) * out);
      DevBuf<float> d_f0(size_t(rows) * out), d_f1(size_t(rows) * out);
      SetGemvStream(false);
      ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, out, d_y0.p, false, nullptr));
      ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, out, d_f0.p, true, nullptr));
      SetGemvStream(true);
      ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, out, d_y1.p, false, nullptr));
      ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, out, d_f1.p, true, nullptr));
      CK(cudaDeviceSynchronize());
      CK(cudaGetLastError());
      EXPECT_EQ(d_y0.Get(), d_y1.Get()) << rows << " rows, in " << in << ", out " << out;
      const auto f1 = d_f1.Get();
      EXPECT_EQ(d_f0.Get(), f1) << rows << " rows, in " << in << ", out " << out;
      std::vector<float> ref(size_t(rows) * out);
      for (int r = 0; r < rows; ++r) {
        for (int o = 0; o < out; o += 7) {  // every 7th output: the double loop is slow
          double acc = 0;
          for (int i = 0; i < in; ++i) {
            acc += double(Bf16ToF32(x[size_t(r) * in + i])) * Bf16ToF32(w[size_t(o) * in + i]);
          }
          ref[size_t(r) * out + o] = float(acc);
        }
      }
      std::vector<float> got(ref.size(), 0.f);
      for (size_t e = 0; e < ref.size(); ++e) got[e] = (e % out) % 7 == 0 ? f1[e] : 0.f;
      EXPECT_LT(RelErr(got, ref), 1e-5) << rows << " rows, in " << in << ", out " << out;
    }
  }
  SetGemvStream(false);  // back to the default for the tests after this one
}

TEST(CudaKernels, GemvMatchesCpu) {
  PD_REQUIRE_GPU();
  std::mt19937 rng(17);
  for (int rows : {1, 2, 3, 4}) {
    for (auto [in, out] : std::vector<std::pair<int, int>>{{4104, 37}, {520, 300}, {8, 9}}) {
      auto x = RandBf(size_t(rows) * in, rng), w = RandBf(size_t(out) * in, rng, 0.05f);
      DevBuf<uint16_t> d_x(x), d_w(w), d_y(size_t(rows) * out);
      DevBuf<float> d_yf(size_t(rows) * out);
      ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, out, d_y.p, false, nullptr));
      ASSERT_TRUE(LaunchGemv(d_x.p, rows, in, d_w.p, out, d_yf.p, true, nullptr));
      CK(cudaDeviceSynchronize());
      std::vector<float> ref(size_t(rows) * out);
      for (int r = 0; r < rows; ++r) {
        for (int o = 0; o < out; ++o) {
          double acc = 0;
          for (int i = 0; i < in; ++i) {
            acc += double(Bf16ToF32(x[size_t(r) * in + i])) * Bf16ToF32(w[size_t(o) * in + i]);
          }
          ref[size_t(r) * out + o] = float(acc);
        }
      }
      EXPECT_LT(RelErr(d_yf.Get(), ref), 1e-5) << rows << " rows, in " << in << ", out " << out;
      EXPECT_LT(RelErr(ToF(d_y.Get()), ref), 5e-3) << rows << " rows, in " << in << ", out " << out;
    }
  }
  DevBuf<uint16_t> d_x(8 * 1000), d_w(1000 * 16), d_y(8 * 16);
  EXPECT_FALSE(LaunchGemv(d_x.p, 5, 1000 - 8, d_w.p, 16, d_y.p, false, nullptr));  // rows > 4
  EXPECT_FALSE(LaunchGemv(d_x.p, 1, 1000 - 4, d_w.p, 16, d_y.p, false, nullptr));  // in % 8
  EXPECT_FALSE(LaunchGemv(d_x.p + 1, 1, 992, d_w.p, 16, d_y.p, false, nullptr));  // unaligned
}

}  // namespace
}  // namespace pd::cuda
