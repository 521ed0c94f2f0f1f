#include "planner/profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace pd::planner {
namespace {

using json = nlohmann::json;

// Linear interpolation / extrapolation of y(x) over sorted xs (size >= 1).
double Interp(const std::vector<double>& xs, const std::vector<double>& ys, double x) {
  if (xs.size() == 1) return ys[0];
  size_t hi = 1;
  while (hi + 1 < xs.size() && x > xs[hi]) ++hi;
  const size_t lo = hi - 1;
  const double t = (x - xs[lo]) / (xs[hi] - xs[lo]);
  return ys[lo] + t * (ys[hi] - ys[lo]);
}

// The decode grid as sorted axes and a value table; empty axes if the points are not a grid.
struct Grid {
  std::vector<double> b, c;
  std::vector<std::vector<double>> ms;  // [b][c]
};

Grid MakeGrid(const std::vector<DecodePoint>& pts) {
  std::set<int> bs, cs;
  std::map<std::pair<int, int>, double> v;
  for (const DecodePoint& p : pts) {
    bs.insert(p.batch);
    cs.insert(p.context);
    v[{p.batch, p.context}] = p.ms;
  }
  Grid g;
  if (v.size() != bs.size() * cs.size()) return g;
  for (int b : bs) g.b.push_back(b);
  for (int c : cs) g.c.push_back(c);
  for (int b : bs) {
    std::vector<double> row;
    for (int c : cs) row.push_back(v[{b, c}]);
    g.ms.push_back(row);
  }
  return g;
}

}  // namespace

CostModel::CostModel(const Profile& p, double chunk_factor) : chunk_factor_(chunk_factor) {
  const Grid g = MakeGrid(p.decode);
  gb_ = g.b;
  gc_ = g.c;
  gms_ = g.ms;
  // Fixed cost: batch 1 at the smallest measured context (a step that mostly reads weights).
  fixed_ms_ = gms_.empty() ? 0 : (gb_.front() == 1 ? gms_[0][0] : DecodeMs(1, gc_.front()));
  px_ = {0};
  py_ = {fixed_ms_};
  for (const PrefillPoint& x : p.prefill) {
    if (x.tokens <= 0) continue;
    px_.push_back(x.tokens);
    py_.push_back(std::max(x.ms, py_.back()));  // forward time never shrinks with more tokens
  }
  // Per key, the mean of the values added under it: appended to xs / ys in key order.
  using Means = std::map<int, std::pair<double, int>>;
  const auto append_means = [](const Means& m, std::vector<double>* xs, std::vector<double>* ys) {
    for (const auto& [key, sum_n] : m) {
      xs->push_back(key);
      ys->push_back(sum_n.first / sum_n.second);
    }
  };
  Means ratios;  // cached -> measured / marginal (pure chunks)
  for (const ChunkPoint& c : p.chunks) {
    const double model = MarginalChunkMs(c.tokens, c.cached);
    if (c.decode_batch > 0 || model <= 0) continue;
    auto& [sum, n] = ratios[c.cached];
    sum += c.ms / model;
    ++n;
  }
  append_means(ratios, &rx_, &ry_);
  // Mixed points: what the step costs beyond its decode part and its (corrected) chunk, averaged
  // per decode batch: the work done for the decode rows next to a chunk (their attention, their
  // GEMM rows) minus what the two parts share (the weights are read once). Modelled as linear
  // in the number of decoding sequences through (0, 0) and the measured batches, extrapolated
  // past the largest one; negative where sharing wins (StepMs never goes below either part).
  Means mix;  // decode batch -> excess
  for (const ChunkPoint& c : p.chunks) {
    if (c.decode_batch == 0) continue;
    const double chunk = MeasuredChunkMs(c.tokens, c.cached);
    auto& [sum, n] = mix[c.decode_batch];
    sum += c.ms - DecodeMs(c.decode_batch, c.decode_context) - chunk;
    ++n;
  }
  if (!mix.empty()) {
    mx_ = {0};
    my_ = {0};
    append_means(mix, &mx_, &my_);
  }
}

