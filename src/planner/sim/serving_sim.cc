#include "planner/sim/serving_sim.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <queue>
#include <random>
#include <sstream>
#include <unordered_map>

#include "router/instance_pool.h"
#include "router/scheduler.h"

namespace pd::planner {
namespace {

constexpr char kModel[] = "m";

enum class Phase { kWaiting, kReserved, kRunning, kDone };

// One sequence on one instance (a request has one on D and, if remote, one on P).
struct Seq {
  int req = 0;
  int prompt = 0;         // tokens to compute before sampling (prompt, or prompt+generated after
                          // a preemption)
  int computed = 0;       // of `prompt`
  int generated = 0;      // tokens produced so far
  int target = 0;         // tokens to produce (1 on P)
  int blocks = 0;         // KV blocks held
  Phase phase = Phase::kWaiting;
  bool remote = false;    // D side of a remote prefill (KV arrives from P)
  bool kv_ready = false;  // remote: KV delivered (and staged); waits in `waiting` for admission
  int64_t admit_order = 0;
};

struct Link {
  std::vector<double> free_at = {0.0};  // one entry per lane (concurrent transfer)
  double busy = 0;                      // summed over lanes
  double& Earliest() { return *std::min_element(free_at.begin(), free_at.end()); }
};

struct Instance {
  bool is_prefill = false;
  int index = 0;
  const CostModel* cost = nullptr;
  EngineParams ep;
  int total_blocks = 0, free_blocks = 0;
  std::deque<Seq*> waiting;   // local prefill admissions (FIFO)
  std::deque<Seq*> reserve;   // D: remote prefills waiting for blocks (FIFO)
  std::vector<Seq*> running;  // admission order
  bool busy = false;
  double step_start = 0;
  double work_left = 0;  // shared GPU: solo milliseconds of the current step still to run
  int64_t ver = 0;       // shared GPU: bumps when the step's completion is rescheduled
  std::vector<std::pair<Seq*, int>> batch;  // (seq, new tokens; 0 = decode token)
  double bw_bytes_per_ms = 0;
  Link link;
  Link stage;  // D: host -> GPU staging copies of arrived KV (host mirror), FIFO
};

enum class Ev { kArrival, kStepDone, kKvArrived, kStaged, kPRelease, kPoll };

struct Event {
  double t;
  int64_t seq;
  Ev type;
  int a;  // request index or instance id
  int64_t ver = 0;  // kStepDone on a shared GPU: valid only if it matches the instance's ver
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

int BlocksFor(int tokens, int bs) { return (tokens + bs - 1) / bs; }

class Sim {
 public:
  Sim(const Deployment& d, const std::vector<SimRequest>& reqs)
      : d_(d), reqs_(reqs), pcost_(d.prefill_profile, d.chunk_factor),
        dcost_(d.decode_profile, d.chunk_factor) {
    out_.requests.resize(reqs.size());
    MakeInstances(d.num_prefill, true, &pinst_);
    MakeInstances(d.num_decode, false, &dinst_);
    std::vector<InstanceConfig> pc(pinst_.size()), dc(dinst_.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      pc[i].model_name = kModel;
      pc[i].name = "prefill-" + std::to_string(i);
    }
    for (size_t i = 0; i < dc.size(); ++i) {
      dc[i].model_name = kModel;
      dc[i].name = "decode-" + std::to_string(i);
    }
    ppool_ = std::make_unique<router::InstancePool>(pc, 1024);
    dpool_ = std::make_unique<router::InstancePool>(dc, 1024);
    ppick_ = std::make_unique<router::Picker>(d.scorers);
    dpick_ = std::make_unique<router::Picker>(d.scorers);
    Poll();
  }

