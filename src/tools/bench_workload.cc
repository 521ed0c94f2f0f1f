#include "tools/bench_workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

namespace pd::bench {

int LengthRange::Sample(std::mt19937_64& rng) const {
  if (hi <= lo) return lo;
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

namespace {
bool ParsePositive(const std::string& s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  int mult = 1;
  std::string d = s;
  if (d.back() == 'k' || d.back() == 'K') {
    mult = 1000;
    d.pop_back();
  }
  if (d.empty() || !std::all_of(d.begin(), d.end(), ::isdigit)) return false;
  *out = std::stoi(d) * mult;
  return *out > 0;
}
}  // namespace

StatusOr<LengthRange> ParseLengthRange(const std::string& s) {
  LengthRange r;
  const size_t colon = s.find(':');
  const std::string a = s.substr(0, colon);
  const std::string b = colon == std::string::npos ? a : s.substr(colon + 1);
  if (!ParsePositive(a, &r.lo) || !ParsePositive(b, &r.hi) || r.hi < r.lo) {
    return InvalidArgument("'" + s + "' is not a length N or a range A:B with 0 < A <= B");
  }
  return r;
}

StatusOr<std::pair<int, int>> ParsePreset(const std::string& s) {
  if (s == "10k/1k") return std::pair<int, int>{10000, 1000};
  if (s == "5k/1k") return std::pair<int, int>{5000, 1000};
  if (s == "1k/1k") return std::pair<int, int>{1000, 1000};
  return InvalidArgument("preset '" + s + "' is not one of 10k/1k, 5k/1k, 1k/1k");
}

std::vector<RequestSpec> MakeSynthetic(const SyntheticWorkload& w, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int low = std::min(w.low_id, std::max(0, w.vocab_size - 1));
  std::uniform_int_distribution<int32_t> tok(low, std::max(low, w.vocab_size - 1));
  std::vector<int32_t> prefix(std::max(0, w.shared_prefix));
  for (auto& t : prefix) t = tok(rng);
  std::vector<RequestSpec> out(std::max(0, n));
  for (RequestSpec& r : out) {
    const int len = w.input.Sample(rng);
    r.prompt_ids.assign(prefix.begin(), prefix.begin() + std::min<int>(len, prefix.size()));
    while (static_cast<int>(r.prompt_ids.size()) < len) r.prompt_ids.push_back(tok(rng));
    r.output_len = w.output.Sample(rng);
  }
  return out;
}

StatusOr<std::vector<RequestSpec>> LoadJsonl(const std::string& path, int vocab_size,
                                             uint64_t seed) {
  std::ifstream f(path);
  if (!f) return NotFound(path + ": cannot read");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(1, std::max(1, vocab_size - 1));
  std::vector<RequestSpec> out;
  std::string line;
  for (int lineno = 1; std::getline(f, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    try {
      const auto j = nlohmann::json::parse(line);
      RequestSpec r;
      if (j.contains("prompt")) {
        r.prompt_text = j.at("prompt").get<std::string>();
      } else if (j.contains("prompt_ids")) {
        r.prompt_ids = j.at("prompt_ids").get<std::vector<int32_t>>();
      } else if (j.contains("prompt_len")) {
        r.prompt_ids.resize(j.at("prompt_len").get<int>());
        for (auto& t : r.prompt_ids) t = tok(rng);
      } else {
        return InvalidArgument(where + "needs prompt, prompt_ids or prompt_len");
      }
      r.output_len =
          j.contains("output_len") ? j.at("output_len").get<int>() : j.value("max_tokens", 0);
      if (r.output_len <= 0) return InvalidArgument(where + "needs output_len > 0");
      out.push_back(std::move(r));
    } catch (const nlohmann::json::exception& e) {
      return InvalidArgument(where + e.what());
    }
  }
  if (out.empty()) return InvalidArgument(path + ": no requests");
  return out;
}

std::vector<double> PoissonArrivals(int n, double rate, uint64_t seed) {
  std::vector<double> t(std::max(0, n), 0.0);
  if (!(rate > 0) || std::isinf(rate)) return t;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  double now = 0;
  for (double& x : t) {
    x = now;
    now += gap(rng);
  }
  return t;
}

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(q / 100.0 * sorted.size());
  const size_t idx = static_cast<size_t>(std::clamp(rank, 1.0, double(sorted.size()))) - 1;
  return sorted[idx];
}

Summary Summarize(std::vector<double> v) {
  Summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  s.p50 = Percentile(v, 50);
  s.p90 = Percentile(v, 90);
  s.p99 = Percentile(v, 99);
  s.max = v.back();
  return s;
}

double RequestResult::tpot_ms() const {
  return output_tokens > 1 ? (e2e_ms - ttft_ms) / (output_tokens - 1) : 0.0;
}

Report MakeReport(const std::vector<RequestResult>& results, double duration_s, double slo_ttft_ms,
                  double slo_tpot_ms) {
  Report r;
  r.duration_s = duration_s;
  r.slo_ttft_ms = slo_ttft_ms;
  r.slo_tpot_ms = slo_tpot_ms;
  std::vector<double> ttft, tpot, itl, e2e;
  std::set<std::string> errors;
  for (const RequestResult& x : results) {
    if (!x.ok) {
      ++r.failed;
      if (errors.size() < 5) errors.insert(x.error);
      continue;
    }
    ++r.completed;
    r.prompt_tokens += x.prompt_tokens;
    r.cached_tokens += x.cached_tokens;
    r.output_tokens += x.output_tokens;
    ttft.push_back(x.ttft_ms);
    if (x.output_tokens > 1) tpot.push_back(x.tpot_ms());
    itl.insert(itl.end(), x.itl_ms.begin(), x.itl_ms.end());
    e2e.push_back(x.e2e_ms);
    const bool ttft_ok = slo_ttft_ms <= 0 || x.ttft_ms <= slo_ttft_ms;
    const bool tpot_ok = slo_tpot_ms <= 0 || x.tpot_ms() <= slo_tpot_ms;
    if (ttft_ok && tpot_ok) ++r.good;
  }
  r.sample_errors.assign(errors.begin(), errors.end());
  r.ttft = Summarize(std::move(ttft));
  r.tpot = Summarize(std::move(tpot));
  r.itl = Summarize(std::move(itl));
  r.e2e = Summarize(std::move(e2e));
  if (duration_s > 0) {
    r.request_throughput = r.completed / duration_s;
    r.output_throughput = r.output_tokens / duration_s;
    r.total_throughput = (r.prompt_tokens + r.output_tokens) / duration_s;
    r.goodput = r.good / duration_s;
  }
  return r;
}

namespace {
nlohmann::json SummaryJson(const Summary& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90},
          {"p99", s.p99},   {"max", s.max}, {"count", s.count}};
}
std::string Line(const char* name, const Summary& s) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %-8s mean %9.2f  p50 %9.2f  p90 %9.2f  p99 %9.2f  (n=%zu)\n",
                name, s.mean, s.p50, s.p90, s.p99, s.count);
  return buf;
}
}  // namespace

