// pd-prefill / pd-decode services in one process over real gRPC (loopback) and the real TCP
// transfer engine, with FakeRunner models whose output depends on the KV read back from the
// arena: Reserve on D -> Prefill on P (layer-wise writes into D's blocks + notice) -> Decode on D
// must give the reference tokens; so must local prefill on D and prefix-cache hits on both
// sides; mismatched compat hashes are refused; no blocks leak.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "decode/decode_service.h"
#include "model/makemodel.h"
#include "prefill/prefill_service.h"
#include "serving/fake_runner.h"

namespace pd::serving {
namespace {

namespace v1 = ::pdserve::v1;

std::vector<int32_t> Reference(std::vector<int32_t> tokens, int n, const FakeRunnerOptions& o) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(FakeReferenceNext(tokens, o.num_layers, o.vocab_size));
    tokens.push_back(out.back());
  }
  return out;
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 5 + salt * 17 + 3) % 97);
  return p;
}

struct Node {
  std::unique_ptr<Daemon> d;
  std::unique_ptr<grpc::Service> svc;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> ch;
};

Node StartWith(InstanceRole role, std::unique_ptr<ModelRunner> runner, int chunk) {
  InstanceConfig inst;
  inst.role = role;
  inst.name = role == InstanceRole::kDecode ? "decode-0" : "prefill-0";
  inst.model_name = "fake";
  inst.prefill_chunk_tokens = chunk;
  inst.max_batch_tokens = 64;
  inst.kv.block_size = runner->kv_arena().layout.block_size;
  inst.timeouts.transfer_ms = 5000;
  Node n;
  auto d = MakeDaemon(inst, std::move(runner));
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  n.d = std::move(*d);
  if (role == InstanceRole::kDecode) {
    n.svc = std::make_unique<decode::DecodeServiceImpl>(n.d.get());
  } else {
    auto* p = new prefill::PrefillServiceImpl(n.d.get());
    n.svc.reset(p);
    n.d->engine->set_layer_hook(
        [p](const std::vector<ChunkInfo>& c, int layer) { p->OnLayer(c, layer); });
  }
  n.d->engine->Start();
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(n.svc.get());
  n.server = b.BuildAndStart();
  n.ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
  return n;
}

Node Start(InstanceRole role, int num_blocks, int chunk) {
  FakeRunnerOptions fo;
  fo.num_blocks = num_blocks;
  return StartWith(role, std::make_unique<FakeRunner>(fo), chunk);
}

struct CallResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  int cached = -1;
  int p_cached = -1;
  int64_t kv_bytes = -1;
};

CallResult Generate(Node& p, Node& d, const std::vector<int32_t>& prompt, int max_tokens, bool local,
             uint64_t compat = 0, const v1::SamplingParams& sampling = {}) {
  CallResult r;
  auto ds = v1::DecodeService::NewStub(d.ch);
  auto ps = v1::PrefillService::NewStub(p.ch);
  v1::ReserveRequest rr;
  rr.set_request_id("req-" + std::to_string(prompt.size()) + (local ? "L" : "R"));
  for (int32_t t : prompt) rr.add_prompt_ids(t);
  rr.set_max_tokens(max_tokens);
  v1::ReserveResponse res;
  grpc::ClientContext c1;
  r.status = ds->Reserve(&c1, rr, &res);
  if (!r.status.ok()) return r;
  r.cached = res.cached_tokens();
  if (!local) {
    v1::PrefillRequest pr;
    pr.set_request_id(rr.request_id());
    *pr.mutable_prompt_ids() = rr.prompt_ids();
    pr.set_target(res.target());
    pr.set_compat_hash(compat);
    *pr.mutable_sampling() = sampling;
    v1::PrefillResponse presp;
    grpc::ClientContext c2;
    r.status = ps->Prefill(&c2, pr, &presp);
    if (!r.status.ok()) {
      grpc::ClientContext c3;
      v1::CancelRequest cr;
      cr.set_request_id(rr.request_id());
      v1::CancelResponse cresp;
      (void)ds->Cancel(&c3, cr, &cresp);
      return r;
    }
    r.p_cached = presp.cached_tokens();
    r.kv_bytes = presp.kv_bytes();
  }
  v1::DecodeRequest dr;
  dr.set_request_id(rr.request_id());
  dr.set_lease_id(res.lease_id());
  dr.set_prefill_locally(local);
  *dr.mutable_prompt_ids() = rr.prompt_ids();
  dr.set_max_tokens(max_tokens);
  dr.set_incarnation(res.incarnation());
  *dr.mutable_sampling() = sampling;
  grpc::ClientContext c4;
  c4.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = ds->Decode(&c4, dr);
  v1::DecodeResponse m;
  while (reader->Read(&m)) r.tokens.insert(r.tokens.end(), m.token_ids().begin(), m.token_ids().end());
  r.status = reader->Finish();
  return r;
}

