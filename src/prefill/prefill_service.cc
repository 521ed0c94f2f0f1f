#include "prefill/prefill_service.h"

#include <algorithm>

#include "common/logging.h"
#include "serving/daemon_metrics.h"

namespace pd::prefill {

namespace v1 = ::pdserve::v1;
using Clock = std::chrono::steady_clock;

namespace {
double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
std::chrono::milliseconds Left(Clock::time_point until) {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
}
}  // namespace

PrefillServiceImpl::PrefillServiceImpl(serving::Daemon* d) : d_(d) {}

StatusOr<kvtransfer::PeerId> PrefillServiceImpl::Peer(const v1::TransferTarget& t) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = peers_.find(t.engine_metadata());
  if (it != peers_.end()) return it->second;
  StatusOr<kvtransfer::PeerId> p = d_->transfer->LoadRemoteMetadata(t.engine_metadata());
  if (!p.ok()) return p.status().WithContext("load " + t.decode_name() + "'s transfer metadata");
  peers_[t.engine_metadata()] = *p;
  return p;
}

void PrefillServiceImpl::OnLayer(const std::vector<serving::ChunkInfo>& chunks, int layer) {
  const KvLayout& local = d_->runner->kv_arena().layout;
  const int last_layer = local.num_layers - 1;
  std::lock_guard<std::mutex> l(mu_);
  for (const serving::ChunkInfo& c : chunks) {
    auto it = xfers_.find(c.id);
    if (it == xfers_.end() || !it->second->error.ok()) continue;
    Xfer& x = *it->second;
    if (Clock::now() >= x.until) {  // D may have reused these blocks' lease by now: stop writing
      x.error = DeadlineExceeded("prefill deadline passed before layer " + std::to_string(layer));
      continue;
    }
    const int bs = local.block_size;
    const int d_first = x.target.cached_tokens() / bs;  // D holds blocks before this one
    // Blocks complete after this chunk: full ones, plus the tail after the last chunk.
    const int hi = c.end >= x.prompt_len ? (x.prompt_len + bs - 1) / bs : c.end / bs;
    const int lo = x.first_chunk ? d_first : std::max(d_first, c.start / bs);
    if (layer == last_layer) x.first_chunk = false;
    if (lo >= hi) continue;
    std::vector<int32_t> staged(c.blocks.begin() + lo, c.blocks.begin() + hi);
    Status sst = serving::StageBlocks(d_, staged, layer, layer, /*to_host=*/true);
    if (!sst.ok()) {
      x.error = sst.WithContext("stage layer " + std::to_string(layer));
      continue;
    }
    std::vector<kvtransfer::Desc> ld, rd;
    for (int b = lo; b < hi; ++b) {
      ld.push_back({0, local.block_offset(layer, c.blocks[b]), local.block_layer_bytes()});
      rd.push_back({0, x.remote_layout.block_offset(layer, x.target.block_ids(b)),
                    x.remote_layout.block_layer_bytes()});
    }
    StatusOr<kvtransfer::TransferId> t = d_->transfer->Post(
        kvtransfer::Op::kWrite, x.peer, ld, rd, {},
        std::chrono::milliseconds(d_->inst.timeouts.transfer_ms));
    if (!t.ok()) {
      x.error = t.status().WithContext("post layer " + std::to_string(layer));
      continue;
    }
    x.posted.push_back(*t);
    x.bytes += static_cast<int64_t>(hi - lo) * static_cast<int64_t>(local.block_layer_bytes());
  }
}

