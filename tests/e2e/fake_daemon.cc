// Test double for pd-prefill / pd-decode: speaks the internal services with a real BlockManager
// (leases, prefix cache, free-block accounting) but a toy "model" whose next token is a pure
// function of the previous token and the position (FakeNextToken). It lets the router, pd-up and
// the tools be tested end to end without a model backend. The role comes from argv[0]
// (pd-prefill / pd-decode) or --role.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "common/deploy_config.h"
#include "kvcache/block_manager.h"
#include "model/model_config.h"
#include "pdserve.grpc.pb.h"

namespace v1 = ::pdserve::v1;
using SteadyClock = std::chrono::steady_clock;

namespace {

int32_t FakeNextToken(int32_t last, int64_t pos, int vocab) {
  return static_cast<int32_t>((static_cast<int64_t>(last) * 31 + pos * 7 + 3) % vocab);
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

class FakeDaemon final : public v1::DecodeService::Service, public v1::PrefillService::Service {
 public:
  FakeDaemon(const pd::InstanceConfig& c, int vocab)
      : cfg_(c),
        vocab_(vocab),
        blocks_(c.kv.blocks > 0 ? c.kv.blocks : 256, c.kv.block_size),
        incarnation_(std::random_device{}()) {}

  grpc::Status Reserve(grpc::ServerContext*, const v1::ReserveRequest* req,
                       v1::ReserveResponse* resp) override {
    std::lock_guard<std::mutex> l(mu_);
    blocks_.ExpireLeases(NowMs());
    std::vector<int32_t> ids(req->prompt_ids().begin(), req->prompt_ids().end());
    auto r = blocks_.Reserve(ids, NowMs() + cfg_.lease_ms);
    if (!r.ok()) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, r.status().message());
    resp->set_lease_id(r->lease);
    resp->set_cached_tokens(r->num_cached_tokens);
    resp->set_target(cfg_.name);
    resp->set_incarnation(incarnation_);
    leases_[req->request_id()] = r->lease;
    return grpc::Status::OK;
  }

  grpc::Status Decode(grpc::ServerContext* ctx, const v1::DecodeRequest* req,
                      grpc::ServerWriter<v1::DecodeResponse>* w) override {
    std::vector<int32_t> toks(req->prompt_ids().begin(), req->prompt_ids().end());
    const pd::SeqId seq = next_seq_++;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (req->lease_id() == 0) {  // local prefill into fresh blocks (no Reserve, or fallback)
        auto a = blocks_.AllocateForPrompt(seq, toks);
        if (!a.ok()) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, a.status().message());
      } else {
        const pd::Status s = blocks_.Commit(req->lease_id(), seq, NowMs());
        leases_.erase(req->request_id());
        if (!s.ok()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.message());
      }
      seqs_[req->request_id()] = seq;
      ++running_;
    }
    grpc::Status result = grpc::Status::OK;
    for (int i = 0; i < req->max_tokens(); ++i) {
      if (ctx->IsCancelled() || Cancelled(req->request_id())) {
        result = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
        break;
      }
      const int32_t next = FakeNextToken(toks.back(), static_cast<int64_t>(toks.size()), vocab_);
      toks.push_back(next);
      {
        std::lock_guard<std::mutex> l(mu_);
        if (!blocks_.AppendSlots(seq, 1).ok()) {
          result = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "KV pool full");
          break;
        }
      }
      v1::DecodeResponse m;
      m.add_token_ids(next);
      if (i + 1 == req->max_tokens()) m.set_finish_reason(v1::FINISH_REASON_LENGTH);
      if (!w->Write(m)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::lock_guard<std::mutex> l(mu_);
    (void)blocks_.CommitFullBlocks(seq,
                                   std::span<const int32_t>(toks.data(), req->prompt_ids_size()));
    (void)blocks_.Free(seq);
    seqs_.erase(req->request_id());
    cancelled_.erase(req->request_id());
    --running_;
    return result;
  }

  grpc::Status Prefill(grpc::ServerContext* ctx, const v1::PrefillRequest* req,
                       v1::PrefillResponse* resp) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      ++running_;
    }
    // "Compute": 1 ms per 8 prompt tokens, cancellable.
    const auto until = SteadyClock::now() + std::chrono::milliseconds(req->prompt_ids_size() / 8);
    while (SteadyClock::now() < until && !ctx->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      --running_;
    }
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    ++steps_;
    const int n = req->prompt_ids_size();
    resp->set_first_token(FakeNextToken(req->prompt_ids(n - 1), n, vocab_));
    return grpc::Status::OK;
  }

  grpc::Status Cancel(grpc::ServerContext*, const v1::CancelRequest* req,
                      v1::CancelResponse*) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = leases_.find(req->request_id());
    if (it != leases_.end()) {
      (void)blocks_.Cancel(it->second);
      leases_.erase(it);
    }
    if (seqs_.count(req->request_id())) cancelled_[req->request_id()] = true;
    return grpc::Status::OK;
  }

  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*,
                     v1::StatsResponse* resp) override {
    std::lock_guard<std::mutex> l(mu_);
    blocks_.ExpireLeases(NowMs());
    const pd::BlockManagerStats s = blocks_.Stats();
    resp->set_running(running_);
    resp->set_total_blocks(s.total_blocks);
    resp->set_free_blocks(s.free_blocks + s.cached_blocks);
    resp->set_incarnation(incarnation_);
    resp->set_steps(steps_);  // fake: prefills served (prefill) / 0 (decode)
    return grpc::Status::OK;
  }

 private:
  bool Cancelled(const std::string& id) {
    std::lock_guard<std::mutex> l(mu_);
    return cancelled_.count(id) > 0;
  }

  pd::InstanceConfig cfg_;
  int vocab_;
  std::mutex mu_;
  pd::BlockManager blocks_;
  uint64_t incarnation_;
  std::atomic<uint64_t> next_seq_{1};
  int running_ = 0;
  std::atomic<int64_t> steps_{0};
  std::map<std::string, pd::LeaseId> leases_;
  std::map<std::string, pd::SeqId> seqs_;
  std::map<std::string, bool> cancelled_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config, instance;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--config") config = argv[i + 1];
    if (a == "--instance") instance = argv[i + 1];
  }
  auto cfg = pd::LoadDeployConfig(config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "fake daemon: %s\n", cfg.status().ToString().c_str());
    return 2;
  }
  auto inst = cfg->GetInstance(instance);
  if (!inst.ok()) {
    std::fprintf(stderr, "fake daemon: %s\n", inst.status().ToString().c_str());
    return 2;
  }
  auto model = pd::LoadModelConfig(inst->model);
  if (!model.ok()) {
    std::fprintf(stderr, "fake daemon: %s\n", model.status().ToString().c_str());
    return 2;
  }
  FakeDaemon d(*inst, model->vocab_size);
  grpc::ServerBuilder b;
  b.AddListeningPort(inst->Address(), grpc::InsecureServerCredentials());
  if (inst->role == pd::InstanceRole::kDecode) {
    b.RegisterService(static_cast<v1::DecodeService::Service*>(&d));
  } else {
    b.RegisterService(static_cast<v1::PrefillService::Service*>(&d));
  }
  auto server = b.BuildAndStart();
  if (!server) return 1;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread sig([&] {
    int s;
    sigwait(&set, &s);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  });
  server->Wait();
  sig.join();
  return 0;
}
