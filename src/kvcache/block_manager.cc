#include "kvcache/block_manager.h"

#include <algorithm>
#include <climits>
#include <string>

namespace pd {
namespace {

// xxHash64 primes.
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

std::string Str(int64_t v) { return std::to_string(v); }

}  // namespace

uint64_t HashBlock(uint64_t parent, const int32_t* tokens, int block_size) {
  uint64_t h = parent + kP5 + static_cast<uint64_t>(block_size) * 4;
  for (int i = 0; i < block_size; ++i) {
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) * kP1;
    h = Rotl(h, 23) * kP2 + kP3;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

std::vector<uint64_t> PrefixBlockHashes(const int32_t* tokens, size_t n, int block_size,
                                        uint64_t seed) {
  std::vector<uint64_t> out;
  if (block_size <= 0) return out;
  size_t full = n / static_cast<size_t>(block_size);
  out.reserve(full);
  uint64_t h = seed;
  for (size_t i = 0; i < full; ++i) {
    h = HashBlock(h, tokens + i * block_size, block_size);
    out.push_back(h);
  }
  return out;
}

std::vector<std::pair<int, int>> CoalesceRuns(const std::vector<BlockId>& blocks) {
  std::vector<std::pair<int, int>> runs;
  for (BlockId b : blocks) {
    if (!runs.empty() && runs.back().first + runs.back().second == b) {
      ++runs.back().second;
    } else {
      runs.emplace_back(b, 1);
    }
  }
  return runs;
}

int CountRuns(const std::vector<BlockId>& blocks) {
  int runs = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i == 0 || blocks[i] != blocks[i - 1] + 1) ++runs;
  }
  return runs;
}

BlockManager::BlockManager(int num_blocks, int block_size, uint64_t hash_seed)
    : num_blocks_(std::max(num_blocks, 0)), block_size_(block_size), seed_(hash_seed) {
  if (block_size_ <= 0) num_blocks_ = 0;
  blocks_.resize(num_blocks_);
  if (num_blocks_ > 0) InsertFreeRun(0, num_blocks_);
}

int BlockManager::BlocksForTokens(int64_t n) const {
  if (block_size_ <= 0 || n <= 0) return 0;
  return static_cast<int>((n + block_size_ - 1) / block_size_);
}

// ---- free extents --------------------------------------------------------------------------

void BlockManager::EraseFreeRun(std::map<BlockId, int>::iterator it) {
  free_by_len_.erase({it->second, it->first});
  free_by_start_.erase(it);
}

void BlockManager::InsertFreeRun(BlockId first, int count) {
  for (BlockId b = first; b < first + count; ++b) blocks_[b] = Block{};
  free_count_ += count;
  auto next = free_by_start_.find(first + count);
  if (next != free_by_start_.end()) {
    count += next->second;
    EraseFreeRun(next);
  }
  auto it = free_by_start_.lower_bound(first);
  if (it != free_by_start_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == first) {
      first = prev->first;
      count += prev->second;
      EraseFreeRun(prev);
    }
  }
  free_by_start_.emplace(first, count);
  free_by_len_.emplace(count, first);
}

void BlockManager::TakeBlocks(int n, BlockId hint, std::vector<BlockId>& out) {
  auto take_from = [&](std::map<BlockId, int>::iterator it, int take) {
    BlockId start = it->first;
    int len = it->second;
    EraseFreeRun(it);
    if (len > take) {
      free_by_start_.emplace(start + take, len - take);
      free_by_len_.emplace(len - take, start + take);
    }
    for (BlockId b = start; b < start + take; ++b) {
      blocks_[b].state = State::kInUse;
      blocks_[b].ref = 1;
      out.push_back(b);
    }
    free_count_ -= take;
    return take;
  };
  // 1. Extend in place after the hint, evicting old cached blocks in the way.
  while (n > 0 && hint >= 0 && hint < num_blocks_) {
    auto it = free_by_start_.find(hint);
    if (it != free_by_start_.end()) {
      int took = take_from(it, std::min(n, it->second));
      n -= took;
      hint += took;
    } else if (n > free_count_ && Evictable(hint)) {  // an eviction is due anyway
      EvictBlock(hint);
    } else {
      break;
    }
  }
  // 2. Evict what is missing as runs, then best fit / largest runs first.
  // Callers check n <= free + cached first; the guards only prevent UB if they did not.
  if (n > free_count_) EvictRuns(n - free_count_);
  while (n > 0 && !free_by_len_.empty()) {
    auto it = free_by_len_.lower_bound({n, INT_MIN});                  // best fit
    if (it == free_by_len_.end()) it = std::prev(free_by_len_.end());  // else largest run
    n -= take_from(free_by_start_.find(it->second), std::min(n, it->first));
  }
}

