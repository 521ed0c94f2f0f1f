// FakeRunner: a ModelRunner without a model, for scheduler tests and transport checks. Its KV
// "cache" stores, for every layer L and position p, the value token(p) + 1000 * L (fp32, one kv
// head of dim 1), and its next token is computed FROM THE ARENA through the sequence's block
// table: FakeNextToken over the values read back. So a wrong block table, a missing layer or a
// KV transfer that lands in the wrong place changes the output, and FakeReferenceNext(tokens)
// (pure, from the token list) is the independent reference.
#pragma once

#include <cstdint>
#include <vector>

#include "model/runner.h"

namespace pd::serving {

struct FakeRunnerOptions {
  int vocab_size = 97;
  int num_layers = 3;
  int num_blocks = 64;
  int block_size = 4;
  int max_position_embeddings = 512;
  int max_batch_tokens = 8192;
  std::vector<int> eos_token_ids;
};

// Next token for a sequence whose full token list (positions 0..n-1) is `tokens`.
int32_t FakeReferenceNext(const std::vector<int32_t>& tokens, int num_layers, int vocab);

class FakeRunner final : public ModelRunner {
 public:
  explicit FakeRunner(const FakeRunnerOptions& o);
  const ModelConfig& config() const override { return cfg_; }
  const KvArena& kv_arena() const override { return arena_; }
  Status Forward(const ForwardBatch& batch, ForwardResult* result) override;
  std::string backend_name() const override { return "fake"; }
  int64_t forwards() const { return forwards_; }
  int64_t max_tokens_seen() const { return max_tokens_seen_; }

 private:
  float* Slot(int layer, int kv, int block, int slot);
  ModelConfig cfg_;
  KvArena arena_;
  std::vector<float> mem_;
  int max_batch_tokens_;
  int64_t forwards_ = 0;
  int64_t max_tokens_seen_ = 0;
};

}  // namespace pd::serving
