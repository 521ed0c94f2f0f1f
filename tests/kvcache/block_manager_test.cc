// BlockManager unit tests: allocation, refcounts, prefix cache, LRU, leases, contiguity.
#include "kvcache/block_manager.h"

#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <vector>

namespace pd {
namespace {

std::vector<int32_t> Iota(int n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<int32_t> Head(const std::vector<int32_t>& v, int n) {
  return std::vector<int32_t>(v.begin(), v.begin() + n);
}

#define EXPECT_INVARIANTS(bm)              \
  do {                                     \
    Status s_ = (bm).CheckInvariants();    \
    EXPECT_TRUE(s_.ok()) << s_.ToString(); \
  } while (0)

TEST(BlockManagerTest, AllocFreeAndStats) {
  BlockManager bm(16, 4);
  EXPECT_EQ(bm.BlocksForTokens(0), 0);
  EXPECT_EQ(bm.BlocksForTokens(4), 1);
  EXPECT_EQ(bm.BlocksForTokens(5), 2);
  auto a = bm.Allocate(1, 10);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->blocks.size(), 3u);
  EXPECT_EQ(a->num_cached_tokens, 0);
  EXPECT_EQ(bm.NumTokens(1), 10);
  ASSERT_NE(bm.BlockTable(1), nullptr);
  EXPECT_EQ(*bm.BlockTable(1), a->blocks);
  BlockManagerStats s = bm.Stats();
  EXPECT_EQ(s.total_blocks, 16);
  EXPECT_EQ(s.in_use_blocks, 3);
  EXPECT_EQ(s.free_blocks, 13);
  EXPECT_EQ(s.cached_blocks, 0);
  EXPECT_EQ(s.num_sequences, 1);
  EXPECT_INVARIANTS(bm);

  EXPECT_EQ(bm.Allocate(1, 4).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(bm.Allocate(2, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bm.AllocateForPrompt(2, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bm.Free(7).code(), StatusCode::kNotFound);
  EXPECT_EQ(bm.AppendSlots(7, 1).code(), StatusCode::kNotFound);

  // Growing: slots 10,11 fit in block 2; slot 12 needs a 4th block.
  ASSERT_TRUE(bm.AppendSlots(1, 2).ok());
  EXPECT_EQ(bm.BlockTable(1)->size(), 3u);
  ASSERT_TRUE(bm.AppendSlots(1, 1).ok());
  EXPECT_EQ(bm.BlockTable(1)->size(), 4u);
  EXPECT_EQ(bm.NumTokens(1), 13);
  EXPECT_INVARIANTS(bm);

  ASSERT_TRUE(bm.Free(1).ok());
  EXPECT_EQ(bm.BlockTable(1), nullptr);
  EXPECT_EQ(bm.NumTokens(1), -1);
  s = bm.Stats();
  EXPECT_EQ(s.free_blocks, 16);
  EXPECT_EQ(s.in_use_blocks, 0);
  EXPECT_EQ(s.num_sequences, 0);
  EXPECT_INVARIANTS(bm);
}

TEST(BlockManagerTest, PrefixHitsShareBlocksWithRefcounts) {
  BlockManager bm(32, 4);
  std::vector<int32_t> a = Iota(20, 100);  // 5 full blocks
  auto sa = bm.AllocateForPrompt(1, a);
  ASSERT_TRUE(sa.ok());
  EXPECT_EQ(sa->num_cached_tokens, 0);
  EXPECT_EQ(bm.MatchPrefixLength(a), 0);  // nothing registered before the KV is written
  ASSERT_TRUE(bm.CommitFullBlocks(1, a).ok());
  EXPECT_INVARIANTS(bm);

  // Shares 3 full blocks (12 tokens) and then diverges.
  std::vector<int32_t> b = Concat(Head(a, 13), {7, 7, 7, 7, 7});
  EXPECT_EQ(bm.MatchPrefixLength(b), 12);
  auto sb = bm.AllocateForPrompt(2, b);
  ASSERT_TRUE(sb.ok());
  EXPECT_EQ(sb->num_cached_tokens, 12);
  ASSERT_EQ(sb->blocks.size(), 5u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(sb->blocks[i], sa->blocks[i]);
  for (int i = 3; i < 5; ++i) {
    for (BlockId x : sa->blocks) EXPECT_NE(sb->blocks[i], x);
  }
  BlockManagerStats s = bm.Stats();
  EXPECT_EQ(s.in_use_blocks, 7);  // 5 + 2 fresh
  EXPECT_EQ(s.prefix_query_tokens, 20 + 18);
  EXPECT_EQ(s.prefix_hit_tokens, 12);
  EXPECT_INVARIANTS(bm);

  // Freeing the first owner keeps shared blocks in use, its private hashed blocks become cached.
  ASSERT_TRUE(bm.Free(1).ok());
  s = bm.Stats();
  EXPECT_EQ(s.in_use_blocks, 5);
  EXPECT_EQ(s.cached_blocks, 2);
  EXPECT_EQ(bm.MatchPrefixLength(Concat(a, {1})), 20);  // still all cached
  EXPECT_INVARIANTS(bm);
  ASSERT_TRUE(bm.Free(2).ok());  // b never committed its own blocks: 2 free, 3 cached
  s = bm.Stats();
  EXPECT_EQ(s.in_use_blocks, 0);
  EXPECT_EQ(s.cached_blocks, 5);
  EXPECT_EQ(s.free_blocks, 27);
  EXPECT_INVARIANTS(bm);

  // A cached (refcount 0) block is reused, not recomputed.
  auto sc = bm.AllocateForPrompt(3, Concat(a, {1, 2}));
  ASSERT_TRUE(sc.ok());
  EXPECT_EQ(sc->num_cached_tokens, 20);
  EXPECT_EQ(std::vector<BlockId>(sc->blocks.begin(), sc->blocks.begin() + 5), sa->blocks);
  EXPECT_EQ(bm.Stats().cached_blocks, 0);
  EXPECT_INVARIANTS(bm);
}

TEST(BlockManagerTest, HitNeverCoversWholePrompt) {
  BlockManager bm(32, 4);
  std::vector<int32_t> a = Iota(16);
  ASSERT_TRUE(bm.AllocateForPrompt(1, Concat(a, {99})).ok());
  ASSERT_TRUE(bm.CommitFullBlocks(1, a).ok());
  EXPECT_EQ(bm.MatchPrefixLength(a), 12);  // 16 tokens: cap at floor(15/4) = 3 blocks
  EXPECT_EQ(bm.MatchPrefixLength(Head(a, 13)), 12);
  EXPECT_EQ(bm.MatchPrefixLength(Head(a, 12)), 8);
  EXPECT_EQ(bm.MatchPrefixLength(Concat(a, {5})), 16);
  EXPECT_EQ(bm.MatchPrefixLength(Head(a, 1)), 0);
  auto s = bm.AllocateForPrompt(2, a);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->num_cached_tokens, 12);
  // The block holding the last prompt token is fresh and owned by seq 2 alone.
  EXPECT_NE(s->blocks[3], bm.BlockTable(1)->at(3));
  EXPECT_INVARIANTS(bm);
}

TEST(BlockManagerTest, DecodeBlocksJoinTheCache) {
  BlockManager bm(32, 4);
  std::vector<int32_t> prompt = Iota(6, 50);
  ASSERT_TRUE(bm.AllocateForPrompt(1, prompt).ok());
  std::vector<int32_t> all = prompt;
  ASSERT_TRUE(bm.CommitFullBlocks(1, all).ok());
  for (int32_t t = 0; t < 7; ++t) {  // decode 7 tokens, committing as blocks fill
    ASSERT_TRUE(bm.AppendSlots(1, 1).ok());
    all.push_back(900 + t);
    ASSERT_TRUE(bm.CommitFullBlocks(1, all).ok());
    EXPECT_INVARIANTS(bm);
  }
  EXPECT_EQ(bm.NumTokens(1), 13);
  EXPECT_EQ(bm.CommitFullBlocks(1, Concat(all, {1})).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(bm.Free(1).ok());
  // A follow-up turn (history + new user tokens) reuses all 3 full blocks.
  EXPECT_EQ(bm.MatchPrefixLength(Concat(all, {5, 6})), 12);
}

TEST(BlockManagerTest, DuplicateContentRegisteredOnce) {
  BlockManager bm(32, 4);
  std::vector<int32_t> a = Iota(9);
  ASSERT_TRUE(bm.AllocateForPrompt(1, a).ok());
  ASSERT_TRUE(bm.AllocateForPrompt(2, a).ok());  // concurrent, same prompt, no hit yet
  ASSERT_TRUE(bm.CommitFullBlocks(1, a).ok());
  ASSERT_TRUE(bm.CommitFullBlocks(2, a).ok());
  EXPECT_INVARIANTS(bm);
  ASSERT_TRUE(bm.Free(2).ok());  // duplicates are freed, not cached
  EXPECT_EQ(bm.Stats().cached_blocks, 0);
  ASSERT_TRUE(bm.Free(1).ok());
  EXPECT_EQ(bm.Stats().cached_blocks, 2);
  EXPECT_EQ(bm.MatchPrefixLength(a), 8);
  EXPECT_INVARIANTS(bm);
}

TEST(PrefixHashTest, ChainMatchesFreeFunction) {
  std::vector<int32_t> t = Iota(37, 1000);
  std::vector<uint64_t> h = PrefixBlockHashes(t.data(), t.size(), 8, 42);
  ASSERT_EQ(h.size(), 4u);  // partial last block not hashed
  uint64_t parent = 42;
  for (size_t i = 0; i < h.size(); ++i) {
    parent = HashBlock(parent, t.data() + 8 * i, 8);
    EXPECT_EQ(h[i], parent);
  }
  // Chain property: a change in block 2 keeps hashes 0..1 and changes 2..3.
  std::vector<int32_t> u = t;
  u[17] = -5;
  std::vector<uint64_t> hu = PrefixBlockHashes(u.data(), u.size(), 8, 42);
  EXPECT_EQ(hu[0], h[0]);
  EXPECT_EQ(hu[1], h[1]);
  EXPECT_NE(hu[2], h[2]);
  EXPECT_NE(hu[3], h[3]);
  // Seed and block size are part of the hash.
  EXPECT_NE(PrefixBlockHashes(t.data(), t.size(), 8, 43)[0], h[0]);
  EXPECT_TRUE(PrefixBlockHashes(t.data(), t.size(), 0, 42).empty());
  EXPECT_TRUE(PrefixBlockHashes(t.data(), 7, 8, 42).empty());
}

TEST(PrefixHashTest, RouterScoreEqualsManagerMatch) {
  // The router, holding only hashes of what D committed, predicts D's match length exactly.
  const int bs = 4;
  const uint64_t seed = 7;
  BlockManager bm(64, bs, seed);
  std::vector<int32_t> doc = Iota(30, 3);
  ASSERT_TRUE(bm.AllocateForPrompt(1, doc).ok());
  ASSERT_TRUE(bm.CommitFullBlocks(1, doc).ok());
  std::vector<uint64_t> known = PrefixBlockHashes(doc.data(), doc.size(), bs, seed);
  for (int keep = 0; keep <= 30; ++keep) {
    std::vector<int32_t> q = Concat(Head(doc, keep), {-1, -2, -3, -4, -5});
    std::vector<uint64_t> qh = PrefixBlockHashes(q.data(), q.size(), bs, seed);
    size_t cap = (q.size() - 1) / bs, n = 0;
    while (n < cap && n < qh.size() && n < known.size() && qh[n] == known[n]) ++n;
    EXPECT_EQ(bm.MatchPrefixLength(q), static_cast<int>(n) * bs) << "keep=" << keep;
  }
}

TEST(BlockManagerTest, LruEvictsOldestAndTailBlocksFirst) {
  BlockManager bm(8, 2);
  auto prompt = [](int32_t base) {
    return std::vector<int32_t>{base, base + 1, base + 2, base + 3};
  };
  auto publish = [&](SeqId id, int32_t base) {  // 2 full blocks, then released into the cache
    std::vector<int32_t> p = prompt(base);
    ASSERT_TRUE(bm.AllocateForPrompt(id, p).ok());
    ASSERT_TRUE(bm.CommitFullBlocks(id, p).ok());
    ASSERT_TRUE(bm.Free(id).ok());
  };
  publish(1, 10);  // A
  publish(2, 20);  // B
  publish(3, 30);  // C
  EXPECT_EQ(bm.Stats().cached_blocks, 6);
  EXPECT_EQ(bm.Stats().free_blocks, 2);
  // Touch A: it becomes the most recently used.
  ASSERT_TRUE(bm.AllocateForPrompt(4, Concat(prompt(10), {0})).ok());
  ASSERT_TRUE(bm.Free(4).ok());
  auto probe = [&](int32_t base) { return bm.MatchPrefixLength(Concat(prompt(base), {0})); };
  EXPECT_EQ(probe(10), 4);
  EXPECT_EQ(probe(20), 4);
  EXPECT_EQ(probe(30), 4);
  // 4 fresh blocks: 2 free + evict B (the oldest).
  ASSERT_TRUE(bm.Allocate(5, 8).ok());
  EXPECT_EQ(bm.Stats().evicted_blocks, 2);
  EXPECT_EQ(probe(10), 4);
  EXPECT_EQ(probe(20), 0);
  EXPECT_EQ(probe(30), 4);
  EXPECT_INVARIANTS(bm);
  // One more block: C's tail block goes first, its head block stays matchable.
  ASSERT_TRUE(bm.Allocate(6, 2).ok());
  EXPECT_EQ(probe(30), 2);
  EXPECT_EQ(probe(10), 4);
  ASSERT_TRUE(bm.Allocate(7, 2).ok());
  EXPECT_EQ(probe(30), 0);
  EXPECT_EQ(probe(10), 4);
  EXPECT_EQ(bm.Stats().cached_blocks, 2);
  EXPECT_INVARIANTS(bm);
}

TEST(BlockManagerTest, NearLruEvictionFormsRuns) {
  // 64 one-block sequences released in an order scattered over the ids: strict LRU hands a new
  // 16-block prompt 16 scattered blocks; the default window evicts as many, in fewer runs.
  auto scattered_pool = [](double window) {
    auto bm = std::make_unique<BlockManager>(64, 1);
    bm->set_evict_window(window);
    for (SeqId i = 0; i < 64; ++i) {
      std::vector<int32_t> t = {static_cast<int32_t>(i)};
      EXPECT_TRUE(bm->Allocate(i, 1).ok());
      EXPECT_TRUE(bm->CommitFullBlocks(i, t).ok());
    }
    for (SeqId i = 0; i < 64; ++i) EXPECT_TRUE(bm->Free((i * 37) % 64).ok());
    EXPECT_EQ(bm->Stats().cached_blocks, 64);
    return bm;
  };
  auto strict = scattered_pool(0.0);
  auto near = scattered_pool(0.5);
  auto a = strict->Allocate(100, 16);
  auto b = near->Allocate(100, 16);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(strict->Stats().evicted_blocks, 16);
  EXPECT_EQ(near->Stats().evicted_blocks, 16);
  EXPECT_EQ(CountRuns(a->blocks), 16);
  EXPECT_LE(CountRuns(b->blocks), 10);  // 9: runs only from old-half neighbours
  EXPECT_INVARIANTS(*strict);
  EXPECT_INVARIANTS(*near);
  // Strict LRU evicted exactly the 16 oldest; near-LRU only blocks from the older half.
  for (SeqId i = 0; i < 16; ++i) {
    EXPECT_EQ(
        strict->MatchPrefixLength(std::vector<int32_t>{static_cast<int32_t>((i * 37) % 64), 0}), 0);
  }
  for (SeqId i = 32; i < 64; ++i) {
    EXPECT_EQ(near->MatchPrefixLength(std::vector<int32_t>{static_cast<int32_t>((i * 37) % 64), 0}),
              1)
        << "a block from the younger half was evicted";
  }
}

TEST(BlockManagerTest, GrowthEvictsTheOldBlockRightAfterItsTail) {
  auto run = [](double window) {
    BlockManager bm(8, 1);
    bm.set_evict_window(window);
    for (SeqId i = 0; i < 8; ++i) {
      EXPECT_TRUE(bm.Allocate(i, 1).ok());
      EXPECT_TRUE(bm.CommitFullBlocks(i, std::vector<int32_t>{static_cast<int32_t>(i)}).ok());
    }
    for (SeqId i : {5, 1, 2, 3, 4, 6, 7}) EXPECT_TRUE(bm.Free(i).ok());  // LRU head: block 5
    EXPECT_TRUE(bm.AppendSlots(0, 1).ok());
    EXPECT_EQ(bm.Stats().evicted_blocks, 1);
    EXPECT_TRUE(bm.CheckInvariants().ok());
    return *bm.BlockTable(0);
  };
  EXPECT_EQ(run(0.0), (std::vector<BlockId>{0, 5}));   // strict LRU
  EXPECT_EQ(run(0.25), (std::vector<BlockId>{0, 1}));  // block 1 is second oldest: in window
}

TEST(BlockManagerTest, LeasesCommitCancelExpire) {
  BlockManager bm(16, 4);
  std::vector<int32_t> p = Iota(10);
  auto r1 = bm.Reserve(p, /*deadline=*/100);
  auto r2 = bm.Reserve(p, 50);
  auto r3 = bm.Reserve(p, 200);
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  EXPECT_NE(r1->lease, r2->lease);
  EXPECT_EQ(r1->blocks.size(), 3u);
  EXPECT_EQ(bm.Stats().in_use_blocks, 9);
  EXPECT_EQ(bm.Stats().num_leases, 3);
  EXPECT_INVARIANTS(bm);

  EXPECT_TRUE(bm.ExpireLeases(50).empty());  // deadline 50 is still valid at 50
  EXPECT_EQ(bm.ExpireLeases(51), std::vector<LeaseId>{r2->lease});
  EXPECT_EQ(bm.Stats().in_use_blocks, 6);
  EXPECT_EQ(bm.Commit(r2->lease, 9, 51).code(), StatusCode::kNotFound);
  EXPECT_INVARIANTS(bm);

  // Commit past the deadline fails and releases the lease.
  EXPECT_EQ(bm.Commit(r1->lease, 1, 101).code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(bm.Stats().in_use_blocks, 3);
  EXPECT_EQ(bm.Stats().num_leases, 1);
  ASSERT_TRUE(bm.ExtendLease(r3->lease, 300).ok());
  EXPECT_TRUE(bm.ExpireLeases(250).empty());
  ASSERT_TRUE(bm.Allocate(5, 1).ok());
  EXPECT_EQ(bm.Commit(r3->lease, 5, 250).code(), StatusCode::kAlreadyExists);  // lease kept
  ASSERT_TRUE(bm.Commit(r3->lease, 3, 250).ok());
  EXPECT_EQ(bm.NumTokens(3), 10);
  EXPECT_EQ(*bm.BlockTable(3), r3->blocks);
  EXPECT_EQ(bm.Commit(r3->lease, 4, 250).code(), StatusCode::kNotFound);
  EXPECT_TRUE(bm.ExpireLeases(1000).empty());  // committed: no longer a lease
  ASSERT_TRUE(bm.AppendSlots(3, 5).ok());
  EXPECT_INVARIANTS(bm);

  // Reservations see prefix hits; Cancel gives the blocks back.
  ASSERT_TRUE(bm.CommitFullBlocks(3, p).ok());
  auto r4 = bm.Reserve(Concat(p, {1, 2, 3}), 10);
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(r4->num_cached_tokens, 8);
  ASSERT_TRUE(bm.Cancel(r4->lease).ok());
  EXPECT_EQ(bm.Cancel(r4->lease).code(), StatusCode::kNotFound);
  ASSERT_TRUE(bm.Free(3).ok());
  ASSERT_TRUE(bm.Free(5).ok());
  EXPECT_EQ(bm.Stats().in_use_blocks, 0);
  EXPECT_INVARIANTS(bm);
}

TEST(BlockManagerTest, ExhaustionIsAStatusAndChangesNothing) {
  BlockManager bm(4, 4);
  ASSERT_TRUE(bm.Allocate(1, 12).ok());
  BlockManagerStats before = bm.Stats();
  auto r = bm.Allocate(2, 8);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.Reserve(Iota(8), 0).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.Allocate(3, 17).status().code(), StatusCode::kOutOfRange);  // > whole pool
  EXPECT_EQ(bm.Stats().free_blocks, before.free_blocks);
  EXPECT_EQ(bm.Stats().in_use_blocks, before.in_use_blocks);
  EXPECT_EQ(bm.Stats().num_sequences, 1);
  EXPECT_EQ(bm.Stats().num_leases, 0);
  ASSERT_TRUE(bm.AppendSlots(1, 4).ok());
  EXPECT_EQ(bm.AppendSlots(1, 1).code(), StatusCode::kOutOfRange);  // pool is 4 blocks
  EXPECT_EQ(bm.NumTokens(1), 16);
  ASSERT_TRUE(bm.Free(1).ok());
  ASSERT_TRUE(bm.Allocate(1, 8).ok());
  ASSERT_TRUE(bm.Allocate(2, 8).ok());
  EXPECT_EQ(bm.AppendSlots(1, 1).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.NumTokens(1), 8);
  EXPECT_EQ(bm.BlockTable(1)->size(), 2u);
  EXPECT_EQ(bm.Stats().num_sequences, 2);
  EXPECT_INVARIANTS(bm);
}

TEST(BlockManagerTest, PrefixHitsAreNotEvictedForTheirOwnAllocation) {
  BlockManager bm(5, 2);
  std::vector<int32_t> p = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(bm.AllocateForPrompt(1, p).ok());
  ASSERT_TRUE(bm.CommitFullBlocks(1, p).ok());
  ASSERT_TRUE(bm.Free(1).ok());         // 3 cached
  ASSERT_TRUE(bm.Allocate(9, 2).ok());  // 1 in use, 1 free
  // 10 tokens = 5 blocks, 2 hits, 3 fresh; available = 1 free + 1 evictable: must fail cleanly.
  std::vector<int32_t> q = {1, 2, 3, 4, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(bm.AllocateForPrompt(2, q).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.MatchPrefixLength(p), 4);
  EXPECT_EQ(bm.Stats().cached_blocks, 3);
  EXPECT_INVARIANTS(bm);
  // 8 tokens = 4 blocks, 2 hits, 2 fresh: evicts the one non-hit cached block.
  std::vector<int32_t> q2 = {1, 2, 3, 4, 0, 0, 0, 0};
  auto a = bm.AllocateForPrompt(2, q2);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->num_cached_tokens, 4);
  EXPECT_EQ(bm.Stats().evicted_blocks, 1);
  EXPECT_EQ(bm.Stats().free_blocks + bm.Stats().cached_blocks, 0);
  EXPECT_INVARIANTS(bm);
}

TEST(ContiguityTest, FreshPoolGivesSingleRuns) {
  BlockManager bm(1000, 16);
  int sizes[] = {1, 17, 100, 160, 1000, 33, 5000};
  SeqId id = 1;
  for (int n : sizes) {
    auto a = bm.Allocate(id++, n);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(CountRuns(a->blocks), 1) << n;
  }
  // Decode growth of the most recent sequence extends its run.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(bm.AppendSlots(id - 1, 1).ok());
  EXPECT_EQ(CountRuns(*bm.BlockTable(id - 1)), 1);
  EXPECT_INVARIANTS(bm);
}

TEST(ContiguityTest, BestFitAndFragmentedPools) {
  BlockManager bm(100, 1);
  for (SeqId i = 0; i < 100; ++i) ASSERT_TRUE(bm.Allocate(i, 1).ok());
  // Holes: [10,13) size 3, [20,25) size 5, [40,48) size 8; and every odd id in [60,100).
  auto free_range = [&](int a, int b) {
    for (int i = a; i < b; ++i) ASSERT_TRUE(bm.Free(i).ok());
  };
  free_range(10, 13);
  free_range(20, 25);
  free_range(40, 48);
  for (int i = 61; i < 100; i += 2) ASSERT_TRUE(bm.Free(i).ok());
  EXPECT_INVARIANTS(bm);
  auto a = bm.Allocate(1000, 5);  // best fit: exactly the 5-hole
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(CoalesceRuns(a->blocks), (std::vector<std::pair<int, int>>{{20, 5}}));
  auto b = bm.Allocate(1001, 13);  // no fit: largest runs first (8 + 3), then singles
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->blocks.size(), 13u);
  auto runs = CoalesceRuns(b->blocks);
  ASSERT_GE(runs.size(), 2u);
  EXPECT_EQ(runs[0], std::make_pair(40, 8));
  EXPECT_EQ(runs[1], std::make_pair(10, 3));
  EXPECT_EQ(runs.size(), 4u);
  // The rest of the fragmented pool still serves a large request, one block per run.
  auto c = bm.Allocate(1002, 18);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(CountRuns(c->blocks), 18);
  EXPECT_EQ(bm.Stats().free_blocks, 0);
  EXPECT_INVARIANTS(bm);
  // Freeing neighbours merges extents back into one run.
  for (SeqId i = 0; i < 100; ++i) (void)bm.Free(i);
  ASSERT_TRUE(bm.Free(1000).ok());
  ASSERT_TRUE(bm.Free(1001).ok());
  ASSERT_TRUE(bm.Free(1002).ok());
  EXPECT_INVARIANTS(bm);
  auto d = bm.Allocate(2000, 100);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(CountRuns(d->blocks), 1);
}

TEST(ContiguityTest, CoalesceRunsExample) {
  EXPECT_EQ(CoalesceRuns({3, 4, 5, 9, 10, 2}),
            (std::vector<std::pair<int, int>>{{3, 3}, {9, 2}, {2, 1}}));
  EXPECT_TRUE(CoalesceRuns({}).empty());
  EXPECT_EQ(CountRuns({}), 0);
  EXPECT_EQ(CountRuns({3, 4, 5, 9, 10, 2}), 3);
  EXPECT_EQ(CountRuns({5, 4}), 2);
}

TEST(BlockManagerTest, BadPoolFailsCleanly) {
  BlockManager bm(8, 0);
  EXPECT_EQ(bm.Allocate(1, 4).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bm.MatchPrefixLength(Iota(8)), 0);
  EXPECT_INVARIANTS(bm);
}

}  // namespace
}  // namespace pd
