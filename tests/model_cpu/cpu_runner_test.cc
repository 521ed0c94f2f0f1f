// CPU runner self-consistency: mixed batches == sequences run alone, seeded sampling, top-k 1 ==
// greedy, invalid batches rejected with the KV cache untouched, on_layer_done order, arena size.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cpu_test_util.h"

namespace pd {
namespace {

using testing_cpu::Driver;
using testing_cpu::GoldenDir;
using testing_cpu::MakeRunner;
using testing_cpu::Seq;

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 101 + 5) % 500);
  return p;
}

float MaxAbs(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Sequences A, B, C. Alone: each prefilled then decoded. Mixed: B and C decode while A prefills
// in chunks in the same Forward calls; every row must equal its solo counterpart.
void MixedEqualsAlone(const char* model) {
  auto solo = MakeRunner(GoldenDir(model), DType::kF32);
  auto mixed = MakeRunner(GoldenDir(model), DType::kF32);
  ASSERT_TRUE(solo && mixed);
  const int V = solo->config().vocab_size;
  const auto pa = Prompt(11, 1), pb = Prompt(7, 2), pc = Prompt(3, 3);
  // Solo reference: A whole prompt; B and C prompt + 3 decode tokens (fixed ids).
  Driver ds(solo.get());
  Seq a0, b0, c0;
  std::vector<float> la = ds.Step({&a0}, {pa});
  std::vector<std::vector<float>> lb, lc;
  ds.Step({&b0}, {pb});
  ds.Step({&c0}, {pc});
  for (int t = 0; t < 3; ++t) {
    lb.push_back(ds.Step({&b0}, {{100 + t}}));
    lc.push_back(ds.Step({&c0}, {{200 + t}}));
  }
  Driver dm(mixed.get());
  Seq a, b, c;
  dm.Step({&b, &c}, {pb, pc});  // two prefills in one batch
  std::vector<float> r0 = dm.Step({&a, &b, &c}, {{pa.begin(), pa.begin() + 4}, {100}, {200}});
  std::vector<float> r1 = dm.Step({&b, &a, &c}, {{101}, {pa.begin() + 4, pa.begin() + 9}, {201}});
  std::vector<float> r2 = dm.Step({&c, &b, &a}, {{202}, {102}, {pa.begin() + 9, pa.end()}});
  const float tol = 1e-4f;
  EXPECT_LT(MaxAbs(r0.data() + V, lb[0].data(), V), tol);
  EXPECT_LT(MaxAbs(r0.data() + 2 * V, lc[0].data(), V), tol);
  EXPECT_LT(MaxAbs(r1.data(), lb[1].data(), V), tol);
  EXPECT_LT(MaxAbs(r1.data() + 2 * V, lc[1].data(), V), tol);
  EXPECT_LT(MaxAbs(r2.data(), lc[2].data(), V), tol);
  EXPECT_LT(MaxAbs(r2.data() + V, lb[2].data(), V), tol);
  EXPECT_LT(MaxAbs(r2.data() + 2 * V, la.data(), V), tol);
}

TEST(CpuRunner, MixedBatchEqualsAloneGqa) { MixedEqualsAlone("llama_gqa_tied"); }
TEST(CpuRunner, MixedBatchEqualsAloneSlidingWindow) { MixedEqualsAlone("mistral_window"); }
TEST(CpuRunner, MixedBatchEqualsAloneQkNorm) { MixedEqualsAlone("qwen3_qknorm"); }

TEST(CpuRunner, ThreadCountDoesNotChangeTokens) {
  auto r1 = MakeRunner(GoldenDir("qwen2_bias_tied"), DType::kF32, 1);
  auto r3 = MakeRunner(GoldenDir("qwen2_bias_tied"), DType::kF32, 3);
  Driver d1(r1.get()), d3(r3.get());
  Seq s1, s3;
  std::vector<float> l1, l3;
  auto g1 = d1.Generate(&s1, Prompt(20, 4), 0, 8, &l1);
  auto g3 = d3.Generate(&s3, Prompt(20, 4), 0, 8, &l3);
  EXPECT_EQ(g1, g3);
  EXPECT_LT(MaxAbs(l1.data(), l3.data(), l1.size()), 1e-4f);
}

std::vector<int32_t> Sampled(ModelRunner* r, SamplingParams sp, int n = 12) {
  Driver d(r);
  Seq s;
  s.sampling = sp;
  return d.Generate(&s, Prompt(6, 7), 0, n);
}

TEST(CpuRunner, SeededSamplingReproducible) {
  auto r = MakeRunner(GoldenDir("llama_gqa_tied"), DType::kF32);
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_p = 0.95f;
  sp.seed = 1234;
  auto x = Sampled(r.get(), sp);
  EXPECT_EQ(x, Sampled(r.get(), sp));
  int differ = 0;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    sp.seed = 1234 + seed;
    differ += Sampled(r.get(), sp) != x;
  }
  EXPECT_GE(differ, 3);  // a different seed typically gives different ids
}

TEST(CpuRunner, TopK1EqualsGreedy) {
  auto r = MakeRunner(GoldenDir("llama_bias_linear"), DType::kF32);
  SamplingParams greedy, k1;
  k1.temperature = 0.8f;
  k1.top_k = 1;
  k1.seed = 99;
  EXPECT_EQ(Sampled(r.get(), greedy), Sampled(r.get(), k1));
}

