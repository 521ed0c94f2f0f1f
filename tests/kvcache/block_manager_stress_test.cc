// Randomized stress: thousands of random operations against a simple model of what every
// sequence and lease holds, plus a simulated KV arena (one int per slot) that the test "writes"
// exactly as a model runner would. After every op: CheckInvariants, the model's view (tables,
// token counts, distinct blocks in use) matches Stats(), and every live sequence still reads
// back its own tokens from the arena, so a prefix hit that hands out wrong or still-written
// blocks is caught independently of the manager's internals.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "kvcache/block_manager.h"

namespace pd {
namespace {

struct Held {
  std::vector<int32_t> tokens;  // written positions == token slots
  std::vector<BlockId> table;
  int64_t deadline = 0;
};

class Harness {
 public:
  Harness(uint64_t seed, int num_blocks, int bs)
      : bm_(num_blocks, bs, seed),
        bs_(bs),
        arena_(static_cast<size_t>(num_blocks) * bs, -1),
        rng_(seed) {
    for (int d = 0; d < 4; ++d) {
      std::vector<int32_t> doc(40);
      for (auto& t : doc) t = static_cast<int32_t>(Rand(1000));
      docs_.push_back(doc);
    }
  }

  uint64_t Rand(uint64_t n) { return rng_() % n; }

  std::vector<int32_t> Prompt() {
    const auto& doc = docs_[Rand(docs_.size())];
    std::vector<int32_t> p(doc.begin(), doc.begin() + 1 + Rand(doc.size()));
    for (uint64_t k = Rand(7); k > 0; --k) p.push_back(static_cast<int32_t>(2000 + Rand(3)));
    return p;
  }

  // Simulates the runner computing KV for positions [from, tokens.size()) of `h`.
  void Write(const Held& h, size_t from) {
    std::map<BlockId, int> refs = Refs();
    for (size_t p = from; p < h.tokens.size(); ++p) {
      BlockId b = h.table[p / bs_];
      ASSERT_EQ(refs[b], 1) << "writing block " << b << " shared by " << refs[b] << " holders";
      arena_[static_cast<size_t>(b) * bs_ + p % bs_] = h.tokens[p];
    }
  }

  std::map<BlockId, int> Refs() const {
    std::map<BlockId, int> refs;
    for (const auto& [id, h] : seqs_)
      for (BlockId b : h.table) ++refs[b];
    for (const auto& [id, h] : leases_)
      for (BlockId b : h.table) ++refs[b];
    return refs;
  }

  // Checks a prompt allocation against the pre-call state; returns the new holder if made.
  bool CheckPromptResult(const std::vector<int32_t>& p, int match, const BlockManagerStats& pre,
                         const Status& st, const std::vector<BlockId>& blocks, int cached) {
    int need = bm_.BlocksForTokens(static_cast<int64_t>(p.size()));
    int fresh = need - match / bs_;
    if (!st.ok()) {
      if (st.code() == StatusCode::kOutOfRange) {
        EXPECT_GT(need, bm_.num_blocks());
      } else {
        EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
        EXPECT_GT(fresh, pre.free_blocks + pre.cached_blocks - match / bs_);
        ++exhausted_;
      }
      BlockManagerStats post = bm_.Stats();
      EXPECT_EQ(std::tie(post.free_blocks, post.cached_blocks, post.in_use_blocks),
                std::tie(pre.free_blocks, pre.cached_blocks, pre.in_use_blocks));
      return false;
    }
    EXPECT_LE(fresh, pre.free_blocks + pre.cached_blocks);
    EXPECT_EQ(cached, match);
    EXPECT_EQ(cached % bs_, 0);
    EXPECT_LT(cached, static_cast<int>(p.size()));
    EXPECT_EQ(static_cast<int>(blocks.size()), need);
    for (int q = 0; q < cached; ++q) {  // the hit really holds this prompt's KV
      EXPECT_EQ(arena_[static_cast<size_t>(blocks[q / bs_]) * bs_ + q % bs_], p[q]) << q;
    }
    return true;
  }

