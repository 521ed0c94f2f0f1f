// pd-prefill / pd-decode with a GPU KV arena, in CI without a GPU: the runner is a FakeRunner
// whose host arena claims to be on a GPU, and each daemon's transfer engine gets a
// FakeDeviceCopier (host memory stands in for the GPU; every destination is poisoned while its
// copy is in flight). For each transport (tcp: pinned bounce buffers; local: "CUDA IPC" that the
// fake resolves to pointers; rdma: pinned bounce rings on the fake verbs layer) and each
// `transport.gpu_kv` mode:
//   * direct (auto): the GPU arena is registered with the engine itself, no host
//     mirror and no runner staging copy; P posts each layer from its arena, D admits the blocks
//     as soon as the notice arrives (the transports deliver it after the device copy's fence:
//     an early admission would read poison and change the tokens);
//   * mirror: the old path (GPU -> host mirror -> wire -> host mirror -> GPU through
//     ModelRunner::CopyKv), kept for A/B runs.
// Outputs must equal the independent reference (FakeReferenceNext), prefix hits on both sides
// included, and no block may leak.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>

#include "decode/decode_service.h"
#include "kvtransfer/device_copier.h"
#include "kvtransfer/rdma/fake_verbs.h"
#include "kvtransfer/rdma/rdma_transport.h"
#include "prefill/prefill_service.h"
#include "serving/fake_runner.h"

namespace pd::serving {
namespace {

namespace v1 = ::pdserve::v1;

// A FakeRunner whose arena reports on_gpu; CopyKv is a memcpy (the mirror path's staging).
class GpuLikeRunner final : public ModelRunner {
 public:
  explicit GpuLikeRunner(const FakeRunnerOptions& o) : inner_(o), arena_(inner_.kv_arena()) {
    arena_.on_gpu = true;
    arena_.gpu_id = 0;
  }
  const ModelConfig& config() const override { return inner_.config(); }
  const KvArena& kv_arena() const override { return arena_; }
  Status Forward(const ForwardBatch& b, ForwardResult* r) override { return inner_.Forward(b, r); }
  std::string backend_name() const override { return "fake-gpu"; }
  Status CopyKv(void* host_base, const std::vector<std::pair<size_t, size_t>>& ranges,
                bool to_host) override {
    auto* dev = static_cast<uint8_t*>(arena_.base);
    auto* host = static_cast<uint8_t*>(host_base);
    for (const auto& [off, len] : ranges) {
      if (off > arena_.bytes || len > arena_.bytes - off) return InvalidArgument("range");
      std::memcpy(to_host ? host + off : dev + off, to_host ? dev + off : host + off, len);
      staged_ += static_cast<int64_t>(len);
    }
    return OkStatus();
  }
  int64_t staged() const { return staged_.load(); }

 private:
  FakeRunner inner_;
  KvArena arena_;
  std::atomic<int64_t> staged_{0};
};

struct Node {
  GpuLikeRunner* runner = nullptr;
  std::shared_ptr<kvtransfer::FakeDeviceCopier> copier;
  std::unique_ptr<Daemon> d;
  std::unique_ptr<grpc::Service> svc;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> ch;
  ~Node() {
    if (server) server->Shutdown();
    if (d) d->engine->Stop();
  }
};

// The rdma transport on an in-memory fabric (kvtransfer/rdma/fake_verbs.h) instead of a NIC.
class FakeNic final : public kvtransfer::rdma::Verbs {
 public:
  using Sge = kvtransfer::rdma::Sge;
  explicit FakeNic(kvtransfer::rdma::FakeVerbs* d) : d_(d) {}
  StatusOr<kvtransfer::rdma::MemoryRegion> RegisterMemory(void* a, size_t n) override {
    return d_->RegisterMemory(a, n);
  }
  StatusOr<uint32_t> CreateQp() override { return d_->CreateQp(); }
  kvtransfer::rdma::QpAddress LocalAddress(uint32_t q) const override {
    return d_->LocalAddress(q);
  }
  Status ConnectQp(uint32_t q, const kvtransfer::rdma::QpAddress& r) override {
    return d_->ConnectQp(q, r);
  }
  Status PostWrite(uint32_t q, uint64_t w, std::span<const Sge> s, uint64_t ra, uint32_t rk,
                   std::optional<uint32_t> imm) override {
    return d_->PostWrite(q, w, s, ra, rk, imm);
  }
  Status PostRecv(uint32_t q, uint64_t w) override { return d_->PostRecv(q, w); }
  int PollCq(std::span<kvtransfer::rdma::Completion> out) override { return d_->PollCq(out); }
  void DestroyQp(uint32_t q) override { d_->DestroyQp(q); }

