// The Generate flow: check -> pick D -> reserve -> decide -> prefill on P (retry, fallback) or
// on D -> stream D's tokens to the client. See docs/request-flow.md.
#include "common/logging.h"
#include "router/generate_check.h"
#include "router/router_impl.h"

namespace pd::router {

grpc::Status RouterImpl::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                  grpc::ServerWriter<v1::GenerateResponse>* w) {
  if (grpc::Status a = Authorize(ctx); !a.ok()) return a;  // before any metric or work
  Call c;
  c.ctx = ctx;
  c.req = req;
  c.w = w;
  c.t0 = Clock::now();
  // Admission: a bounded number of requests in flight; the rest are shed at once (no queue).
  const int limit = cfg_.router.max_inflight_requests;
  const int n = admitted_.fetch_add(1) + 1;
  if (limit > 0 && n > limit) {
    admitted_.fetch_sub(1);
    c.shed = true;
    const grpc::Status s = Overloaded(ctx, "router overloaded: " + std::to_string(n - 1) +
                                               " requests in flight (router.max_inflight_requests " +
                                               std::to_string(limit) + ")");
    obs_.RequestFinished(FromGrpc(s), true, c.t0, c.t_first, c.t_last, 0);
    return s;
  }
  obs_.inflight()->Inc();
  grpc::Status s = RunGenerate(c);
  admitted_.fetch_sub(1);
  if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && c.streamed == 0) {
    c.shed = true;  // every decode instance refused it (queue or KV pool full)
    s = Overloaded(ctx, s.error_message());
  }
  obs_.RequestFinished(FromGrpc(s), c.shed, c.t0, c.t_first, c.t_last, c.streamed);
  obs_.inflight()->Dec();  // after the count: inflight 0 means every request is accounted for
  return s;
}

grpc::Status RouterImpl::Overloaded(grpc::ServerContext* ctx, const std::string& why) {
  const int after = cfg_.router.retry_after_ms;
  ctx->AddTrailingMetadata("retry-after-ms", std::to_string(after));
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      why + "; retry after " + std::to_string(after) + " ms");
}

void RouterImpl::WatchIdle(Call& c) {
  const int idle_ms = cfg_.router.decode_idle_timeout_ms;
  std::lock_guard<std::mutex> l(c.stream_mu);
  if (idle_ms <= 0 || c.stream_ctx == nullptr) return;
  const auto idle = Clock::now() - Clock::time_point(Clock::duration(c.stream_progress.load()));
  if (idle < std::chrono::milliseconds(idle_ms)) return;
  c.stream_idle = true;
  c.stream_ctx->TryCancel();
}

