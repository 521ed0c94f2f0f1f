#include "kvtransfer/sim/fabric_sim.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <queue>
#include <random>

#include "kvtransfer/clock.h"
#include "kvtransfer/congestion.h"
#include "kvtransfer/path_selector.h"

namespace pd::kvtransfer::sim {
namespace {

constexpr uint64_t kUnit = 16 * 1024;
constexpr int kKv = -1;

enum class Ev : uint8_t { kDepart, kKvUnitAck, kBgAck, kBgPaced, kKvWake };

struct Event {
  int64_t t;
  uint64_t seq;
  Ev type;
  int a;        // spine / path / flow
  uint64_t b;   // chunk id / marked / -
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

struct Unit {
  int owner;  // kKv or background flow index
  uint64_t bytes;
  uint64_t chunk;  // KV: chunk id + 1 on the chunk's last unit, else 0
  bool marked;
  int64_t sent_ns;
  uint64_t sent_chunk = 0;  // KV: chunk id of every unit
};

struct Spine {
  std::deque<Unit> q;
  uint64_t queued = 0;
  bool busy = false;
};

struct Bg {
  BgFlow cfg;
  double cwnd = 4;
  int inflight = 0;
  int64_t last_dec = 0;
  int64_t srtt = 0;
};

struct Chunk {
  int path;
  uint64_t bytes;
  int64_t sent_ns;
  bool marked = false;
};

// The transport under the host CC (kernel TCP / NIC CC): an AIMD window of units per path,
// the same rule as the background flows (+1 unit per RTT, halve at most once per RTT on a
// mark). Admitted chunks wait in `pending` (the socket buffer) until the window lets them out.
struct TransportCc {
  double cwnd = 4;
  int inflight = 0;
  int64_t last_dec = 0;
  int64_t srtt = 0;
  std::deque<Unit> pending;
};

class Sim {
 public:
  Sim(const FabricConfig& f, const Arm& arm, uint64_t payload, uint64_t seed)
      : f_(f), arm_(arm), payload_(payload), spines_(static_cast<size_t>(f.spines)),
        ns_per_byte_(8.0 / f.link_gbps), base_ns_(static_cast<int64_t>(f.base_rtt_us * 1e3)),
        mark_bytes_(static_cast<uint64_t>(f.mark_kb * 1024)), rng_(seed) {
    for (const BgFlow& b : f.background) bg_.push_back(Bg{b});
    const int paths = std::min(arm.paths, f.spines);
    for (int i = 0; i < paths; ++i) {
      cc_.push_back(MakeCongestionControl(arm.cc, arm.chunk_bytes, clock_));
      inflight_.push_back(0);
      tcc_.push_back(TransportCc{});
    }
    selector_ = std::make_unique<PathSelector>(arm.policy, paths, clock_, seed);
  }

  RunResult Run(double warmup_us) {
    for (size_t i = 0; i < bg_.size(); ++i) {
      if (bg_[i].cfg.rate_gbps > 0) {
        Push(static_cast<int64_t>(std::uniform_real_distribution<>(0, 1000)(rng_)), Ev::kBgPaced,
             static_cast<int>(i), 0);
      } else {
        BgSend(static_cast<int>(i));
      }
    }
    start_ns_ = static_cast<int64_t>(warmup_us * 1e3);
    Push(start_ns_, Ev::kKvWake, 0, 0);
    const int64_t limit = start_ns_ + 120'000'000'000;  // 120 s of simulated time at most
    while (!events_.empty() && done_ns_ == 0) {
      const Event e = events_.top();
      events_.pop();
      if (e.t > limit) break;
      clock_.SetNs(e.t);
      Handle(e);
    }
    RunResult r;
    const int64_t end = done_ns_ ? done_ns_ : limit;
    r.completion_us = static_cast<double>(end - start_ns_) / 1e3;
    r.bg_goodput_gbps = static_cast<double>(bg_bytes_) * 8 / static_cast<double>(end - start_ns_);
    return r;
  }