  SimResult Run() {
    for (size_t i = 0; i < reqs_.size(); ++i) Push(reqs_[i].arrival_s * 1e3, Ev::kArrival, i);
    if (d_.poll_interval_ms > 0) Push(d_.poll_interval_ms, Ev::kPoll, 0);
    while (!q_.empty()) {
      const Event e = q_.top();
      q_.pop();
      now_ = e.t;
      switch (e.type) {
        case Ev::kArrival: Arrive(e.a); break;
        case Ev::kStepDone:
          if (e.ver != all_[e.a]->ver) break;  // rescheduled (shared GPU)
          if (d_.shared_gpu) ShareAdvance();
          StepDone(*all_[e.a]);
          break;
        case Ev::kKvArrived: KvArrived(e.a); break;
        case Ev::kStaged: Staged(e.a); break;
        case Ev::kPRelease: PRelease(e.a); break;
        case Ev::kPoll:
          Poll();
          // Only polls left: nothing can make progress any more (stop instead of spinning).
          if ((pending_ > 0 || arrived_ < reqs_.size()) && !q_.empty()) {
            Push(now_ + d_.poll_interval_ms, Ev::kPoll, 0);
          }
          break;
      }
    }
    for (RequestOutcome& o : out_.requests) {
      if (!o.ok && o.reject_reason.empty()) o.reject_reason = "stalled: no event could progress";
    }
    return std::move(out_);
  }

 private:
  void MakeInstances(int n, bool prefill, std::vector<Instance*>* v) {
    for (int i = 0; i < n; ++i) {
      auto in = std::make_unique<Instance>();
      in->is_prefill = prefill;
      in->index = static_cast<int>(all_.size());
      in->cost = prefill ? &pcost_ : &dcost_;
      in->ep = prefill ? d_.prefill : d_.decode;
      const Profile& prof = prefill ? d_.prefill_profile : d_.decode_profile;
      const int64_t pool = in->ep.kv_pool_tokens > 0 ? in->ep.kv_pool_tokens : prof.kv_pool_tokens;
      in->total_blocks = in->free_blocks =
          static_cast<int>(std::min<int64_t>(pool / in->ep.block_size, 1 << 30));
      in->bw_bytes_per_ms = d_.link.gbps * prof.tp * d_.link.efficiency * 1e9 / 8 / 1e3;
      in->link.free_at.assign(std::max(1, d_.link.lanes), 0.0);
      v->push_back(in.get());
      all_.push_back(std::move(in));
    }
  }

  void Push(double t, Ev type, size_t a, int64_t ver = 0) {
    q_.push(Event{t, next_event_++, type, static_cast<int>(a), ver});
  }

  // Shared GPU = processor sharing: k busy instances each progress at 1 / (1 + penalty (k-1))
  // of their solo speed. ShareAdvance charges the time since the last change; ShareReschedule
  // re-posts every busy instance's completion at the current speed.
  double ShareSpeed() const {
    int k = 0;
    for (const auto& x : all_) k += x->busy ? 1 : 0;
    return 1.0 / (1 + d_.share_penalty * std::max(0, k - 1));
  }
  void ShareAdvance() {
    const double done = (now_ - share_t_) * share_speed_;
    for (const auto& x : all_) {
      if (x->busy) x->work_left = std::max(0.0, x->work_left - done);
    }
    share_t_ = now_;
  }
  void ShareReschedule() {
    share_speed_ = ShareSpeed();
    for (const auto& x : all_) {
      if (!x->busy) continue;
      ++x->ver;
      Push(now_ + x->work_left / share_speed_, Ev::kStepDone, x->index, x->ver);
    }
  }

  void Poll() {
    auto report = [](router::InstancePool* pool, const std::vector<Instance*>& v) {
      for (size_t i = 0; i < v.size(); ++i) {
        router::LoadSnapshot s;
        s.waiting = static_cast<int>(v[i]->waiting.size() + v[i]->reserve.size());
        s.running = static_cast<int>(v[i]->running.size());
        s.total_blocks = v[i]->total_blocks;
        s.free_blocks = v[i]->free_blocks;
        s.incarnation = 1;
        pool->ReportUp(static_cast<int>(i), s);
      }
    };
    report(ppool_.get(), pinst_);
    report(dpool_.get(), dinst_);
  }

