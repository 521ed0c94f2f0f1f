// Phase profile of one model on one kind of instance (backend, GPU, TP): measured forward times
// of prefill and decode batches and the KV geometry. pd-profile writes it, the serving simulator
// (planner/sim) and pd-plan read it. JSON schema "pdserve.profile.v1" (docs/planning.md):
//
//   {"schema": "pdserve.profile.v1",
//    "model": {"name", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
//              "intermediate_size", "vocab_size", "params"},
//    "hardware": {"backend", "device", "memory_gb", "host", "date", "note"},
//    "tp": 1, "kv_bytes_per_token": 131072, "kv_pool_tokens": 400000,
//    "prefill": [{"tokens": 1024, "ms": 28.3}, ...],            // one prompt, nothing cached
//    "decode":  [{"batch": 32, "context": 1024, "ms": 9.1}, ...]} // one token per sequence
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd::planner {

struct PrefillPoint {
  int tokens = 0;  // prompt tokens of one forward (one sequence, empty cache)
  double ms = 0;   // forward time
};

struct DecodePoint {
  int batch = 0;    // decoding sequences in one forward
  int context = 0;  // tokens in each sequence's KV (all equal)
  double ms = 0;    // forward time
};

// A measured engine step with a prompt chunk: `tokens` new prompt tokens after `cached` cached
// ones, optionally next to `decode_batch` decoding sequences of `decode_context` tokens each.
struct ChunkPoint {
  int tokens = 0, cached = 0;
  int decode_batch = 0, decode_context = 0;
  double ms = 0;
};

struct ModelShape {
  std::string name;
  int num_layers = 0, hidden_size = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int intermediate_size = 0, vocab_size = 0;
  double params = 0;  // parameter count
};

struct Hardware {
  std::string backend, device, host, date, note;
  double memory_gb = 0;
};

struct Profile {
  ModelShape model;
  Hardware hardware;
  int tp = 1;                    // GPUs per instance
  int64_t kv_bytes_per_token = 0;
  int64_t kv_pool_tokens = 0;    // KV capacity of one instance (tokens)
  std::vector<PrefillPoint> prefill;  // sorted by tokens (Load sorts)
  std::vector<DecodePoint> decode;    // any order; a grid over (batch, context) is best
  // Optional ("chunks" in JSON): chunked-prefill and mixed steps measured directly. When present,
  // CostModel scales the one-shot marginal chunk cost by the measured/modelled ratio of the
  // pure chunk points (interpolated in `cached`), and adds the measured excess of the mixed
  // points (step - decode - chunk), interpolated in the number of decoding sequences, to every
  // step that has both decode rows and a chunk.
  std::vector<ChunkPoint> chunks;

  // Forward time (ms) of one prompt of `tokens` tokens with nothing cached: piecewise-linear in
  // the measured points, linear extrapolation beyond them, and fixed_ms() at 0 tokens.
  double PrefillMs(double tokens) const;
  // Marginal cost (ms) of computing `n` more prompt tokens of a sequence that has `cached`
  // tokens in KV: PrefillMs(cached + n) - PrefillMs(cached) (attention over the cache included).
  double PrefillChunkMs(double n, double cached) const;
  // Forward time (ms) of a decode step of `batch` sequences each with `context` tokens:
  // bilinear interpolation over the measured grid (linear extrapolation in both directions).
  double DecodeMs(double batch, double context) const;
  // Cost of a step that only reads the weights: DecodeMs(1, smallest measured context).
  double FixedMs() const;
  // One engine step: `decode_seqs` decoding sequences with mean context `decode_ctx`, plus
  // prompt chunks (n_i new tokens at cached_i): DecodeMs(decode) + sum PrefillChunkMs, or
  // FixedMs + sum PrefillChunkMs when nothing decodes.
  double StepMs(int decode_seqs, double decode_ctx, const std::vector<std::pair<int, int>>& chunks)
      const;

  // OK or INVALID_ARGUMENT naming the first bad field (needs >= 2 prefill points, >= 1 decode).
  Status Validate() const;
};

// The profile's cost functions with the decode grid indexed once (the simulator calls these
// millions of times; Profile's own methods build one per call).
class CostModel {
 public:
  // chunk_factor multiplies the cost of prompt chunks after a cached prefix (cached > 0): a
  // calibration knob for what one-shot profiles miss (1 = the profile's model).
  explicit CostModel(const Profile& p, double chunk_factor = 1.0);
  double PrefillMs(double tokens) const;
  double PrefillChunkMs(double n, double cached) const;
  double DecodeMs(double batch, double context) const;
  double FixedMs() const { return fixed_ms_; }
  double StepMs(int decode_seqs, double decode_ctx,
                const std::vector<std::pair<int, int>>& chunks) const;

 private:
  double MarginalChunkMs(double n, double cached) const;  // one-shot marginal
  double MeasuredChunkMs(double n, double cached) const;  // ... x the chunk points' ratio
  double fixed_ms_ = 0;
  std::vector<double> rx_, ry_;  // chunk correction: ratio measured / marginal vs cached
  double MixMs(double decode_seqs) const;  // excess of a mixed step with that many decode rows
  std::vector<double> mx_, my_;  // mixed-step excess vs decode batch, (0, 0) first
  double chunk_factor_ = 1.0;
  std::vector<double> px_, py_;          // prefill curve with (0, fixed) first
  std::vector<double> gb_, gc_;          // decode grid axes
  std::vector<std::vector<double>> gms_;  // [batch][context]
};

StatusOr<Profile> LoadProfile(const std::string& path);
StatusOr<Profile> ParseProfile(const std::string& json_text);
std::string ProfileToJson(const Profile& p);
Status SaveProfile(const Profile& p, const std::string& path);

// Scales a measured profile to another model shape and TP degree (the assumption is recorded in
// hardware.note): compute and weight reads scale with params / tp / tp_efficiency, KV reads and
// the KV footprint with kv_bytes_per_token / tp; pool = (memory - params*2 bytes / tp) *
// kv_fraction / (kv bytes per token per GPU).
struct ScaleSpec {
  ModelShape target;
  int64_t kv_bytes_per_token = 0;  // of the target (whole model, all TP ranks together)
  int tp = 1;
  double tp_efficiency = 0.8;  // fraction of linear speedup TP delivers
  double memory_gb = 80;       // per GPU
  double kv_fraction = 0.9;    // of what the weights leave
};
Profile ScaleProfile(const Profile& base, const ScaleSpec& s);

}  // namespace pd::planner
