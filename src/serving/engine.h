// Engine: the serving loop shared by pd-decode and pd-prefill (nano-vllm style).
//
//   loop:  Schedule() -> runner.Forward(batch) -> Postprocess()
//
// Continuous batching: sequences join and leave every step. One step carries, within
// max_batch_tokens / max_seqs: (1) one token for every decoding sequence, (2) the next prompt
// chunk (<= prefill_chunk_tokens) of sequences still prefilling, (3) newly admitted sequences'
// first chunks. So a long prompt is cut into chunks that share steps with the decode tokens of
// other sequences instead of stalling them.
//
// KV pool full: admission waits (the queue is FIFO); a decoding sequence that cannot grow
// preempts the most recently admitted sequence (its blocks are released, full ones into the
// prefix cache, and it is recomputed from its tokens later). A prompt larger than the whole pool
// fails with RESOURCE_EXHAUSTED. Nothing is dropped silently: every request ends with a final
// Output (finish reason, or an error status).
//
// Remote prefill (decode side): Reserve() holds blocks under a lease; Submit() with `lease` and
// `remote_first_token >= 0` commits it (the KV of the whole prompt is already in the blocks) and
// the sequence starts decoding at once. With `lease` and no first token it prefills the uncached
// part locally (conditional disaggregation / fallback).
//
// Prefill side: Submit() with max_tokens = 1 and hold_blocks; set_layer_hook() sees every
// Forward's chunks after each layer (to post that layer's KV); Release() frees the blocks once
// their transfer finished.
//
// Thread safety: every public method may be called from any thread. The runner is called only
// from the engine thread, never under the engine's lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "kvcache/block_manager.h"
#include "model/runner.h"

namespace pd::serving {

enum class Finish { kNone = 0, kLength = 1, kStop = 2, kError = 3, kCancelled = 4 };

// One message from the engine to a request's consumer.
struct Output {
  std::vector<int32_t> tokens;
  Finish finish = Finish::kNone;
  Status status;            // set when finish == kError / kCancelled
  int cached_tokens = 0;    // prompt tokens not computed for this request (first admission)
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int preemptions = 0;
  int64_t step = 0;         // engine step that produced this output (for tests / tracing)
};

// Single-consumer queue of Outputs; the engine pushes, a gRPC handler pops.
class OutputStream {
 public:
  void Push(Output o);
  // Pops everything available, waiting until `until` for the first item. False on timeout.
  bool Pop(std::chrono::steady_clock::time_point until, std::vector<Output>* out);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Output> q_;
};

struct EngineRequest {
  std::string id;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 1;
  bool ignore_eos = false;
  std::vector<int32_t> stop_ids;
  LeaseId lease = 0;               // commit this Reserve()d lease instead of allocating
  int32_t remote_first_token = -1;  // >= 0: the lease's blocks hold the whole prompt's KV
  bool hold_blocks = false;        // keep the blocks after finishing until Release(id)
};

struct EngineOptions {
  // Leases (decode side) that end without a commit — cancelled, or past their lease time — are
  // FENCED for this long instead of freed when > 0: their blocks stay out of the pool because a
  // remote prefill that was given them may still be writing (a timed-out, stalled or cut-off P).
  // ReleaseFenced() frees them early once the writer is known done (its KvReadyNotice).
  int64_t lease_fence_ms = 0;
  // Bound on queued work (waiting sequences + live leases); beyond it Submit and Reserve answer
  // RESOURCE_EXHAUSTED instead of queueing. 0 = unbounded.
  int max_queue = 0;
  int max_batch_tokens = 2048;
  int max_seqs = 64;
  int prefill_chunk_tokens = 512;
  int max_model_len = 0;  // 0 = model's max_position_embeddings
  bool prefix_cache = true;
  int num_blocks = 0;     // 0 = the runner's arena
};

// A sequence's part of one Forward, for the layer hook.
struct ChunkInfo {
  std::string id;
  int start = 0;  // first position computed in this step
  int end = 0;    // one past the last
  int prompt_len = 0;
  std::vector<BlockId> blocks;  // the sequence's block table
};
using LayerHook = std::function<void(const std::vector<ChunkInfo>& chunks, int layer)>;

// Metrics hooks (daemon_metrics.h). Set before Start(); called on the engine thread (on_finish
// under the engine lock), so they must be cheap and must not call back into the engine.
struct EngineObserver {
  std::function<void(int tokens)> on_forward;  // tokens in each Forward (prefill + decode)
  std::function<void(Finish f, const Status& st)> on_finish;  // every sequence's final output
};

struct EngineStats {
  int waiting = 0;
  int running = 0;
  int leases = 0;
  int fenced = 0;  // ended leases whose blocks are held until their writer is known done
  int held = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
  BlockManagerStats blocks;
};

class Engine {
 public:
  Engine(ModelRunner* runner, const EngineOptions& opts);
  ~Engine();  // Stop()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void Start();
  // Stops the loop; every unfinished request gets a final UNAVAILABLE output.
  void Stop();
  // Must be set before Start().
  void set_layer_hook(LayerHook hook) { layer_hook_ = std::move(hook); }
  // Must be set before Start().
  void set_observer(EngineObserver o) { observer_ = std::move(o); }

