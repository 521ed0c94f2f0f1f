// FakeDeviceCopier (host memory standing in for a GPU) and, without CUDA, the MakeCudaCopier
// stub. The CUDA implementation is cuda_copier.cc.
#include "kvtransfer/device_copier.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pd::kvtransfer {

FakeDeviceCopier::FakeDeviceCopier(std::chrono::microseconds delay, uint8_t poison)
    : delay_(delay), poison_(poison) {
  efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  worker_ = std::thread([this] { Run(); });
}

FakeDeviceCopier::~FakeDeviceCopier() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  for (void* p : pinned_) std::free(p);
  if (efd_ >= 0) close(efd_);
}

void* FakeDeviceCopier::AllocPinned(size_t bytes) {
  void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  std::lock_guard<std::mutex> l(mu_);
  if (p) pinned_.push_back(p);
  return p;
}

void FakeDeviceCopier::FreePinned(void* p) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = std::find(pinned_.begin(), pinned_.end(), p);
  if (it == pinned_.end()) return;
  pinned_.erase(it);
  std::free(p);
}

size_t FakeDeviceCopier::pinned_live() const {
  std::lock_guard<std::mutex> l(mu_);
  return pinned_.size();
}

StatusOr<uint64_t> FakeDeviceCopier::Enqueue(std::span<const CopyOp> ops) {
  if (fail_next_.exchange(false)) return Internal("fake copier: injected copy failure");
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t fence = next_fence_++;
  queue_.emplace_back(fence, std::vector<CopyOp>(ops.begin(), ops.end()));
  const uint64_t outstanding = fence - completed_.load();
  if (outstanding > max_outstanding_.load()) max_outstanding_ = outstanding;
  cv_.notify_all();
  return fence;
}

void FakeDeviceCopier::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ with nothing left
    auto [fence, ops] = std::move(queue_.front());
    queue_.pop_front();
    l.unlock();
    // "In flight": the destinations hold garbage until the copy lands.
    for (const CopyOp& op : ops) std::memset(op.dst, poison_, op.bytes);
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    uint64_t n = 0;
    for (const CopyOp& op : ops) {
      std::memmove(op.dst, op.src, op.bytes);
      n += op.bytes;
    }
    bytes_ += n;
    l.lock();
    completed_ = fence;
    done_cv_.notify_all();
    const uint64_t one = 1;
    (void)!write(efd_, &one, sizeof(one));
  }
}

Status FakeDeviceCopier::Wait(uint64_t fence, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  if (!done_cv_.wait_for(l, timeout, [&] { return completed_.load() >= fence; })) {
    return DeadlineExceeded("fake copier: fence " + std::to_string(fence) + " not done");
  }
  return OkStatus();
}

StatusOr<std::string> FakeDeviceCopier::ExportHandle(void* base) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "fake:%llx",
                static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(base)));
  return std::string(buf);
}

StatusOr<void*> FakeDeviceCopier::OpenHandle(const std::string& handle) {
  unsigned long long v = 0;
  if (std::sscanf(handle.c_str(), "fake:%llx", &v) != 1 || v == 0) {
    return InvalidArgument("fake copier: bad handle");
  }
  return reinterpret_cast<void*>(static_cast<uintptr_t>(v));
}

#ifndef PD_WITH_CUDA
StatusOr<std::shared_ptr<DeviceCopier>> MakeCudaCopier(int) {
  return Unimplemented("kvtransfer: GPU arenas need a build with PD_WITH_CUDA");
}
#endif

}  // namespace pd::kvtransfer
