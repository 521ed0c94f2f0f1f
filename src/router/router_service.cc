#include "router/router_service.h"

#include <grpcpp/health_check_service_interface.h>

#include "common/logging.h"
#include "router/router_impl.h"

namespace pd::router {

Status RouterImpl::Start() {
  PD_ASSIGN_OR_RETURN(api_keys_, ApiKeySet::Load(cfg_.router.api_keys, cfg_.router.api_key_file));
  if (api_keys_.enabled()) {
    PD_LOG_INFO("API keys required on pdserve.v1.Inference ({} key(s))", api_keys_.size());
  }
  for (const InstanceConfig& d : cfg_.decode) {
    if (std::any_of(models_.begin(), models_.end(),
                    [&](const ServedModel& m) { return m.name == d.model_name; })) {
      continue;
    }
    auto m = LoadServedModel(d);
    if (!m.ok()) return m.status().WithContext("model '" + d.model_name + "'");
    PD_LOG_INFO("model {}: {} (vocab {}, context {}, tokenizer: {})", m->name, m->dir,
                m->config.vocab_size, m->max_model_len, m->tokenizer ? "yes" : "no");
    models_.push_back(std::move(m).value());
  }
  for (const InstanceConfig& d : cfg_.decode) {
    PD_ASSIGN_OR_RETURN(auto ch, MakeChannel(d, cfg_.router.internal_tls));
    d_stubs_.push_back(v1::DecodeService::NewStub(ch));
  }
  for (const InstanceConfig& p : cfg_.prefill) {
    PD_ASSIGN_OR_RETURN(auto ch, MakeChannel(p, cfg_.router.internal_tls));
    p_stubs_.push_back(v1::PrefillService::NewStub(ch));
  }
  // grpc.health.v1.Health (Kubernetes gRPC probes): "" = the process serves (liveness);
  // "pdserve.v1.Inference" = at least one decode instance is healthy (readiness), kept current by
  // the pollers.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  const std::string addr = cfg_.router.host + ":" + std::to_string(cfg_.router.port);
  int bound = 0;
  b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &bound);
  b.SetMaxReceiveMessageSize(cfg_.router.max_request_bytes);
  b.RegisterService(this);
  server_ = b.BuildAndStart();
  if (!server_ || bound == 0) return Unavailable("cannot listen on " + addr);
  UpdateHealth();
  obs_.WatchPools(&decode_, &prefill_);
  if (Status ms = obs_.Serve(cfg_.router.host, cfg_.router.metrics_port); !ms.ok()) {
    server_->Shutdown();
    return ms.WithContext("router.metrics_port");
  }
  for (size_t i = 0; i < cfg_.decode.size(); ++i) {
    pollers_.emplace_back(&RouterImpl::PollLoop, this, &decode_, static_cast<int>(i), true);
  }
  for (size_t i = 0; i < cfg_.prefill.size(); ++i) {
    pollers_.emplace_back(&RouterImpl::PollLoop, this, &prefill_, static_cast<int>(i), false);
  }
  PD_LOG_INFO("router listening on {} ({} prefill, {} decode instances)", addr, cfg_.prefill.size(),
              cfg_.decode.size());
  return OkStatus();
}