  void AllocOrReserve(bool lease) {
    std::vector<int32_t> p = Prompt();
    int match = bm_.MatchPrefixLength(p);
    BlockManagerStats pre = bm_.Stats();
    Held h{p, {}, now_ + static_cast<int64_t>(Rand(30))};
    if (lease) {
      auto r = bm_.Reserve(p, h.deadline);
      Status st = r.ok() ? OkStatus() : r.status();
      if (!CheckPromptResult(p, match, pre, st, r.ok() ? r->blocks : h.table,
                             r.ok() ? r->num_cached_tokens : 0)) {
        return;
      }
      h.table = r->blocks;
      leases_[r->lease] = h;
      Write(h, r->num_cached_tokens);
    } else {
      SeqId id = next_seq_++;
      auto r = bm_.AllocateForPrompt(id, p);
      Status st = r.ok() ? OkStatus() : r.status();
      if (!CheckPromptResult(p, match, pre, st, r.ok() ? r->blocks : h.table,
                             r.ok() ? r->num_cached_tokens : 0)) {
        return;
      }
      h.table = r->blocks;
      seqs_[id] = h;
      Write(h, r->num_cached_tokens);
    }
  }

  template <typename M>
  typename M::iterator Pick(M& m) {
    auto it = m.begin();
    std::advance(it, Rand(m.size()));
    return it;
  }

  void Append() {
    if (seqs_.empty()) return;
    auto it = Pick(seqs_);
    Held& h = it->second;
    int k = Rand(4) == 0 ? 1 + static_cast<int>(Rand(8)) : 1;
    BlockManagerStats pre = bm_.Stats();
    int need = bm_.BlocksForTokens(static_cast<int64_t>(h.tokens.size()) + k) -
               static_cast<int>(h.table.size());
    Status st = bm_.AppendSlots(it->first, k);
    if (!st.ok()) {
      if (st.code() == StatusCode::kOutOfRange) {
        EXPECT_GT(static_cast<int>(h.table.size()) + need, bm_.num_blocks());
      } else {
        EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
        EXPECT_GT(need, pre.free_blocks + pre.cached_blocks);
      }
      EXPECT_EQ(*bm_.BlockTable(it->first), h.table);
      ++exhausted_;
      return;
    }
    const std::vector<BlockId>& table = *bm_.BlockTable(it->first);
    EXPECT_TRUE(std::equal(h.table.begin(), h.table.end(), table.begin()));
    h.table = table;
    size_t from = h.tokens.size();
    for (int i = 0; i < k; ++i) h.tokens.push_back(static_cast<int32_t>(3000 + Rand(2)));
    Write(h, from);
  }

  void Step() {
    uint64_t op = Rand(100);
    if (seqs_.size() + leases_.size() > 10 && op < 40) op = 45;  // keep the population bounded
    if (op < 18) {
      AllocOrReserve(false);
    } else if (op < 40) {
      Append();
    } else if (op < 55) {
      if (seqs_.empty()) return;
      auto it = Pick(seqs_);
      size_t n = Rand(3) == 0 ? Rand(it->second.tokens.size() + 1) : it->second.tokens.size();
      std::vector<int32_t> t(it->second.tokens.begin(), it->second.tokens.begin() + n);
      ASSERT_TRUE(bm_.CommitFullBlocks(it->first, t).ok());
    } else if (op < 70) {
      if (seqs_.empty()) return;
      auto it = Pick(seqs_);
      ASSERT_TRUE(bm_.Free(it->first).ok());
      seqs_.erase(it);
    } else if (op < 78) {
      AllocOrReserve(true);
    } else if (op < 86) {
      if (leases_.empty()) return;
      auto it = Pick(leases_);
      SeqId id = next_seq_++;
      Status st = bm_.Commit(it->first, id, now_);
      if (now_ > it->second.deadline) {
        EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
      } else {
        ASSERT_TRUE(st.ok()) << st.ToString();
        seqs_[id] = it->second;
        ++commits_;
      }
      leases_.erase(it);
    } else if (op < 89) {
      if (leases_.empty()) return;
      auto it = Pick(leases_);
      ASSERT_TRUE(bm_.Cancel(it->first).ok());
      leases_.erase(it);
    } else if (op < 95) {
      now_ += static_cast<int64_t>(Rand(10));
      std::vector<std::pair<int64_t, LeaseId>> want;
      for (const auto& [id, h] : leases_) {
        if (h.deadline < now_) want.emplace_back(h.deadline, id);
      }
      std::sort(want.begin(), want.end());
      std::vector<LeaseId> want_ids;
      for (auto [d, id] : want) {
        want_ids.push_back(id);
        leases_.erase(id);
      }
      EXPECT_EQ(bm_.ExpireLeases(now_), want_ids);
      expired_ += want_ids.size();
    } else {
      std::vector<int32_t> p = Prompt();
      int m = bm_.MatchPrefixLength(p);
      EXPECT_LE(m, static_cast<int>((p.size() - 1) / bs_) * bs_);
    }
  }