  void Reject(int r, const std::string& why) {
    out_.requests[r].ok = false;
    out_.requests[r].reject_reason = why;
    --pending_;
  }

  void Arrive(int r) {
    ++pending_;
    ++arrived_;
    RequestOutcome& o = out_.requests[r];
    o.input = reqs_[r].input;
    o.output = reqs_[r].output;
    if (dinst_.empty()) return Reject(r, "no decode instance");
    if (o.input < 1 || o.output < 1) return Reject(r, "empty prompt or max_tokens < 1");
    const int d = dpool_->Pick(*dpick_, kModel, o.input, {}, {});
    Instance& D = *dinst_[d];
    if (BlocksFor(o.input + o.output, D.ep.block_size) > D.total_blocks) {
      return Reject(r, "prompt + output exceed the decode KV pool");
    }
    const router::DisaggDecision dec = router::DecidePrefill(
        o.input, 0, d_.disagg_threshold_tokens, !pinst_.empty());
    if (dec.place == router::PrefillPlace::kRemote &&
        BlocksFor(o.input, pinst_[0]->ep.block_size) > pinst_[0]->total_blocks) {
      return Reject(r, "prompt exceeds the prefill KV pool");
    }
    dpool_->AddInflight(d, 1);
    dest_[r] = d;
    auto s = std::make_unique<Seq>();
    s->req = r;
    s->prompt = o.input;
    s->target = o.output;
    s->remote = dec.place == router::PrefillPlace::kRemote;
    o.remote_prefill = s->remote;
    dseq_[r] = s.get();
    if (s->remote) {
      D.reserve.push_back(s.get());
      TryReserve(D);
    } else {
      D.waiting.push_back(s.get());
      MaybeStep(D);
    }
    seqs_.push_back(std::move(s));
  }

  // D: grants reservations in FIFO order while blocks last, and sends each to a P.
  void TryReserve(Instance& D) {
    while (!D.reserve.empty()) {
      Seq* s = D.reserve.front();
      const int need = BlocksFor(s->prompt, D.ep.block_size);
      if (need > D.free_blocks) return;
      D.reserve.pop_front();
      D.free_blocks -= need;
      s->blocks = need;
      s->phase = Phase::kReserved;
      StartRemotePrefill(s->req);
    }
  }

  void StartRemotePrefill(int r) {
    const int p = ppool_->Pick(*ppick_, kModel, reqs_[r].input, {}, {});
    Instance& P = *pinst_[p];
    ppool_->AddInflight(p, 1);
    src_[r] = p;
    auto s = std::make_unique<Seq>();
    s->req = r;
    s->prompt = reqs_[r].input;
    s->target = 1;
    pseq_[r] = s.get();
    P.waiting.push_back(s.get());
    seqs_.push_back(std::move(s));
    MaybeStep(P);
  }

  bool Grow(Instance& in, Seq* s, int tokens) {
    const int need = BlocksFor(tokens, in.ep.block_size) - s->blocks;
    if (need <= 0) return true;
    if (need > in.free_blocks) return false;
    in.free_blocks -= need;
    s->blocks += need;
    return true;
  }

  void Free(Instance& in, Seq* s) {
    in.free_blocks += s->blocks;
    s->blocks = 0;
  }