// ---- LRU of cached blocks ------------------------------------------------------------------

void BlockManager::LruPushBack(BlockId b) {
  blocks_[b].stamp = next_stamp_++;
  blocks_[b].lru_prev = lru_tail_;
  blocks_[b].lru_next = -1;
  if (lru_tail_ >= 0) {
    blocks_[lru_tail_].lru_next = b;
  } else {
    lru_head_ = b;
  }
  lru_tail_ = b;
}

void BlockManager::LruRemove(BlockId b) {
  Block& blk = blocks_[b];
  if (blk.lru_prev >= 0) {
    blocks_[blk.lru_prev].lru_next = blk.lru_next;
  } else {
    lru_head_ = blk.lru_next;
  }
  if (blk.lru_next >= 0) {
    blocks_[blk.lru_next].lru_prev = blk.lru_prev;
  } else {
    lru_tail_ = blk.lru_prev;
  }
  blk.lru_prev = blk.lru_next = -1;
}

bool BlockManager::Evictable(BlockId b) const {
  if (blocks_[b].state != State::kCached) return false;
  uint64_t head = blocks_[lru_head_].stamp;
  return blocks_[b].stamp - head <= static_cast<uint64_t>((next_stamp_ - head) * evict_window_);
}

void BlockManager::EvictBlock(BlockId b) {
  LruRemove(b);
  --cached_count_;
  cache_.erase(blocks_[b].hash);
  ++evicted_blocks_;
  InsertFreeRun(b, 1);
}

void BlockManager::EvictRuns(int count) {
  while (count > 0 && lru_head_ >= 0) {
    BlockId b = lru_head_;
    EvictBlock(b);
    --count;
    // Grow the free run now holding b with old cached neighbours on either side.
    while (count > 0) {
      auto run = std::prev(free_by_start_.upper_bound(b));
      BlockId lo = run->first - 1;
      BlockId hi = run->first + run->second;
      // Downward first: chains are laid out ascending and cached tail-first, so the block below
      // is usually the parent LRU would evict next; the block above may head another chain.
      if (lo >= 0 && Evictable(lo)) {
        EvictBlock(lo);
      } else if (hi < num_blocks_ && Evictable(hi)) {
        EvictBlock(hi);
      } else {
        break;
      }
      --count;
    }
  }
}

void BlockManager::Acquire(BlockId b) {
  Block& blk = blocks_[b];
  if (blk.state == State::kCached) {
    LruRemove(b);
    --cached_count_;
    blk.state = State::kInUse;
  }
  ++blk.ref;
}

// ---- holders -------------------------------------------------------------------------------

std::vector<BlockId> BlockManager::MatchBlocks(std::span<const int32_t> tokens,
                                               uint64_t* last_hash) const {
  std::vector<BlockId> hits;
  uint64_t h = seed_;
  size_t max_blocks = tokens.empty() ? 0 : (tokens.size() - 1) / block_size_;
  for (size_t i = 0; i < max_blocks && !cache_.empty(); ++i) {
    uint64_t next = HashBlock(h, tokens.data() + i * block_size_, block_size_);
    auto it = cache_.find(next);
    if (it == cache_.end()) break;
    hits.push_back(it->second);
    h = next;
  }
  if (last_hash != nullptr) *last_hash = h;
  return hits;
}