Status PrefillServiceImpl::Finish(const std::string& id, int32_t first_token,
                                  Clock::time_point until, int64_t* bytes) {
  std::shared_ptr<Xfer> x;
  {
    std::lock_guard<std::mutex> l(mu_);
    x = xfers_[id];
  }
  // The engine thread posted every write before it emitted the first token.
  std::vector<kvtransfer::TransferId> posted;
  Status err;
  {
    std::lock_guard<std::mutex> l(mu_);
    posted = x->posted;
    err = x->error;
    *bytes = x->bytes;
  }
  for (kvtransfer::TransferId t : posted) {
    const kvtransfer::TransferResult r = d_->transfer->Wait(t, Left(until));
    serving::ObserveTransfer(d_, r, /*timed_out=*/false);
    if (err.ok() && r.state == kvtransfer::TransferState::kInProgress) {
      err = DeadlineExceeded("KV write to " + x->target.decode_name() + " did not complete");
    } else if (err.ok() && r.state == kvtransfer::TransferState::kError) {
      err = r.status.WithContext("KV write to " + x->target.decode_name());
    }
  }
  v1::KvReadyNotice n;
  n.set_request_id(id);
  n.set_lease_id(x->target.lease_id());
  n.set_decode_incarnation(x->target.decode_incarnation());
  n.set_prefill_incarnation(d_->incarnation);
  n.set_compat_hash(d_->compat_hash);
  n.set_first_token(first_token);
  n.set_num_tokens(x->prompt_len);
  if (!err.ok()) n.set_error(err.ToString());
  StatusOr<kvtransfer::TransferId> nt =
      d_->transfer->PostNotification(x->peer, n.SerializeAsString(), Left(until));
  if (err.ok() && !nt.ok()) err = nt.status().WithContext("notify " + x->target.decode_name());
  if (nt.ok()) {
    x->notice_sent = true;
    const kvtransfer::TransferResult r = d_->transfer->Wait(*nt, Left(until));
    if (err.ok() && r.state != kvtransfer::TransferState::kDone) {
      err = r.state == kvtransfer::TransferState::kError
                ? r.status.WithContext("notify " + x->target.decode_name())
                : DeadlineExceeded("notification to " + x->target.decode_name() + " timed out");
    }
    d_->transfer->Release(*nt);
  }
  return err;
}

void PrefillServiceImpl::Abort(const std::string& id,
                               const std::shared_ptr<serving::OutputStream>& out) {
  d_->engine->Cancel(id);
  // Wait (bounded) for the engine's final output so the blocks are no longer being computed.
  const auto until = Clock::now() + std::chrono::seconds(10);
  bool done = false;
  while (out && !done && Clock::now() < until) {
    std::vector<serving::Output> outs;
    if (!out->Pop(until, &outs)) break;
    for (const serving::Output& o : outs) done = done || o.finish != serving::Finish::kNone;
  }
}

Status PrefillServiceImpl::Check(const v1::PrefillRequest& req, const std::vector<int32_t>& prompt,
                                 Xfer* x) {
  // Fields, prompt, sampling and the target's block table (serving/request_check.h).
  Status st = serving::ValidatePrefillRequest(req, serving::DaemonRequestLimits(*d_), &x->target);
  if (st.ok()) st = serving::CheckMatch("compat hash", d_->compat_hash, req.compat_hash());
  if (st.ok()) st = d_->engine->CheckPrompt(prompt, 1);
  if (st.ok()) {
    st = serving::CheckMatch("compat hash (decode's)", d_->compat_hash, x->target.compat_hash());
  }
  if (!st.ok()) return st;
  StatusOr<kvtransfer::PeerId> p = Peer(x->target);
  if (!p.ok()) {
    return p.status().code() == StatusCode::kFailedPrecondition ? p.status()
                                                                 : Unavailable(p.status().message());
  }
  x->peer = *p;
  return OkStatus();
}

