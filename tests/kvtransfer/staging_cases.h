// Transfer cases for GPU arenas, shared by the fake-copier unit test (staging_test.cc: host
// memory standing in for the GPU, CI) and the real-GPU test (gpu_test.cc, label gpu). A Backend
// allocates "device" memory, moves bytes in and out of it, and makes the engine's copier.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "kvtransfer/device_copier.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer::testing {

using std::chrono::milliseconds;

struct Backend {
  std::function<void*(size_t)> alloc;
  std::function<void(void*)> free;
  std::function<void(void*, const void*, size_t)> upload;    // host -> "device"
  std::function<void(void*, const void*, size_t)> download;  // "device" -> host
  std::function<std::shared_ptr<DeviceCopier>()> copier;     // one per engine
};

// Host memory standing in for the GPU, moved by the FakeDeviceCopier (poisons in-flight
// destinations, completes fences after `delay`): the CI backend of the staging tests.
inline Backend FakeBackend(std::chrono::microseconds delay = std::chrono::microseconds{150}) {
  Backend b;
  b.alloc = [](size_t n) { return std::malloc(n); };
  b.free = [](void* p) { std::free(p); };
  b.upload = [](void* d, const void* s, size_t n) { std::memcpy(d, s, n); };
  b.download = [](void* d, const void* s, size_t n) { std::memcpy(d, s, n); };
  b.copier = [delay] { return std::make_shared<FakeDeviceCopier>(delay); };
  return b;
}

inline std::vector<uint8_t> Random(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return v;
}

// An arena on the "device" (kCuda) or in host memory.
struct Arena {
  Arena(const Backend& b, size_t n, bool device) : be(b), bytes(n), on_device(device) {
    if (device) {
      base = static_cast<uint8_t*>(b.alloc(n));
      std::vector<uint8_t> zero(n, 0);
      b.upload(base, zero.data(), n);
    } else {
      host.assign(n, 0);
      base = host.data();
    }
  }
  ~Arena() {
    if (on_device) be.free(base);
  }
  void Set(const std::vector<uint8_t>& v) {
    if (on_device) be.upload(base, v.data(), v.size());
    else std::memcpy(base, v.data(), v.size());
  }
  std::vector<uint8_t> Get() const {
    std::vector<uint8_t> v(bytes);
    if (on_device) be.download(v.data(), base, bytes);
    else std::memcpy(v.data(), base, bytes);
    return v;
  }
  ArenaSpec Spec() const {
    return {base, bytes, on_device ? MemoryKind::kCuda : MemoryKind::kHost, 0};
  }
  Backend be;  // a copy: callers pass temporaries
  size_t bytes;
  bool on_device;
  uint8_t* base = nullptr;
  std::vector<uint8_t> host;
};

struct Rig {
  Rig(const Backend& b, size_t n, bool src_dev, bool dst_dev, EngineOptions base = {})
      : src_arena(b, n, src_dev), dst_arena(b, n, dst_dev) {
    base.compat_hash = 77;
    EngineOptions so = base, ro = base;
    so.name = "prefill";
    ro.name = "decode";
    if (src_dev) so.device_copier = src_copier = b.copier();
    if (dst_dev) ro.device_copier = dst_copier = b.copier();
    src = std::make_unique<TransferEngine>(so);
    dst = std::make_unique<TransferEngine>(ro);
    EXPECT_TRUE(src->RegisterArena(src_arena.Spec()).ok());
    EXPECT_TRUE(dst->RegisterArena(dst_arena.Spec()).ok());
    Status st = src->Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    st = dst->Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    auto p = src->LoadRemoteMetadata(dst->LocalMetadata());
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    peer = p.ok() ? *p : 0;
  }
  ~Rig() {  // engines first: they drain their copiers before the arenas go
    src.reset();
    dst.reset();
  }
  Arena src_arena, dst_arena;
  std::shared_ptr<DeviceCopier> src_copier, dst_copier;
  std::unique_ptr<TransferEngine> src, dst;
  PeerId peer = 0;
};

// Waits for the transfer; at the moment the notification is visible the destination must hold
// every byte (the ACK, hence completion and notification, follow the host->device copy).
// `o` carries the transport and its options (default tcp).
inline void WriteWithNotificationCase(const Backend& b, bool src_dev, bool dst_dev,
                                      size_t n = 24 << 20, EngineOptions o = {}) {
  o.chunk_bytes = 256 << 10;
  Rig r(b, n, src_dev, dst_dev, o);
  const auto data = Random(n, 11);
  r.src_arena.Set(data);
  // Unaligned pieces, a run of small descs, one big range; the two lists are cut differently.
  std::vector<Desc> l, rr;
  uint64_t total = 0;
  l.push_back({0, 3, 1000});
  for (int i = 0; i < 300; ++i) l.push_back({0, 8192 + static_cast<uint64_t>(i) * 4096, 4000});
  l.push_back({0, n / 4, n / 2});
  for (const Desc& d : l) total += d.length;
  rr.push_back({0, 17, total / 2});
  rr.push_back({0, (n / 2) + 5, total - total / 2});
  auto id = r.src->Post(Op::kWrite, r.peer, l, rr, "layer-7");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  std::vector<Notification> notes;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (notes.empty() && std::chrono::steady_clock::now() < until) {
    notes = r.dst->GetNotifications();
    if (notes.empty()) std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].bytes, "layer-7");
  const auto got = r.dst_arena.Get();  // read right at the notification
  // The local descs as one byte stream: its first half lands at 17, the rest at n/2+5.
  std::vector<uint8_t> stream, want(n, 0);
  for (const Desc& d : l) {
    stream.insert(stream.end(), data.begin() + static_cast<long>(d.offset),
                  data.begin() + static_cast<long>(d.offset + d.length));
  }
  std::memcpy(want.data() + 17, stream.data(), total / 2);
  std::memcpy(want.data() + n / 2 + 5, stream.data() + total / 2, total - total / 2);
  EXPECT_TRUE(got == want) << "destination differs from the source stream";
  auto res = r.src->Wait(*id, milliseconds(10000));
  EXPECT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  r.src->Release(*id);
  EXPECT_EQ(r.src->Stats().transport_transfers, 0u);
}

// READ pulls remote bytes into local memory (either side on the device).
inline void ReadCase(const Backend& b, bool src_dev, bool dst_dev, size_t n = 8 << 20) {
  Rig r(b, n, src_dev, dst_dev);
  const auto data = Random(n, 5);
  r.dst_arena.Set(data);  // the remote (decode) side holds the data; prefill reads it
  const std::vector<Desc> local = {{0, 1, n - 4096}};
  const std::vector<Desc> remote = {{0, 4095, n - 4096}};
  auto id = r.src->Post(Op::kRead, r.peer, local, remote);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto res = r.src->Wait(*id, milliseconds(20000));
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  const auto got = r.src_arena.Get();
  EXPECT_EQ(std::memcmp(got.data() + 1, data.data() + 4095, n - 4096), 0);
  r.src->Release(*id);
}

}  // namespace pd::kvtransfer::testing
