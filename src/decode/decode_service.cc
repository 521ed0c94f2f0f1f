#include "decode/decode_service.h"

#include "common/logging.h"

namespace pd::decode {

namespace v1 = ::pdserve::v1;
using Clock = std::chrono::steady_clock;

DecodeServiceImpl::DecodeServiceImpl(serving::Daemon* d) : d_(d) {
  poller_ = std::thread([this] { PollNotifications(); });
}

DecodeServiceImpl::~DecodeServiceImpl() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  poller_.join();
}

void DecodeServiceImpl::PollNotifications() {
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      if (Clock::now() - last_sweep_ > std::chrono::seconds(1)) SweepLocked();
    }
    std::vector<kvtransfer::Notification> ns = d_->transfer->GetNotifications();
    if (ns.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    for (const kvtransfer::Notification& n : ns) {
      v1::KvReadyNotice notice;
      if (!notice.ParseFromString(n.bytes) || notice.request_id().empty()) {
        PD_LOG_WARN("{}: malformed KV notification from {} ignored", d_->inst.name, n.peer_name);
        continue;
      }
      RouteNotice(notice, n.peer_name);
    }
    cv_.notify_all();
  }
}

void DecodeServiceImpl::RouteNotice(const v1::KvReadyNotice& notice, const std::string& peer) {
  const std::string& id = notice.request_id();
  // The lease id is the generation of the blocks: a notice (and the writes before it) for a
  // lease that has ended belongs to a dead attempt. Its arrival proves that writer is done.
  if (d_->engine->ReleaseFenced(notice.lease_id())) {
    PD_LOG_INFO("{}: late KV notice for ended lease {} from {}; its fenced blocks are freed", id,
                notice.lease_id(), peer);
    return;
  }
  if (d_->engine->LiveLease(id) != notice.lease_id()) {
    PD_LOG_WARN("{}: KV notice for lease {} from {} is not the request's live lease; ignored", id,
                notice.lease_id(), peer);
    return;
  }
  arrived_[id] = Arrival{notice, Clock::now()};
}

void DecodeServiceImpl::SweepLocked() {
  last_sweep_ = Clock::now();
  for (auto it = arrived_.begin(); it != arrived_.end();) {
    const uint64_t lease = it->second.notice.lease_id();
    if (d_->engine->LiveLease(it->first) == lease) {
      ++it;
      continue;
    }
    d_->engine->ReleaseFenced(lease);  // the lease ended after its writer had reported
    it = arrived_.erase(it);
  }
  for (auto it = to_stage_.begin(); it != to_stage_.end();) {
    it = d_->engine->LiveLease(it->first) == it->second.lease ? std::next(it) : to_stage_.erase(it);
  }
}

grpc::Status DecodeServiceImpl::Reserve(grpc::ServerContext*, const v1::ReserveRequest* req,
                                        v1::ReserveResponse* resp) {
  Status st = serving::CheckMatch("compat hash", d_->compat_hash, req->compat_hash());
  if (st.ok()) st = serving::ValidateReserveRequest(*req, serving::DaemonRequestLimits(*d_));
  std::vector<int32_t> prompt(req->prompt_ids().begin(), req->prompt_ids().end());
  if (st.ok()) st = d_->engine->CheckPrompt(prompt, req->max_tokens() > 0 ? req->max_tokens() : 1);
  if (st.ok() && req->request_id().empty()) st = InvalidArgument("empty request_id");
  if (!st.ok()) return serving::ToGrpc(st);
  const int64_t lease_ms = req->lease_ms() > 0 ? req->lease_ms() : d_->inst.lease_ms;
  StatusOr<Reservation> r = d_->engine->Reserve(req->request_id(), prompt, lease_ms);
  if (!r.ok()) return serving::ToGrpc(r.status().WithContext(d_->inst.name + " reserve"));
  {
    std::lock_guard<std::mutex> l(mu_);
    arrived_.erase(req->request_id());  // a stale notice of an earlier attempt
    if (d_->kv_mirror) {
      const size_t first = static_cast<size_t>(r->num_cached_tokens / d_->engine->block_size());
      Staging& st = to_stage_[req->request_id()];
      st.lease = r->lease;
      st.blocks.assign(r->blocks.begin() + std::min(first, r->blocks.size()), r->blocks.end());
    }
  }
  v1::TransferTarget t;
  t.set_decode_name(d_->inst.name);
  t.set_decode_incarnation(d_->incarnation);
  t.set_compat_hash(d_->compat_hash);
  t.set_lease_id(r->lease);
  t.set_cached_tokens(r->num_cached_tokens);
  for (BlockId b : r->blocks) {
    t.add_block_ids(b);
    resp->add_block_ids(b);
  }
  t.set_engine_metadata(d_->transfer->LocalMetadata());
  t.set_block_size(d_->engine->block_size());
  t.set_transport(d_->inst.transport.kind);
  t.set_grpc_address(d_->inst.Address());
  t.set_num_blocks(d_->runner->kv_arena().layout.num_blocks);
  resp->set_lease_id(r->lease);
  resp->set_cached_tokens(r->num_cached_tokens);
  resp->set_target(t.SerializeAsString());
  resp->set_incarnation(d_->incarnation);
  resp->set_compat_hash(d_->compat_hash);
  resp->set_lease_expires_ms(lease_ms);
  return grpc::Status::OK;
}