 private:
  void Push(int64_t t, Ev type, int a, uint64_t b) { events_.push({t, seq_++, type, a, b}); }
  int64_t Now() const { return clock_.NowNs(); }

  void Enqueue(int spine, Unit u) {
    Spine& s = spines_[static_cast<size_t>(spine)];
    u.marked = s.queued > mark_bytes_;
    s.queued += u.bytes;
    s.q.push_back(u);
    if (!s.busy) StartService(spine);
  }
  void StartService(int spine) {
    Spine& s = spines_[static_cast<size_t>(spine)];
    if (s.q.empty()) {
      s.busy = false;
      return;
    }
    s.busy = true;
    Push(Now() + static_cast<int64_t>(static_cast<double>(s.q.front().bytes) * ns_per_byte_),
         Ev::kDepart, spine, 0);
  }

  void Handle(const Event& e) {
    switch (e.type) {
      case Ev::kDepart: {
        Spine& s = spines_[static_cast<size_t>(e.a)];
        const Unit u = s.q.front();
        s.q.pop_front();
        s.queued -= u.bytes;
        if (u.owner == kKv) {
          if (u.marked) chunks_[u.sent_chunk].marked = true;
          kv_acks_.push_back(u);
          Push(Now() + base_ns_, Ev::kKvUnitAck, 0, kv_acks_.size() - 1);
        } else {
          if (start_ns_ > 0 && Now() >= start_ns_) bg_bytes_ += u.bytes;
          if (bg_[static_cast<size_t>(u.owner)].cfg.rate_gbps <= 0) {
            Push(Now() + base_ns_, Ev::kBgAck, u.owner, (u.marked ? 1 : 0) | (static_cast<uint64_t>(u.sent_ns) << 1));
          }
        }
        StartService(e.a);
        break;
      }
      case Ev::kBgAck:
        BgAck(e.a, e.b & 1, static_cast<int64_t>(e.b >> 1));
        break;
      case Ev::kBgPaced: {
        const Bg& b = bg_[static_cast<size_t>(e.a)];
        Enqueue(b.cfg.spine, Unit{e.a, kUnit, 0, false, Now()});
        Push(Now() + static_cast<int64_t>(kUnit * 8 / b.cfg.rate_gbps), Ev::kBgPaced, e.a, 0);
        break;
      }
      case Ev::kKvUnitAck:
        KvUnitAck(kv_acks_[e.b]);
        break;
      case Ev::kKvWake:
        wake_pending_ = 0;
        KvSend();
        break;
    }
  }

  void BgSend(int i) {
    Bg& b = bg_[static_cast<size_t>(i)];
    while (b.inflight < static_cast<int>(b.cwnd)) {
      b.inflight++;
      Enqueue(b.cfg.spine, Unit{i, kUnit, 0, false, Now()});
    }
  }
  void BgAck(int i, bool marked, int64_t sent_ns) {
    Bg& b = bg_[static_cast<size_t>(i)];
    b.inflight--;
    const int64_t rtt = Now() - sent_ns;
    b.srtt = b.srtt == 0 ? rtt : (7 * b.srtt + rtt) / 8;
    if (marked) {
      if (Now() - b.last_dec > b.srtt) {
        b.cwnd = std::max(1.0, b.cwnd / 2);
        b.last_dec = Now();
      }
    } else {
      b.cwnd += 1.0 / b.cwnd;
    }
    BgSend(i);
  }