double CostModel::MixMs(double decode_seqs) const {
  return mx_.empty() ? 0 : Interp(mx_, my_, decode_seqs);
}

double CostModel::PrefillMs(double tokens) const {
  return px_.size() < 2 ? fixed_ms_ : std::max(0.0, Interp(px_, py_, tokens));
}

double CostModel::MarginalChunkMs(double n, double cached) const {
  return std::max(0.0, PrefillMs(cached + n) - PrefillMs(cached));
}

double CostModel::MeasuredChunkMs(double n, double cached) const {
  const double m = MarginalChunkMs(n, cached);
  if (rx_.empty()) return m;
  const double c = std::clamp(cached, rx_.front(), rx_.back());  // no extrapolation
  return m * std::max(0.0, Interp(rx_, ry_, c));
}

double CostModel::PrefillChunkMs(double n, double cached) const {
  return MeasuredChunkMs(n, cached) * (cached > 0 ? chunk_factor_ : 1.0);
}

double CostModel::DecodeMs(double batch, double context) const {
  if (gb_.empty()) return fixed_ms_;
  std::vector<double> v;
  v.reserve(gb_.size());
  for (size_t i = 0; i < gb_.size(); ++i) v.push_back(Interp(gc_, gms_[i], context));
  return std::max(1e-3, Interp(gb_, v, batch));
}

double CostModel::StepMs(int decode_seqs, double decode_ctx,
                         const std::vector<std::pair<int, int>>& chunks) const {
  const double dec = decode_seqs > 0 ? DecodeMs(decode_seqs, decode_ctx) : fixed_ms_;
  // The prompt rows of one step run as one forward: they cost what the profile's prefill curve
  // says for the step's total prompt tokens (from zero), and each chunk adds what its own cost
  // (PrefillChunkMs: the curve's slope after its cached prefix) exceeds its token share of that
  // base — the attention over its prefix. One chunk: exactly PrefillChunkMs(n, cached). Several
  // first chunks: the curve at their sum, not a sum of from-zero marginals (each of which would
  // drop the weight-read floor that a compute-bound 1k-token forward does not pay on top).
  double chunk = 0;
  if (!chunks.empty()) {
    double tokens = 0;
    for (const auto& [n, cached] : chunks) tokens += n;
    const double base = PrefillChunkMs(tokens, 0);
    double prefix = 0;
    for (const auto& [n, cached] : chunks) {
      prefix += std::max(0.0, PrefillChunkMs(n, cached) - base * n / tokens);
    }
    chunk = base + prefix;
  }
  if (decode_seqs == 0 || chunks.empty()) return dec + chunk;
  return std::max({dec + chunk + MixMs(decode_seqs), dec, chunk});
}

double Profile::FixedMs() const { return CostModel(*this).FixedMs(); }
double Profile::PrefillMs(double tokens) const { return CostModel(*this).PrefillMs(tokens); }
double Profile::PrefillChunkMs(double n, double cached) const {
  return CostModel(*this).PrefillChunkMs(n, cached);
}
double Profile::DecodeMs(double batch, double context) const {
  return CostModel(*this).DecodeMs(batch, context);
}
double Profile::StepMs(int decode_seqs, double decode_ctx,
                       const std::vector<std::pair<int, int>>& chunks) const {
  return CostModel(*this).StepMs(decode_seqs, decode_ctx, chunks);
}