StatusOr<v1::KvReadyNotice> DecodeServiceImpl::WaitForKv(grpc::ServerContext* ctx,
                                                         const std::string& id,
                                                         Clock::time_point until) {
  std::unique_lock<std::mutex> l(mu_);
  ++awaiting_;
  while (!arrived_.count(id)) {
    if (ctx->IsCancelled()) {
      --awaiting_;
      return Cancelled("cancelled while waiting for the KV of '" + id + "'");
    }
    if (Clock::now() >= until) {
      --awaiting_;
      return DeadlineExceeded("KV of '" + id + "' did not arrive within " +
                              std::to_string(d_->inst.timeouts.transfer_ms) + " ms");
    }
    cv_.wait_for(l, std::chrono::milliseconds(5));
  }
  --awaiting_;
  v1::KvReadyNotice n = arrived_[id].notice;
  arrived_.erase(id);
  return n;
}

grpc::Status DecodeServiceImpl::Decode(grpc::ServerContext* ctx, const v1::DecodeRequest* req,
                                       grpc::ServerWriter<v1::DecodeResponse>* w) {
  const std::string& id = req->request_id();
  Status st = serving::CheckMatch("decode incarnation", d_->incarnation, req->incarnation());
  if (st.ok()) st = serving::ValidateDecodeRequest(*req, serving::DaemonRequestLimits(*d_));
  if (st.ok() && id.empty()) st = InvalidArgument("empty request_id");
  serving::EngineRequest er;
  er.id = id;
  er.prompt.assign(req->prompt_ids().begin(), req->prompt_ids().end());
  er.max_tokens = req->max_tokens();
  er.ignore_eos = req->ignore_eos();
  er.stop_ids.assign(req->stop_token_ids().begin(), req->stop_token_ids().end());
  er.sampling.temperature = req->sampling().temperature();
  er.sampling.top_k = req->sampling().top_k();
  er.sampling.top_p = req->sampling().top_p() > 0 ? req->sampling().top_p() : 1.0f;
  er.sampling.seed = req->sampling().seed();
  er.lease = req->lease_id();
  if (st.ok()) st = d_->engine->CheckPrompt(er.prompt, er.max_tokens);
  bool writer_done = req->prefill_locally();  // no remote writer was (or is still) involved
  if (st.ok() && !req->prefill_locally()) {
    if (er.lease == 0) st = InvalidArgument("remote prefill needs a lease_id (call Reserve)");
    const auto until = serving::CallDeadline(ctx, d_->inst.timeouts.transfer_ms);
    StatusOr<v1::KvReadyNotice> n = st.ok() ? WaitForKv(ctx, id, until) : StatusOr<v1::KvReadyNotice>(st);
    if (!n.ok()) st = n.status();
    // P's final notice, error or not, says it stopped writing: no fence needed after it.
    if (n.ok()) writer_done = true;
    if (st.ok() && !n->error().empty()) st = Aborted("prefill failed: " + n->error());
    if (st.ok()) st = serving::CheckMatch("compat hash", d_->compat_hash, n->compat_hash());
    if (st.ok()) st = serving::CheckMatch("decode incarnation", d_->incarnation, n->decode_incarnation());
    if (st.ok() && n->lease_id() != er.lease) {
      st = FailedPrecondition("KV notice is for lease " + std::to_string(n->lease_id()) +
                              ", the request commits lease " + std::to_string(er.lease));
    }
    if (st.ok() && n->num_tokens() != static_cast<int>(er.prompt.size())) {
      st = FailedPrecondition("KV notice covers " + std::to_string(n->num_tokens()) +
                              " tokens, the prompt has " + std::to_string(er.prompt.size()));
    }
    if (st.ok() && d_->kv_mirror) {  // GPU arena: host mirror -> GPU before admission
      std::vector<int32_t> blocks;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (auto it = to_stage_.find(id); it != to_stage_.end() && it->second.lease == er.lease) {
          blocks = std::move(it->second.blocks);
        }
        to_stage_.erase(id);
      }
      st = serving::StageBlocks(d_, blocks, 0, d_->runner->kv_arena().layout.num_layers - 1,
                                /*to_host=*/false);
    }
    if (st.ok()) er.remote_first_token = n->first_token();
  }
  if (!st.ok()) {
    // Ends the lease now rather than at its expiry: freed, or fenced while P may still write.
    d_->engine->Cancel(id, writer_done);
    std::lock_guard<std::mutex> l(mu_);
    to_stage_.erase(id);
    return serving::ToGrpc(st.WithContext(d_->inst.name));
  }
  StatusOr<std::shared_ptr<serving::OutputStream>> out = d_->engine->Submit(std::move(er));
  if (!out.ok()) {
    d_->engine->Cancel(id, writer_done);
    return serving::ToGrpc(out.status().WithContext(d_->inst.name));
  }
  return Stream(ctx, id, *out, w);
}