 private:
  kvtransfer::rdma::FakeVerbs* d_;
};

void UseFakeNic() {
  static auto* fabric = new kvtransfer::rdma::FakeFabric();  // outlives every engine
  kvtransfer::rdma::SetVerbsFactoryForTesting([] {
    return StatusOr<std::unique_ptr<kvtransfer::rdma::Verbs>>(
        std::make_unique<FakeNic>(fabric->AddDevice()));
  });
}

std::unique_ptr<Node> Start(InstanceRole role, int num_blocks, const std::string& transport,
                            const std::string& gpu_kv) {
  if (transport == "rdma") UseFakeNic();
  FakeRunnerOptions fo;
  fo.num_blocks = num_blocks;
  auto runner = std::make_unique<GpuLikeRunner>(fo);
  InstanceConfig inst;
  inst.role = role;
  inst.name = role == InstanceRole::kDecode ? "decode-0" : "prefill-0";
  inst.model_name = "fake";
  inst.prefill_chunk_tokens = 6;
  inst.max_batch_tokens = 64;
  inst.kv.block_size = runner->kv_arena().layout.block_size;
  inst.timeouts.transfer_ms = 5000;
  inst.transport.kind = transport;
  inst.transport.gpu_kv = gpu_kv;
  auto n = std::make_unique<Node>();
  n->runner = runner.get();
  // 1 ms per fence: long poison windows, so reading a destination before its fence shows.
  n->copier = std::make_shared<kvtransfer::FakeDeviceCopier>(std::chrono::microseconds(1000));
  DaemonOptions o;
  o.device_copier = n->copier;
  auto d = MakeDaemon(inst, std::move(runner), o);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  if (!d.ok()) return nullptr;
  n->d = std::move(*d);
  if (role == InstanceRole::kDecode) {
    n->svc = std::make_unique<decode::DecodeServiceImpl>(n->d.get());
  } else {
    auto* p = new prefill::PrefillServiceImpl(n->d.get());
    n->svc.reset(p);
    n->d->engine->set_layer_hook(
        [p](const std::vector<ChunkInfo>& c, int layer) { p->OnLayer(c, layer); });
  }
  n->d->engine->Start();
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(n->svc.get());
  n->server = b.BuildAndStart();
  n->ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                              grpc::InsecureChannelCredentials());
  return n;
}

std::vector<int32_t> Reference(std::vector<int32_t> tokens, int n) {
  FakeRunnerOptions fo;
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(FakeReferenceNext(tokens, fo.num_layers, fo.vocab_size));
    tokens.push_back(out.back());
  }
  return out;
}

struct Result {
  grpc::Status status;
  std::vector<int32_t> tokens;
  int cached = -1;
  int64_t kv_bytes = -1;
};

// Reserve on D, Prefill on P (layer-wise writes into D's blocks), Decode on D.
Result Generate(Node& p, Node& d, const std::string& id, const std::vector<int32_t>& prompt,
                int max_tokens) {
  Result r;
  auto ds = v1::DecodeService::NewStub(d.ch);
  v1::ReserveRequest rr;
  rr.set_request_id(id);
  for (int32_t t : prompt) rr.add_prompt_ids(t);
  rr.set_max_tokens(max_tokens);
  v1::ReserveResponse res;
  grpc::ClientContext c1;
  if (r.status = ds->Reserve(&c1, rr, &res); !r.status.ok()) return r;
  r.cached = res.cached_tokens();
  v1::PrefillRequest pr;
  pr.set_request_id(id);
  *pr.mutable_prompt_ids() = rr.prompt_ids();
  pr.set_target(res.target());
  v1::PrefillResponse presp;
  grpc::ClientContext c2;
  if (r.status = v1::PrefillService::NewStub(p.ch)->Prefill(&c2, pr, &presp); !r.status.ok()) {
    return r;
  }
  r.kv_bytes = presp.kv_bytes();
  v1::DecodeRequest dr;
  dr.set_request_id(id);
  dr.set_lease_id(res.lease_id());
  *dr.mutable_prompt_ids() = rr.prompt_ids();
  dr.set_max_tokens(max_tokens);
  dr.set_incarnation(res.incarnation());
  grpc::ClientContext c3;
  c3.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = ds->Decode(&c3, dr);
  v1::DecodeResponse m;
  while (reader->Read(&m)) r.tokens.insert(r.tokens.end(), m.token_ids().begin(), m.token_ids().end());
  r.status = reader->Finish();
  return r;
}

