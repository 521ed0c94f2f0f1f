// Test helpers for the CPU backend: a tiny block allocator and a greedy/sampled driver over
// ModelRunner::Forward.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "model/runner.h"

namespace pd {
namespace testing_cpu {

// PD_TEST_DATA_DIR in the environment overrides the build-time path.
inline std::string GoldenDir(const std::string& m) {
  const char* env = std::getenv("PD_TEST_DATA_DIR");
  return std::string(env ? env : PD_TEST_DATA_DIR) + "/golden/" + m;
}

inline std::unique_ptr<ModelRunner> MakeRunner(const std::string& dir, DType kv, int threads = 2,
                                               int blocks = 64, int block_size = 4) {
  RunnerOptions o;
  o.backend = "cpu";
  o.model_dir = dir;
  o.kv_dtype = kv;
  o.num_threads = threads;
  o.num_kv_blocks = blocks;
  o.block_size = block_size;
  auto r = CreateModelRunner(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : nullptr;
}

// One sequence's KV state: its block table and length.
struct Seq {
  std::vector<int32_t> blocks;
  int len = 0;
  SamplingParams sampling;
  uint64_t step = 0;  // tokens generated so far (sampler counter)
};

// Hands out blocks from a shared counter so sequences never overlap.
class Driver {
 public:
  explicit Driver(ModelRunner* r, int first_block = 0)
      : r_(r), bs_(r->kv_arena().layout.block_size), next_(first_block) {}

  // Feeds toks[i] to *seqs[i] in ONE Forward; returns logits [seqs, vocab]; sampled ids in *out.
  std::vector<float> Step(const std::vector<Seq*>& seqs,
                          const std::vector<std::vector<int32_t>>& toks,
                          std::vector<int32_t>* out = nullptr) {
    ForwardBatch b;
    b.return_logits = true;
    b.block_indptr = {0};
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& s = *seqs[i];
      SeqStep st;
      st.num_new_tokens = static_cast<int32_t>(toks[i].size());
      st.num_cached = s.len;
      st.sample = true;
      st.sampling = s.sampling;
      st.sample_step = s.step;
      while (static_cast<int>(s.blocks.size()) * bs_ < s.len + st.num_new_tokens) {
        s.blocks.push_back(next_++);
      }
      b.seqs.push_back(st);
      b.token_ids.insert(b.token_ids.end(), toks[i].begin(), toks[i].end());
      b.block_ids.insert(b.block_ids.end(), s.blocks.begin(), s.blocks.end());
      b.block_indptr.push_back(static_cast<int32_t>(b.block_ids.size()));
      s.len += st.num_new_tokens;
    }
    ForwardResult res;
    Status st = r_->Forward(b, &res);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (out) *out = res.tokens;
    return res.logits;
  }

  // Prefills `prompt` in chunks of `chunk` (0 = whole), then generates n tokens one by one.
  // Returns generated ids; *first_logits gets the logits after the prompt.
  std::vector<int32_t> Generate(Seq* s, const std::vector<int32_t>& prompt, int chunk, int n,
                                std::vector<float>* first_logits = nullptr) {
    if (chunk <= 0) chunk = static_cast<int>(prompt.size());
    std::vector<float> logits;
    std::vector<int32_t> tok;
    for (size_t at = 0; at < prompt.size(); at += chunk) {
      size_t e = std::min(prompt.size(), at + static_cast<size_t>(chunk));
      logits = Step({s}, {std::vector<int32_t>(prompt.begin() + at, prompt.begin() + e)}, &tok);
    }
    if (first_logits) *first_logits = logits;
    std::vector<int32_t> gen;
    for (int i = 0; i < n; ++i) {
      gen.push_back(tok.empty() ? -1 : tok[0]);
      ++s->step;
      if (i + 1 < n) Step({s}, {{gen.back()}}, &tok);
    }
    return gen;
  }

 private:
  ModelRunner* r_;
  int bs_;
  int next_;
};

}  // namespace testing_cpu
}  // namespace pd