grpc::Status DecodeServiceImpl::Stream(grpc::ServerContext* ctx, const std::string& id,
                                       std::shared_ptr<serving::OutputStream> out,
                                       grpc::ServerWriter<v1::DecodeResponse>* w) {
  bool client_gone = false;
  while (true) {
    std::vector<serving::Output> outs;
    (void)out->Pop(Clock::now() + std::chrono::milliseconds(20), &outs);
    if (!client_gone && ctx->IsCancelled()) {
      client_gone = true;
      d_->engine->Cancel(id);  // the engine answers with a final kCancelled output
    }
    for (const serving::Output& o : outs) {
      if (o.finish == serving::Finish::kError) return serving::ToGrpc(o.status);
      if (o.finish == serving::Finish::kCancelled) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
      }
      if (client_gone) continue;
      v1::DecodeResponse m;
      for (int32_t t : o.tokens) m.add_token_ids(t);
      if (o.cached_tokens > 0 || !o.tokens.empty()) m.set_cached_tokens(o.cached_tokens);
      if (o.finish != serving::Finish::kNone) {
        m.set_finish_reason(o.finish == serving::Finish::kStop ? v1::FINISH_REASON_STOP
                                                               : v1::FINISH_REASON_LENGTH);
        m.set_prompt_tokens(o.prompt_tokens);
        m.set_completion_tokens(o.completion_tokens);
        m.set_preemptions(o.preemptions);
      }
      if (!w->Write(m)) {
        client_gone = true;
        d_->engine->Cancel(id);
      }
      if (o.finish != serving::Finish::kNone) return grpc::Status::OK;
    }
  }
}

grpc::Status DecodeServiceImpl::Cancel(grpc::ServerContext*, const v1::CancelRequest* req,
                                       v1::CancelResponse* resp) {
  bool found = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    const std::string& id = req->request_id();
    // A filed final notice means the writer is done: the lease is freed, not fenced.
    auto it = arrived_.find(id);
    const bool writer_done =
        it != arrived_.end() && it->second.notice.lease_id() == d_->engine->LiveLease(id);
    found = d_->engine->Cancel(id, writer_done);
    found = arrived_.erase(id) > 0 || found;
    to_stage_.erase(id);
  }
  resp->set_found(found);
  return grpc::Status::OK;
}

grpc::Status DecodeServiceImpl::Stats(grpc::ServerContext*, const v1::StatsRequest*,
                                      v1::StatsResponse* resp) {
  int64_t awaiting;
  {
    std::lock_guard<std::mutex> l(mu_);
    awaiting = awaiting_;
  }
  serving::FillStats(d_, "decode", awaiting, resp);
  return grpc::Status::OK;
}

}  // namespace pd::decode