  // Engine::Schedule: decode tokens, running prefills' chunks, then FIFO admissions.
  void MaybeStep(Instance& in) {
    if (in.busy) return;
    in.batch.clear();
    int budget = in.ep.max_batch_tokens;
    std::vector<std::pair<int, int>> chunks;
    int ndec = 0;
    double ctx = 0;
    for (size_t i = 0; i < in.running.size(); ++i) {
      Seq* s = in.running[i];
      if (s->computed < s->prompt) continue;
      if (budget < 1 || static_cast<int>(in.batch.size()) >= in.ep.max_seqs) break;
      const int len = s->prompt + s->generated - (s->prompt - reqs_[s->req].input);
      while (!Grow(in, s, len)) {
        Seq* victim = in.running.back();
        Preempt(in, victim);
        if (victim == s) break;
      }
      if (s->phase != Phase::kRunning) continue;
      in.batch.push_back({s, 0});
      ctx += len;
      ++ndec;
      --budget;
    }
    for (Seq* s : in.running) {
      if (s->computed >= s->prompt) continue;
      if (budget <= 0 || static_cast<int>(in.batch.size()) >= in.ep.max_seqs) break;
      const int n = std::min({s->prompt - s->computed, in.ep.prefill_chunk_tokens, budget});
      in.batch.push_back({s, n});
      chunks.push_back({n, s->computed});
      budget -= n;
    }
    bool admitted_ready = false;
    while (!in.waiting.empty() && budget > 0 &&
           static_cast<int>(in.batch.size()) < in.ep.max_seqs &&
           static_cast<int>(in.running.size()) < in.ep.max_seqs) {
      Seq* s = in.waiting.front();
      if (s->kv_ready) {  // Engine: admitted with P's first token, first decode step next time
        in.waiting.pop_front();
        AdmitReady(in, s);
        admitted_ready = true;
        continue;
      }
      if (!Grow(in, s, s->prompt)) {
        // The engine's queue is strictly FIFO; here delivered remote prefills (their blocks are
        // reserved) may pass a local prompt that waits for blocks, so that a pool full of
        // reservations cannot stall the simulation (see docs/planning.md).
        admitted_ready |= AdmitReadyBehind(in);
        break;
      }
      in.waiting.pop_front();
      s->phase = Phase::kRunning;
      s->admit_order = next_admit_++;
      in.running.push_back(s);
      const int n = std::min({s->prompt - s->computed, in.ep.prefill_chunk_tokens, budget});
      in.batch.push_back({s, n});
      chunks.push_back({n, s->computed});
      budget -= n;
    }
    if (in.batch.empty()) {
      if (admitted_ready) MaybeStep(in);  // the engine schedules again at once
      return;
    }
    const double ms = in.cost->StepMs(ndec, ndec ? ctx / ndec : 0, chunks) +
                      in.ep.step_overhead_ms + in.ep.seq_overhead_ms * in.batch.size();
    ++out_.steps;
    in.step_start = now_;
    if (d_.shared_gpu) {
      ShareAdvance();
      in.busy = true;
      in.work_left = ms;
      ShareReschedule();
      return;
    }
    in.busy = true;
    Push(now_ + ms, Ev::kStepDone, in.index);
  }

  // Releases the victim's blocks; it recomputes prompt + generated tokens later (front of queue).
  void Preempt(Instance& in, Seq* v) {
    Free(in, v);
    in.running.erase(std::find(in.running.begin(), in.running.end(), v));
    v->prompt += v->generated - (v->prompt - reqs_[v->req].input);
    v->computed = 0;
    v->phase = Phase::kWaiting;
    in.waiting.push_front(v);
    if (!in.is_prefill) ++out_.requests[v->req].preemptions;
  }

  void StepDone(Instance& in) {
    in.busy = false;
    if (d_.shared_gpu) ShareReschedule();
    const double dur = now_ - in.step_start;
    std::vector<Seq*> finished;
    for (auto& [s, n] : in.batch) {
      if (n > 0) {
        s->computed += n;
        if (in.is_prefill) PostKv(in, s, n, dur);
        if (s->computed < s->prompt) continue;
        if (s->generated == 0) FirstToken(s, in.is_prefill);
        if (s->generated == 0) s->generated = 1;
      } else {
        ++s->generated;
      }
      if (s->generated >= s->target) finished.push_back(s);
    }
    for (Seq* s : finished) Finish(in, s);
    MaybeStep(in);
  }

