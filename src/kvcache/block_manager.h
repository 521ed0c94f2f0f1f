// BlockManager: host-side bookkeeping of the paged KV cache (see kv_layout.h for the bytes).
// It hands out block ids, counts references, keeps a prefix cache of full blocks and leases
// reservations. It never touches KV memory: the model runner owns the arena.
//
// Block states (every block is in exactly one):
//   free    - refcount 0, no valid content, kept as extents of consecutive ids;
//   in use  - refcount > 0 (held by sequences and/or leases); may also be hashed (cached);
//   cached  - refcount 0 but hashed: reusable by a later prompt with the same prefix; kept in
//             an LRU and evicted (made free) only when free blocks run out.
//   free + in_use + cached == total at all times (CheckInvariants()).
//
// Contiguity: allocation takes runs of consecutive ids: first the run starting right after the
// holder's last block (so growth extends in place), then best fit (the smallest free run that
// holds the rest, keeping large runs intact), then largest runs first. When free blocks run
// out, eviction is near-LRU (see set_evict_window) so that the evicted blocks form runs. A
// prompt allocated in one call on a fresh pool is one run; on a fragmented one, as few runs as
// the free extents allow. Growth by AppendSlots that cannot extend in place fills the smallest
// hole; since the prompt's KV is what crosses the wire, allocate a prompt at once (not chunk by
// chunk) to keep it contiguous. CoalesceRuns() turns a block table into (first, count) ranges.
// Known limit: a pool kept full while many sequences decode interleaves their growth blocks,
// and that fragmentation recycles into later prompts (simulated: ~1.2 blocks per run); only
// moving KV (compaction) would undo it. Transfers then post one range per block.
//
// Prefix hash chain (shared with the router through PrefixBlockHashes()):
//   h[-1] = seed;   h[i] = HashBlock(h[i-1], tokens[i*B .. (i+1)*B))   for every FULL block i.
//   HashBlock is an xxHash64-style mix over the token ids (each as uint32) with the parent hash
//   as the accumulator seed, followed by the xxHash64 avalanche. Only full blocks are hashed.
//   A 64-bit non-cryptographic hash: collisions are astronomically unlikely by chance but not
//   adversarially resistant (a deployment-secret seed makes crafted collisions harder).
//
// Prefix hits never cover the whole prompt: the hit is capped at floor((n-1)/B) blocks so that
// at least the last prompt token is computed (its logits produce the first output token), and
// every position a sequence will still write lies in a fresh block it owns alone (no
// copy-on-write is ever needed).
//
// Thread safety: NOT internally locked. A BlockManager has a single owner (the decode loop or
// the daemon's scheduler) that serializes all calls; every member is GUARDED_BY(owner's mutex).
// The free functions below are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace pd {

using BlockId = int32_t;
using SeqId = uint64_t;    // chosen by the caller (e.g. the request's numeric id)
using LeaseId = uint64_t;  // chosen by the BlockManager, never 0

inline constexpr uint64_t kDefaultPrefixSeed = 0x9E3779B97F4A7C15ull;

// Hash of one full block given its parent's hash (the chain step described above).
uint64_t HashBlock(uint64_t parent, const int32_t* tokens, int block_size);

// Hash chain of the floor(n / block_size) full blocks of `tokens`. Pure; the router uses it to
// score prefix-cache hits without a BlockManager. block_size must be > 0.
std::vector<uint64_t> PrefixBlockHashes(const int32_t* tokens, size_t n, int block_size,
                                        uint64_t seed = kDefaultPrefixSeed);

// Runs of consecutive ids in list order, as (first_block, count). {3,4,5,9,10,2} ->
// {(3,3),(9,2),(2,1)}. One run = one contiguous range per layer for the transfer path.
std::vector<std::pair<int, int>> CoalesceRuns(const std::vector<BlockId>& blocks);
// Number of runs CoalesceRuns would return.
int CountRuns(const std::vector<BlockId>& blocks);

// Blocks handed to a sequence or a lease for a prompt.
struct Allocation {
  std::vector<BlockId> blocks;  // the whole block table, ceil(n / block_size) entries
  int num_cached_tokens = 0;    // prefix whose KV is already present; multiple of block_size, < n
};

// A lease: blocks held for a prompt until Commit() or its deadline.
struct Reservation {
  LeaseId lease = 0;
  std::vector<BlockId> blocks;
  int num_cached_tokens = 0;
};

