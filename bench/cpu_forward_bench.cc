// cpu_forward_bench: CPU backend kernels and decode step vs the machine's measured ceilings.
//
//   cpu_forward_bench [--threads N] [--model DIR] [--prompt N] [--steps N]
//
// Ceiling: streaming read bandwidth of a 1 GiB buffer with the same thread pool. Reports the
// bf16 decode GEMV (weight bytes / s) against it, the prefill linear (panel conversion +
// OpenBLAS sgemm) in GFLOP/s, and, with --model, the whole decode step (ms/token, weight GB/s).
// Every line also gives the CPU time share (process CPU s / wall s), since the machine is shared.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "model/cpu/cpu_kernels.h"
#include "model/cpu/cpu_thread_pool.h"
#include "model/runner.h"

namespace {

using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct Timer {
  Clock::time_point t0 = Clock::now();
  double c0 = CpuSeconds();
  double wall() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
  double cpu() const { return CpuSeconds() - c0; }
};

// Best-of-`reps` wall seconds of fn(); *cpu_share gets cpu/wall of the best run.
template <typename F>
double Best(int reps, F fn, double* cpu_share) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    fn();
    double w = t.wall();
    if (w < best) {
      best = w;
      *cpu_share = t.cpu() / w;
    }
  }
  return best;
}

double ReadCeiling(pd::CpuThreadPool& pool) {
  const int64_t n = int64_t{1} << 28;  // 1 GiB of floats
  std::vector<float> buf(n, 1.0f), ones(4096, 1.0f);
  std::vector<double> sums(pool.size());
  double share = 0;
  double s = Best(
      5,
      [&] {
        pool.ParallelFor(n / 4096, 64, [&](int64_t b, int64_t e, int tid) {
          float acc = 0;
          for (int64_t i = b; i < e; ++i)
            acc += pd::cpu::DotF32(buf.data() + i * 4096, ones.data(), 4096);
          sums[tid] += acc;
        });
      },
      &share);
  double gbs = 4.0 * n / s / 1e9;
  std::printf("read ceiling      : %.2f GB/s (1 GiB fp32 stream, %d threads, cpu share %.2f)\n",
              gbs, pool.size(), share);
  return gbs;
}

void Kernels(pd::CpuThreadPool& pool, double ceiling) {
  const int64_t N = 16384, K = 4096;  // 128 MiB of bf16: out of cache
  std::vector<uint16_t> w(N * K);
  for (int64_t i = 0; i < N * K; ++i) w[i] = pd::F32ToBf16(0.001f * static_cast<float>(i % 1000));
  pd::cpu::Matrix m;
  m.dtype = pd::DType::kBF16;
  m.data = w.data();
  m.rows = N;
  m.cols = K;
  std::vector<float> x(128 * K, 0.5f), y(128 * N);
  double share = 0;
  double s = Best(
      5, [&] { pd::cpu::Linear(pool, x.data(), 1, m, nullptr, y.data()); }, &share);
  double gbs = 2.0 * N * K / s / 1e9;
  std::printf(
      "bf16 GEMV M=1     : %.2f ms, %.2f GB/s of weights = %.2f of read ceiling (cpu share %.2f)\n",
      s * 1e3, gbs, gbs / ceiling, share);
  s = Best(
      3, [&] { pd::cpu::Linear(pool, x.data(), 128, m, nullptr, y.data()); }, &share);
  std::printf("bf16 linear M=128 : %.1f ms, %.1f GFLOP/s (panel convert + sgemm, cpu share %.2f)\n",
              s * 1e3, 2.0 * 128 * N * K / s / 1e9, share);
  // The alternative: weights converted to fp32 once at load (2x memory, 2x bytes per decode).
  pd::cpu::Matrix f = m;
  f.owned.resize(N * K);
  pd::cpu::Bf16ToF32Row(w.data(), f.owned.data(), N * K);
  f.dtype = pd::DType::kF32;
  f.data = f.owned.data();
  s = Best(
      5, [&] { pd::cpu::Linear(pool, x.data(), 1, f, nullptr, y.data()); }, &share);
  std::printf("fp32 GEMV M=1     : %.2f ms (alternative: fp32 copy at load; cpu share %.2f)\n",
              s * 1e3, share);
  s = Best(
      3, [&] { pd::cpu::Linear(pool, x.data(), 128, f, nullptr, y.data()); }, &share);
  std::printf("fp32 linear M=128 : %.1f ms, %.1f GFLOP/s (sgemm only, cpu share %.2f)\n", s * 1e3,
              2.0 * 128 * N * K / s / 1e9, share);
}

int ModelBench(const std::string& dir, int threads, int prompt, int steps) {
  pd::RunnerOptions o;
  o.model_dir = dir;
  o.num_threads = threads;
  o.kv_dtype = pd::DType::kBF16;
  o.num_kv_blocks = (prompt + steps + 15) / 16;
  o.max_batch_tokens = prompt;
  auto r = pd::CreateModelRunner(o);
  if (!r.ok()) {
    std::fprintf(stderr, "cpu_forward_bench: %s\n", r.status().ToString().c_str());
    return 1;
  }
  pd::ForwardBatch b;
  b.seqs.resize(1);
  b.block_indptr = {0, o.num_kv_blocks};
  for (int i = 0; i < o.num_kv_blocks; ++i) b.block_ids.push_back(i);
  for (int i = 0; i < prompt; ++i) b.token_ids.push_back(i % 1000 + 1);
  b.seqs[0] = {prompt, 0, true, {}, 0};
  pd::ForwardResult res;
  Timer tp;
  if (!(*r)->Forward(b, &res).ok()) return 1;
  const double pw = tp.wall(), pc = tp.cpu();
  Timer td;
  for (int s = 0; s < steps; ++s) {
    b.token_ids = {res.tokens[0]};
    b.seqs[0] = {1, prompt + s, true, {}, static_cast<uint64_t>(s + 1)};
    if (!(*r)->Forward(b, &res).ok()) return 1;
  }
  const double dw = td.wall() / steps, dc = td.cpu() / steps;
  const pd::ModelConfig& c = (*r)->config();
  const double params =
      static_cast<double>(c.num_layers) * (2.0 * c.hidden_size * c.num_heads * c.head_dim +
                                           2.0 * c.hidden_size * c.num_kv_heads * c.head_dim +
                                           3.0 * c.hidden_size * c.intermediate_size) +
      static_cast<double>(c.vocab_size) * c.hidden_size;
  std::printf("model prefill     : %d tokens %.1f ms (%.1f tok/s), cpu share %.2f\n", prompt,
              pw * 1e3, prompt / pw, pc / pw);
  std::printf(
      "model decode      : %.1f ms/token (%.2f tok/s), %.2f GB/s of bf16 weights, "
      "cpu %.1f ms/token (cpu share %.2f)\n",
      dw * 1e3, 1.0 / dw, 2.0 * params / dw / 1e9, dc * 1e3, dc / dw);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, prompt = 64, steps = 16;
  std::string model;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (a == "--model")
      model = argv[i + 1];
    else if (a == "--prompt")
      prompt = std::atoi(argv[i + 1]);
    else if (a == "--steps")
      steps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(
          stderr,
          "usage: cpu_forward_bench [--threads N] [--model DIR] [--prompt N] [--steps N]\n");
      return 2;
    }
  }
  pd::CpuThreadPool pool(threads);
  double ceiling = ReadCeiling(pool);
  Kernels(pool, ceiling);
  if (!model.empty()) return ModelBench(model, threads, std::max(1, prompt), std::max(1, steps));
  return 0;
}
