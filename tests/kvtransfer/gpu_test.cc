// GPU arenas on a real GPU (label gpu; skips without a CUDA device or in builds without CUDA):
// byte-exact GPU->GPU, GPU->host, host->GPU writes over tcp loopback through the CUDA copier's
// pinned bounce buffers, notifications after the last host->device copy, READ into and out of
// GPU memory, and CUDA IPC across two processes over the local transport (kvtransfer_peer).
#include <gtest/gtest.h>

#ifdef PD_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include <cstdio>
#include <string>

#include "peer_process.h"
#include "fake_nic.h"
#include "staging_cases.h"

namespace pd::kvtransfer {
namespace {

using std::chrono::milliseconds;

bool HaveGpu() {
#ifdef PD_WITH_CUDA
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
#else
  return false;
#endif
}

#define REQUIRE_GPU() \
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device (or a build without PD_WITH_CUDA)"

testing::Backend CudaBackend() {
  testing::Backend b;
#ifdef PD_WITH_CUDA
  b.alloc = [](size_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, n), cudaSuccess);
    return p;
  };
  b.free = [](void* p) { cudaFree(p); };
  b.upload = [](void* d, const void* s, size_t n) {
    EXPECT_EQ(cudaMemcpy(d, s, n, cudaMemcpyHostToDevice), cudaSuccess);
  };
  b.download = [](void* d, const void* s, size_t n) {
    EXPECT_EQ(cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost), cudaSuccess);
  };
  b.copier = [] {
    auto c = MakeCudaCopier(0);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : nullptr;
  };
#endif
  return b;
}

// The rdma GPU staging (rdma_stage.cc) with the real CUDA copier, on the fake verbs layer (no
// NIC here): GPU memory is touched only by cudaMemcpyAsync into / out of the pinned rings, the
// notification is checked against GPU memory.
TEST(GpuTest, RdmaFakeVerbsGpuStagingByteExact) {
  REQUIRE_GPU();
  testing::FakeNicScope fake_nic;
  EngineOptions o;
  o.transport = "rdma";
  testing::WriteWithNotificationCase(CudaBackend(), true, true, 32 << 20, o);
  testing::WriteWithNotificationCase(CudaBackend(), true, false, 8 << 20, o);
  testing::WriteWithNotificationCase(CudaBackend(), false, true, 8 << 20, o);
}

TEST(GpuTest, TcpGpuToGpuByteExactNotifiedAfterData) {
  REQUIRE_GPU();
  testing::WriteWithNotificationCase(CudaBackend(), true, true, 64 << 20);
}
TEST(GpuTest, TcpGpuToHostAndHostToGpu) {
  REQUIRE_GPU();
  testing::WriteWithNotificationCase(CudaBackend(), true, false);
  testing::WriteWithNotificationCase(CudaBackend(), false, true);
}
TEST(GpuTest, TcpReadIntoAndFromGpu) {
  REQUIRE_GPU();
  testing::ReadCase(CudaBackend(), true, true);
  testing::ReadCase(CudaBackend(), false, true);
  testing::ReadCase(CudaBackend(), true, false);
}

// CUDA IPC over the local transport: the receiver (another process) exports its cudaMalloc'd
// arena; this process opens the handle and copies GPU->GPU (and READs back).
TEST(GpuTest, LocalCudaIpcAcrossProcesses) {
  REQUIRE_GPU();
#ifdef PD_WITH_CUDA
  const size_t n = 32 << 20;
  PeerProcess peer("decode-ipc", n, 0, {"--transport", "local", "--mem", "gpu"});
  ASSERT_FALSE(peer.meta().empty());
  const testing::Backend be = CudaBackend();
  testing::Arena src_arena(be, n, true);
  const auto data = testing::Random(n, 21);
  src_arena.Set(data);
  EngineOptions o;
  o.name = "prefill-ipc";
  o.transport = "local";
  o.compat_hash = kPeerCompat;
  {
    TransferEngine e(o);
    ASSERT_TRUE(e.RegisterArena(src_arena.Spec()).ok());
    Status st = e.Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
    auto id = e.LoadRemoteMetadata(peer.meta());
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    const std::vector<Desc> l = {{0, 1, 4093}, {0, 1 << 20, 16 << 20}};
    const std::vector<Desc> r = {{0, 13, 4093 + (16 << 20)}};
    auto t = e.Post(Op::kWrite, *id, l, r, "ipc-done");
    ASSERT_TRUE(t.ok());
    auto res = e.Wait(*t, milliseconds(20000));
    ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
    EXPECT_EQ(peer.Ask("notes"), "NOTES 1 ipc-done");
    std::vector<uint8_t> want(data.begin() + 1, data.begin() + 1 + 4093);
    want.insert(want.end(), data.begin() + (1 << 20), data.begin() + (1 << 20) + (16 << 20));
    EXPECT_EQ(peer.Ask("sum 13 " + std::to_string(want.size())),
              "SUM " + std::to_string(Fnv(want.data(), want.size())));
    e.Release(*t);
    t = e.Post(Op::kRead, *id, std::vector<Desc>{{0, n - 8192, 8192}},
               std::vector<Desc>{{0, 13, 8192}});
    ASSERT_TRUE(t.ok());
    ASSERT_EQ(e.Wait(*t, milliseconds(20000)).state, TransferState::kDone);
    const auto got = src_arena.Get();
    EXPECT_EQ(std::memcmp(got.data() + n - 8192, want.data(), 8192), 0);
  }
#endif
}

}  // namespace
}  // namespace pd::kvtransfer