grpc::Status RouterImpl::RunGenerate(Call& c) {
  grpc::ServerContext* ctx = c.ctx;
  const v1::GenerateRequest* req = c.req;
  auto prep = PrepareGenerate(models_, *req, cfg_.router.max_tokens_limit);
  if (!prep.ok()) return ToGrpc(prep.status());
  c.prep = std::move(prep).value();
  c.id = req->request_id().empty() ? NewRequestId() : req->request_id();
  c.deadline = ctx->deadline();
  if (cfg_.router.request_timeout_ms > 0) {
    c.deadline = std::min(
        c.deadline, SysClock::now() + std::chrono::milliseconds(cfg_.router.request_timeout_ms));
  }
  if (c.prep.model->tokenizer) {
    c.detok = std::make_unique<IncrementalDecoder>(*c.prep.model->tokenizer, true);
  }
  // The sync API has no cancel callback: a watcher propagates a client cancel downstream.
  std::atomic<bool> done{false};
  std::thread watch([&] {
    while (!done) {
      if (ctx->IsCancelled() || stop_) {
        c.calls.CancelAll();
        return;
      }
      WatchIdle(c);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  Status result;
  std::vector<int> tried;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int d = decode_.Pick(pick_d_, c.prep.model->name, static_cast<int>(c.prep.ids.size()),
                               c.prep.chain, tried);
    if (d < 0) {
      if (tried.empty()) {
        result =
            Unavailable("no healthy decode instance serves model '" + c.prep.model->name + "'");
      }
      break;
    }
    if (attempt > 0) obs_.DecodeRetry();
    decode_.AddInflight(d, 1);
    result = RunOnDecode(c, d);
    decode_.AddInflight(d, -1);
    const bool retriable = InstanceFailure(result) ||
                           result.code() == StatusCode::kResourceExhausted;  // D's pool is full
    if (result.ok() || c.streamed > 0 || c.calls.cancelled() || !retriable) break;
    PD_LOG_WARN("{}: decode {} failed before streaming ({}); trying another", c.id,
                cfg_.decode[d].name, result.ToString());
    tried.push_back(d);
  }
  done = true;
  watch.join();
  if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by client");
  if (!result.ok()) PD_LOG_INFO("{}: {}", c.id, result.ToString());
  return ToGrpc(result);
}

StatusOr<v1::ReserveResponse> RouterImpl::ReserveOn(Call& c, int d) {
  const InstanceConfig& dc = cfg_.decode[d];
  v1::ReserveRequest rr;
  rr.set_request_id(c.id);
  for (int32_t t : c.prep.ids) rr.add_prompt_ids(t);
  rr.set_max_tokens(c.prep.max_tokens);
  v1::ReserveResponse res;
  grpc::ClientContext rctx;
  SetDeadline(&rctx, c, dc.timeouts.rpc_ms);
  c.calls.Add(&rctx);
  const grpc::Status s = d_stubs_[d]->Reserve(&rctx, rr, &res);
  c.calls.Remove(&rctx);
  if (s.ok()) return res;
  const Status st = FromGrpc(s);
  if (InstanceFailure(st) && !c.calls.cancelled()) decode_.ReportDown(d, st.ToString());
  return st.code() == StatusCode::kInvalidArgument ? st : st.WithContext(dc.name + " reserve");
}

Status RouterImpl::RunOnDecode(Call& c, int d) {
  const InstanceConfig& dc = cfg_.decode[d];
  StatusOr<v1::ReserveResponse> reserved = ReserveOn(c, d);
  if (!reserved.ok()) return reserved.status();
  v1::ReserveResponse res = std::move(reserved).value();
  c.cached_tokens = res.cached_tokens();
  const int n = static_cast<int>(c.prep.ids.size());
  const bool have_p = !prefill_.Candidates(c.prep.model->name, {}).empty();
  const DisaggDecision dec =
      DecidePrefill(n, c.cached_tokens, cfg_.router.disagg_threshold_tokens, have_p);
  v1::DecodeRequest dreq;
  dreq.set_request_id(c.id);
  dreq.set_lease_id(res.lease_id());
  for (int32_t t : c.prep.ids) dreq.add_prompt_ids(t);
  dreq.set_max_tokens(c.prep.max_tokens);
  *dreq.mutable_sampling() = c.req->sampling();
  dreq.set_ignore_eos(c.req->ignore_eos());
  *dreq.mutable_stop_token_ids() = c.req->stop_token_ids();
  dreq.set_incarnation(res.incarnation());
  dreq.set_first_token(-1);
  bool local = dec.place == PrefillPlace::kLocal;
  obs_.PrefillDecision(!local);
  if (local && !have_p && prefill_.size() > 0 &&
      DecidePrefill(n, c.cached_tokens, cfg_.router.disagg_threshold_tokens, true).place ==
          PrefillPlace::kRemote) {
    obs_.PrefillFallback(metrics::kFallbackNoHealthyPrefill);  // P exists but none is healthy
  }
  PD_LOG_DEBUG("{}: {} tokens, {} cached on {}; prefill {} ({})", c.id, n, c.cached_tokens, dc.name,
               local ? "on decode" : "remote", dec.reason);
  if (!local) {
    StatusOr<int32_t> first = RemotePrefill(c, d, &res);
    if (first.ok()) {
      dreq.set_first_token(*first);
      dreq.set_lease_id(res.lease_id());  // a retry reserved a new lease
    }
    if (!first.ok()) {
      // End the lease now rather than at its expiry. D fences its blocks until the failed P's
      // final notice (or the fence time): a late write of that P can never reach reused blocks.
      CancelOn(d, -1, c.id);
      if (c.calls.cancelled() || !cfg_.router.fallback_to_decode ||
          first.status().code() == StatusCode::kInvalidArgument) {
        return first.status();
      }
      dreq.set_lease_id(0);  // D prefills into fresh blocks, never into the fenced lease
      PD_LOG_WARN("{}: remote prefill failed ({}); prefilling on {}", c.id,
                  first.status().ToString(), dc.name);
      obs_.PrefillFallback(c.prefill_attempts == 0 ? metrics::kFallbackNoHealthyPrefill
                                                   : metrics::kFallbackRetriesExhausted);
      local = true;
    }
  }
  dreq.set_prefill_locally(local);
  decode_.RecordPrefix(d, c.prep.chain);
  return StreamDecode(c, d, dreq);
}

StatusOr<int32_t> RouterImpl::RemotePrefill(Call& c, int d, v1::ReserveResponse* reserved) {
  std::vector<int> tried;
  Status last =
      Unavailable("no healthy prefill instance serves model '" + c.prep.model->name + "'");
  for (int attempt = 0; attempt <= cfg_.router.prefill_retries; ++attempt) {
    const int p = prefill_.Pick(pick_p_, c.prep.model->name, static_cast<int>(c.prep.ids.size()),
                                c.prep.chain, tried);
    if (p < 0) break;
    if (attempt > 0) {
      // Each attempt writes into its own lease: the failed P may still be writing into the
      // previous one (stalled, cut off), so that one is ended (fenced on D) and a new one taken.
      CancelOn(d, -1, c.id);
      StatusOr<v1::ReserveResponse> again = ReserveOn(c, d);
      if (!again.ok()) return again.status();
      *reserved = std::move(again).value();
      obs_.PrefillRetry();
      PD_LOG_INFO("{}: retrying the prefill on {} with lease {}", c.id, cfg_.prefill[p].name,
                  reserved->lease_id());
    }
    const v1::ReserveResponse& res = *reserved;
    ++c.prefill_attempts;
    const InstanceConfig& pc = cfg_.prefill[p];
    v1::PrefillRequest pr;
    pr.set_request_id(c.id);
    for (int32_t t : c.prep.ids) pr.add_prompt_ids(t);
    pr.set_target(res.target());
    pr.set_decode_name(cfg_.decode[d].name);
    pr.set_compat_hash(res.compat_hash());
    *pr.mutable_sampling() = c.req->sampling();
    v1::PrefillResponse resp;
    grpc::ClientContext pctx;
    SetDeadline(&pctx, c, pc.timeouts.prefill_ms);
    c.calls.Add(&pctx);
    prefill_.AddInflight(p, 1);
    const grpc::Status s = p_stubs_[p]->Prefill(&pctx, pr, &resp);
    prefill_.AddInflight(p, -1);
    c.calls.Remove(&pctx);
    if (s.ok()) {
      prefill_.RecordPrefix(p, c.prep.chain);
      return resp.first_token();
    }
    last = FromGrpc(s).WithContext(pc.name + " prefill");
    if (c.calls.cancelled()) {
      CancelOn(-1, p, c.id);
      return Cancelled("cancelled by client");
    }
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) return FromGrpc(s);
    if (InstanceFailure(FromGrpc(s))) prefill_.ReportDown(p, last.message());
    CancelOn(-1, p, c.id);  // a timed-out P must stop writing into D's blocks
    PD_LOG_WARN("{}: prefill attempt {} failed: {}", c.id, attempt + 1, last.ToString());
    tried.push_back(p);
  }
  return last;
}

Status RouterImpl::StreamDecode(Call& c, int d, const v1::DecodeRequest& dreq) {
  grpc::ClientContext dctx;
  SetDeadline(&dctx, c, 0);
  c.calls.Add(&dctx);
  {
    std::lock_guard<std::mutex> l(c.stream_mu);
    c.stream_ctx = &dctx;
    c.stream_idle = false;
    c.stream_progress = Clock::now().time_since_epoch().count();
  }
  auto reader = d_stubs_[d]->Decode(&dctx, dreq);
  v1::DecodeResponse m;
  bool finished = false;
  while (!finished && reader->Read(&m)) {
    c.stream_progress = Clock::now().time_since_epoch().count();
    std::vector<int32_t> ids(m.token_ids().begin(), m.token_ids().end());
    finished = m.finish_reason() != 0;
    if ((ids.empty() && !finished) || Emit(c, ids, m.finish_reason(), finished)) continue;
    break;  // client gone
  }
  if (c.client_gone || c.calls.cancelled()) {
    dctx.TryCancel();
    CancelOn(d, -1, c.id);
  }
  const grpc::Status s = reader->Finish();
  c.calls.Remove(&dctx);
  bool idle = false;
  {
    std::lock_guard<std::mutex> l(c.stream_mu);
    c.stream_ctx = nullptr;
    idle = c.stream_idle;
  }
  if (c.client_gone || c.calls.cancelled()) return Cancelled("cancelled by client");
  if (idle && !finished) {
    const Status st = DeadlineExceeded(cfg_.decode[d].name + " sent nothing for " +
                                       std::to_string(cfg_.router.decode_idle_timeout_ms) +
                                       " ms (router.decode_idle_timeout_ms)");
    decode_.ReportDown(d, st.message());
    return st;
  }
  if (!s.ok()) {
    const Status st = FromGrpc(s);
    if (InstanceFailure(st)) decode_.ReportDown(d, st.ToString());
    return st.code() == StatusCode::kInvalidArgument ? st : st.WithContext(cfg_.decode[d].name);
  }
  if (!finished) Emit(c, {}, v1::FINISH_REASON_LENGTH, true);
  return OkStatus();
}

}  // namespace pd::router
