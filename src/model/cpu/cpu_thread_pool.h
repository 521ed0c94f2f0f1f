// CpuThreadPool: a fixed set of worker threads running ParallelFor ranges (CPU backend).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pd {

class CpuThreadPool {
 public:
  // num_threads <= 0: std::thread::hardware_concurrency(). The calling thread is worker 0.
  explicit CpuThreadPool(int num_threads);
  ~CpuThreadPool();
  CpuThreadPool(const CpuThreadPool&) = delete;
  CpuThreadPool& operator=(const CpuThreadPool&) = delete;

  int size() const { return num_threads_; }
  // Splits [0, n) into contiguous chunks of at least `grain` items and runs fn(begin, end, tid)
  // on the workers; returns when all chunks are done. Not reentrant.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void WorkerLoop(int tid);
  void RunChunks(int tid);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  // Current job.
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 0, num_chunks_ = 0;
  int64_t next_chunk_ = 0;  // guarded by mu_
};

}  // namespace pd
