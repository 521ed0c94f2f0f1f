#include "serving/engine.h"

#include <algorithm>
#include <limits>
#include <span>

#include "common/logging.h"

namespace pd::serving {

void OutputStream::Push(Output o) {
  {
    std::lock_guard<std::mutex> l(mu_);
    q_.push_back(std::move(o));
  }
  cv_.notify_all();
}

bool OutputStream::Pop(std::chrono::steady_clock::time_point until, std::vector<Output>* out) {
  std::unique_lock<std::mutex> l(mu_);
  if (!cv_.wait_until(l, until, [&] { return !q_.empty(); })) return false;
  while (!q_.empty()) {
    out->push_back(std::move(q_.front()));
    q_.pop_front();
  }
  return true;
}

struct Engine::Seq {
  EngineRequest req;
  SeqId sid = 0;
  std::vector<int32_t> tokens;  // prompt, then generated
  int prompt_len = 0;
  int num_computed = 0;         // tokens whose KV is in the blocks
  int generated = 0;
  bool admitted = false;        // holds blocks as sequence `sid`
  bool cancelled = false;
  bool finished = false;        // held (hold_blocks) after finishing
  bool first_admission = true;
  int cached_tokens = 0;
  int preemptions = 0;
  std::shared_ptr<OutputStream> out;
};

struct Engine::Batch {
  ForwardBatch fb;
  std::vector<Seq*> seqs;
  std::vector<ChunkInfo> chunks;
  int budget = 0;
};

int64_t Engine::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Engine::Engine(ModelRunner* runner, const EngineOptions& opts)
    : runner_(runner),
      opts_(opts),
      block_size_(runner->kv_arena().layout.block_size),
      max_model_len_(opts.max_model_len > 0 ? opts.max_model_len
                                            : runner->config().max_position_embeddings),
      blocks_(opts.num_blocks > 0 ? std::min(opts.num_blocks, runner->kv_arena().layout.num_blocks)
                                  : runner->kv_arena().layout.num_blocks,
              runner->kv_arena().layout.block_size) {
  max_model_len_ = std::min(max_model_len_, runner->config().max_position_embeddings);
}

Engine::~Engine() { Stop(); }

void Engine::Start() { thread_ = std::thread([this] { Loop(); }); }

void Engine::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Seq*> live;
  for (auto& [id, s] : seqs_) {
    if (!s->finished) live.push_back(s.get());
  }
  for (Seq* s : live) Finish(s, Finish::kError, Unavailable("server shutting down"));
}

Status Engine::CheckPrompt(const std::vector<int32_t>& prompt, int max_tokens) const {
  if (prompt.empty()) return InvalidArgument("empty prompt");
  const int vocab = runner_->config().vocab_size;
  for (int32_t t : prompt) {
    if (t < 0 || t >= vocab) {
      return InvalidArgument("token id " + std::to_string(t) + " outside the vocabulary [0, " +
                             std::to_string(vocab) + ")");
    }
  }
  if (max_tokens <= 0) return InvalidArgument("max_tokens must be > 0");
  if (static_cast<int64_t>(prompt.size()) + max_tokens > max_model_len_) {
    return InvalidArgument("prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                           std::to_string(max_tokens) + ") exceeds max_model_len " +
                           std::to_string(max_model_len_));
  }
  return OkStatus();
}

StatusOr<Reservation> Engine::Reserve(const std::string& id, const std::vector<int32_t>& prompt,
                                      int64_t lease_ms) {
  std::lock_guard<std::mutex> l(mu_);
  if (seqs_.count(id) || leases_.count(id)) {
    return Status(StatusCode::kAlreadyExists, "request '" + id + "' is already live here");
  }
  if (opts_.max_queue > 0 &&
      static_cast<int>(waiting_.size() + leases_.size()) >= opts_.max_queue) {
    return ResourceExhausted("queue full: " + std::to_string(waiting_.size()) + " waiting + " +
                             std::to_string(leases_.size()) + " reserved (max_queue " +
                             std::to_string(opts_.max_queue) + ")");
  }
  const int64_t now = NowMs();
  ExpireLeases();  // also done by the loop; here so a full pool frees before failing
  // The block manager holds the blocks past the lease for the fence time: a lease that ends
  // uncommitted is fenced until then (or until ReleaseFenced), never reused under a late write.
  StatusOr<Reservation> r = blocks_.Reserve(prompt, now + lease_ms + opts_.lease_fence_ms);
  if (!r.ok()) return r.status();
  leases_[id] = *r;
  lease_owner_[r->lease] = id;
  lease_deadline_[r->lease] = now + lease_ms;
  return r;
}

