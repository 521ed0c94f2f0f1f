// pd-bench: load generator against the router. Poisson arrivals or fixed concurrency; prompt and
// output lengths fixed, uniform, from a preset or from JSONL; reports TTFT, TPOT, ITL, E2E,
// throughput and goodput (tools/bench_workload.h).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/bench_workload.h"
#include "tools/grpc_util.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace bench = pd::bench;

constexpr char kUsage[] = R"(usage: pd-bench [--addr HOST:PORT] [workload] [load] [options]

Workload (random token-id prompts by default; vocab from ListModels):
  --preset P            10k/1k | 5k/1k | 1k/1k (input/output tokens, the seed's ISL/OSL mixes)
  --input-len N|A:B     prompt tokens, fixed or uniform in [A, B]            [128]
  --output-len N|A:B    output tokens, fixed or uniform                       [64]
  --dataset F.jsonl     one request per line: {"prompt"|"prompt_ids"|"prompt_len", "output_len"}
  --shared-prefix N     the first N prompt tokens are the same in every request (prefix cache)
  --model NAME          served model                                          [first]
Load:
  --rate R              Poisson arrivals, R requests/s                        [inf: all at once]
  --concurrency C       at most C requests in flight (fixed concurrency)      [8 without --rate]
  --num-requests N      stop after N requests                                 [100]
  --duration-s T        stop sending after T seconds (N is then a cap)
  --warmup N            requests before measuring                             [2]
Report:
  --slo-ttft-ms X       goodput: requests with TTFT <= X ...
  --slo-tpot-ms Y       ... and TPOT <= Y count as good
  --json                print the report as JSON on stdout
  --no-progress         no progress bar on stderr
Other:
  --addr HOST:PORT      router                                                [127.0.0.1:8000]
  --api-key K           router API key (prefer the PD_API_KEY environment variable, which
                        is used when this flag is absent; ps shows command lines)
  --seed N              workload seed                                         [0]
  --timeout-ms N        per-request deadline                                  [600000]
  --temperature X       sampling temperature                                  [0]
  --respect-eos         stop at EOS (default: ignore EOS, exact output lengths)
)";

struct Options {
  std::string addr = "127.0.0.1:8000", model, dataset, input = "128", output = "64";
  std::string api_key;  // "" = PD_API_KEY
  double rate = std::numeric_limits<double>::infinity();
  int concurrency = 0, num_requests = 100, warmup = 2, shared_prefix = 0, timeout_ms = 600000;
  double duration_s = 0, slo_ttft = 0, slo_tpot = 0, temperature = 0;
  uint64_t seed = 0;
  bool json = false, progress = true, ignore_eos = true;
};

int ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pd-bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--addr") {
      o->addr = next();
    } else if (a == "--api-key") {
      o->api_key = next();
    } else if (a == "--model") {
      o->model = next();
    } else if (a == "--preset") {
      auto p = bench::ParsePreset(next());
      if (!p.ok()) {
        std::fprintf(stderr, "pd-bench: %s\n", p.status().message().c_str());
        return 2;
      }
      o->input = std::to_string(p->first);
      o->output = std::to_string(p->second);
    } else if (a == "--input-len") {
      o->input = next();
    } else if (a == "--output-len") {
      o->output = next();
    } else if (a == "--dataset") {
      o->dataset = next();
    } else if (a == "--shared-prefix") {
      o->shared_prefix = std::atoi(next().c_str());
    } else if (a == "--rate") {
      o->rate = std::atof(next().c_str());
    } else if (a == "--concurrency") {
      o->concurrency = std::atoi(next().c_str());
    } else if (a == "--num-requests") {
      o->num_requests = std::atoi(next().c_str());
    } else if (a == "--duration-s") {
      o->duration_s = std::atof(next().c_str());
    } else if (a == "--warmup") {
      o->warmup = std::atoi(next().c_str());
    } else if (a == "--slo-ttft-ms") {
      o->slo_ttft = std::atof(next().c_str());
    } else if (a == "--slo-tpot-ms") {
      o->slo_tpot = std::atof(next().c_str());
    } else if (a == "--json") {
      o->json = true;
    } else if (a == "--no-progress") {
      o->progress = false;
    } else if (a == "--seed") {
      o->seed = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--timeout-ms") {
      o->timeout_ms = std::atoi(next().c_str());
    } else if (a == "--temperature") {
      o->temperature = std::atof(next().c_str());
    } else if (a == "--respect-eos") {
      o->ignore_eos = false;
    } else {
      std::fprintf(stderr, "pd-bench: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (o->num_requests <= 0) o->num_requests = std::numeric_limits<int>::max();
  if (o->concurrency <= 0) o->concurrency = std::isinf(o->rate) || o->rate <= 0 ? 8 : 1 << 20;
  return 0;
}

bench::RequestResult RunOne(pd::client::Client& client, const Options& o,
                            const bench::RequestSpec& spec, const std::string& model) {
  pd::client::GenerateParams p;
  p.model = model;
  p.ids = spec.prompt_ids;
  p.text = spec.prompt_text;
  p.max_tokens = spec.output_len;
  p.ignore_eos = o.ignore_eos;
  p.temperature = o.temperature;
  const pd::client::GenerateResult g = client.Generate(p, {}, o.timeout_ms);
  bench::RequestResult r;
  r.ok = g.status.ok();
  r.error = g.status.ToString();
  r.prompt_tokens = g.prompt_tokens;
  r.cached_tokens = g.cached_tokens;
  r.output_tokens = static_cast<int>(g.ids.size());
  r.ttft_ms = g.ttft_ms;
  r.e2e_ms = g.e2e_ms;
  for (size_t i = 1; i < g.token_times_ms.size(); ++i) {
    r.itl_ms.push_back(g.token_times_ms[i] - g.token_times_ms[i - 1]);
  }
  return r;
}

// Shared state of one measured run.
struct Run {
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::atomic<int> done{0};
  std::atomic<int64_t> out_tokens{0};
  std::vector<bench::RequestResult> results;
};

void Progress(Run& run, int total, Clock::time_point t0, const std::atomic<bool>& stop) {
  while (!stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const int d = run.done;
    const int width = 30;
    const int filled = total > 0 && total < (1 << 30) ? std::min(width, d * width / total) : 0;
    int in_flight;
    {
      std::lock_guard<std::mutex> l(run.mu);
      in_flight = run.in_flight;
    }
    std::fprintf(stderr, "\r[%.*s%*s] %d/%s done, %d in flight, %.1f s, %.2f req/s, %.0f tok/s ",
                 filled, "##############################", width - filled, "", d,
                 total < (1 << 30) ? std::to_string(total).c_str() : "?", in_flight, s,
                 s > 0 ? d / s : 0.0, s > 0 ? run.out_tokens / s : 0.0);
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");
}

// Issues specs (cycling) with the arrival times and concurrency cap; returns elapsed seconds.
double Measure(pd::client::Client& client, const Options& o, const std::string& model,
               const std::vector<bench::RequestSpec>& specs, Run& run) {
  const int n = o.num_requests;
  const std::vector<double> arrivals =
      bench::PoissonArrivals(std::min(n, 1 << 20), o.rate, o.seed + 17);
  std::atomic<bool> stop_progress{false};
  const auto t0 = Clock::now();
  std::thread progress;
  if (o.progress) progress = std::thread(Progress, std::ref(run), n, t0, std::cref(stop_progress));
  std::vector<std::thread> workers;
  for (int i = 0; i < n; ++i) {
    const double at = arrivals[std::min<size_t>(i, arrivals.size() - 1)];
    std::this_thread::sleep_until(
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
    if (o.duration_s > 0 &&
        std::chrono::duration<double>(Clock::now() - t0).count() >= o.duration_s) {
      break;
    }
    {
      std::unique_lock<std::mutex> l(run.mu);
      run.cv.wait(l, [&] { return run.in_flight < o.concurrency; });
      ++run.in_flight;
    }
    workers.emplace_back([&, i] {
      bench::RequestResult r = RunOne(client, o, specs[i % specs.size()], model);
      std::lock_guard<std::mutex> l(run.mu);
      run.out_tokens += r.output_tokens;
      run.results.push_back(std::move(r));
      --run.in_flight;
      ++run.done;
      run.cv.notify_all();
    });
  }
  for (std::thread& t : workers) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  stop_progress = true;
  if (progress.joinable()) progress.join();
  return elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = ParseArgs(argc, argv, &o)) return rc;
  pd::client::Client client(o.addr, o.api_key);
  auto models = client.ListModels();
  if (!models.ok() || models->empty()) {
    std::fprintf(stderr, "pd-bench: ListModels on %s failed: %s\n", o.addr.c_str(),
                 models.ok() ? "no models" : models.status().ToString().c_str());
    return 1;
  }
  const pd::client::ModelInfo* mi = &models->front();
  for (const auto& m : *models) {
    if (m.name == o.model) mi = &m;
  }
  const std::string model = mi->name;
  std::vector<bench::RequestSpec> specs;
  const int pool = std::max(1, std::min(o.num_requests, 4096));
  if (!o.dataset.empty()) {
    auto r = bench::LoadJsonl(o.dataset, mi->vocab_size, o.seed);
    if (!r.ok()) {
      std::fprintf(stderr, "pd-bench: %s\n", r.status().message().c_str());
      return 2;
    }
    specs = std::move(r).value();
  } else {
    auto in = bench::ParseLengthRange(o.input);
    auto out = bench::ParseLengthRange(o.output);
    if (!in.ok() || !out.ok()) {
      std::fprintf(stderr, "pd-bench: %s\n",
                   (!in.ok() ? in.status() : out.status()).message().c_str());
      return 2;
    }
    bench::SyntheticWorkload w{*in, *out, mi->vocab_size, 1, o.shared_prefix};
    specs = bench::MakeSynthetic(w, pool, o.seed);
  }
  if (o.warmup > 0) {
    // Warm-up prompts differ from the measured ones (no prefix-cache hits from the warm-up).
    std::vector<bench::RequestSpec> warm = specs;
    for (auto& w : warm) {
      for (auto& t : w.prompt_ids) t = (t * 7 + 13) % std::max(2, mi->vocab_size);
    }
    if (o.progress) std::fprintf(stderr, "warm-up: %d requests\n", o.warmup);
    for (int i = 0; i < o.warmup; ++i) {
      bench::RequestSpec s = warm[i % warm.size()];
      s.output_len = std::min(s.output_len, 8);
      bench::RequestResult r = RunOne(client, o, s, model);
      if (!r.ok) {
        std::fprintf(stderr, "pd-bench: warm-up request failed: %s\n", r.error.c_str());
        return 1;
      }
    }
  }
  Run run;
  const double elapsed = Measure(client, o, model, specs, run);
  const bench::Report rep = bench::MakeReport(run.results, elapsed, o.slo_ttft, o.slo_tpot);
  if (o.json) {
    std::printf("%s\n", bench::ReportJson(rep).c_str());
  } else {
    char rate[32] = "inf";
    if (!std::isinf(o.rate) && o.rate > 0) std::snprintf(rate, sizeof rate, "%.2f", o.rate);
    std::printf("model %s at %s; rate %s req/s, max concurrency %d\n%s", model.c_str(),
                o.addr.c_str(), rate, o.concurrency, bench::ReportText(rep).c_str());
  }
  return rep.failed > 0 && rep.completed == 0 ? 1 : 0;
}