  void FirstToken(Seq* s, bool on_prefill) {
    if (on_prefill) return;  // P's token reaches the client through D (KvArrived)
    out_.requests[s->req].ttft_ms = now_ - reqs_[s->req].arrival_s * 1e3;
  }

  // Layer-wise push of a chunk's KV: its bytes leave during the step (layer by layer) over P's
  // egress and D's ingress links (FIFO), and cannot end before the last layer was computed.
  void PostKv(Instance& P, Seq* s, int n, double dur) {
    Instance& D = *dinst_[dest_[s->req]];
    const double bytes = static_cast<double>(n) * d_.prefill_profile.kv_bytes_per_token;
    const double bw = std::min(P.bw_bytes_per_ms, D.bw_bytes_per_ms);
    const int layers = std::max(1, d_.prefill_profile.model.num_layers);
    const double avail = now_ - dur * (layers - 1) / layers;
    double& p_lane = P.link.Earliest();
    double& d_lane = D.link.Earliest();
    const double start = std::max({avail, p_lane, d_lane});
    const double done = std::max(start + bytes / bw, now_ + bytes / bw / layers);
    P.link.busy += done - start;
    D.link.busy += done - start;
    p_lane = d_lane = done;
    kv_done_[s->req] = done;
    out_.kv_bytes += bytes;
  }

  void Finish(Instance& in, Seq* s) {
    in.running.erase(std::find(in.running.begin(), in.running.end(), s));
    s->phase = Phase::kDone;
    const int r = s->req;
    if (in.is_prefill) {
      // hold_blocks: P frees the prompt's blocks when its KV is delivered (Release after the
      // final notice), so a full P pool stalls further prefills until transfers end.
      const double delivered = std::max(now_, kv_done_[r]) + d_.link.latency_ms;
      Push(delivered, Ev::kPRelease, r);
      Push(delivered + d_.rpc_ms, Ev::kKvArrived, r);
      return;
    }
    Free(in, s);
    RequestOutcome& o = out_.requests[r];
    o.ok = true;
    o.e2e_ms = now_ - reqs_[r].arrival_s * 1e3;
    dpool_->AddInflight(dest_[r], -1);
    --pending_;
    TryReserve(in);
  }

  void PRelease(int r) {
    Instance& P = *pinst_[src_[r]];
    Free(P, pseq_[r]);
    ppool_->AddInflight(src_[r], -1);
    MaybeStep(P);
  }

  // D has P's notice: with a host mirror it stages the prompt's KV to the GPU (FIFO), then
  // submits the sequence.
  void KvArrived(int r) {
    Instance& D = *dinst_[dest_[r]];
    if (d_.link.stage_gbps <= 0) return Staged(r);
    const double bytes = static_cast<double>(reqs_[r].input) * d_.decode_profile.kv_bytes_per_token;
    double& free_at = D.stage.free_at[0];
    const double start = std::max(now_, free_at);
    free_at = start + bytes / (d_.link.stage_gbps * 1e9 / 8 / 1e3);
    D.stage.busy += free_at - start;
    Push(free_at, Ev::kStaged, r);
  }

  void Staged(int r) {
    Instance& D = *dinst_[dest_[r]];
    Seq* s = dseq_[r];
    s->kv_ready = true;
    D.waiting.push_back(s);
    MaybeStep(D);
  }

  // Admits the delivered remote prefills queued behind a blocked head of `waiting`.
  bool AdmitReadyBehind(Instance& in) {
    bool any = false;
    for (auto it = in.waiting.begin(); it != in.waiting.end();) {
      if (!(*it)->kv_ready || static_cast<int>(in.running.size()) >= in.ep.max_seqs) {
        ++it;
        continue;
      }
      Seq* s = *it;
      it = in.waiting.erase(it);
      AdmitReady(in, s);
      any = true;
    }
    return any;
  }