grpc::Status PrefillServiceImpl::Prefill(grpc::ServerContext* ctx, const v1::PrefillRequest* req,
                                         v1::PrefillResponse* resp) {
  const auto t0 = Clock::now();
  const std::string& id = req->request_id();
  const auto until = serving::CallDeadline(ctx, d_->inst.timeouts.prefill_ms);
  auto x = std::make_shared<Xfer>();
  std::vector<int32_t> prompt(req->prompt_ids().begin(), req->prompt_ids().end());
  Status st = Check(*req, prompt, x.get());
  if (!st.ok()) {
    // Refused before any write: still tell D (when its target is usable) so that the lease it
    // fences on cancel is freed at once rather than after the fence time.
    auto refused = std::make_shared<Xfer>();
    if (refused->target.ParseFromString(req->target()) &&
        refused->target.compat_hash() == d_->compat_hash) {
      StatusOr<kvtransfer::PeerId> peer = Peer(refused->target);
      if (peer.ok()) {
        refused->peer = *peer;
        refused->prompt_len = static_cast<int>(prompt.size());
        SendTombstone(id, *refused, st);
      }
    }
    return serving::ToGrpc(st.WithContext(d_->inst.name));
  }
  const KvLayout& layout = d_->runner->kv_arena().layout;
  x->remote_layout = layout;
  x->remote_layout.num_blocks = x->target.num_blocks();
  x->prompt_len = static_cast<int>(prompt.size());
  x->until = until;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (xfers_.count(id)) return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "request '" + id + "' is already prefilling here");
    xfers_[id] = x;
    ++inflight_;
  }
  serving::EngineRequest er;
  er.id = id;
  er.prompt = std::move(prompt);
  er.max_tokens = 1;
  er.ignore_eos = true;
  er.hold_blocks = true;
  er.sampling.temperature = req->sampling().temperature();
  er.sampling.top_k = req->sampling().top_k();
  er.sampling.top_p = req->sampling().top_p() > 0 ? req->sampling().top_p() : 1.0f;
  er.sampling.seed = req->sampling().seed();
  StatusOr<std::shared_ptr<serving::OutputStream>> out = d_->engine->Submit(std::move(er));
  int32_t first = -1;
  serving::Output last;
  if (!out.ok()) st = out.status();
  while (st.ok() && last.finish == serving::Finish::kNone) {
    std::vector<serving::Output> outs;
    (void)(*out)->Pop(std::min(until, Clock::now() + std::chrono::milliseconds(20)), &outs);
    for (const serving::Output& o : outs) {
      if (!o.tokens.empty()) first = o.tokens[0];
      if (o.finish != serving::Finish::kNone) last = o;
    }
    if (last.finish != serving::Finish::kNone) break;
    if (ctx->IsCancelled()) st = Cancelled("prefill cancelled");
    else if (Clock::now() >= until) st = DeadlineExceeded("prefill deadline passed");
  }
  if (st.ok() && (last.finish == serving::Finish::kError || last.finish == serving::Finish::kCancelled)) {
    st = last.status.ok() ? Cancelled("prefill cancelled") : last.status;
  }
  if (!st.ok() && out.ok() && last.finish == serving::Finish::kNone) Abort(id, *out);
  const auto t_forward = Clock::now();
  int64_t bytes = 0;
  if (st.ok()) st = Finish(id, first, until, &bytes);
  {
    std::lock_guard<std::mutex> l(mu_);
    for (kvtransfer::TransferId t : x->posted) d_->transfer->Release(t);  // fails leftovers
    xfers_.erase(id);  // no layer hook posts for this request after this point
    --inflight_;
  }
  d_->engine->Release(id);
  if (!st.ok() && !x->notice_sent) SendTombstone(id, *x, st);
  if (!st.ok()) {
    PD_LOG_INFO("{}: prefill failed: {}", id, st.ToString());
    return serving::ToGrpc(st.WithContext(d_->inst.name));
  }
  resp->set_first_token(first);
  resp->set_incarnation(d_->incarnation);
  resp->set_cached_tokens(last.cached_tokens);
  resp->set_kv_bytes(bytes);
  resp->set_transfer_ms(MsSince(t_forward));
  resp->set_prefill_ms(MsSince(t0));
  return grpc::Status::OK;
}

void PrefillServiceImpl::SendTombstone(const std::string& id, Xfer& x, const Status& why) {
  v1::KvReadyNotice n;
  n.set_request_id(id);
  n.set_lease_id(x.target.lease_id());
  n.set_decode_incarnation(x.target.decode_incarnation());
  n.set_prefill_incarnation(d_->incarnation);
  n.set_compat_hash(d_->compat_hash);
  n.set_first_token(-1);
  n.set_num_tokens(x.prompt_len);
  n.set_error("prefill attempt ended: " + why.ToString());
  StatusOr<kvtransfer::TransferId> t =
      d_->transfer->PostNotification(x.peer, n.SerializeAsString(), std::chrono::milliseconds(1000));
  if (!t.ok()) return;  // D then frees the fenced blocks at its fence time
  const kvtransfer::TransferResult r = d_->transfer->Wait(*t, std::chrono::milliseconds(1000));
  x.notice_sent = r.state == kvtransfer::TransferState::kDone;
  d_->transfer->Release(*t);
}

grpc::Status PrefillServiceImpl::Cancel(grpc::ServerContext*, const v1::CancelRequest* req,
                                        v1::CancelResponse* resp) {
  resp->set_found(d_->engine->Cancel(req->request_id()));
  return grpc::Status::OK;
}

grpc::Status PrefillServiceImpl::Stats(grpc::ServerContext*, const v1::StatsRequest*,
                                       v1::StatsResponse* resp) {
  int64_t awaiting;
  {
    std::lock_guard<std::mutex> l(mu_);
    awaiting = inflight_;
  }
  serving::FillStats(d_, "prefill", awaiting, resp);
  return grpc::Status::OK;
}

}  // namespace pd::prefill