int64_t FreeBlocks(Node& n, int64_t* total) {
  v1::StatsResponse s;
  grpc::ClientContext c;
  if (n.d->inst.role == InstanceRole::kDecode) {
    EXPECT_TRUE(v1::DecodeService::NewStub(n.ch)->Stats(&c, v1::StatsRequest(), &s).ok());
  } else {
    EXPECT_TRUE(v1::PrefillService::NewStub(n.ch)->Stats(&c, v1::StatsRequest(), &s).ok());
  }
  *total = s.total_blocks();
  return s.free_blocks();
}

TEST(Handoff, RemoteAndLocalPrefillMatchReference) {
  FakeRunnerOptions fo;
  Node p = Start(InstanceRole::kPrefill, 48, 6);  // different pool sizes: remote offsets differ
  Node d = Start(InstanceRole::kDecode, 80, 6);
  const std::vector<int32_t> a = Prompt(27, 1);
  CallResult r1 = Generate(p, d, a, 9, false);
  ASSERT_TRUE(r1.status.ok()) << r1.status.error_message();
  EXPECT_EQ(r1.tokens, Reference(a, 9, fo));
  EXPECT_EQ(r1.cached, 0);
  // Same prompt + more: D and P both hit their prefix caches; P still writes what D lacks.
  std::vector<int32_t> b = a;
  for (int i = 0; i < 10; ++i) b.push_back(i);
  CallResult r2 = Generate(p, d, b, 5, false);
  ASSERT_TRUE(r2.status.ok()) << r2.status.error_message();
  EXPECT_EQ(r2.tokens, Reference(b, 5, fo));
  EXPECT_GT(r2.cached, 0);
  EXPECT_GT(r2.p_cached, 0);
  // Only the blocks D lacks cross the wire, every layer: 3 layers x 32 bytes per block-layer.
  EXPECT_EQ(r1.kv_bytes, 7 * 3 * 32);
  EXPECT_EQ(r2.kv_bytes, (10 - r2.cached / 4) * 3 * 32);
  // Conditional disaggregation: D prefills itself.
  const std::vector<int32_t> c = Prompt(13, 4);
  CallResult r3 = Generate(p, d, c, 7, true);
  ASSERT_TRUE(r3.status.ok()) << r3.status.error_message();
  EXPECT_EQ(r3.tokens, Reference(c, 7, fo));
  int64_t total = 0;
  EXPECT_EQ(FreeBlocks(d, &total), total);
  EXPECT_EQ(FreeBlocks(p, &total), total);
  for (Node* n : {&p, &d}) {
    n->server->Shutdown();
    n->d->engine->Stop();
    EXPECT_TRUE(n->d->engine->CheckInvariants().ok());
  }
}

