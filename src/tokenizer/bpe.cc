#include "tokenizer/bpe.h"

#include <queue>

namespace pd::tok {

void MergeTable::Reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  size_ = 0;
}

void MergeTable::Insert(int32_t a, int32_t b, int32_t rank, int32_t id) {
  if ((size_ + 1) * 2 > slots_.size()) {
    std::vector<Entry> old = std::move(slots_);
    Reserve(std::max<size_t>(size_ + 1, old.size()));
    for (const Entry& e : old) {
      if (e.key != kEmpty) Insert(static_cast<int32_t>(e.key >> 32),
                                  static_cast<int32_t>(e.key & 0xFFFFFFFF), e.rank, e.id);
    }
  }
  const uint64_t key = Key(a, b);
  for (size_t i = Slot(key);; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) {
      e.rank = rank;
      e.id = id;
      return;
    }
    if (e.key == kEmpty) {
      e = Entry{key, rank, id};
      ++size_;
      return;
    }
  }
}

BpeModel::BpeModel(Config config, std::array<int32_t, 256> byte_ids, BytesToId vocab,
                   MergeTable merges)
    : config_(config),
      byte_ids_(byte_ids),
      vocab_(std::move(vocab)),
      merges_(std::move(merges)),
      cache_(new Shard[kShards]) {}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>& syms) const {
  syms.clear();
  bool prev_unk = false;
  for (char ch : word) {
    int32_t id = byte_ids_[static_cast<unsigned char>(ch)];
    if (id >= 0) {
      syms.push_back(id);
      prev_unk = false;
    } else if (config_.unk_id) {  // byte missing from the vocabulary
      if (!(config_.fuse_unk && prev_unk)) syms.push_back(*config_.unk_id);
      prev_unk = true;
    }
  }
}

// Repeatedly merges the lowest-rank adjacent pair, leftmost first. O(n^2), for short words.
void BpeModel::MergeSmall(std::vector<int32_t>& syms) const {
  while (syms.size() > 1) {
    int32_t best_rank = INT32_MAX, best_id = 0;
    size_t best = 0;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      const MergeTable::Entry* e = merges_.Find(syms[i], syms[i + 1]);
      if (e && e->rank < best_rank) {
        best_rank = e->rank;
        best_id = e->id;
        best = i;
      }
    }
    if (best_rank == INT32_MAX) return;
    syms[best] = best_id;
    syms.erase(syms.begin() + best + 1);
  }
}

// Same result as MergeSmall with a priority queue over candidate pairs, for long words.
void BpeModel::MergeHeap(std::vector<int32_t>& syms) const {
  const int n = static_cast<int>(syms.size());
  std::vector<int> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank;
    int pos;
    int32_t id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const MergeTable::Entry* e = merges_.Find(syms[pos], syms[next[pos]])) {
      queue.push({e->rank, pos, e->id});
    }
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    const MergeTable::Entry* e = merges_.Find(syms[c.pos], syms[next[c.pos]]);
    if (!e || e->id != c.id || e->rank != c.rank) continue;  // stale candidate
    int right = next[c.pos];
    syms[c.pos] = c.id;
    alive[right] = 0;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  size_t w = 0;
  for (int i = 0; i >= 0 && i < n; i = next[i]) syms[w++] = syms[i];
  syms.resize(w);
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>& out, bool force_heap) const {
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  InitialSymbols(word, syms);
  if (force_heap || syms.size() > 48) {
    MergeHeap(syms);
  } else {
    MergeSmall(syms);
  }
  out.insert(out.end(), syms.begin(), syms.end());
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    int32_t id = byte_ids_[static_cast<unsigned char>(word[0])];
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (config_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWord) {
    MergeWord(word, out, false);
    return;
  }
  Shard& shard = cache_[std::hash<std::string_view>{}(word) % kShards];
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(word);
    if (it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  MergeWord(word, out, false);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.map.size() < kShardCapacity) {
    shard.map.emplace(std::string(word), std::vector<int32_t>(out.begin() + start, out.end()));
  }
}

}  // namespace pd::tok
