// CPU backend: fp32 compute over the paged KV cache (see cpu_runner.h, runner.h).
//
// Weights stay memory-mapped: fp32 and bf16 matrices are used in place (bf16 is widened on the
// fly: fused into the GEMV for decode, converted in row panels before OpenBLAS sgemm for
// prefill); fp16 matrices and all vectors (norms, biases) are converted to fp32 once at load.
#include "model/cpu/cpu_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/logging.h"
#include "model/cpu/cpu_kernels.h"
#include "model/cpu/cpu_thread_pool.h"
#include "model/weights.h"
#include "model/rope.h"

namespace pd {
namespace {

using cpu::Matrix;

Matrix ToMatrix(const TensorView& t) {
  Matrix m;
  m.rows = t.shape.size() >= 1 ? t.shape[0] : 0;
  m.cols = t.shape.size() >= 2 ? t.shape[1] : 1;
  if (t.dtype == DType::kF16) {
    m.owned.resize(static_cast<size_t>(t.numel()));
    ToF32(t.dtype, t.data, m.owned.data(), m.owned.size());
    m.dtype = DType::kF32;
    m.data = m.owned.data();
  } else {
    m.dtype = t.dtype;
    m.data = t.data;
  }
  return m;
}

std::vector<float> ToVec(const TensorView& t) {
  std::vector<float> v;
  if (!t.present()) return v;
  v.resize(static_cast<size_t>(t.numel()));
  ToF32(t.dtype, t.data, v.data(), v.size());
  return v;
}

const float* Ptr(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }


struct CpuLayer {
  std::vector<float> input_norm, post_norm, q_norm, k_norm;
  Matrix q, k, v, o, gate, up, down;
  std::vector<float> qb, kb, vb, ob, gb, ub, db;
};

// Per-forward metadata of one new token.
struct TokenInfo {
  int seq;
  int pos;
};

class CpuRunner : public ModelRunner {
 public:
  Status Init(const RunnerOptions& opts);
  const ModelConfig& config() const override { return cfg_; }
  const KvArena& kv_arena() const override { return arena_; }
  Status Forward(const ForwardBatch& batch, ForwardResult* result) override;
  std::string backend_name() const override { return "cpu"; }
  ~CpuRunner() override { std::free(arena_.base); }

 private:
  Status AllocArena(const RunnerOptions& opts);
  void PrepareWeights();
  void Embed(const ForwardBatch& b);
  void Layer(int l, const ForwardBatch& b);
  void QkNormRopeStore(int l, const ForwardBatch& b);
  void Attention(int l, const ForwardBatch& b);
  void AttendOne(int l, const ForwardBatch& b, int s, int kvh, int tid);
  void Head(const ForwardBatch& b, ForwardResult* r);

  RunnerOptions opts_;
  ModelConfig cfg_;
  std::shared_ptr<ModelWeights> w_;
  std::vector<CpuLayer> layers_;
  std::vector<float> final_norm_;
  Matrix lm_head_;
  std::vector<float> inv_freq_;
  KvArena arena_;
  std::unique_ptr<CpuThreadPool> pool_;
  int max_seqs_ = 256;