  void KvSend() {
    if (Now() < start_ns_ || done_ns_) return;
    std::vector<bool> ok(cc_.size());
    while (emitted_ < payload_) {
      const uint64_t n = std::min<uint64_t>(arm_.chunk_bytes, payload_ - emitted_);
      int64_t wake = 0;
      for (size_t i = 0; i < cc_.size(); ++i) {
        // Host CC, and the transport's buffer holds at most one chunk beyond its window (the
        // engine's "socket has room" rule with TCP_NOTSENT_LOWAT).
        ok[i] = cc_[i]->CanSend(inflight_[i], n) && tcc_[i].pending.size() * kUnit < n;
        const int64_t t = cc_[i]->NextSendNs();
        if (!ok[i] && t > Now() && (wake == 0 || t < wake)) wake = t;
      }
      const int p = selector_->Pick(ok);
      if (p < 0) {
        if (wake > 0 && (wake_pending_ == 0 || wake < wake_pending_)) {
          wake_pending_ = wake;
          Push(wake, Ev::kKvWake, 0, 0);
        }
        return;
      }
      const uint64_t id = chunks_.size();
      chunks_.push_back({p, n, Now()});
      for (uint64_t off = 0; off < n; off += kUnit) {
        const uint64_t len = std::min(kUnit, n - off);
        tcc_[static_cast<size_t>(p)].pending.push_back(
            Unit{kKv, len, off + len == n ? id + 1 : 0, false, Now(), id});
      }
      Pump(p);
      cc_[static_cast<size_t>(p)]->OnSend(n);
      inflight_[static_cast<size_t>(p)] += n;
      emitted_ += n;
    }
  }

  void Pump(int p) {
    TransportCc& t = tcc_[static_cast<size_t>(p)];
    while (!t.pending.empty() && t.inflight < static_cast<int>(t.cwnd)) {
      Unit u = t.pending.front();
      t.pending.pop_front();
      u.sent_ns = Now();
      t.inflight++;
      Enqueue(p, u);
    }
  }

  void KvUnitAck(const Unit& u) {
    const int p = chunks_[u.sent_chunk].path;
    TransportCc& t = tcc_[static_cast<size_t>(p)];
    t.inflight--;
    const int64_t rtt = Now() - u.sent_ns;
    t.srtt = t.srtt == 0 ? rtt : (7 * t.srtt + rtt) / 8;
    if (u.marked) {
      if (Now() - t.last_dec > t.srtt) {
        t.cwnd = std::max(1.0, t.cwnd / 2);
        t.last_dec = Now();
      }
    } else {
      t.cwnd += 1.0 / t.cwnd;
    }
    Pump(p);
    if (u.chunk) KvAck(u.chunk - 1);
  }

  void KvAck(uint64_t id) {
    const Chunk c = chunks_[id];
    const int64_t rtt = Now() - c.sent_ns;
    selector_->OnRtt(c.path, rtt);
    int64_t best = 0;
    for (auto& cc : cc_) {
      const int64_t s = cc->srtt_ns();
      if (s > 0 && (best == 0 || s < best)) best = s;
    }
    for (auto& cc : cc_) cc->SetReferenceRttNs(best ? best : rtt);
    cc_[static_cast<size_t>(c.path)]->OnAck(c.bytes, rtt);
    inflight_[static_cast<size_t>(c.path)] -= c.bytes;
    acked_ += c.bytes;
    if (acked_ == payload_) {
      done_ns_ = Now();
      return;
    }
    KvSend();
  }

  FabricConfig f_;
  Arm arm_;
  uint64_t payload_;
  ManualClock clock_;
  std::vector<Spine> spines_;
  double ns_per_byte_;
  int64_t base_ns_;
  uint64_t mark_bytes_;
  std::mt19937_64 rng_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t seq_ = 0;
  std::vector<Bg> bg_;
  std::vector<std::unique_ptr<CongestionControl>> cc_;
  std::vector<uint64_t> inflight_;
  std::vector<TransportCc> tcc_;
  std::unique_ptr<PathSelector> selector_;
  std::vector<Chunk> chunks_;
  std::vector<Unit> kv_acks_;
  uint64_t emitted_ = 0, acked_ = 0, bg_bytes_ = 0;
  int64_t start_ns_ = 0, done_ns_ = 0, wake_pending_ = 0;
};

}  // namespace

RunResult SimulateTransfer(const FabricConfig& fabric, const Arm& arm, uint64_t payload,
                           double warmup_us, uint64_t seed) {
  Sim sim(fabric, arm, payload, seed);
  return sim.Run(warmup_us);
}

}  // namespace pd::kvtransfer::sim