StatusOr<BlockManager::Holder> BlockManager::AllocateHolder(std::span<const int32_t> tokens,
                                                            int64_t n, bool use_cache) {
  if (block_size_ <= 0 || num_blocks_ <= 0) return InvalidArgument("block manager has no pool");
  if (n <= 0) return InvalidArgument("allocation of " + Str(n) + " tokens");
  int need = BlocksForTokens(n);
  if (need > num_blocks_) {
    return OutOfRange(Str(n) + " tokens need " + Str(need) + " blocks; the pool has " +
                      Str(num_blocks_));
  }
  Holder h;
  h.num_tokens = n;
  h.last_hash = seed_;
  std::vector<BlockId> hits;
  if (use_cache) hits = MatchBlocks(tokens, &h.last_hash);
  int hits_cached = 0;
  for (BlockId b : hits) hits_cached += blocks_[b].state == State::kCached ? 1 : 0;
  int fresh = need - static_cast<int>(hits.size());
  int available = free_count_ + cached_count_ - hits_cached;
  if (fresh > available) {
    return ResourceExhausted("need " + Str(fresh) + " KV blocks, " + Str(available) +
                             " available of " + Str(num_blocks_));
  }
  for (BlockId b : hits) Acquire(b);
  h.blocks = std::move(hits);
  h.blocks.reserve(need);
  h.num_hashed = static_cast<int>(h.blocks.size());
  TakeBlocks(fresh, h.blocks.empty() ? -1 : h.blocks.back() + 1, h.blocks);
  if (use_cache) {
    prefix_query_tokens_ += n;
    prefix_hit_tokens_ += static_cast<int64_t>(h.num_hashed) * block_size_;
  }
  return h;
}

void BlockManager::ReleaseHolder(Holder& h) {
  std::vector<BlockId> to_free;
  for (auto it = h.blocks.rbegin(); it != h.blocks.rend(); ++it) {
    Block& blk = blocks_[*it];
    if (--blk.ref > 0) continue;
    if (blk.hashed) {
      blk.state = State::kCached;
      ++cached_count_;
      LruPushBack(*it);  // tail blocks first: they are evicted before their parents
    } else {
      to_free.push_back(*it);
    }
  }
  std::reverse(to_free.begin(), to_free.end());
  for (auto [first, count] : CoalesceRuns(to_free)) InsertFreeRun(first, count);
  h.blocks.clear();
}

// ---- sequences -----------------------------------------------------------------------------

StatusOr<Allocation> BlockManager::AllocateForPrompt(SeqId seq, std::span<const int32_t> tokens) {
  if (seqs_.count(seq) != 0) return Status(StatusCode::kAlreadyExists, "sequence " + Str(seq));
  PD_ASSIGN_OR_RETURN(Holder h, AllocateHolder(tokens, static_cast<int64_t>(tokens.size()), true));
  Allocation a{h.blocks, h.num_hashed * block_size_};
  seqs_.emplace(seq, std::move(h));
  return a;
}

StatusOr<Allocation> BlockManager::Allocate(SeqId seq, int64_t n) {
  if (seqs_.count(seq) != 0) return Status(StatusCode::kAlreadyExists, "sequence " + Str(seq));
  PD_ASSIGN_OR_RETURN(Holder h, AllocateHolder({}, n, false));
  Allocation a{h.blocks, 0};
  seqs_.emplace(seq, std::move(h));
  return a;
}

Status BlockManager::AppendSlots(SeqId seq, int n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound("sequence " + Str(seq));
  if (n < 0) return InvalidArgument("AppendSlots n=" + Str(n));
  Holder& h = it->second;
  int64_t new_tokens = h.num_tokens + n;
  if (BlocksForTokens(new_tokens) > num_blocks_) {
    return OutOfRange("sequence " + Str(seq) + " at " + Str(new_tokens) +
                      " tokens would exceed the pool of " + Str(num_blocks_) + " blocks");
  }
  int need = BlocksForTokens(new_tokens) - static_cast<int>(h.blocks.size());
  if (need > 0) {
    if (need > free_count_ + cached_count_) {
      return ResourceExhausted("sequence " + Str(seq) + " needs " + Str(need) +
                               " more KV blocks, " + Str(free_count_ + cached_count_) +
                               " available");
    }
    TakeBlocks(need, h.blocks.empty() ? -1 : h.blocks.back() + 1, h.blocks);
  }
  h.num_tokens = new_tokens;
  return OkStatus();
}

