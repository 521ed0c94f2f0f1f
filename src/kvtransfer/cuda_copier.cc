// DeviceCopier over the CUDA runtime (built with PD_WITH_CUDA): one non-blocking stream per
// copier, cudaMemcpyAsync(cudaMemcpyDefault) per op, a host callback per fence that advances
// Completed() and signals the eventfd, cudaHostAlloc'd bounce memory, CUDA IPC handles.
#include <cuda_runtime_api.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "kvtransfer/device_copier.h"

namespace pd::kvtransfer {
namespace {

Status CudaError(const char* what, cudaError_t e) {
  return Internal(std::string("kvtransfer cuda: ") + what + ": " + cudaGetErrorString(e));
}

class CudaCopier final : public DeviceCopier {
 public:
  explicit CudaCopier(int device) : device_(device) {}
  ~CudaCopier() override {
    if (stream_) {
      cudaSetDevice(device_);
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    if (efd_ >= 0) close(efd_);
  }

  Status Init() {
    int n = 0;
    if (cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess || n <= device_) {
      return Unavailable("kvtransfer cuda: no CUDA device " + std::to_string(device_));
    }
    if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) return CudaError("set device", e);
    if (cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
        e != cudaSuccess) {
      return CudaError("stream", e);
    }
    efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return OkStatus();
  }

  void* AllocPinned(size_t bytes) override {
    cudaSetDevice(device_);
    void* p = nullptr;
    return cudaHostAlloc(&p, bytes, cudaHostAllocPortable) == cudaSuccess ? p : nullptr;
  }
  void FreePinned(void* p) override {
    if (p) cudaFreeHost(p);
  }

  StatusOr<uint64_t> Enqueue(std::span<const CopyOp> ops) override {
    std::lock_guard<std::mutex> l(enqueue_mu_);
    if (!sticky_.ok()) return sticky_;
    cudaSetDevice(device_);
    for (const CopyOp& op : ops) {
      if (op.bytes == 0) continue;
      if (cudaError_t e = cudaMemcpyAsync(op.dst, op.src, op.bytes, cudaMemcpyDefault, stream_);
          e != cudaSuccess) {
        sticky_ = CudaError("cudaMemcpyAsync", e);
        return sticky_;
      }
    }
    if (cudaError_t e = cudaLaunchHostFunc(stream_, &CudaCopier::OnDone, this); e != cudaSuccess) {
      sticky_ = CudaError("cudaLaunchHostFunc", e);
      return sticky_;
    }
    return ++enqueued_;
  }
  uint64_t Completed() const override { return completed_.load(); }

  Status Wait(uint64_t fence, std::chrono::milliseconds timeout) override {
    const auto until = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> l(done_mu_);
    while (completed_.load() < fence) {
      if (std::chrono::steady_clock::now() >= until) {
        return DeadlineExceeded("kvtransfer cuda: copy fence " + std::to_string(fence) +
                                " not done");
      }
      done_cv_.wait_for(l, std::chrono::milliseconds(50));
      if (completed_.load() < fence) {  // a failed stream never runs its callbacks
        cudaSetDevice(device_);
        const cudaError_t e = cudaStreamQuery(stream_);
        if (e != cudaSuccess && e != cudaErrorNotReady) return CudaError("copy stream", e);
      }
    }
    return OkStatus();
  }
  int notify_fd() const override { return efd_; }

  StatusOr<std::string> ExportHandle(void* base) override {
    cudaSetDevice(device_);
    cudaIpcMemHandle_t h;
    if (cudaError_t e = cudaIpcGetMemHandle(&h, base); e != cudaSuccess) {
      return CudaError("cudaIpcGetMemHandle", e);
    }
    return std::string(reinterpret_cast<const char*>(&h), sizeof(h));
  }
  StatusOr<void*> OpenHandle(const std::string& handle) override {
    if (handle.size() != sizeof(cudaIpcMemHandle_t)) {
      return InvalidArgument("kvtransfer cuda: bad IPC handle size");
    }
    cudaSetDevice(device_);
    cudaIpcMemHandle_t h;
    std::memcpy(&h, handle.data(), sizeof(h));
    void* p = nullptr;
    if (cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
        e != cudaSuccess) {
      return CudaError("cudaIpcOpenMemHandle", e);
    }
    return p;
  }
  void CloseHandle(void* opened) override {
    cudaSetDevice(device_);
    cudaIpcCloseMemHandle(opened);
  }
  std::string name() const override { return "cuda:" + std::to_string(device_); }

 private:
  // Runs on a CUDA driver thread: no CUDA calls here.
  static void OnDone(void* self) {
    auto* c = static_cast<CudaCopier*>(self);
    {
      std::lock_guard<std::mutex> l(c->done_mu_);
      c->completed_.fetch_add(1);
    }
    c->done_cv_.notify_all();
    const uint64_t one = 1;
    (void)!write(c->efd_, &one, sizeof(one));
  }

  const int device_;
  cudaStream_t stream_ = nullptr;
  int efd_ = -1;
  std::mutex enqueue_mu_;
  uint64_t enqueued_ = 0;
  Status sticky_;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> completed_{0};
};

}  // namespace

StatusOr<std::shared_ptr<DeviceCopier>> MakeCudaCopier(int device) {
  auto c = std::make_shared<CudaCopier>(device);
  PD_RETURN_IF_ERROR(c->Init());
  return std::shared_ptr<DeviceCopier>(std::move(c));
}

}  // namespace pd::kvtransfer