ForwardBatch OneSeq(std::vector<int32_t> toks, int cached, std::vector<int32_t> blocks) {
  ForwardBatch b;
  SeqStep st;
  st.num_new_tokens = static_cast<int32_t>(toks.size());
  st.num_cached = cached;
  st.sample = true;
  b.seqs = {st};
  b.token_ids = toks;
  b.block_ids = blocks;
  b.block_indptr = {0, static_cast<int32_t>(blocks.size())};
  return b;
}

TEST(CpuRunner, InvalidBatchesRejectedKvUntouched) {
  auto r = MakeRunner(GoldenDir("llama_gqa_tied"), DType::kBF16, 2, 8, 4);
  const KvArena& ar = r->kv_arena();
  {  // put something into the cache first
    ForwardResult res;
    ASSERT_TRUE(r->Forward(OneSeq({1, 2, 3, 4, 5}, 0, {0, 1}), &res).ok());
  }
  std::vector<uint8_t> snap(static_cast<const uint8_t*>(ar.base),
                            static_cast<const uint8_t*>(ar.base) + ar.bytes);
  std::vector<ForwardBatch> bad;
  bad.push_back(OneSeq({1, 2}, 0, {0, 9}));        // block id out of range
  bad.push_back(OneSeq({1, 512}, 0, {2}));         // token id outside vocab (512)
  bad.push_back(OneSeq({1, -1}, 0, {2}));          // negative token id
  bad.push_back(OneSeq({1, 2, 3, 4, 5}, 0, {2}));  // too few blocks for 5 tokens
  bad.push_back(OneSeq({1}, 300, {0, 1, 2}));      // beyond max_position_embeddings / blocks
  ForwardBatch mismatch = OneSeq({1, 2}, 0, {2});
  mismatch.token_ids.push_back(3);  // more tokens than seqs ask for
  bad.push_back(mismatch);
  ForwardBatch indptr = OneSeq({1}, 0, {2});
  indptr.block_indptr = {0};
  bad.push_back(indptr);
  bad.push_back(ForwardBatch{});  // empty
  ForwardBatch zero = OneSeq({1}, 0, {2});
  zero.seqs[0].num_new_tokens = 0;
  bad.push_back(zero);
  for (size_t i = 0; i < bad.size(); ++i) {
    ForwardResult res;
    Status s = r->Forward(bad[i], &res);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "case " << i << ": " << s.ToString();
    EXPECT_EQ(std::memcmp(snap.data(), ar.base, ar.bytes), 0) << "case " << i;
  }
}

TEST(CpuRunner, LayerCallbackOrderAndKvWritten) {
  auto r = MakeRunner(GoldenDir("llama3_scaled_mqa_v4cfg"), DType::kF32, 2, 8, 4);
  const KvLayout& L = r->kv_arena().layout;
  EXPECT_EQ(L.num_layers, r->config().num_layers);
  EXPECT_EQ(L.num_blocks, 8);
  EXPECT_EQ(r->kv_arena().bytes, L.total_bytes());
  ForwardBatch b = OneSeq({5, 6, 7}, 0, {3});
  std::vector<int> seen;
  b.on_layer_done = [&](int l) {
    seen.push_back(l);
    // this layer's K of the last token is in block 3 slot 2 by now; the next layer's is not
    const float* k = static_cast<const float*>(r->kv_arena().base);
    bool nonzero = false;
    for (int d = 0; d < L.head_dim; ++d) nonzero |= k[L.elem_offset(l, 3, 0, 0, 2) + d] != 0.0f;
    EXPECT_TRUE(nonzero) << "layer " << l;
    if (l + 1 < L.num_layers) {
      for (int d = 0; d < L.head_dim; ++d) EXPECT_EQ(k[L.elem_offset(l + 1, 3, 0, 0, 2) + d], 0.0f);
    }
  };
  ForwardResult res;
  ASSERT_TRUE(r->Forward(b, &res).ok());
  std::vector<int> want(L.num_layers);
  for (int i = 0; i < L.num_layers; ++i) want[i] = i;
  EXPECT_EQ(seen, want);
  EXPECT_TRUE(res.logits.empty());  // return_logits false
  ASSERT_EQ(res.tokens.size(), 1u);
  EXPECT_GE(res.tokens[0], 0);
}

TEST(CpuRunner, ArenaSizedFromMemoryBudget) {
  RunnerOptions o;
  o.model_dir = GoldenDir("qwen3_qknorm");
  o.kv_dtype = DType::kBF16;
  o.kv_memory_mb = 1;
  o.block_size = 16;
  auto r = CreateModelRunner(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const KvLayout& L = (*r)->kv_arena().layout;
  const size_t per_block = L.block_layer_bytes() * L.num_layers;
  EXPECT_EQ(static_cast<size_t>(L.num_blocks), (size_t{1} << 20) / per_block);
  EXPECT_EQ(L.dtype, DType::kBF16);
  o.model_dir = "/nonexistent/model";
  EXPECT_FALSE(CreateModelRunner(o).ok());
}

}  // namespace
}  // namespace pd