struct BlockManagerStats {
  int total_blocks = 0;
  int free_blocks = 0;
  int in_use_blocks = 0;
  int cached_blocks = 0;  // refcount 0, hashed, evictable
  int num_sequences = 0;
  int num_leases = 0;
  int64_t prefix_query_tokens = 0;  // prompt tokens seen by AllocateForPrompt/Reserve
  int64_t prefix_hit_tokens = 0;    // of which served from the prefix cache
  int64_t evicted_blocks = 0;       // cached blocks evicted to satisfy allocations
};

class BlockManager {
 public:
  // num_blocks > 0 and block_size > 0 (checked by CheckInvariants; a bad value yields an empty
  // pool whose allocations fail with INVALID_ARGUMENT).
  BlockManager(int num_blocks, int block_size, uint64_t hash_seed = kDefaultPrefixSeed);

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  uint64_t hash_seed() const { return seed_; }
  // Blocks needed to hold n tokens.
  int BlocksForTokens(int64_t n) const;
  // Blocks an allocation may use right now: free + evictable cached.
  int NumAvailableBlocks() const { return free_count_ + cached_count_; }
  // Eviction window in [0, 1]: when an allocation must evict, it takes the LRU head and may also
  // take cached blocks adjacent to the run it forms (or right after the holder's last block) if
  // they lie in the oldest `window` fraction of the LRU's age range, so evicted space comes back
  // as contiguous runs. 0 = strict LRU. Default 0.25. The number of evicted blocks is the same
  // as strict LRU; only which ones changes. kvcache_bench (multi-turn churn, 20k blocks):
  // fresh prompt blocks per run 1.3 (strict) -> 14.3 (0.25) -> 27.3 (0.5); prefix hit rate
  // 35.6% -> 35.0% -> 34.4%.
  void set_evict_window(double window) { evict_window_ = window < 0 ? 0 : window > 1 ? 1 : window; }

  // --- Sequences ---------------------------------------------------------------------------
  // Creates sequence `seq` holding tokens[0..n): reuses cached full blocks for the longest
  // matching prefix (capped, see top), allocates fresh blocks for the rest. On success the
  // caller must compute KV for tokens [num_cached_tokens, n). Errors: INVALID_ARGUMENT (n == 0),
  // ALREADY_EXISTS (seq live), OUT_OF_RANGE (needs more blocks than the whole pool: reject),
  // RESOURCE_EXHAUSTED (not enough free + cached blocks now; nothing changed: queue or preempt).
  StatusOr<Allocation> AllocateForPrompt(SeqId seq, std::span<const int32_t> tokens);
  // Same without prefix caching (nothing matched, nothing ever registered for these blocks
  // unless CommitFullBlocks is called later): blocks for n tokens.
  StatusOr<Allocation> Allocate(SeqId seq, int64_t n);
  // Grows `seq` by n token slots, adding blocks when the last one fills. All or nothing:
  // RESOURCE_EXHAUSTED (preempt someone or this seq) and OUT_OF_RANGE (the sequence would need
  // more than the whole pool: finish it) leave the sequence unchanged. NOT_FOUND: unknown seq.
  Status AppendSlots(SeqId seq, int n);
  // Registers the sequence's full blocks among tokens[0..n) in the prefix cache. Call after
  // their KV is written. `tokens` are the sequence's tokens from position 0 (prompt then
  // generated); only blocks not registered before are hashed (O(new blocks)). A block whose
  // hash is already cached by another block is not registered twice (it is freed, not cached,
  // on release). INVALID_ARGUMENT if n exceeds the sequence's slots.
  Status CommitFullBlocks(SeqId seq, std::span<const int32_t> tokens);
  // Releases the sequence: hashed blocks whose refcount drops to 0 become cached (tail blocks
  // older in the LRU than head blocks), the others free. NOT_FOUND for an unknown seq.
  Status Free(SeqId seq);
  // The sequence's block table, or nullptr if unknown. Valid until the next mutating call.
  const std::vector<BlockId>* BlockTable(SeqId seq) const;
  // Token slots held by the sequence (prompt + appended), or -1 if unknown.
  int64_t NumTokens(SeqId seq) const;

