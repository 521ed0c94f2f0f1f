// DeviceCopier: the transfer engine's only door to GPU memory. Transports that cannot reach GPU
// memory directly (tcp; rdma without dmabuf) stage GPU arenas through pinned bounce buffers and
// move bytes between them and the GPU with this interface; the local transport copies into a
// peer's GPU arena opened with CUDA IPC. Two implementations:
//   * MakeCudaCopier(device): cudaMemcpyAsync (cudaMemcpyDefault) on a dedicated non-blocking
//     stream, completion by a host callback per fence, cudaHostAlloc'd bounce memory, CUDA IPC
//     handles. Only with PD_WITH_CUDA (otherwise UNIMPLEMENTED).
//   * FakeDeviceCopier: host memory stands in for the GPU; a worker thread executes the copies
//     in order after an injected delay and poisons each destination while a copy is "in flight",
//     so a transport that reads a bounce buffer or announces data before its fence completed
//     moves garbage (the tests check bytes). CI tests the pipelining logic with it.
//
// Semantics (both): Enqueue'd copies run in submission order (one stream); each Enqueue returns
// a fence number 1, 2, 3, ... that completes after its copies and every earlier one; Completed()
// is the highest completed fence. notify_fd() becomes readable (eventfd) after completions, for
// an epoll loop. One copier per engine (the eventfd has one reader).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace pd::kvtransfer {

// One copy; either side may be GPU or host memory (UVA decides the direction).
struct CopyOp {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};

class DeviceCopier {
 public:
  virtual ~DeviceCopier() = default;
  // Page-locked host memory for bounce buffers (nullptr on failure) and its release.
  virtual void* AllocPinned(size_t bytes) = 0;
  virtual void FreePinned(void* p) = 0;
  // Enqueues `ops` after every earlier copy; returns their fence. Errors are sticky.
  virtual StatusOr<uint64_t> Enqueue(std::span<const CopyOp> ops) = 0;
  // Highest completed fence (fences complete in order).
  virtual uint64_t Completed() const = 0;
  // Blocks until `fence` completed, an error, or `timeout`.
  virtual Status Wait(uint64_t fence, std::chrono::milliseconds timeout) = 0;
  // Readable after completions (eventfd); read it to reset. -1 if none.
  virtual int notify_fd() const = 0;
  // CUDA IPC: an opaque handle to a device allocation (its base), and opening a peer's handle
  // in this process (the local transport). CloseHandle releases an opened one.
  virtual StatusOr<std::string> ExportHandle(void* base) = 0;
  virtual StatusOr<void*> OpenHandle(const std::string& handle) = 0;
  virtual void CloseHandle(void* opened) = 0;
  // A short name for logs and docs ("cuda:0", "fake").
  virtual std::string name() const = 0;
};

// The CUDA implementation for `device`; UNIMPLEMENTED in builds without PD_WITH_CUDA,
// UNAVAILABLE when no GPU is present.
StatusOr<std::shared_ptr<DeviceCopier>> MakeCudaCopier(int device);

// Host-memory fake (see the header comment). delay: sleep per fence before its copies run.
class FakeDeviceCopier final : public DeviceCopier {
 public:
  explicit FakeDeviceCopier(std::chrono::microseconds delay = std::chrono::microseconds{200},
                            uint8_t poison = 0xEE);
  ~FakeDeviceCopier() override;
  void* AllocPinned(size_t bytes) override;
  void FreePinned(void* p) override;
  StatusOr<uint64_t> Enqueue(std::span<const CopyOp> ops) override;
  uint64_t Completed() const override { return completed_.load(); }
  Status Wait(uint64_t fence, std::chrono::milliseconds timeout) override;
  int notify_fd() const override { return efd_; }
  StatusOr<std::string> ExportHandle(void* base) override;
  StatusOr<void*> OpenHandle(const std::string& handle) override;
  void CloseHandle(void*) override {}
  std::string name() const override { return "fake"; }

  // Test hooks.
  void FailNextEnqueue() { fail_next_ = true; }
  uint64_t bytes_copied() const { return bytes_.load(); }
  // Most fences enqueued and not completed at one time (>= 2 means copies were queued while
  // earlier ones were still running: the pipeline is not serialised).
  uint64_t max_outstanding() const { return max_outstanding_.load(); }
  size_t pinned_live() const;

 private:
  void Run();
  const std::chrono::microseconds delay_;
  const uint8_t poison_;
  int efd_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::pair<uint64_t, std::vector<CopyOp>>> queue_;
  uint64_t next_fence_ = 1;
  std::atomic<uint64_t> completed_{0}, bytes_{0}, max_outstanding_{0};
  std::atomic<bool> fail_next_{false};
  std::vector<void*> pinned_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace pd::kvtransfer