  // Scratch for one forward, [T, ...] row-major.
  std::vector<TokenInfo> tok_;
  std::vector<int> seq_start_;  // first token row of each seq
  std::vector<float> x_, h_, q_, k_, v_, attn_, tmp_, gate_, up_;
  std::vector<std::vector<float>> ws_;  // per-thread attention workspace
};

Status CpuRunner::AllocArena(const RunnerOptions& opts) {
  KvLayout L;
  L.num_layers = cfg_.num_layers;
  L.block_size = opts.block_size;
  L.num_kv_heads = cfg_.num_kv_heads;
  L.head_dim = cfg_.head_dim;
  L.dtype = opts.kv_dtype;
  if (opts.block_size <= 0) return InvalidArgument("block_size must be > 0");
  const size_t per_block = L.block_layer_bytes() * static_cast<size_t>(L.num_layers);
  L.num_blocks = opts.num_kv_blocks > 0
                     ? opts.num_kv_blocks
                     : static_cast<int>(opts.kv_memory_mb * (size_t{1} << 20) / per_block);
  if (L.num_blocks <= 0) {
    return InvalidArgument("kv_memory_mb=" + std::to_string(opts.kv_memory_mb) +
                           " holds no KV block of " + std::to_string(per_block) + " bytes");
  }
  arena_.bytes = L.total_bytes();
  arena_.base = std::calloc(1, arena_.bytes);
  if (!arena_.base) {
    return ResourceExhausted("cannot allocate a " + std::to_string(arena_.bytes) +
                             "-byte KV arena");
  }
  arena_.layout = L;
  return OkStatus();
}

void CpuRunner::PrepareWeights() {
  const ModelWeights& w = *w_;
  for (const LayerWeights& lw : w.layers) {
    CpuLayer c;
    c.input_norm = ToVec(lw.input_norm);
    c.post_norm = ToVec(lw.post_norm);
    c.q_norm = ToVec(lw.q_norm);
    c.k_norm = ToVec(lw.k_norm);
    c.q = ToMatrix(lw.q_proj);
    c.k = ToMatrix(lw.k_proj);
    c.v = ToMatrix(lw.v_proj);
    c.o = ToMatrix(lw.o_proj);
    c.gate = ToMatrix(lw.gate_proj);
    c.up = ToMatrix(lw.up_proj);
    c.down = ToMatrix(lw.down_proj);
    c.qb = ToVec(lw.q_bias);
    c.kb = ToVec(lw.k_bias);
    c.vb = ToVec(lw.v_bias);
    c.ob = ToVec(lw.o_bias);
    c.gb = ToVec(lw.gate_bias);
    c.ub = ToVec(lw.up_bias);
    c.db = ToVec(lw.down_bias);
    layers_.push_back(std::move(c));
  }
  final_norm_ = ToVec(w.final_norm);
  lm_head_ = ToMatrix(w.lm_head);
  inv_freq_ = RopeInvFreq(cfg_);
}

Status CpuRunner::Init(const RunnerOptions& opts) {
  opts_ = opts;
  max_seqs_ = opts.max_seqs;
  if (!(opts.kv_dtype == DType::kF32 || opts.kv_dtype == DType::kBF16 ||
        opts.kv_dtype == DType::kF16)) {
    return InvalidArgument("unsupported kv_dtype");
  }
  PD_ASSIGN_OR_RETURN(w_, LoadModelWeights(opts.model_dir));
  cfg_ = w_->config;
  if (cfg_.head_dim % 2 != 0) return InvalidArgument("head_dim must be even for RoPE");
  PD_RETURN_IF_ERROR(AllocArena(opts));
  PrepareWeights();
  pool_ = std::make_unique<CpuThreadPool>(opts.num_threads);
  ws_.resize(pool_->size());
  PD_LOG_INFO("cpu runner: {} layers, hidden {}, {} threads, {} KV blocks of {} tokens ({} MB, {})",
              cfg_.num_layers, cfg_.hidden_size, pool_->size(), arena_.layout.num_blocks,
              arena_.layout.block_size, arena_.bytes >> 20, DTypeName(arena_.layout.dtype));
  return OkStatus();
}

void CpuRunner::Embed(const ForwardBatch& b) {
  const int H = cfg_.hidden_size;
  const TensorView& e = w_->embed;
  const size_t esz = DTypeSize(e.dtype);
  const int64_t T = static_cast<int64_t>(b.token_ids.size());
  pool_->ParallelFor(T, 8, [&](int64_t lo, int64_t hi, int) {
    for (int64_t t = lo; t < hi; ++t) {
      const char* row =
          static_cast<const char*>(e.data) + static_cast<size_t>(b.token_ids[t]) * H * esz;
      ToF32(e.dtype, row, x_.data() + t * H, H);
    }
  });
}

// Qwen3 q/k norm, RoPE, then K/V into the arena (converted to the KV dtype).
void CpuRunner::QkNormRopeStore(int l, const ForwardBatch& b) {
  const int D = cfg_.head_dim, nh = cfg_.num_heads, nkv = cfg_.num_kv_heads, half = D / 2;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const CpuLayer& L = layers_[l];
  const KvLayout& kl = arena_.layout;
  const int64_t T = static_cast<int64_t>(tok_.size());
  pool_->ParallelFor(T, 4, [&](int64_t lo, int64_t hi, int) {
    std::vector<float> cs(half), sn(half);
    for (int64_t t = lo; t < hi; ++t) {
      const float pos = static_cast<float>(tok_[t].pos);
      for (int i = 0; i < half; ++i) {
        const float ang = pos * inv_freq_[i];
        cs[i] = static_cast<float>(std::cos(static_cast<double>(ang)));
        sn[i] = static_cast<float>(std::sin(static_cast<double>(ang)));
      }
      float* q = q_.data() + t * nh * D;
      float* k = k_.data() + t * nkv * D;
      const float* v = v_.data() + t * nkv * D;
      for (int h = 0; h < nh; ++h) {
        if (!L.q_norm.empty()) cpu::RmsNorm(q + h * D, L.q_norm.data(), q + h * D, D, eps);
        cpu::ApplyRope(q + h * D, D, cs.data(), sn.data());
      }
      const int blk = b.block_ids[b.block_indptr[tok_[t].seq] + tok_[t].pos / kl.block_size];
      const int slot = tok_[t].pos % kl.block_size;
      char* base = static_cast<char*>(arena_.base);
      for (int h = 0; h < nkv; ++h) {
        if (!L.k_norm.empty()) cpu::RmsNorm(k + h * D, L.k_norm.data(), k + h * D, D, eps);
        cpu::ApplyRope(k + h * D, D, cs.data(), sn.data());
        FromF32(kl.dtype, k + h * D, base + kl.elem_offset(l, blk, 0, h, slot) * kl.elem_bytes(),
                D);
        FromF32(kl.dtype, v + h * D, base + kl.elem_offset(l, blk, 1, h, slot) * kl.elem_bytes(),
                D);
      }
    }
  });
}

// One (sequence, kv head): gathers its visible K/V from the arena into fp32 and attends every
// new token of every query head of the group.
void CpuRunner::AttendOne(int l, const ForwardBatch& b, int s, int kvh, int tid) {
  const int D = cfg_.head_dim, nh = cfg_.num_heads, group = nh / cfg_.num_kv_heads;
  const KvLayout& kl = arena_.layout;
  const SeqStep& st = b.seqs[s];
  const int ctx = st.num_cached + st.num_new_tokens;
  const int win = cfg_.sliding_window;
  const int lo = win > 0 ? std::max(0, st.num_cached - win + 1) : 0;
  const int n = ctx - lo;
  std::vector<float>& ws = ws_[tid];
  ws.resize(static_cast<size_t>(2 * n * D + n));
  float* K = ws.data();
  float* V = K + static_cast<size_t>(n) * D;
  float* p = V + static_cast<size_t>(n) * D;
  const char* base = static_cast<const char*>(arena_.base);
  const int32_t* table = b.block_ids.data() + b.block_indptr[s];
  for (int j = lo; j < ctx; ++j) {
    const int blk = table[j / kl.block_size], slot = j % kl.block_size;
    const size_t eb = kl.elem_bytes();
    ToF32(kl.dtype, base + kl.elem_offset(l, blk, 0, kvh, slot) * eb, K + (j - lo) * D, D);
    ToF32(kl.dtype, base + kl.elem_offset(l, blk, 1, kvh, slot) * eb, V + (j - lo) * D, D);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  for (int i = 0; i < st.num_new_tokens; ++i) {
    const int pos = st.num_cached + i;
    const int first = win > 0 ? std::max(lo, pos - win + 1) : 0;
    const int64_t row = seq_start_[s] + i;
    for (int g = 0; g < group; ++g) {
      const int h = kvh * group + g;
      const float* q = q_.data() + (row * nh + h) * D;
      float mx = -INFINITY;
      for (int j = first; j <= pos; ++j) {
        p[j - lo] = cpu::DotF32(q, K + (j - lo) * D, D) * scale;
        mx = std::max(mx, p[j - lo]);
      }
      float sum = 0.0f;
      for (int j = first; j <= pos; ++j) sum += (p[j - lo] = std::exp(p[j - lo] - mx));
      float* out = attn_.data() + (row * nh + h) * D;
      std::fill(out, out + D, 0.0f);
      for (int j = first; j <= pos; ++j) {
        const float pj = p[j - lo] / sum;
        const float* vj = V + (j - lo) * D;
        for (int d = 0; d < D; ++d) out[d] += pj * vj[d];
      }
    }
  }
}

void CpuRunner::Attention(int l, const ForwardBatch& b) {
  const int nkv = cfg_.num_kv_heads;
  const int64_t items = static_cast<int64_t>(b.seqs.size()) * nkv;
  int64_t work = 0;  // multiply-adds, roughly
  for (const SeqStep& st : b.seqs) {
    work += static_cast<int64_t>(st.num_new_tokens) * (st.num_cached + st.num_new_tokens);
  }
  work *= 2 * cfg_.num_heads * cfg_.head_dim;
  const int64_t grain = work < (int64_t{1} << 16) ? items : 1;  // tiny: not worth waking workers
  pool_->ParallelFor(items, grain, [&](int64_t lo, int64_t hi, int tid) {
    for (int64_t it = lo; it < hi; ++it) {
      AttendOne(l, b, static_cast<int>(it / nkv), static_cast<int>(it % nkv), tid);
    }
  });
}

void CpuRunner::Layer(int l, const ForwardBatch& b) {
  const int H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const int nh = cfg_.num_heads, D = cfg_.head_dim;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const int64_t T = static_cast<int64_t>(tok_.size());
  const CpuLayer& L = layers_[l];
  auto norm_rows = [&](const std::vector<float>& w) {
    pool_->ParallelFor(T, 4, [&](int64_t lo, int64_t hi, int) {
      for (int64_t t = lo; t < hi; ++t)
        cpu::RmsNorm(x_.data() + t * H, w.data(), h_.data() + t * H, H, eps);
    });
  };
  norm_rows(L.input_norm);
  cpu::Linear(*pool_, h_.data(), T, L.q, Ptr(L.qb), q_.data());
  cpu::Linear(*pool_, h_.data(), T, L.k, Ptr(L.kb), k_.data());
  cpu::Linear(*pool_, h_.data(), T, L.v, Ptr(L.vb), v_.data());
  QkNormRopeStore(l, b);
  Attention(l, b);
  cpu::Linear(*pool_, attn_.data(), T, L.o, Ptr(L.ob), tmp_.data());
  for (int64_t i = 0; i < T * H; ++i) x_[i] += tmp_[i];
  norm_rows(L.post_norm);
  cpu::Linear(*pool_, h_.data(), T, L.gate, Ptr(L.gb), gate_.data());
  cpu::Linear(*pool_, h_.data(), T, L.up, Ptr(L.ub), up_.data());
  pool_->ParallelFor(T, 1, [&](int64_t lo, int64_t hi, int) {
    cpu::SiluMul(gate_.data() + lo * I, up_.data() + lo * I, (hi - lo) * I);
  });
  cpu::Linear(*pool_, gate_.data(), T, L.down, Ptr(L.db), tmp_.data());
  for (int64_t i = 0; i < T * H; ++i) x_[i] += tmp_[i];
  (void)nh;
  (void)D;
}

// Final norm + lm_head on each sequence's last new token, then sampling.
void CpuRunner::Head(const ForwardBatch& b, ForwardResult* r) {
  const int H = cfg_.hidden_size, V = cfg_.vocab_size;
  const int S = static_cast<int>(b.seqs.size());
  std::vector<float> last(static_cast<size_t>(S) * H);
  for (int s = 0; s < S; ++s) {
    const int64_t row = seq_start_[s] + b.seqs[s].num_new_tokens - 1;
    cpu::RmsNorm(x_.data() + row * H, final_norm_.data(), last.data() + s * H, H,
                 static_cast<float>(cfg_.rms_norm_eps));
  }
  std::vector<float> logits(static_cast<size_t>(S) * V);
  cpu::Linear(*pool_, last.data(), S, lm_head_, nullptr, logits.data());
  r->tokens.assign(S, -1);
  for (int s = 0; s < S; ++s) {
    const SeqStep& st = b.seqs[s];
    if (st.sample) {
      r->tokens[s] = SampleFromLogits(logits.data() + static_cast<size_t>(s) * V, V, st.sampling,
                                      st.sample_step);
    }
  }
  if (b.return_logits) {
    r->logits = std::move(logits);
  } else {
    r->logits.clear();
  }
}

Status CpuRunner::Forward(const ForwardBatch& b, ForwardResult* result) {
  PD_RETURN_IF_ERROR(ValidateForwardBatch(b, cfg_, arena_.layout, opts_.max_batch_tokens));
  if (static_cast<int>(b.seqs.size()) > max_seqs_) {
    return InvalidArgument("batch carries " + std::to_string(b.seqs.size()) +
                           " sequences, more than max_seqs=" + std::to_string(max_seqs_));
  }
  const int64_t T = static_cast<int64_t>(b.token_ids.size());
  const int H = cfg_.hidden_size, I = cfg_.intermediate_size, D = cfg_.head_dim;
  tok_.clear();
  seq_start_.clear();
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    seq_start_.push_back(static_cast<int>(tok_.size()));
    for (int i = 0; i < b.seqs[s].num_new_tokens; ++i) {
      tok_.push_back({static_cast<int>(s), b.seqs[s].num_cached + i});
    }
  }
  x_.resize(T * H);
  h_.resize(T * H);
  tmp_.resize(T * H);
  q_.resize(T * cfg_.num_heads * D);
  attn_.resize(T * cfg_.num_heads * D);
  k_.resize(T * cfg_.num_kv_heads * D);
  v_.resize(T * cfg_.num_kv_heads * D);
  gate_.resize(T * I);
  up_.resize(T * I);
  Embed(b);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    Layer(l, b);
    if (b.on_layer_done) b.on_layer_done(l);
  }
  Head(b, result);
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<ModelRunner>> CreateCpuRunner(const RunnerOptions& opts) {
  auto r = std::make_unique<CpuRunner>();
  PD_RETURN_IF_ERROR(r->Init(opts));
  return std::unique_ptr<ModelRunner>(std::move(r));
}

}  // namespace pd