TEST(Handoff, MismatchedCompatHashAndBadRequestsAreRefused) {
  Node p = Start(InstanceRole::kPrefill, 48, 6);
  Node d = Start(InstanceRole::kDecode, 48, 6);
  CallResult bad = Generate(p, d, Prompt(9, 2), 3, false, /*compat=*/12345);
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(bad.status.error_message().find("compat hash"), std::string::npos);
  CallResult empty = Generate(p, d, {}, 3, false);
  EXPECT_EQ(empty.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  CallResult vocab = Generate(p, d, {1, 2, 500}, 3, true);
  EXPECT_EQ(vocab.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  CallResult zero = Generate(p, d, {1, 2}, 0, true);
  EXPECT_EQ(zero.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  FakeRunnerOptions fo;
  CallResult ok = Generate(p, d, Prompt(9, 2), 3, false);
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens, Reference(Prompt(9, 2), 3, fo));
  int64_t total = 0;
  EXPECT_EQ(FreeBlocks(d, &total), total);
  for (Node* n : {&p, &d}) {
    n->server->Shutdown();
    n->d->engine->Stop();
  }
}

// The real CPU backend on a tiny random model: disaggregated output (P computes the prompt and
// writes its KV layer by layer into D's blocks) equals a plain single-runner loop (prefill the
// whole prompt, then one token per Forward), greedy and seeded sampling.
std::vector<int32_t> PlainLoop(ModelRunner& r, std::vector<int32_t> tokens, int n,
                               const SamplingParams& sp) {
  std::vector<int32_t> out;
  const int bs = r.kv_arena().layout.block_size;
  for (int i = 0; i < n; ++i) {
    ForwardBatch b;
    SeqStep st;
    st.num_cached = i == 0 ? 0 : static_cast<int>(tokens.size()) - 1;
    st.num_new_tokens = static_cast<int>(tokens.size()) - st.num_cached;
    st.sample = true;
    st.sampling = sp;
    st.sample_step = static_cast<uint64_t>(i);
    b.seqs.push_back(st);
    b.token_ids.assign(tokens.begin() + st.num_cached, tokens.end());
    const int nb = (static_cast<int>(tokens.size()) + bs - 1) / bs;
    for (int k = 0; k < nb; ++k) b.block_ids.push_back(k);
    b.block_indptr = {0, nb};
    ForwardResult res;
    EXPECT_TRUE(r.Forward(b, &res).ok());
    out.push_back(res.tokens[0]);
    tokens.push_back(res.tokens[0]);
  }
  return out;
}

TEST(Handoff, CpuBackendTinyModelMatchesSingleRunner) {
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.seed = 1;
  mo.out_dir = std::string(PD_BUILD_DIR) + "/tests/serving/tiny-model";
  ASSERT_TRUE(WriteRandomModel(mo).ok());
  RunnerOptions ro;
  ro.backend = "cpu";
  ro.model_dir = mo.out_dir;
  ro.num_kv_blocks = 64;
  ro.num_threads = 1;
  ro.max_batch_tokens = 64;
  auto mk = [&](int blocks) {
    RunnerOptions o = ro;
    o.num_kv_blocks = blocks;
    auto r = CreateModelRunner(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(*r);
  };
  auto ref = mk(64);
  Node p = StartWith(InstanceRole::kPrefill, mk(40), 7);
  Node d = StartWith(InstanceRole::kDecode, mk(72), 7);
  const int vocab = ref->config().vocab_size;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 37; ++i) prompt.push_back((i * 131 + 7) % vocab);
  CallResult greedy = Generate(p, d, prompt, 12, false);
  ASSERT_TRUE(greedy.status.ok()) << greedy.status.error_message();
  EXPECT_EQ(greedy.tokens, PlainLoop(*ref, prompt, 12, SamplingParams{}));
  CallResult local = Generate(p, d, prompt, 12, true);  // D's prefix cache + local prefill
  ASSERT_TRUE(local.status.ok()) << local.status.error_message();
  EXPECT_EQ(local.tokens, greedy.tokens);
  v1::SamplingParams sp;
  sp.set_temperature(0.9f);
  sp.set_top_k(20);
  sp.set_seed(7);
  SamplingParams psp;
  psp.temperature = 0.9f;
  psp.top_k = 20;
  psp.seed = 7;
  prompt.push_back(3);
  CallResult sampled = Generate(p, d, prompt, 10, false, 0, sp);
  ASSERT_TRUE(sampled.status.ok()) << sampled.status.error_message();
  EXPECT_EQ(sampled.tokens, PlainLoop(*ref, prompt, 10, psp));
  int64_t total = 0;
  EXPECT_EQ(FreeBlocks(d, &total), total);
  EXPECT_EQ(FreeBlocks(p, &total), total);
  for (Node* n : {&p, &d}) {
    n->server->Shutdown();
    n->d->engine->Stop();
  }
}

}  // namespace
}  // namespace pd::serving
