// BlockManager::CheckInvariants: recomputes every count from scratch (tests, debug builds).
#include <string>
#include <unordered_set>

#include "kvcache/block_manager.h"

namespace pd {
namespace {

Status Bad(const std::string& what) { return Internal("BlockManager invariant: " + what); }
std::string S(int64_t v) { return std::to_string(v); }

}  // namespace

// Free extents: inside the pool, all-free blocks, disjoint and maximal, both indexes agree.
Status BlockManager::CheckExtents() const {
  if (free_by_start_.size() != free_by_len_.size()) return Bad("free index sizes differ");
  int64_t extent_sum = 0;
  int64_t prev_end = -2;
  for (auto [first, len] : free_by_start_) {
    if (len <= 0 || first < 0 || first + len > num_blocks_) return Bad("extent out of pool");
    if (first <= prev_end) return Bad("extents overlap or touch at " + S(first));
    if (free_by_len_.count({len, first}) == 0) return Bad("extent missing from length index");
    for (BlockId b = first; b < first + len; ++b) {
      const Block& blk = blocks_[b];
      if (blk.state != State::kFree || blk.ref != 0 || blk.hashed) {
        return Bad("block " + S(b) + " in a free extent is not free");
      }
    }
    extent_sum += len;
    prev_end = first + len;
  }
  if (extent_sum != free_count_) {
    return Bad("free count " + S(free_count_) + " but extents hold " + S(extent_sum));
  }
  return OkStatus();
}

// Holders are well formed; *expect receives the number of holders of every block.
Status BlockManager::CheckHolders(std::vector<int32_t>* expect) const {
  expect->assign(num_blocks_, 0);
  auto count_holder = [&](const Holder& h, const std::string& who) -> Status {
    if (static_cast<int>(h.blocks.size()) != BlocksForTokens(h.num_tokens)) {
      return Bad(who + " has " + S(h.blocks.size()) + " blocks for " + S(h.num_tokens) + " tokens");
    }
    if (h.num_hashed < 0 || h.num_hashed > static_cast<int>(h.blocks.size())) {
      return Bad(who + " num_hashed out of range");
    }
    std::unordered_set<BlockId> seen;
    for (BlockId b : h.blocks) {
      if (b < 0 || b >= num_blocks_) return Bad(who + " holds bad block id " + S(b));
      if (!seen.insert(b).second) return Bad(who + " holds block " + S(b) + " twice");
      ++(*expect)[b];
    }
    return OkStatus();
  };
  for (const auto& [id, h] : seqs_) PD_RETURN_IF_ERROR(count_holder(h, "sequence " + S(id)));
  for (const auto& [id, h] : leases_) PD_RETURN_IF_ERROR(count_holder(h, "lease " + S(id)));
  if (lease_deadlines_.size() != leases_.size()) return Bad("lease deadline index size");
  for (auto [deadline, id] : lease_deadlines_) {
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.deadline != deadline) return Bad("lease index stale");
  }
  return OkStatus();
}

// LRU: a well-linked list of exactly the cached blocks, oldest first.
Status BlockManager::CheckLru() const {
  int walked = 0;
  int32_t prev = -1;
  for (int32_t b = lru_head_; b >= 0; b = blocks_[b].lru_next) {
    if (++walked > cached_count_) return Bad("LRU longer than cached count (cycle?)");
    if (blocks_[b].state != State::kCached) return Bad("LRU holds non-cached block " + S(b));
    if (blocks_[b].lru_prev != prev) return Bad("LRU back link at " + S(b));
    if (prev >= 0 && blocks_[prev].stamp >= blocks_[b].stamp) return Bad("LRU stamps disordered");
    prev = b;
  }
  if (walked != cached_count_ || prev != lru_tail_) return Bad("LRU length or tail");
  return OkStatus();
}

Status BlockManager::CheckInvariants() const {
  if (static_cast<int>(blocks_.size()) != num_blocks_) return Bad("blocks_ size");
  PD_RETURN_IF_ERROR(CheckExtents());
  std::vector<int32_t> expect;
  PD_RETURN_IF_ERROR(CheckHolders(&expect));
  // Per-block state, refcount and hash map.
  int nfree = 0, ncached = 0, nhashed = 0;
  for (BlockId b = 0; b < num_blocks_; ++b) {
    const Block& blk = blocks_[b];
    if (blk.ref != expect[b]) {
      return Bad("block " + S(b) + " ref " + S(blk.ref) + " but " + S(expect[b]) + " holders");
    }
    if ((blk.state == State::kInUse) != (blk.ref > 0)) return Bad("block " + S(b) + " state/ref");
    if (blk.state == State::kCached && !blk.hashed) return Bad("cached block without hash");
    nfree += blk.state == State::kFree;
    ncached += blk.state == State::kCached;
    if (blk.hashed) {
      ++nhashed;
      auto it = cache_.find(blk.hash);
      if (it == cache_.end() || it->second != b) return Bad("hashed block " + S(b) + " not mapped");
    }
  }
  if (static_cast<size_t>(nhashed) != cache_.size()) return Bad("hash map has stale entries");
  if (nfree != free_count_) return Bad("free count " + S(free_count_) + ", states " + S(nfree));
  if (ncached != cached_count_) return Bad("cached count");
  if (num_blocks_ - free_count_ - cached_count_ < 0) return Bad("negative in-use count");
  return CheckLru();
}

}  // namespace pd
