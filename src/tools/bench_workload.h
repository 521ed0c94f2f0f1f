// pd-bench building blocks without gRPC: request shapes (fixed, uniform range, JSONL), arrival
// times (Poisson), latency summaries and goodput. Unit-tested in tests/e2e (bench_workload_test).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/status.h"

namespace pd::bench {

// One request to send. Exactly one of prompt_ids / prompt_text is used: text when non-empty.
struct RequestSpec {
  std::vector<int32_t> prompt_ids;
  std::string prompt_text;
  int output_len = 0;
};

// Length distributions: "N" (fixed) or "A:B" (uniform in [A, B]).
struct LengthRange {
  int lo = 0, hi = 0;
  int Sample(std::mt19937_64& rng) const;
};
StatusOr<LengthRange> ParseLengthRange(const std::string& s);  // errors name the value

// Presets from the seed's ISL/OSL table: "10k/1k", "5k/1k", "1k/1k" -> (input, output).
StatusOr<std::pair<int, int>> ParsePreset(const std::string& s);

// Random token-id prompts: ids uniform in [low_id, vocab_size). A shared_prefix of that many
// tokens (same for every request) exercises the prefix cache.
struct SyntheticWorkload {
  LengthRange input, output;
  int vocab_size = 0;
  int low_id = 1;
  int shared_prefix = 0;
};
std::vector<RequestSpec> MakeSynthetic(const SyntheticWorkload& w, int n, uint64_t seed);

// JSONL: one object per line with either "prompt" (text) or "prompt_ids" (ints) or
// "prompt_len" (random ids), and "output_len" (or "max_tokens"). Errors name the line.
StatusOr<std::vector<RequestSpec>> LoadJsonl(const std::string& path, int vocab_size,
                                             uint64_t seed);

// Poisson arrivals: n offsets in seconds from the start; rate <= 0 or inf -> all at 0.
std::vector<double> PoissonArrivals(int n, double rate, uint64_t seed);

// mean and percentiles of a sample (nearest-rank on the sorted values; empty -> zeros).
struct Summary {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
  size_t count = 0;
};
Summary Summarize(std::vector<double> v);
// Nearest-rank percentile q in [0, 100] of sorted values.
double Percentile(const std::vector<double>& sorted, double q);

// What one finished request measured (milliseconds).
struct RequestResult {
  bool ok = false;
  std::string error;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int output_tokens = 0;
  double ttft_ms = 0;
  double e2e_ms = 0;
  std::vector<double> itl_ms;  // gaps between consecutive streamed tokens
  // (e2e - ttft) / (output_tokens - 1); 0 with a single token.
  double tpot_ms() const;
};

struct Report {
  int completed = 0, failed = 0;
  double duration_s = 0;
  Summary ttft, tpot, itl, e2e;
  double request_throughput = 0;  // completed requests / s
  double output_throughput = 0;   // output tokens / s
  double total_throughput = 0;    // (prompt + output) tokens / s
  int64_t prompt_tokens = 0, cached_tokens = 0, output_tokens = 0;
  double slo_ttft_ms = 0, slo_tpot_ms = 0;  // 0 = no limit
  int good = 0;                             // requests meeting both SLOs
  double goodput = 0;                       // good requests / s
  std::vector<std::string> sample_errors;   // up to 5 distinct messages
};
Report MakeReport(const std::vector<RequestResult>& results, double duration_s, double slo_ttft_ms,
                  double slo_tpot_ms);
std::string ReportJson(const Report& r);
std::string ReportText(const Report& r);

}  // namespace pd::bench