bool NoBlocksInUse(Node& n) {
  const EngineStats s = n.d->engine->Stats();
  return s.blocks.in_use_blocks == 0;
}

class GpuKvHandoff : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(GpuKvHandoff, RemotePrefillMatchesReference) {
  const auto& [transport, gpu_kv] = GetParam();
  const bool direct = gpu_kv != "mirror";
  auto p = Start(InstanceRole::kPrefill, 48, transport, gpu_kv);  // pools differ: offsets differ
  auto d = Start(InstanceRole::kDecode, 80, transport, gpu_kv);
  ASSERT_TRUE(p && d);
  for (Node* n : {p.get(), d.get()}) {
    EXPECT_EQ(n->d->kv_direct, direct);
    EXPECT_EQ(n->d->kv_mirror == nullptr, direct);
  }
  std::vector<int32_t> a;
  for (int i = 0; i < 27; ++i) a.push_back((i * 5 + 20) % 97);
  Result r1 = Generate(*p, *d, "a", a, 9);
  ASSERT_TRUE(r1.status.ok()) << r1.status.error_message();
  EXPECT_EQ(r1.tokens, Reference(a, 9));
  EXPECT_EQ(r1.kv_bytes, 7 * 3 * 32);  // 7 blocks x 3 layers x 32 bytes per block-layer
  // A longer prompt with the same prefix: both prefix caches hit, P writes what D lacks.
  std::vector<int32_t> b = a;
  for (int i = 0; i < 10; ++i) b.push_back(i);
  Result r2 = Generate(*p, *d, "b", b, 5);
  ASSERT_TRUE(r2.status.ok()) << r2.status.error_message();
  EXPECT_EQ(r2.tokens, Reference(b, 5));
  EXPECT_GT(r2.cached, 0);
  EXPECT_EQ(r2.kv_bytes, (10 - r2.cached / 4) * 3 * 32);
  const int64_t moved = r1.kv_bytes + r2.kv_bytes;
  if (direct) {
    // No staging copy through the runner; the engines' copiers moved the KV.
    EXPECT_EQ(p->runner->staged(), 0);
    EXPECT_EQ(d->runner->staged(), 0);
    if (transport == "local") {  // P copies straight into D's opened arena
      EXPECT_EQ(p->copier->bytes_copied(), static_cast<uint64_t>(moved));
    } else {  // tcp, rdma: P: device -> bounce; D: bounce -> device
      EXPECT_EQ(p->copier->bytes_copied(), static_cast<uint64_t>(moved));
      EXPECT_EQ(d->copier->bytes_copied(), static_cast<uint64_t>(moved));
    }
  } else {
    EXPECT_EQ(p->runner->staged(), moved);  // each layer GPU -> mirror once
    EXPECT_GE(d->runner->staged(), moved);  // the reserved blocks mirror -> GPU
    EXPECT_EQ(p->copier->bytes_copied() + d->copier->bytes_copied(), 0u);
  }
  EXPECT_TRUE(NoBlocksInUse(*p));
  EXPECT_TRUE(NoBlocksInUse(*d));
}

INSTANTIATE_TEST_SUITE_P(
    TransportsAndModes, GpuKvHandoff,
    ::testing::Combine(::testing::Values("tcp", "local", "rdma"),
                       ::testing::Values("auto", "direct", "mirror")),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + std::get<1>(info.param);
    });

// Every transport carries GPU arenas (rdma through pinned bounce rings, rdma_stage.cc), so the
// mode alone decides; the handoff tests above run each transport in each mode.
TEST(GpuKvDirect, Mode) {
  EXPECT_TRUE(*GpuKvDirect("auto"));
  EXPECT_TRUE(*GpuKvDirect("direct"));
  EXPECT_FALSE(*GpuKvDirect("mirror"));
  EXPECT_EQ(GpuKvDirect("sometimes").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pd::serving
