// GPU arenas over tcp with the FakeDeviceCopier (host memory standing in for the GPU): the
// bounce-buffer pipeline's ordering and bookkeeping, in CI. The fake poisons every destination
// while its copy is "in flight" and completes fences only after a delay, so a frame sent before
// its device->host copy finished, or an ACK / notification before the host->device copy
// finished, shows up as wrong bytes.
#include <gtest/gtest.h>

#include "kvtransfer/device_copier.h"
#include "staging_cases.h"

namespace pd::kvtransfer {
namespace {

using testing::Backend;
using testing::FakeBackend;
using testing::Rig;

TEST(StagingTest, DeviceToDeviceWriteNotifiesAfterLastCopy) {
  testing::WriteWithNotificationCase(FakeBackend(), true, true);
}
TEST(StagingTest, DeviceToHostAndHostToDevice) {
  testing::WriteWithNotificationCase(FakeBackend(), true, false, 8 << 20);
  testing::WriteWithNotificationCase(FakeBackend(), false, true, 8 << 20);
}
TEST(StagingTest, ReadIntoAndFromDevice) {
  testing::ReadCase(FakeBackend(), true, true);
  testing::ReadCase(FakeBackend(), false, true);
  testing::ReadCase(FakeBackend(), true, false);
}

// The copies of later chunks are queued while earlier ones are still running / on the wire,
// and every byte went through the copier on both sides.
TEST(StagingTest, CopiesArePipelined) {
  const Backend b = FakeBackend(std::chrono::microseconds{300});
  const size_t n = 16 << 20;
  Rig r(b, n, true, true);
  r.src_arena.Set(testing::Random(n, 3));
  auto id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, n}},
                        std::vector<Desc>{{0, 0, n}});
  ASSERT_TRUE(id.ok());
  auto res = r.src->Wait(*id, std::chrono::milliseconds(30000));
  ASSERT_EQ(res.state, TransferState::kDone) << res.status.ToString();
  auto* sc = static_cast<FakeDeviceCopier*>(r.src_copier.get());
  auto* dc = static_cast<FakeDeviceCopier*>(r.dst_copier.get());
  EXPECT_EQ(sc->bytes_copied(), n);
  EXPECT_EQ(dc->bytes_copied(), n);
  EXPECT_GE(sc->max_outstanding(), 2u) << "device->host copies were serialised with sends";
  EXPECT_EQ(r.src_arena.Get(), r.dst_arena.Get());
  r.src->Release(*id);
}

// Fewer bounce slots than paths: chunks wait for slots, nothing deadlocks.
TEST(StagingTest, TwoSlotsFourPaths) {
  EngineOptions o;
  o.staging_slots = 2;
  o.num_paths = 4;
  o.chunk_bytes = 64 << 10;
  const size_t n = 4 << 20;
  Rig r(FakeBackend(std::chrono::microseconds{50}), n, true, true, o);
  r.src_arena.Set(testing::Random(n, 9));
  auto id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, n}},
                        std::vector<Desc>{{0, 0, n}}, "x");
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(r.src->Wait(*id, std::chrono::milliseconds(30000)).state, TransferState::kDone);
  EXPECT_EQ(r.src_arena.Get(), r.dst_arena.Get());
}

TEST(StagingTest, CopierFailureFailsTheTransferCleanly) {
  const size_t n = 1 << 20;
  Rig r(FakeBackend(), n, true, true);
  static_cast<FakeDeviceCopier*>(r.src_copier.get())->FailNextEnqueue();
  auto id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, n}},
                        std::vector<Desc>{{0, 0, n}}, "never");
  ASSERT_TRUE(id.ok());
  auto res = r.src->Wait(*id, std::chrono::milliseconds(10000));
  EXPECT_EQ(res.state, TransferState::kError);
  EXPECT_NE(res.status.message().find("staging"), std::string::npos) << res.status.ToString();
  r.src->Release(*id);
  EXPECT_EQ(r.src->Stats().transport_transfers, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(r.dst->GetNotifications().empty());
  // The engine still works afterwards.
  id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, 4096}},
                   std::vector<Desc>{{0, 0, 4096}});
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(r.src->Wait(*id, std::chrono::milliseconds(10000)).state, TransferState::kDone);
}

// Released mid-flight and destroyed with copies queued: no crash, no leak (ASan), bounce memory
// returned.
TEST(StagingTest, ReleaseAndShutdownWithCopiesInFlight) {
  const size_t n = 16 << 20;
  std::shared_ptr<DeviceCopier> copier;
  {
    Rig r(FakeBackend(std::chrono::microseconds{500}), n, true, true);
    copier = r.src_copier;
    auto id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, n}},
                          std::vector<Desc>{{0, 0, n}});
    ASSERT_TRUE(id.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    r.src->Release(*id);
    id = r.src->Post(Op::kWrite, r.peer, std::vector<Desc>{{0, 0, n}},
                     std::vector<Desc>{{0, 0, n}});
    ASSERT_TRUE(id.ok());
  }  // engines destroyed with the second transfer in flight
  EXPECT_EQ(static_cast<FakeDeviceCopier*>(copier.get())->pinned_live(), 0u);
}

// GPU arenas over rdma are staged (rdma_stage_test.cc); without a device the engine says that
// the device is missing, not that GPU arenas are refused.
TEST(StagingTest, RdmaAcceptsGpuArenas) {
  std::vector<uint8_t> mem(4096);
  EngineOptions o;
  o.transport = "rdma";
  o.device_copier = std::make_shared<FakeDeviceCopier>();
  TransferEngine e(o);
  ASSERT_TRUE(e.RegisterArena({mem.data(), mem.size(), MemoryKind::kCuda, 0}).ok());
  const Status st = e.Start();
  if (st.ok()) GTEST_SKIP() << "an RDMA device exists here";
  EXPECT_EQ(st.message().find("GPU"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("rdma"), std::string::npos) << st.ToString();
}

TEST(StagingTest, GpuArenaWithoutCudaOrDeviceIsRefusedClearly) {
  std::vector<uint8_t> mem(4096);
  EngineOptions o;  // no injected copier: the CUDA one, which needs a build and a GPU
  TransferEngine e(o);
  ASSERT_TRUE(e.RegisterArena({mem.data(), mem.size(), MemoryKind::kCuda, 0}).ok());
  Status st = e.Start();
  if (st.ok()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_TRUE(st.code() == StatusCode::kUnimplemented || st.code() == StatusCode::kUnavailable)
      << st.ToString();
}

}  // namespace
}  // namespace pd::kvtransfer