Status Profile::Validate() const {
  if (tp < 1) return InvalidArgument("tp must be >= 1");
  if (kv_bytes_per_token <= 0) return InvalidArgument("kv_bytes_per_token must be > 0");
  if (kv_pool_tokens <= 0) return InvalidArgument("kv_pool_tokens must be > 0");
  if (prefill.size() < 2) return InvalidArgument("prefill: need at least 2 points");
  for (const PrefillPoint& p : prefill) {
    if (p.tokens <= 0 || !(p.ms > 0)) return InvalidArgument("prefill: tokens and ms must be > 0");
  }
  if (decode.empty()) return InvalidArgument("decode: need at least 1 point");
  for (const DecodePoint& p : decode) {
    if (p.batch <= 0 || p.context <= 0 || !(p.ms > 0)) {
      return InvalidArgument("decode: batch, context and ms must be > 0");
    }
  }
  if (MakeGrid(decode).b.empty()) {
    return InvalidArgument("decode: points must form a full batch x context grid");
  }
  for (const ChunkPoint& c : chunks) {
    if (c.tokens <= 0 || c.cached < 0 || c.decode_batch < 0 || !(c.ms > 0) ||
        (c.decode_batch > 0 && c.decode_context <= 0)) {
      return InvalidArgument("chunks: tokens and ms must be > 0, cached >= 0, decode_batch >= 0 "
                             "(with decode_context > 0)");
    }
  }
  return OkStatus();
}

StatusOr<Profile> ParseProfile(const std::string& text) {
  Profile p;
  try {
    const json j = json::parse(text);
    if (j.value("schema", "") != "pdserve.profile.v1") {
      return InvalidArgument("schema: expected \"pdserve.profile.v1\"");
    }
    const json& m = j.at("model");
    p.model.name = m.value("name", "");
    p.model.num_layers = m.value("num_layers", 0);
    p.model.hidden_size = m.value("hidden_size", 0);
    p.model.num_heads = m.value("num_heads", 0);
    p.model.num_kv_heads = m.value("num_kv_heads", 0);
    p.model.head_dim = m.value("head_dim", 0);
    p.model.intermediate_size = m.value("intermediate_size", 0);
    p.model.vocab_size = m.value("vocab_size", 0);
    p.model.params = m.value("params", 0.0);
    const json h = j.value("hardware", json::object());
    p.hardware.backend = h.value("backend", "");
    p.hardware.device = h.value("device", "");
    p.hardware.host = h.value("host", "");
    p.hardware.date = h.value("date", "");
    p.hardware.note = h.value("note", "");
    p.hardware.memory_gb = h.value("memory_gb", 0.0);
    p.tp = j.value("tp", 1);
    p.kv_bytes_per_token = j.at("kv_bytes_per_token").get<int64_t>();
    p.kv_pool_tokens = j.at("kv_pool_tokens").get<int64_t>();
    for (const json& x : j.at("prefill")) {
      p.prefill.push_back({x.at("tokens").get<int>(), x.at("ms").get<double>()});
    }
    for (const json& x : j.at("decode")) {
      p.decode.push_back({x.at("batch").get<int>(), x.at("context").get<int>(),
                          x.at("ms").get<double>()});
    }
    for (const json& x : j.value("chunks", json::array())) {
      p.chunks.push_back({x.at("tokens").get<int>(), x.at("cached").get<int>(),
                          x.value("decode_batch", 0), x.value("decode_context", 0),
                          x.at("ms").get<double>()});
    }
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("profile JSON: ") + e.what());
  }
  std::sort(p.prefill.begin(), p.prefill.end(),
            [](const PrefillPoint& a, const PrefillPoint& b) { return a.tokens < b.tokens; });
  Status s = p.Validate();
  if (!s.ok()) return s;
  return p;
}

StatusOr<Profile> LoadProfile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return NotFound("cannot open profile " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  StatusOr<Profile> p = ParseProfile(ss.str());
  if (!p.ok()) return p.status().WithContext(path);
  return p;
}