  // Engine admission of a remote prefill: P's first token is emitted now.
  void AdmitReady(Instance& D, Seq* s) {
    const int r = s->req;
    out_.requests[r].ttft_ms = now_ - reqs_[r].arrival_s * 1e3;
    s->kv_ready = false;
    s->computed = s->prompt;
    s->generated = 1;
    s->phase = Phase::kRunning;
    s->admit_order = next_admit_++;
    D.running.push_back(s);
    if (s->generated >= s->target) Finish(D, s);
  }

  const Deployment& d_;
  const std::vector<SimRequest>& reqs_;
  CostModel pcost_, dcost_;
  std::vector<std::unique_ptr<Instance>> all_;
  std::vector<Instance*> pinst_, dinst_;
  std::unique_ptr<router::InstancePool> ppool_, dpool_;
  std::unique_ptr<router::Picker> ppick_, dpick_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> q_;
  std::vector<std::unique_ptr<Seq>> seqs_;
  std::unordered_map<int, int> dest_, src_;
  std::unordered_map<int, Seq*> dseq_, pseq_;
  std::unordered_map<int, double> kv_done_;
  SimResult out_;
  double now_ = 0;
  int64_t next_event_ = 0, next_admit_ = 0;
  int pending_ = 0;
  double share_t_ = 0, share_speed_ = 1;
  size_t arrived_ = 0;

 public:
  double LinkBusyMax() const {
    double m = 0;
    for (const auto& x : all_) m = std::max(m, x->link.busy / x->link.free_at.size());
    return m;
  }
};

}  // namespace

std::vector<SimRequest> MakeRequests(const WorkloadSpec& w) {
  const std::vector<double> at = bench::PoissonArrivals(w.num_requests, w.rate, w.seed + 17);
  std::mt19937_64 rng(w.seed);
  std::vector<SimRequest> out(at.size());
  for (size_t i = 0; i < at.size(); ++i) {
    out[i].arrival_s = at[i];
    out[i].input = w.input.Sample(rng);
    out[i].output = w.output.Sample(rng);
  }
  return out;
}

SimResult Simulate(const Deployment& d, const std::vector<SimRequest>& reqs, const SimOptions& o) {
  Sim sim(d, reqs);
  SimResult r = sim.Run();
  std::vector<bench::RequestResult> rr;
  double t0 = -1, t1 = 0;
  for (size_t i = static_cast<size_t>(std::max(0, o.warmup)); i < reqs.size(); ++i) {
    const RequestOutcome& x = r.requests[i];
    bench::RequestResult b;
    b.ok = x.ok;
    b.error = x.reject_reason;
    b.prompt_tokens = x.input;
    b.output_tokens = x.ok ? x.output : 0;
    b.ttft_ms = x.ttft_ms;
    b.e2e_ms = x.e2e_ms;
    rr.push_back(b);
    if (t0 < 0) t0 = reqs[i].arrival_s;
    if (x.ok) t1 = std::max(t1, reqs[i].arrival_s + x.e2e_ms / 1e3);
  }
  const double dur = t0 < 0 ? 0 : std::max(1e-9, t1 - t0);
  r.report = bench::MakeReport(rr, dur, o.slo_ttft_ms, o.slo_tpot_ms);
  r.kv_gbps = dur > 0 ? r.kv_bytes * 8 / 1e9 / dur : 0;
  r.max_link_util = dur > 0 ? sim.LinkBusyMax() / 1e3 / dur : 0;
  return r;
}

std::string SimResult::Digest() const {
  std::ostringstream s;
  s.precision(17);
  for (const RequestOutcome& x : requests) {
    s << x.ok << ' ' << x.reject_reason << ' ' << x.remote_prefill << ' ' << x.preemptions << ' '
      << x.ttft_ms << ' ' << x.e2e_ms << '\n';
  }
  s << "steps " << steps << " kv " << kv_bytes << '\n';
  return s.str();
}

}  // namespace pd::planner