Status BlockManager::CommitFullBlocks(SeqId seq, std::span<const int32_t> tokens) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound("sequence " + Str(seq));
  Holder& h = it->second;
  if (static_cast<int64_t>(tokens.size()) > h.num_tokens) {
    return InvalidArgument("CommitFullBlocks: " + Str(tokens.size()) + " tokens but sequence " +
                           Str(seq) + " holds " + Str(h.num_tokens) + " slots");
  }
  int full = static_cast<int>(tokens.size() / block_size_);
  for (int i = h.num_hashed; i < full; ++i) {
    uint64_t hash =
        HashBlock(h.last_hash, tokens.data() + static_cast<size_t>(i) * block_size_, block_size_);
    Block& blk = blocks_[h.blocks[i]];
    if (!blk.hashed && cache_.try_emplace(hash, h.blocks[i]).second) {
      blk.hashed = true;
      blk.hash = hash;
    }
    h.last_hash = hash;
    h.num_hashed = i + 1;
  }
  return OkStatus();
}

Status BlockManager::Free(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFound("sequence " + Str(seq));
  ReleaseHolder(it->second);
  seqs_.erase(it);
  return OkStatus();
}

const std::vector<BlockId>* BlockManager::BlockTable(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? nullptr : &it->second.blocks;
}

int64_t BlockManager::NumTokens(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? -1 : it->second.num_tokens;
}

// ---- leases --------------------------------------------------------------------------------

StatusOr<Reservation> BlockManager::Reserve(std::span<const int32_t> tokens,
                                            int64_t lease_deadline) {
  PD_ASSIGN_OR_RETURN(Holder h, AllocateHolder(tokens, static_cast<int64_t>(tokens.size()), true));
  h.deadline = lease_deadline;
  LeaseId id = next_lease_++;
  Reservation r{id, h.blocks, h.num_hashed * block_size_};
  lease_deadlines_.emplace(lease_deadline, id);
  leases_.emplace(id, std::move(h));
  return r;
}

Status BlockManager::Commit(LeaseId lease, SeqId seq, int64_t now) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return NotFound("lease " + Str(lease));
  if (now > it->second.deadline) {
    std::string msg =
        "lease " + Str(lease) + " expired at " + Str(it->second.deadline) + ", now " + Str(now);
    PD_RETURN_IF_ERROR(Cancel(lease));
    return DeadlineExceeded(msg);
  }
  if (seqs_.count(seq) != 0) return Status(StatusCode::kAlreadyExists, "sequence " + Str(seq));
  lease_deadlines_.erase({it->second.deadline, lease});
  seqs_.emplace(seq, std::move(it->second));
  leases_.erase(it);
  return OkStatus();
}

Status BlockManager::ExtendLease(LeaseId lease, int64_t new_deadline) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return NotFound("lease " + Str(lease));
  lease_deadlines_.erase({it->second.deadline, lease});
  it->second.deadline = new_deadline;
  lease_deadlines_.emplace(new_deadline, lease);
  return OkStatus();
}

Status BlockManager::Cancel(LeaseId lease) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return NotFound("lease " + Str(lease));
  lease_deadlines_.erase({it->second.deadline, lease});
  ReleaseHolder(it->second);
  leases_.erase(it);
  return OkStatus();
}

std::vector<LeaseId> BlockManager::ExpireLeases(int64_t now) {
  std::vector<LeaseId> expired;
  while (!lease_deadlines_.empty() && lease_deadlines_.begin()->first < now) {
    LeaseId id = lease_deadlines_.begin()->second;
    expired.push_back(id);
    Status s = Cancel(id);  // cannot fail: the id comes from the index
    (void)s;
  }
  return expired;
}

// ---- queries -------------------------------------------------------------------------------

int BlockManager::MatchPrefixLength(std::span<const int32_t> tokens) const {
  if (block_size_ <= 0) return 0;
  return static_cast<int>(MatchBlocks(tokens, nullptr).size()) * block_size_;
}

BlockManagerStats BlockManager::Stats() const {
  BlockManagerStats s;
  s.total_blocks = num_blocks_;
  s.free_blocks = free_count_;
  s.cached_blocks = cached_count_;
  s.in_use_blocks = num_blocks_ - free_count_ - cached_count_;
  s.num_sequences = static_cast<int>(seqs_.size());
  s.num_leases = static_cast<int>(leases_.size());
  s.prefix_query_tokens = prefix_query_tokens_;
  s.prefix_hit_tokens = prefix_hit_tokens_;
  s.evicted_blocks = evicted_blocks_;
  return s;
}

}  // namespace pd