std::string ProfileToJson(const Profile& p) {
  json j;
  j["schema"] = "pdserve.profile.v1";
  j["model"] = {{"name", p.model.name},
                {"num_layers", p.model.num_layers},
                {"hidden_size", p.model.hidden_size},
                {"num_heads", p.model.num_heads},
                {"num_kv_heads", p.model.num_kv_heads},
                {"head_dim", p.model.head_dim},
                {"intermediate_size", p.model.intermediate_size},
                {"vocab_size", p.model.vocab_size},
                {"params", p.model.params}};
  j["hardware"] = {{"backend", p.hardware.backend}, {"device", p.hardware.device},
                   {"host", p.hardware.host},       {"date", p.hardware.date},
                   {"note", p.hardware.note},       {"memory_gb", p.hardware.memory_gb}};
  j["tp"] = p.tp;
  j["kv_bytes_per_token"] = p.kv_bytes_per_token;
  j["kv_pool_tokens"] = p.kv_pool_tokens;
  j["prefill"] = json::array();
  for (const PrefillPoint& x : p.prefill) j["prefill"].push_back({{"tokens", x.tokens}, {"ms", x.ms}});
  j["decode"] = json::array();
  for (const DecodePoint& x : p.decode) {
    j["decode"].push_back({{"batch", x.batch}, {"context", x.context}, {"ms", x.ms}});
  }
  if (!p.chunks.empty()) {
    j["chunks"] = json::array();
    for (const ChunkPoint& c : p.chunks) {
      j["chunks"].push_back({{"tokens", c.tokens}, {"cached", c.cached},
                             {"decode_batch", c.decode_batch},
                             {"decode_context", c.decode_context}, {"ms", c.ms}});
    }
  }
  return j.dump(1) + "\n";
}

Status SaveProfile(const Profile& p, const std::string& path) {
  std::ofstream f(path);
  if (!f) return InvalidArgument("cannot write " + path);
  f << ProfileToJson(p);
  return f ? OkStatus() : Internal("write failed: " + path);
}

Profile ScaleProfile(const Profile& base, const ScaleSpec& s) {
  Profile p = base;
  p.model = s.target;
  p.tp = s.tp;
  p.kv_bytes_per_token = s.kv_bytes_per_token;
  const double compute = s.target.params / base.model.params / s.tp / s.tp_efficiency;
  const double kv = static_cast<double>(s.kv_bytes_per_token) / base.kv_bytes_per_token / s.tp;
  // Prefill is GEMM-bound: every measured time scales with compute.
  for (PrefillPoint& x : p.prefill) x.ms *= compute;
  // Pure chunk points scale like prefill; mixed ones (part decode, part chunk) are dropped.
  p.chunks.clear();
  for (ChunkPoint c : base.chunks) {
    if (c.decode_batch > 0) continue;
    c.ms *= compute;
    p.chunks.push_back(c);
  }
  // Decode = fixed (weights) + part growing with batch x context (KV reads): split at the
  // smallest measured context and scale the parts separately.
  const double fixed = base.FixedMs();
  for (DecodePoint& x : p.decode) {
    const double kv_part = std::max(0.0, x.ms - base.DecodeMs(x.batch, 1));
    const double w_part = x.ms - kv_part;
    x.ms = w_part * compute + kv_part * kv / s.tp_efficiency;
  }
  const double weights_gb = s.target.params * 2 / 1e9 / s.tp;
  const double kv_gb = std::max(0.0, (s.memory_gb - weights_gb) * s.kv_fraction) * s.tp;
  p.kv_pool_tokens = static_cast<int64_t>(kv_gb * 1e9 / s.kv_bytes_per_token);
  std::ostringstream note;
  note << "scaled from " << base.model.name << " on " << base.hardware.device << " (fixed "
       << fixed << " ms): compute x" << compute << " (params ratio / tp " << s.tp << " / tp eff "
       << s.tp_efficiency << "), KV reads x" << kv / s.tp_efficiency << ", pool from "
       << s.memory_gb << " GB/GPU minus bf16 weights, " << s.kv_fraction << " for KV";
  p.hardware.note = note.str();
  p.hardware.device = base.hardware.device + " x" + std::to_string(s.tp) + " (scaled)";
  return p;
}

}  // namespace pd::planner