std::string ReportJson(const Report& r) {
  nlohmann::json j = {{"completed", r.completed},
                      {"failed", r.failed},
                      {"duration_s", r.duration_s},
                      {"ttft_ms", SummaryJson(r.ttft)},
                      {"tpot_ms", SummaryJson(r.tpot)},
                      {"itl_ms", SummaryJson(r.itl)},
                      {"e2e_ms", SummaryJson(r.e2e)},
                      {"request_throughput", r.request_throughput},
                      {"output_token_throughput", r.output_throughput},
                      {"total_token_throughput", r.total_throughput},
                      {"prompt_tokens", r.prompt_tokens},
                      {"cached_tokens", r.cached_tokens},
                      {"output_tokens", r.output_tokens},
                      {"slo_ttft_ms", r.slo_ttft_ms},
                      {"slo_tpot_ms", r.slo_tpot_ms},
                      {"good_requests", r.good},
                      {"goodput", r.goodput},
                      {"errors", r.sample_errors}};
  return j.dump(2);
}

std::string ReportText(const Report& r) {
  std::ostringstream os;
  char buf[256];
  std::snprintf(buf, sizeof buf, "requests: %d completed, %d failed in %.2f s\n", r.completed,
                r.failed, r.duration_s);
  os << buf << "latency (ms):\n"
     << Line("TTFT", r.ttft) << Line("TPOT", r.tpot) << Line("ITL", r.itl) << Line("E2E", r.e2e);
  std::snprintf(buf, sizeof buf,
                "throughput: %.3f req/s, %.1f output tok/s, %.1f total tok/s\n"
                "tokens: %lld prompt (%lld cached), %lld output\n",
                r.request_throughput, r.output_throughput, r.total_throughput,
                static_cast<long long>(r.prompt_tokens), static_cast<long long>(r.cached_tokens),
                static_cast<long long>(r.output_tokens));
  os << buf;
  if (r.slo_ttft_ms > 0 || r.slo_tpot_ms > 0) {
    std::snprintf(buf, sizeof buf,
                  "goodput: %.3f req/s (%d of %d within TTFT<=%.0f ms, TPOT<=%.0f ms)\n", r.goodput,
                  r.good, r.completed, r.slo_ttft_ms, r.slo_tpot_ms);
    os << buf;
  }
  for (const std::string& e : r.sample_errors) os << "error: " << e << "\n";
  return os.str();
}

}  // namespace pd::bench