  void Verify() {
    Status s = bm_.CheckInvariants();
    ASSERT_TRUE(s.ok()) << s.ToString();
    BlockManagerStats st = bm_.Stats();
    ASSERT_EQ(st.num_sequences, static_cast<int>(seqs_.size()));
    ASSERT_EQ(st.num_leases, static_cast<int>(leases_.size()));
    ASSERT_EQ(st.in_use_blocks, static_cast<int>(Refs().size()));
    ASSERT_EQ(st.free_blocks + st.cached_blocks + st.in_use_blocks, st.total_blocks);
    auto check_content = [&](const Held& h) {
      for (size_t p = 0; p < h.tokens.size(); ++p) {
        ASSERT_EQ(arena_[static_cast<size_t>(h.table[p / bs_]) * bs_ + p % bs_], h.tokens[p]);
      }
    };
    for (const auto& [id, h] : seqs_) {
      ASSERT_NE(bm_.BlockTable(id), nullptr);
      ASSERT_EQ(*bm_.BlockTable(id), h.table);
      ASSERT_EQ(bm_.NumTokens(id), static_cast<int64_t>(h.tokens.size()));
      check_content(h);
    }
    for (const auto& [id, h] : leases_) check_content(h);
  }

  BlockManager bm_;
  int bs_;
  std::vector<int32_t> arena_;
  std::mt19937_64 rng_;
  std::vector<std::vector<int32_t>> docs_;
  std::map<SeqId, Held> seqs_;
  std::map<LeaseId, Held> leases_;
  SeqId next_seq_ = 1;
  int64_t now_ = 0;
  int exhausted_ = 0, commits_ = 0;
  size_t expired_ = 0;
};

class StressTest : public ::testing::TestWithParam<std::tuple<uint64_t, int, int, double>> {};

TEST_P(StressTest, RandomOpsAgainstModel) {
  auto [seed, num_blocks, bs, window] = GetParam();
  Harness h(seed, num_blocks, bs);
  h.bm_.set_evict_window(window);
  for (int i = 0; i < 4000; ++i) {
    h.Step();
    h.Verify();
    if (::testing::Test::HasFailure()) FAIL() << "seed " << seed << " step " << i;
  }
  BlockManagerStats s = h.bm_.Stats();
  // The run exercised the interesting paths.
  EXPECT_GT(s.prefix_hit_tokens, 0);
  EXPECT_GT(s.evicted_blocks, 0);
  EXPECT_GT(h.exhausted_, 0);
  EXPECT_GT(h.commits_, 0);
  EXPECT_GT(h.expired_, 0u);
  // Releasing everything returns the pool to free + cached.
  for (const auto& [id, held] : h.seqs_) ASSERT_TRUE(h.bm_.Free(id).ok());
  for (const auto& [id, held] : h.leases_) ASSERT_TRUE(h.bm_.Cancel(id).ok());
  ASSERT_TRUE(h.bm_.CheckInvariants().ok());
  EXPECT_EQ(h.bm_.Stats().in_use_blocks, 0);
}

INSTANTIATE_TEST_SUITE_P(Pools, StressTest,
                         ::testing::Values(std::make_tuple(1u, 48, 4, 0.25),
                                           std::make_tuple(2u, 48, 4, 0.0),
                                           std::make_tuple(3u, 160, 1, 1.0),
                                           std::make_tuple(4u, 12, 16, 0.25),
                                           std::make_tuple(5u, 96, 2, 0.5)));

}  // namespace
}  // namespace pd
