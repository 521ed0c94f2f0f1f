#include "tools/grpc_util.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "pdserve.grpc.pb.h"

namespace pd::client {

namespace v1 = ::pdserve::v1;
using Clock = std::chrono::steady_clock;

namespace {
Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return OkStatus();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}
double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
void SetTimeout(grpc::ClientContext* ctx, int timeout_ms) {
  if (timeout_ms > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  }
}
std::string FinishName(int reason) {
  const std::string n = v1::FinishReason_Name(static_cast<v1::FinishReason>(reason));
  const std::string prefix = "FINISH_REASON_";
  std::string s = n.rfind(prefix, 0) == 0 ? n.substr(prefix.size()) : n;
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

struct Client::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Inference::Stub> stub;
  std::string authorization;  // "Bearer <key>" or ""
  void Authorize(grpc::ClientContext* ctx) const {
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
  }
};

Client::Client(const std::string& addr, const std::string& api_key) : impl_(new Impl) {
  std::string key = api_key;
  if (key.empty()) {
    const char* env = std::getenv("PD_API_KEY");
    if (env != nullptr) key = env;
  }
  if (!key.empty()) impl_->authorization = "Bearer " + key;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  impl_->channel = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
  impl_->stub = v1::Inference::NewStub(impl_->channel);
}

Client::~Client() = default;

GenerateResult Client::Generate(const GenerateParams& p,
                                const std::function<void(const StreamEvent&)>& on_event,
                                int timeout_ms, const std::atomic<bool>* cancel) {
  v1::GenerateRequest req;
  req.set_request_id(p.request_id);
  req.set_model(p.model);
  if (!p.text.empty()) {
    req.set_text(p.text);
  } else {
    for (int32_t id : p.ids) req.mutable_token_ids()->add_ids(id);
  }
  req.set_max_tokens(p.max_tokens);
  req.set_ignore_eos(p.ignore_eos);
  auto* s = req.mutable_sampling();
  s->set_temperature(static_cast<float>(p.temperature));
  s->set_top_p(static_cast<float>(p.top_p));
  s->set_top_k(p.top_k);
  s->set_seed(p.seed);

  GenerateResult r;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_ms);
  impl_->Authorize(&ctx);
  std::atomic<bool> finished{false};
  std::thread watcher;
  if (cancel) {
    watcher = std::thread([&] {
      while (!finished) {
        if (*cancel) {
          ctx.TryCancel();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  const auto t0 = Clock::now();
  auto reader = impl_->stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    const double t = MsSince(t0);
    if (msg.token_ids_size() > 0) {
      if (r.ids.empty()) r.ttft_ms = t;
      for (int32_t id : msg.token_ids()) {
        r.ids.push_back(id);
        r.token_times_ms.push_back(t);
      }
    }
    r.text += msg.text();
    if (msg.finish_reason() != 0) r.finish_reason = FinishName(msg.finish_reason());
    if (msg.has_usage()) {
      r.prompt_tokens = msg.usage().prompt_tokens();
      r.cached_tokens = msg.usage().cached_tokens();
      r.completion_tokens = msg.usage().completion_tokens();
      r.server_ttft_ms = msg.usage().ttft_ms();
    }
    if (on_event && (msg.token_ids_size() > 0 || !msg.text().empty())) {
      StreamEvent e;
      e.ids.assign(msg.token_ids().begin(), msg.token_ids().end());
      e.text = msg.text();
      on_event(e);
    }
  }
  r.status = FromGrpc(reader->Finish());
  r.e2e_ms = MsSince(t0);
  finished = true;
  if (watcher.joinable()) watcher.join();
  return r;
}

StatusOr<std::vector<ModelInfo>> Client::ListModels(int timeout_ms) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_ms);
  impl_->Authorize(&ctx);
  v1::ListModelsRequest req;
  v1::ListModelsResponse resp;
  const grpc::Status s = impl_->stub->ListModels(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  std::vector<ModelInfo> out;
  for (const auto& m : resp.models()) {
    out.push_back({m.name(), m.vocab_size(), m.max_model_len(), m.has_tokenizer()});
  }
  return out;
}

StatusOr<HealthInfo> Client::Health(int timeout_ms) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_ms);
  impl_->Authorize(&ctx);
  v1::HealthRequest req;
  v1::HealthResponse resp;
  const grpc::Status s = impl_->stub->Health(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  HealthInfo h;
  h.serving = resp.serving();
  h.instances.assign(resp.instances().begin(), resp.instances().end());
  return h;
}

bool ProbeReady(const std::string& addr, int timeout_ms, std::string* why) {
  Client c(addr);
  auto h = c.Health(timeout_ms);
  if (!h.ok()) {
    *why = "router " + addr + ": " + h.status().ToString();
    return false;
  }
  if (!h->serving) {
    why->clear();
    for (const std::string& i : h->instances) *why += (why->empty() ? "" : "; ") + i;
    return false;
  }
  return true;
}

}  // namespace pd::client
