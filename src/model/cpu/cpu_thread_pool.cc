#include "model/cpu/cpu_thread_pool.h"

#include <algorithm>

namespace pd {

CpuThreadPool::CpuThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads_ = std::max(1, num_threads);
  for (int t = 1; t < num_threads_; ++t) workers_.emplace_back([this, t] { WorkerLoop(t); });
}

CpuThreadPool::~CpuThreadPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& w : workers_) w.join();
}

void CpuThreadPool::RunChunks(int tid) {
  for (;;) {
    int64_t c;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (next_chunk_ >= num_chunks_) return;
      c = next_chunk_++;
    }
    int64_t b = c * chunk_, e = std::min(n_, b + chunk_);
    (*fn_)(b, e, tid);
  }
}

void CpuThreadPool::WorkerLoop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_start_.wait(l, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    RunChunks(tid);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (--pending_ == 0) cv_done_.notify_all();
    }
  }
}

void CpuThreadPool::ParallelFor(int64_t n, int64_t grain,
                                const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t want = std::min<int64_t>((n + grain - 1) / grain, 4 * num_threads_);
  if (num_threads_ == 1 || want <= 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    fn_ = &fn;
    n_ = n;
    chunk_ = (n + want - 1) / want;
    num_chunks_ = (n + chunk_ - 1) / chunk_;
    next_chunk_ = 0;
    pending_ = num_threads_ - 1;
    ++generation_;
  }
  cv_start_.notify_all();
  RunChunks(0);
  std::unique_lock<std::mutex> l(mu_);
  cv_done_.wait(l, [&] { return pending_ == 0; });
  fn_ = nullptr;
}

}  // namespace pd