void RouterImpl::Shutdown() {
  {
    std::lock_guard<std::mutex> l(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (server_) server_->Shutdown(SysClock::now() + std::chrono::seconds(2));
  for (std::thread& t : pollers_) t.join();
  pollers_.clear();
  obs_.StopServing();
}

void RouterImpl::PollLoop(InstancePool* pool, int i, bool is_decode) {
  while (!stop_) {
    grpc::ClientContext ctx;
    ctx.set_deadline(SysClock::now() + std::chrono::milliseconds(cfg_.router.health_timeout_ms));
    v1::StatsRequest req;
    v1::StatsResponse resp;
    const grpc::Status s =
        is_decode ? d_stubs_[i]->Stats(&ctx, req, &resp) : p_stubs_[i]->Stats(&ctx, req, &resp);
    if (s.ok()) {
      LoadSnapshot snap;
      snap.waiting = resp.waiting();
      snap.running = resp.running();
      snap.total_blocks = resp.total_blocks();
      snap.free_blocks = resp.free_blocks();
      snap.incarnation = resp.incarnation();
      pool->ReportUp(i, snap);
    } else {
      pool->ReportDown(i, FromGrpc(s).ToString());
    }
    UpdateHealth();
    std::unique_lock<std::mutex> l(stop_mu_);
    stop_cv_.wait_for(l, std::chrono::milliseconds(cfg_.router.health_interval_ms),
                      [this] { return stop_.load(); });
  }
}

void RouterImpl::UpdateHealth() {
  grpc::HealthCheckServiceInterface* h = server_ ? server_->GetHealthCheckService() : nullptr;
  if (h == nullptr || stop_) return;
  h->SetServingStatus(v1::Inference::service_full_name(), decode_.num_healthy() > 0);
}

std::string RouterImpl::NewRequestId() {
  char buf[48];
  std::snprintf(buf, sizeof buf, "r-%08llx-%llu",
                static_cast<unsigned long long>(id_salt_ & 0xffffffff),
                static_cast<unsigned long long>(next_id_++));
  return buf;
}

void RouterImpl::SetDeadline(grpc::ClientContext* ctx, const Call& c, int timeout_ms) const {
  auto d = c.deadline;
  if (timeout_ms > 0) d = std::min(d, SysClock::now() + std::chrono::milliseconds(timeout_ms));
  ctx->set_deadline(d);
}

bool RouterImpl::Emit(Call& c, const std::vector<int32_t>& ids, int finish_reason, bool last) {
  if (c.client_gone) return false;
  v1::GenerateResponse resp;
  std::string text;
  for (int32_t id : ids) {
    resp.add_token_ids(id);
    if (c.detok) {
      auto t = c.detok->Push(id);
      if (t.ok()) text += *t;
    }
  }
  if (last && c.detok) text += c.detok->Finish();
  resp.set_text(text);
  if (!ids.empty()) {
    c.t_last = Clock::now();
    if (c.streamed == 0) {
      c.t_first = c.t_last;
      c.ttft_ms = std::chrono::duration<double, std::milli>(c.t_first - c.t0).count();
      obs_.FirstToken(c.ttft_ms / 1e3);
    }
  }
  c.streamed += static_cast<int>(ids.size());
  if (last) {
    resp.set_finish_reason(static_cast<v1::FinishReason>(finish_reason));
    auto* u = resp.mutable_usage();
    u->set_prompt_tokens(static_cast<int>(c.prep.ids.size()));
    u->set_cached_tokens(c.cached_tokens);
    u->set_completion_tokens(c.streamed);
    u->set_ttft_ms(c.ttft_ms);
  }
  if (!c.w->Write(resp)) {
    c.client_gone = true;
    c.calls.CancelAll();
    return false;
  }
  return true;
}

void RouterImpl::CancelOn(int d, int p, const std::string& id) {
  v1::CancelRequest req;
  req.set_request_id(id);
  auto cancel = [&](auto& stub, const InstanceConfig& inst) {
    grpc::ClientContext ctx;
    ctx.set_deadline(SysClock::now() + std::chrono::milliseconds(inst.timeouts.rpc_ms));
    v1::CancelResponse resp;
    const grpc::Status s = stub->Cancel(&ctx, req, &resp);
    if (!s.ok() && s.error_code() != grpc::StatusCode::NOT_FOUND) {
      PD_LOG_DEBUG("cancel {} on {}: {}", id, inst.name, s.error_message());
    }
  };
  if (d >= 0) cancel(d_stubs_[d], cfg_.decode[d]);
  if (p >= 0) cancel(p_stubs_[p], cfg_.prefill[p]);
}

grpc::Status RouterImpl::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                v1::HealthResponse* resp) {
  const int up = decode_.num_healthy() + prefill_.num_healthy();
  resp->set_serving(!stop_ && up == static_cast<int>(decode_.size() + prefill_.size()));
  for (const std::string& s : decode_.Describe()) resp->add_instances(s);
  for (const std::string& s : prefill_.Describe()) resp->add_instances(s);
  return grpc::Status::OK;
}

grpc::Status RouterImpl::ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest*,
                                    v1::ListModelsResponse* resp) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;
  for (const ServedModel& m : models_) {
    auto* x = resp->add_models();
    x->set_name(m.name);
    x->set_vocab_size(m.config.vocab_size);
    x->set_max_model_len(m.max_model_len);
    x->set_has_tokenizer(m.tokenizer != nullptr);
  }
  return grpc::Status::OK;
}

Router::Router(DeployConfig cfg) : impl_(std::make_unique<RouterImpl>(std::move(cfg))) {}
Router::~Router() = default;
Status Router::Start() { return impl_->Start(); }
void Router::Wait() { impl_->Wait(); }
void Router::Shutdown() { impl_->Shutdown(); }

}  // namespace pd::router