StatusOr<std::shared_ptr<OutputStream>> Engine::Submit(EngineRequest req) {
  Status st = CheckPrompt(req.prompt, req.max_tokens);
  if (!st.ok()) return st;
  std::lock_guard<std::mutex> l(mu_);
  if (stop_) return Unavailable("engine stopped");
  if (seqs_.count(req.id)) {
    return Status(StatusCode::kAlreadyExists, "request '" + req.id + "' is already running");
  }
  if (req.lease == 0 && opts_.max_queue > 0 &&
      static_cast<int>(waiting_.size()) >= opts_.max_queue) {
    return ResourceExhausted("queue full: " + std::to_string(waiting_.size()) +
                             " requests waiting (max_queue " + std::to_string(opts_.max_queue) +
                             ")");
  }
  if (req.lease != 0) {
    auto it = leases_.find(req.id);
    if (it == leases_.end() || it->second.lease != req.lease) {
      return NotFound("no live lease " + std::to_string(req.lease) + " for request '" + req.id +
                      "' (expired or cancelled)");
    }
    // Committed by this submission: it no longer expires while queued (max_queue bounds that).
    lease_deadline_.erase(req.lease);
    (void)blocks_.ExtendLease(req.lease, std::numeric_limits<int64_t>::max() / 2);
  }
  auto s = std::make_unique<Seq>();
  s->sid = next_sid_++;
  s->tokens = req.prompt;
  s->prompt_len = static_cast<int>(req.prompt.size());
  s->req = std::move(req);
  s->out = std::make_shared<OutputStream>();
  auto out = s->out;
  waiting_.push_back(s.get());
  seqs_[s->req.id] = std::move(s);
  work_cv_.notify_all();
  return out;
}

bool Engine::Cancel(const std::string& id, bool writer_done) {
  std::lock_guard<std::mutex> l(mu_);
  bool found = false;
  if (leases_.count(id)) {
    RetireLease(id, writer_done);
    found = true;
  }
  auto it = seqs_.find(id);
  if (it != seqs_.end() && !it->second->finished) {
    it->second->cancelled = true;
    found = true;
  }
  work_cv_.notify_all();
  return found;
}

LeaseId Engine::LiveLease(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = leases_.find(id);
  return it == leases_.end() ? 0 : it->second.lease;
}

bool Engine::ReleaseFenced(LeaseId lease) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = fenced_.find(lease);
  if (it == fenced_.end()) return false;
  (void)blocks_.Cancel(lease);
  PD_LOG_DEBUG("{}: fenced lease {} released (its writer is done)", it->second, lease);
  fenced_.erase(it);
  work_cv_.notify_all();
  return true;
}

void Engine::RetireLease(const std::string& id, bool writer_done) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  const LeaseId lease = it->second.lease;
  leases_.erase(it);
  lease_owner_.erase(lease);
  lease_deadline_.erase(lease);
  if (opts_.lease_fence_ms > 0 && !writer_done) {
    (void)blocks_.ExtendLease(lease, NowMs() + opts_.lease_fence_ms);
    fenced_[lease] = id;
    return;
  }
  (void)blocks_.Cancel(lease);
}

void Engine::Release(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = seqs_.find(id);
  if (it == seqs_.end() || !it->second->finished) return;
  if (it->second->admitted) (void)blocks_.Free(it->second->sid);
  seqs_.erase(it);
}

EngineStats Engine::Stats() {
  std::lock_guard<std::mutex> l(mu_);
  EngineStats s;
  s.waiting = static_cast<int>(waiting_.size());
  s.running = static_cast<int>(running_.size());
  s.leases = static_cast<int>(leases_.size());
  s.fenced = static_cast<int>(fenced_.size());
  for (auto& [id, q] : seqs_) s.held += q->finished ? 1 : 0;
  s.steps = steps_;
  s.preemptions = preemptions_;
  s.blocks = blocks_.Stats();
  return s;
}

