#include "serving/fake_runner.h"

namespace pd::serving {

namespace {
int32_t Mix(double acc, int n, int vocab) {
  const uint64_t a = static_cast<uint64_t>(acc) * 2654435761ull + static_cast<uint64_t>(n) * 7;
  return static_cast<int32_t>(a % static_cast<uint64_t>(vocab));
}
}  // namespace

int32_t FakeReferenceNext(const std::vector<int32_t>& tokens, int num_layers, int vocab) {
  double acc = 0;
  for (int l = 0; l < num_layers; ++l) {
    for (size_t i = 0; i < tokens.size(); ++i) acc += (tokens[i] + 1000.0 * l) * (i % 13 + 1);
  }
  return Mix(acc, static_cast<int>(tokens.size()), vocab);
}

FakeRunner::FakeRunner(const FakeRunnerOptions& o) : max_batch_tokens_(o.max_batch_tokens) {
  cfg_.architecture = "FakeForCausalLM";
  cfg_.vocab_size = o.vocab_size;
  cfg_.hidden_size = 1;
  cfg_.num_layers = o.num_layers;
  cfg_.num_heads = 1;
  cfg_.num_kv_heads = 1;
  cfg_.head_dim = 1;
  cfg_.max_position_embeddings = o.max_position_embeddings;
  cfg_.dtype = DType::kF32;
  cfg_.eos_token_ids = o.eos_token_ids;
  arena_.layout.num_layers = o.num_layers;
  arena_.layout.num_blocks = o.num_blocks;
  arena_.layout.block_size = o.block_size;
  arena_.layout.num_kv_heads = 1;
  arena_.layout.head_dim = 1;
  arena_.layout.dtype = DType::kF32;
  mem_.assign(arena_.layout.total_bytes() / sizeof(float), -1.0f);
  arena_.base = mem_.data();
  arena_.bytes = arena_.layout.total_bytes();
}

float* FakeRunner::Slot(int layer, int kv, int block, int slot) {
  return mem_.data() + arena_.layout.elem_offset(layer, block, kv, 0, slot);
}

Status FakeRunner::Forward(const ForwardBatch& b, ForwardResult* r) {
  Status st = ValidateForwardBatch(b, cfg_, arena_.layout, max_batch_tokens_);
  if (!st.ok()) return st;
  ++forwards_;
  max_tokens_seen_ = std::max<int64_t>(max_tokens_seen_, static_cast<int64_t>(b.token_ids.size()));
  const int bs = arena_.layout.block_size;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    size_t t = 0;
    for (size_t s = 0; s < b.seqs.size(); ++s) {
      const SeqStep& q = b.seqs[s];
      const int32_t* table = b.block_ids.data() + b.block_indptr[s];
      for (int i = 0; i < q.num_new_tokens; ++i, ++t) {
        const int p = q.num_cached + i;
        const float v = static_cast<float>(b.token_ids[t] + 1000 * l);
        *Slot(l, 0, table[p / bs], p % bs) = v;  // K
        *Slot(l, 1, table[p / bs], p % bs) = v;  // V
      }
    }
    if (b.on_layer_done) b.on_layer_done(l);
  }
  r->tokens.assign(b.seqs.size(), -1);
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const SeqStep& q = b.seqs[s];
    if (!q.sample) continue;
    const int32_t* table = b.block_ids.data() + b.block_indptr[s];
    const int n = q.num_cached + q.num_new_tokens;
    double acc = 0;
    for (int l = 0; l < cfg_.num_layers; ++l) {
      for (int p = 0; p < n; ++p) {
        const float k = *Slot(l, 0, table[p / bs], p % bs);
        const float v = *Slot(l, 1, table[p / bs], p % bs);
        acc += 0.5 * (k + v) * (p % 13 + 1);
      }
    }
    r->tokens[s] = Mix(acc, n, cfg_.vocab_size);
  }
  return OkStatus();
}

}  // namespace pd::serving
