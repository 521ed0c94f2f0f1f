// The tensor-core prefill attention kernels against the CPU twin, and the runner's prompt paths
// that use them (chunked == one-shot, mixed prompt + decode batches). Same binary as
// cuda_kernels_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "attn_test_util.h"
#include "cuda_test_util.h"
#include "model/cuda/cuda_kernels.h"
#include "model/cuda/cuda_runner.h"

namespace pd::cuda {
namespace {

using attntest::AttnCase;
using attntest::AttnRef;
using attntest::TestBatch;
using attntest::ToF;
using cudatest::DevBuf;
using cudatest::RandBf;
using cudatest::RelErr;

TEST(CudaKernels, PrefillAttentionMatchesCpu) {
  PD_REQUIRE_GPU();
  ASSERT_TRUE(PrefillAttentionSupported(128));
  AttnCase(128, 8, 2, {0}, {64}, 0, true, 1);
  AttnCase(128, 8, 2, {0, 70, 5, 0}, {130, 64, 1, 200}, 0, true, 1);  // chunks over a cached prefix
  AttnCase(128, 4, 1, {33, 0}, {100, 77}, 40, true, 1);               // sliding window
  AttnCase(128, 32, 8, {1000}, {129}, 0, true, 1);
  // head dim 64 (Llama-3.2-1B/3B-class models): the mma.sync kernel's D = 64 instance
  // (opt-in in the runner until this test has passed on a GPU)
  SetPrefillHeadDim64(true);
  ASSERT_TRUE(PrefillAttentionSupported(64));
  AttnCase(64, 8, 2, {0}, {64}, 0, true, 1);
  AttnCase(64, 8, 2, {0, 70, 5, 0}, {130, 64, 1, 200}, 0, true, 1);
  AttnCase(64, 4, 1, {33, 0}, {100, 77}, 40, true, 1);
  AttnCase(64, 32, 8, {1000}, {129}, 0, true, 1);
  EXPECT_FALSE(PrefillAttentionSupported(32));
  SetPrefillHeadDim64(false);
}

// The wgmma prefill kernel (the default on sm_90) needs a Hopper GPU; elsewhere the runner falls
// back to the mma.sync kernel, which PrefillAttentionMmaMatchesCpu covers.
#define PD_REQUIRE_WGMMA_PREFILL()                                                          \
  if (cudaDeviceProp p{}; cudaGetDeviceProperties(&p, 0) != cudaSuccess || p.major != 9)    \
  GTEST_SKIP() << "wgmma prefill needs an sm_90 GPU"

// One prefill-attention launch with KV block size bs against the CPU twin.
void PrefillCase(int nh, int nkv, std::vector<int> cached, std::vector<int> nnew, int window,
                 int bs, uint32_t seed) {
  std::mt19937 rng(seed);
  TestBatch b;
  b.Build(std::move(cached), std::move(nnew), bs, rng);
  const int D = 128, layer = 1, layers = 2, rows = b.rows();
  const size_t arena = size_t(layers) * b.num_blocks * 2 * nkv * bs * D;
  auto kv = RandBf(arena, rng), q = RandBf(size_t(rows) * nh * D, rng);
  DevBuf<uint16_t> d_kv(kv), d_q(q), d_out(size_t(rows) * nh * D);
  AttnArgs a{d_q.p, d_out.p, nh, nkv, D, rows, int(b.seq_ctx.size()), layer, window,
             float(1.0 / std::sqrt(double(D))), KvGeom{d_kv.p, b.num_blocks, bs, nkv, D}};
  LaunchPrefillAttention(a, b.meta, b.d_tiles->p, int(b.tiles.size() / 2), nullptr);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  auto ref = AttnRef(b, q, kv, nh, nkv, D, layer, window);
  EXPECT_LT(RelErr(ToF(d_out.Get()), ref), 8e-3)
      << "nh=" << nh << " nkv=" << nkv << " window=" << window << " bs=" << bs;
}

// Each prefill kernel (0, 2 = wgmma, 1 = mma.sync): chunks over cached prefixes, several
// sequences, lengths that are not multiples of the 128-row / 128-key tiles, several K/V tiles and
// query tiles per sequence, block sizes 16/32/64, GQA/MHA/MQA, sliding windows. Block size 24 is
// not a power of two: the wgmma kernel is not used for it and the mma.sync kernel must match.
void PrefillVariantCases(int variant) {
  SetPrefillAttentionVariant(variant);
  EXPECT_EQ(PrefillAttentionVariantUsed(16), variant);
  EXPECT_EQ(PrefillAttentionVariantUsed(24), 1);
  // PD_PREFILL_TEST_QUICK (for the sanitizer runs): block size 16 only.
  const bool quick = std::getenv("PD_PREFILL_TEST_QUICK") != nullptr;
  for (int bs : {16, 32, 64}) {
    if (quick && bs != 16) continue;
    const uint32_t seed = uint32_t(variant * 100 + bs);
    PrefillCase(8, 2, {0}, {64}, 0, bs, seed);
    PrefillCase(8, 2, {0, 70, 5, 0}, {130, 64, 1, 200}, 0, bs, seed + 1);
    PrefillCase(8, 8, {300, 0}, {257, 383}, 0, bs, seed + 2);
    PrefillCase(4, 1, {33, 0, 500}, {100, 77, 260}, 40, bs, seed + 3);
    PrefillCase(32, 8, {1000}, {129}, 0, bs, seed + 4);
  }
  PrefillCase(8, 2, {50, 0}, {90, 300}, 0, 24, uint32_t(variant + 7));
  SetPrefillAttentionVariant(-1);
}

TEST(CudaKernels, PrefillAttentionWgmmaMatchesCpu) {
  PD_REQUIRE_GPU();
  PD_REQUIRE_WGMMA_PREFILL();
  PrefillVariantCases(0);
  PrefillVariantCases(2);  // loads issued before the MMAs
}

TEST(CudaKernels, PrefillAttentionMmaMatchesCpu) {
  PD_REQUIRE_GPU();
  PrefillVariantCases(1);
}

// A 2-layer random model with head dim 128 (the golden models have head_dim <= 64) and a CUDA
// runner for it: the runner-level tests of the tensor-core prompt paths.
ModelConfig SmallHeadDim128() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 1000;
  c.hidden_size = 512;
  c.intermediate_size = 1024;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.max_position_embeddings = 4096;
  return c;
}

RunnerOptions SmallRunnerOptions(int max_seqs) {
  RunnerOptions o;
  o.backend = "cuda";
  o.num_kv_blocks = 200;
  o.max_batch_tokens = 1024;
  o.max_seqs = max_seqs;
  return o;
}

// Last-position logits of `prompt` fed in chunks (each chunk attends to the cached prefix).
std::vector<float> ChunkedLogits(ModelRunner* r, const std::vector<int32_t>& prompt, int chunk) {
  const int bs = r->kv_arena().layout.block_size, n = int(prompt.size());
  std::vector<int32_t> blocks;
  for (int i = 0; i < (n + bs - 1) / bs; ++i) blocks.push_back(3 * i + 1);  // scattered blocks
  ForwardResult res;
  for (int o = 0; o < n; o += chunk) {
    const int k = std::min(chunk, n - o), nb = (o + k + bs - 1) / bs;
    ForwardBatch b;
    SeqStep st;
    st.num_new_tokens = k;
    st.num_cached = o;
    st.sample = true;
    b.seqs = {st};
    b.token_ids.assign(prompt.begin() + o, prompt.begin() + o + k);
    b.block_indptr = {0, nb};
    b.block_ids.assign(blocks.begin(), blocks.begin() + nb);
    b.return_logits = true;
    const Status s = r->Forward(b, &res);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return res.logits;
}

// The whole forward with head_dim 128 (the golden models have head_dim <= 64, so only this test
// runs the tensor-core prefill kernels inside the runner): a 700-token prompt one-shot == in
// chunks of 200 and of 128 over the cached prefix, and the wgmma kernel == the mma.sync kernel.
TEST(CudaKernels, PrefillRunnerHeadDim128ChunkedMatchesOneShot) {
  PD_REQUIRE_GPU();
  PD_REQUIRE_WGMMA_PREFILL();
  const ModelConfig c = SmallHeadDim128();
  const RunnerOptions o = SmallRunnerOptions(4);
  auto r = CreateCudaRunnerRandom(c, o, 5);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<int32_t> prompt(700);
  std::mt19937 rng(3);
  for (auto& t : prompt) t = int32_t(rng() % 1000);
  SetPrefillAttentionVariant(0);
  const auto one = ChunkedLogits(r.value().get(), prompt, 700);
  const auto c200 = ChunkedLogits(r.value().get(), prompt, 200);
  const auto c128 = ChunkedLogits(r.value().get(), prompt, 128);
  SetPrefillAttentionVariant(1);
  const auto mma = ChunkedLogits(r.value().get(), prompt, 700);
  SetPrefillAttentionVariant(-1);
  ASSERT_EQ(one.size(), size_t(1000));
  EXPECT_LT(RelErr(c200, one), 1e-2);
  EXPECT_LT(RelErr(c128, one), 1e-2);
  EXPECT_LT(RelErr(mma, one), 1e-2);
  std::printf("[prefill-runner D128] chunked-200 %.2e chunked-128 %.2e mma-vs-wgmma %.2e\n",
              RelErr(c200, one), RelErr(c128, one), RelErr(mma, one));
}

// A mixed batch on the head-dim-128 path (a prompt chunk + decode rows, as colocated chunked
// prefill runs): the decode rows go to the decode kernel, the chunk to the prefill kernel
// (PD_CUDA_MIXED, default on), and the logits of every sequence match the same batch with every
// sequence in 128-row prefill tiles (PD_CUDA_MIXED=0) and the decode rows run alone.
ForwardBatch MixedBatch(const std::vector<std::pair<int, int>>& seqs, std::mt19937& rng,
                        const std::vector<std::vector<int32_t>>& tables) {
  ForwardBatch b;
  b.block_indptr = {0};
  for (size_t i = 0; i < seqs.size(); ++i) {
    SeqStep st;
    st.num_cached = seqs[i].first;
    st.num_new_tokens = seqs[i].second;
    st.sample = true;
    b.seqs.push_back(st);
    for (int t = 0; t < st.num_new_tokens; ++t) b.token_ids.push_back(int32_t(rng() % 1000));
    const int nb = (st.num_cached + st.num_new_tokens + 15) / 16;
    b.block_ids.insert(b.block_ids.end(), tables[i].begin(), tables[i].begin() + nb);
    b.block_indptr.push_back(int32_t(b.block_ids.size()));
  }
  b.return_logits = true;
  return b;
}

TEST(CudaKernels, MixedBatchDecodeRowsMatchPrefillTiles) {
  PD_REQUIRE_GPU();
  const ModelConfig c = SmallHeadDim128();
  const RunnerOptions o = SmallRunnerOptions(8);
  auto fast = CreateCudaRunnerRandom(c, o, 5);
  setenv("PD_CUDA_MIXED", "0", 1);
  auto tiles = CreateCudaRunnerRandom(c, o, 5);
  unsetenv("PD_CUDA_MIXED");
  ASSERT_TRUE(fast.ok() && tiles.ok());
  // blocks: seq 0 (decode, 300 cached) 1..19, seq 1 (the chunk) 40..59, seq 2 (decode, 37) 80..
  std::vector<std::vector<int32_t>> tables(3);
  for (int i = 0; i < 20; ++i) {
    tables[0].push_back(1 + i);
    tables[1].push_back(40 + i);
    tables[2].push_back(80 + i);
  }
  std::vector<std::vector<float>> logits;
  for (ModelRunner* r : {fast.value().get(), tiles.value().get()}) {
    std::mt19937 rng(9);  // the same tokens for both runners
    ForwardResult res;
    // fill the decode sequences' caches, then one mixed step: decode, a 200-token chunk after
    // 100 cached tokens, decode
    ASSERT_TRUE(r->Forward(MixedBatch({{0, 300}, {0, 100}, {0, 37}}, rng, tables), &res).ok());
    ASSERT_TRUE(r->Forward(MixedBatch({{300, 1}, {100, 200}, {37, 1}}, rng, tables), &res).ok());
    logits.push_back(res.logits);
  }
  ASSERT_EQ(logits[0].size(), size_t(3 * 1000));
  EXPECT_LT(RelErr(logits[0], logits[1]), 1e-2);
  // the decode rows alone (a decode-only step: GEMV path, decode kernel) agree as well
  std::mt19937 rng(9);
  ForwardResult res;
  MixedBatch({{0, 300}, {0, 100}, {0, 37}}, rng, tables);
  const ForwardBatch mixed = MixedBatch({{300, 1}, {100, 200}, {37, 1}}, rng, tables);
  ForwardBatch dec = mixed;
  dec.seqs = {mixed.seqs[0], mixed.seqs[2]};
  dec.token_ids = {mixed.token_ids[0], mixed.token_ids.back()};
  dec.block_ids.clear();
  dec.block_ids.insert(dec.block_ids.end(), tables[0].begin(), tables[0].begin() + 19);
  dec.block_ids.insert(dec.block_ids.end(), tables[2].begin(), tables[2].begin() + 3);
  dec.block_indptr = {0, 19, 22};
  ASSERT_TRUE(fast.value()->Forward(dec, &res).ok());
  const std::vector<float> mixed_dec(logits[0].begin(), logits[0].begin() + 1000);
  const std::vector<float> alone(res.logits.begin(), res.logits.begin() + 1000);
  EXPECT_LT(RelErr(alone, mixed_dec), 1e-2);
  std::printf("[mixed-batch D128] split-vs-tiles %.2e decode-alone %.2e\n",
              RelErr(logits[0], logits[1]), RelErr(alone, mixed_dec));
}

}  // namespace
}  // namespace pd::cuda