Status Engine::CheckInvariants() {
  std::lock_guard<std::mutex> l(mu_);
  return blocks_.CheckInvariants();
}

void Engine::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> l(mu_);
      if (stop_) return;
    }
    if (!Step()) {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait_for(l, std::chrono::milliseconds(5));
    }
  }
}

void Engine::ExpireLeases() {
  const int64_t now = NowMs();
  // Live leases past their lease time stop being committable (fenced, or freed without a fence).
  std::vector<std::pair<LeaseId, std::string>> late;
  for (const auto& [lease, deadline] : lease_deadline_) {
    if (deadline < now) late.emplace_back(lease, lease_owner_[lease]);
  }
  for (const auto& [lease, id] : late) {
    PD_LOG_INFO("{}: lease {} expired uncommitted; blocks {}", id, lease,
                opts_.lease_fence_ms > 0 ? "fenced" : "freed");
    RetireLease(id, false);
  }
  // The block manager frees leases past their (fence-extended) deadline.
  for (LeaseId id : blocks_.ExpireLeases(now)) {
    if (auto f = fenced_.find(id); f != fenced_.end()) {
      PD_LOG_INFO("{}: fenced lease {} released after {} ms (no word from its writer)", f->second,
                  id, opts_.lease_fence_ms);
      fenced_.erase(f);
      continue;
    }
    auto it = lease_owner_.find(id);
    if (it == lease_owner_.end()) continue;
    PD_LOG_INFO("{}: lease {} expired; blocks freed", it->second, id);
    leases_.erase(it->second);
    lease_deadline_.erase(id);
    lease_owner_.erase(it);
  }
}

bool Engine::Step() {
  Batch b;
  {
    std::lock_guard<std::mutex> l(mu_);
    ExpireLeases();
    std::vector<Seq*> cancelled;
    for (auto& [id, s] : seqs_) {
      if (s->cancelled && !s->finished) cancelled.push_back(s.get());
    }
    for (Seq* s : cancelled) Finish(s, Finish::kCancelled, Cancelled("request cancelled"));
    Schedule(&b);
    if (b.seqs.empty()) return false;
  }
  if (layer_hook_) {
    b.fb.on_layer_done = [this, &b](int layer) { layer_hook_(b.chunks, layer); };
  }
  ForwardResult r;
  Status st = runner_->Forward(b.fb, &r);
  if (observer_.on_forward) observer_.on_forward(static_cast<int>(b.fb.token_ids.size()));
  std::lock_guard<std::mutex> l(mu_);
  ++steps_;
  if (!st.ok()) {
    PD_LOG_ERROR("forward failed: {}", st.ToString());
    for (Seq* s : b.seqs) Finish(s, Finish::kError, st.WithContext("forward"));
    return true;
  }
  Postprocess(b, r);
  return true;
}

void Engine::Schedule(Batch* b) {
  b->budget = opts_.max_batch_tokens;
  b->fb.block_indptr.push_back(0);
  ScheduleDecodes(b);
  SchedulePrefills(b);
  Admit(b);
}

void Engine::AddToBatch(Batch* b, Seq* s, int n) {
  SeqStep step;
  step.num_new_tokens = n;
  step.num_cached = s->num_computed;
  step.sample = s->num_computed + n == static_cast<int>(s->tokens.size());
  step.sampling = s->req.sampling;
  step.sample_step = static_cast<uint64_t>(s->generated);
  b->fb.seqs.push_back(step);
  b->fb.token_ids.insert(b->fb.token_ids.end(), s->tokens.begin() + s->num_computed,
                         s->tokens.begin() + s->num_computed + n);
  const std::vector<BlockId>* table = blocks_.BlockTable(s->sid);
  b->fb.block_ids.insert(b->fb.block_ids.end(), table->begin(), table->end());
  b->fb.block_indptr.push_back(static_cast<int32_t>(b->fb.block_ids.size()));
  b->seqs.push_back(s);
  b->budget -= n;
  if (layer_hook_) {
    b->chunks.push_back(ChunkInfo{s->req.id, s->num_computed, s->num_computed + n, s->prompt_len,
                                  *table});
  }
}