  // --- Leases (reservations for a remote prefill) --------------------------------------------
  // Like AllocateForPrompt but owned by a lease that lasts until Commit, Cancel or
  // ExpireLeases(now) with now > lease_deadline. Times are in any monotonic unit the caller
  // uses consistently (the manager never reads a clock).
  StatusOr<Reservation> Reserve(std::span<const int32_t> tokens, int64_t lease_deadline);
  // Turns the lease into sequence `seq` (NumTokens = prompt length). NOT_FOUND: unknown or
  // already expired lease; DEADLINE_EXCEEDED: now > deadline (the lease is released);
  // ALREADY_EXISTS: seq live (the lease is kept).
  Status Commit(LeaseId lease, SeqId seq, int64_t now);
  // Moves a live lease's deadline. NOT_FOUND if unknown.
  Status ExtendLease(LeaseId lease, int64_t new_deadline);
  // Releases a lease without committing. NOT_FOUND if unknown.
  Status Cancel(LeaseId lease);
  // Releases every lease whose deadline < now; returns their ids (oldest deadline first).
  std::vector<LeaseId> ExpireLeases(int64_t now);

  // --- Queries -------------------------------------------------------------------------------
  // Tokens of `tokens` a prompt allocation would get from the cache right now (same cap as
  // AllocateForPrompt). Allocates and counts nothing.
  int MatchPrefixLength(std::span<const int32_t> tokens) const;
  BlockManagerStats Stats() const;
  // Recomputes every count from scratch: states partition the pool, free extents are disjoint
  // and maximal, refcounts equal references from sequences + leases, the hash map and the LRU
  // agree with block states. O(total blocks); for tests and debug builds.
  Status CheckInvariants() const;

 private:
  enum class State : uint8_t { kFree, kInUse, kCached };
  struct Block {
    int32_t ref = 0;
    State state = State::kFree;
    bool hashed = false;
    int32_t lru_prev = -1;  // valid while cached
    int32_t lru_next = -1;
    uint64_t hash = 0;
    uint64_t stamp = 0;  // LRU insertion order while cached
  };
  // Blocks and chain state owned by one sequence or lease.
  struct Holder {
    std::vector<BlockId> blocks;
    int64_t num_tokens = 0;
    int num_hashed = 0;      // leading blocks already registered (or matched)
    uint64_t last_hash = 0;  // chain hash of block num_hashed-1 (seed when 0)
    int64_t deadline = 0;    // leases only
  };

  StatusOr<Holder> AllocateHolder(std::span<const int32_t> tokens, int64_t n, bool use_cache);
  void ReleaseHolder(Holder& h);
  // Takes n blocks (n <= available), appending to out; prefers ids starting at hint.
  void TakeBlocks(int n, BlockId hint, std::vector<BlockId>& out);
  // Evicts `count` cached blocks: the LRU head, then cached neighbours within the window.
  void EvictRuns(int count);
  void EvictBlock(BlockId b);
  bool Evictable(BlockId b) const;               // cached and within the eviction window
  void InsertFreeRun(BlockId first, int count);  // merges with neighbours
  void EraseFreeRun(std::map<BlockId, int>::iterator it);
  void LruPushBack(BlockId b);
  void LruRemove(BlockId b);
  void Acquire(BlockId b);
  Status CheckExtents() const;  // parts of CheckInvariants
  Status CheckHolders(std::vector<int32_t>* expect) const;
  Status CheckLru() const;
  // Matched cached block ids for tokens (capped), with the chain hash of the last one.
  std::vector<BlockId> MatchBlocks(std::span<const int32_t> tokens, uint64_t* last_hash) const;

  int num_blocks_;
  int block_size_;
  uint64_t seed_;
  std::vector<Block> blocks_;
  std::map<BlockId, int> free_by_start_;           // first id -> run length
  std::set<std::pair<int, BlockId>> free_by_len_;  // (run length, first id)
  int free_count_ = 0;
  int cached_count_ = 0;
  int32_t lru_head_ = -1;  // oldest cached block (evicted first)
  int32_t lru_tail_ = -1;
  uint64_t next_stamp_ = 0;
  double evict_window_ = 0.25;
  std::unordered_map<uint64_t, BlockId> cache_;  // chain hash -> block
  std::unordered_map<SeqId, Holder> seqs_;
  std::unordered_map<LeaseId, Holder> leases_;
  std::set<std::pair<int64_t, LeaseId>> lease_deadlines_;
  LeaseId next_lease_ = 1;
  int64_t prefix_query_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
  int64_t evicted_blocks_ = 0;
};

}  // namespace pd