  // Checks the request (INVALID_ARGUMENT: empty prompt, ids outside the vocab, max_tokens <= 0,
  // prompt + max_tokens beyond max_model_len; ALREADY_EXISTS: id live; NOT_FOUND: lease not held
  // for this id) and queues it.
  StatusOr<std::shared_ptr<OutputStream>> Submit(EngineRequest req);
  // Cancels the request's lease or sequence (freed at the next step). An uncommitted lease is
  // fenced (EngineOptions::lease_fence_ms) unless `writer_done`. False if unknown.
  bool Cancel(const std::string& id, bool writer_done = false);
  // The live (uncommitted, unexpired) lease of request `id`, or 0.
  LeaseId LiveLease(const std::string& id);
  // Frees a fenced lease's blocks now (its writer finished or failed). False if not fenced.
  bool ReleaseFenced(LeaseId lease);
  // Frees the blocks of a finished hold_blocks request.
  void Release(const std::string& id);

  // Reserves blocks for `prompt` minus the prefix cache, for `lease_ms`. The lease belongs to
  // `id` (Submit with that id commits it; Cancel(id) releases it).
  StatusOr<Reservation> Reserve(const std::string& id, const std::vector<int32_t>& prompt,
                                int64_t lease_ms);
  // Validation shared by Submit and Reserve.
  Status CheckPrompt(const std::vector<int32_t>& prompt, int max_tokens) const;

  EngineStats Stats();
  Status CheckInvariants();
  const ModelConfig& model() const { return runner_->config(); }
  int block_size() const { return block_size_; }
  int max_model_len() const { return max_model_len_; }

 private:
  struct Seq;
  struct Batch;
  void Loop();
  bool Step();  // false when idle
  void Schedule(Batch* b);
  void ScheduleDecodes(Batch* b);
  void SchedulePrefills(Batch* b);
  void Admit(Batch* b);
  Status AdmitOne(Seq* s);
  void AddToBatch(Batch* b, Seq* s, int n);
  void Postprocess(const Batch& b, const ForwardResult& r);
  void Emit(Seq* s, int32_t token);
  bool Preempt(Batch* b, Seq* except);
  void Finish(Seq* s, pd::serving::Finish f, Status st);
  void Drop(Seq* s);
  void ExpireLeases();
  // Ends a live lease without commit: fences it (lease_fence_ms > 0 and !writer_done) or frees.
  void RetireLease(const std::string& id, bool writer_done);
  static int64_t NowMs();

  ModelRunner* runner_;
  EngineOptions opts_;
  int block_size_;
  int max_model_len_;
  LayerHook layer_hook_;
  EngineObserver observer_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  BlockManager blocks_;
  std::map<std::string, std::unique_ptr<Seq>> seqs_;
  std::deque<Seq*> waiting_;
  std::vector<Seq*> running_;
  std::map<std::string, Reservation> leases_;  // request id -> live lease
  std::map<LeaseId, std::string> lease_owner_;
  std::map<LeaseId, int64_t> lease_deadline_;  // live leases: when they stop being committable
  std::map<LeaseId, std::string> fenced_;      // fenced lease -> its request id (logs)
  SeqId next_sid_ = 1;
  int64_t steps_ = 0;
  int64_t preemptions_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace pd::serving