void Engine::ScheduleDecodes(Batch* b) {
  // Decoding sequences: their prompt is computed and exactly one token (the last generated) is not.
  std::vector<Seq*> decoding;
  for (Seq* s : running_) {
    if (s->num_computed >= s->prompt_len && s->num_computed + 1 == static_cast<int>(s->tokens.size())) {
      decoding.push_back(s);
    }
  }
  for (Seq* s : decoding) {
    if (!s->admitted) continue;  // preempted as a victim in this loop
    if (b->budget < 1 || static_cast<int>(b->seqs.size()) >= opts_.max_seqs) return;
    bool ok = true;
    while (ok && blocks_.NumTokens(s->sid) < s->num_computed + 1) {
      Status st = blocks_.AppendSlots(s->sid, 1);
      if (st.ok()) break;
      if (st.code() == StatusCode::kResourceExhausted) {
        if (Preempt(b, s)) continue;
        Preempt(b, nullptr);  // nobody else: recompute this one later
        ok = false;
      } else {
        Finish(s, Finish::kLength, OkStatus());  // would outgrow the whole pool
        ok = false;
      }
    }
    if (ok) AddToBatch(b, s, 1);
  }
}

void Engine::SchedulePrefills(Batch* b) {
  for (Seq* s : running_) {
    const int left = static_cast<int>(s->tokens.size()) - s->num_computed;
    if (s->num_computed >= s->prompt_len && left <= 1) continue;  // decoding
    if (std::find(b->seqs.begin(), b->seqs.end(), s) != b->seqs.end()) continue;
    if (b->budget <= 0 || static_cast<int>(b->seqs.size()) >= opts_.max_seqs) return;
    AddToBatch(b, s, std::min({left, opts_.prefill_chunk_tokens, b->budget}));
  }
}

void Engine::Admit(Batch* b) {
  while (!waiting_.empty() && b->budget > 0 &&
         static_cast<int>(b->seqs.size()) < opts_.max_seqs &&
         static_cast<int>(running_.size()) < opts_.max_seqs) {
    Seq* s = waiting_.front();
    Status st = AdmitOne(s);
    if (st.code() == StatusCode::kResourceExhausted) return;  // queue: wait for free blocks
    waiting_.pop_front();
    if (!st.ok()) {
      Finish(s, Finish::kError, st);
      continue;
    }
    running_.push_back(s);
    if (s->req.remote_first_token >= 0 && s->generated == 0 &&
        s->num_computed == s->prompt_len) {
      Emit(s, s->req.remote_first_token);  // may finish (and destroy) s
      continue;  // its first decode step is scheduled next time
    }
    const int left = static_cast<int>(s->tokens.size()) - s->num_computed;
    AddToBatch(b, s, std::min({left, opts_.prefill_chunk_tokens, b->budget}));
  }
}

Status Engine::AdmitOne(Seq* s) {
  if (s->req.lease != 0 && s->first_admission) {
    auto it = leases_.find(s->req.id);
    if (it == leases_.end() || it->second.lease != s->req.lease) {
      return NotFound("lease for '" + s->req.id + "' expired before the sequence was admitted");
    }
    Status st = blocks_.Commit(s->req.lease, s->sid, NowMs());
    const Reservation res = it->second;
    lease_owner_.erase(res.lease);
    lease_deadline_.erase(res.lease);
    leases_.erase(it);
    if (!st.ok()) return st.WithContext("commit lease");
    s->admitted = true;
    s->first_admission = false;
    s->cached_tokens = res.num_cached_tokens;
    s->num_computed = res.num_cached_tokens;
    if (s->req.remote_first_token >= 0) {
      s->num_computed = s->prompt_len;  // P wrote [cached, prompt)
      if (opts_.prefix_cache) {
        (void)blocks_.CommitFullBlocks(s->sid, std::span<const int32_t>(s->tokens));
      }
    }
    return OkStatus();
  }
  StatusOr<Allocation> a = opts_.prefix_cache
                               ? blocks_.AllocateForPrompt(s->sid, s->tokens)
                               : blocks_.Allocate(s->sid, static_cast<int64_t>(s->tokens.size()));
  if (!a.ok()) {
    if (a.status().code() == StatusCode::kOutOfRange) {
      return OutOfRange("request needs more KV blocks than the whole pool (" +
                        std::to_string(blocks_.num_blocks()) + "): " + a.status().message());
    }
    return a.status();  // RESOURCE_EXHAUSTED: wait for running sequences / leases to free blocks
  }
  s->admitted = true;
  s->num_computed = a->num_cached_tokens;
  if (s->first_admission) s->cached_tokens = a->num_cached_tokens;
  s->first_admission = false;
  return OkStatus();
}

bool Engine::Preempt(Batch* b, Seq* except) {
  // Victim: the most recently admitted running sequence other than `except` and not in `b`.
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    Seq* v = *it;
    if (v == except || std::find(b->seqs.begin(), b->seqs.end(), v) != b->seqs.end()) continue;
    if (opts_.prefix_cache && v->num_computed > 0) {
      (void)blocks_.CommitFullBlocks(
          v->sid, std::span<const int32_t>(v->tokens.data(), v->num_computed));
    }
    (void)blocks_.Free(v->sid);
    v->admitted = false;
    v->num_computed = 0;
    v->sid = next_sid_++;
    ++v->preemptions;
    ++preemptions_;
    running_.erase(std::next(it).base());
    waiting_.push_front(v);
    PD_LOG_INFO("{}: preempted (KV pool full); will recompute {} tokens", v->req.id,
                v->tokens.size());
    return true;
  }
  return false;
}

void Engine::Postprocess(const Batch& b, const ForwardResult& r) {
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    Seq* s = b.seqs[i];
    const bool was_prompt = s->num_computed < s->prompt_len;
    s->num_computed += b.fb.seqs[i].num_new_tokens;
    if (was_prompt && s->num_computed >= s->prompt_len && opts_.prefix_cache) {
      (void)blocks_.CommitFullBlocks(
          s->sid, std::span<const int32_t>(s->tokens.data(), s->prompt_len));
    }
    if (!b.fb.seqs[i].sample || s->finished) continue;
    if (s->cancelled) continue;  // finished at the next step
    Emit(s, r.tokens[i]);
  }
}

void Engine::Emit(Seq* s, int32_t token) {
  s->tokens.push_back(token);
  ++s->generated;
  Output o;
  o.tokens.push_back(token);
  if (s->generated == 1) o.cached_tokens = s->cached_tokens;
  o.step = steps_;
  s->out->Push(std::move(o));
  const auto& eos = runner_->config().eos_token_ids;
  const bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
  const bool is_stop =
      std::find(s->req.stop_ids.begin(), s->req.stop_ids.end(), token) != s->req.stop_ids.end();
  if ((is_eos && !s->req.ignore_eos) || is_stop) {
    Finish(s, Finish::kStop, OkStatus());
  } else if (s->generated >= s->req.max_tokens ||
             static_cast<int>(s->tokens.size()) >= max_model_len_) {
    Finish(s, Finish::kLength, OkStatus());
  }
}

void Engine::Finish(Seq* s, pd::serving::Finish f, Status st) {
  Output o;
  o.finish = f;
  o.status = std::move(st);
  o.cached_tokens = s->cached_tokens;
  o.prompt_tokens = s->prompt_len;
  o.completion_tokens = s->generated;
  o.preemptions = s->preemptions;
  o.step = steps_;
  if (observer_.on_finish) observer_.on_finish(f, o.status);
  s->out->Push(std::move(o));
  if (s->req.lease != 0 && s->first_admission) {
    // Submitted (its KV arrived, or D prefills it): no remote writer is left; free at once.
    auto it = leases_.find(s->req.id);
    if (it != leases_.end() && it->second.lease == s->req.lease) RetireLease(s->req.id, true);
  }
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
  // Held even when cancelled: a transfer may still be reading the blocks (Release frees them).
  const bool hold = s->req.hold_blocks && s->admitted;
  if (hold) {
    s->finished = true;
    return;
  }
  Drop(s);
}

void Engine::Drop(Seq* s) {
  if (s->admitted) {
    if (opts_.prefix_cache && s->num_computed > 0) {
      (void)blocks_.CommitFullBlocks(
          s->sid, std::span<const int32_t>(s->tokens.data(), s->num_computed));
    }
    (void)blocks_.Free(s->sid);
  }
  seqs_.erase(s->req.id);  // destroys s
}

}  // namespace pd::serving
