// Engine (scheduler + continuous batching) against FakeRunner, whose next token is computed from
// the KV arena through the block table; FakeReferenceNext computes it from the token list alone.
#include "serving/engine.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <cstring>
#include <map>

#include "serving/fake_runner.h"

namespace pd::serving {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<int32_t> Reference(std::vector<int32_t> tokens, int n, const FakeRunnerOptions& o) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t t = FakeReferenceNext(tokens, o.num_layers, o.vocab_size);
    out.push_back(t);
    tokens.push_back(t);
  }
  return out;
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 7 + salt * 13 + 1) % 97);
  return p;
}

struct Result {
  std::vector<int32_t> tokens;
  Output last;
  int64_t first_step = -1;
};

Result Drain(const std::shared_ptr<OutputStream>& s) {
  Result r;
  const auto until = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < until) {
    std::vector<Output> outs;
    if (!s->Pop(until, &outs)) break;
    for (Output& o : outs) {
      if (r.first_step < 0 && !o.tokens.empty()) r.first_step = o.step;
      r.tokens.insert(r.tokens.end(), o.tokens.begin(), o.tokens.end());
      if (o.finish != Finish::kNone) {
        r.last = o;
        return r;
      }
    }
  }
  ADD_FAILURE() << "stream did not finish";
  return r;
}

EngineRequest Req(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
  EngineRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  return r;
}

void ExpectPoolIdle(Engine& e) {
  const EngineStats s = e.Stats();
  EXPECT_EQ(s.blocks.in_use_blocks, 0);
  EXPECT_EQ(s.blocks.free_blocks + s.blocks.cached_blocks, s.blocks.total_blocks);
  EXPECT_EQ(s.running + s.waiting + s.leases, 0);
  EXPECT_TRUE(e.CheckInvariants().ok()) << e.CheckInvariants().ToString();
}

TEST(Engine, SingleRequestMatchesReference) {
  FakeRunnerOptions fo;
  FakeRunner runner(fo);
  EngineOptions eo;
  eo.prefill_chunk_tokens = 5;  // 23-token prompt in 5 chunks
  Engine e(&runner, eo);
  e.Start();
  auto s = e.Submit(Req("a", Prompt(23, 1), 12));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Result r = Drain(*s);
  EXPECT_EQ(r.tokens, Reference(Prompt(23, 1), 12, fo));
  EXPECT_EQ(r.last.finish, Finish::kLength);
  EXPECT_EQ(r.last.completion_tokens, 12);
  e.Stop();
  ExpectPoolIdle(e);
}

TEST(Engine, ConcurrentMixedLengthsUnderTokenBudget) {
  FakeRunnerOptions fo;
  fo.num_blocks = 256;
  FakeRunner runner(fo);
  EngineOptions eo;
  eo.max_batch_tokens = 16;
  eo.prefill_chunk_tokens = 8;
  eo.max_seqs = 8;
  Engine e(&runner, eo);
  e.Start();
  std::map<std::string, std::shared_ptr<OutputStream>> streams;
  for (int i = 0; i < 24; ++i) {
    auto s = e.Submit(Req("r" + std::to_string(i), Prompt(1 + (i * 11) % 40, i), 1 + i % 9));
    ASSERT_TRUE(s.ok());
    streams["r" + std::to_string(i)] = *s;
  }
  for (int i = 0; i < 24; ++i) {
    Result r = Drain(streams["r" + std::to_string(i)]);
    EXPECT_EQ(r.tokens, Reference(Prompt(1 + (i * 11) % 40, i), 1 + i % 9, fo)) << i;
  }
  EXPECT_LE(runner.max_tokens_seen(), 16);
  e.Stop();
  ExpectPoolIdle(e);
}

TEST(Engine, LongPromptDoesNotStallDecodes) {
  // While a 200-token prompt prefills in chunks of 8, a running sequence keeps getting a token
  // every step: its 30 tokens finish before the long prompt's first token.
  FakeRunnerOptions fo;
  fo.num_blocks = 128;
  FakeRunner runner(fo);
  EngineOptions eo;
  eo.max_batch_tokens = 9;
  eo.prefill_chunk_tokens = 8;
  Engine e(&runner, eo);
  auto shortr = e.Submit(Req("short", Prompt(3, 5), 20));
  auto longr = e.Submit(Req("long", Prompt(200, 6), 2));
  e.Start();
  Result rs = Drain(*shortr);
  Result rl = Drain(*longr);
  EXPECT_LT(rs.last.step, rl.first_step) << "the long prompt stalled the short sequence";
  EXPECT_EQ(rs.last.step, 20);  // one token per step
  EXPECT_LE(runner.max_tokens_seen(), 9);
  EXPECT_EQ(rs.tokens, Reference(Prompt(3, 5), 20, fo));
  EXPECT_EQ(rl.tokens, Reference(Prompt(200, 6), 2, fo));
  e.Stop();
}

TEST(Engine, FullPoolPreemptsAndRecomputes) {
  FakeRunnerOptions fo;
  fo.num_blocks = 12;  // 48 token slots for 4 sequences that grow to 30 tokens each
  FakeRunner runner(fo);
  EngineOptions eo;
  Engine e(&runner, eo);
  e.Start();
  std::vector<std::shared_ptr<OutputStream>> ss;
  for (int i = 0; i < 4; ++i) ss.push_back(*e.Submit(Req("p" + std::to_string(i), Prompt(6, i), 24)));
  for (int i = 0; i < 4; ++i) {
    Result r = Drain(ss[i]);
    EXPECT_EQ(r.tokens, Reference(Prompt(6, i), 24, fo)) << i;
  }
  EXPECT_GT(e.Stats().preemptions, 0);
  e.Stop();
  ExpectPoolIdle(e);
}

TEST(Engine, BadRequestsRejectedAndOversizedPromptFails) {
  FakeRunnerOptions fo;
  fo.num_blocks = 4;
  FakeRunner runner(fo);
  Engine e(&runner, EngineOptions{});
  e.Start();
  EXPECT_EQ(e.Submit(Req("x", {}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.Submit(Req("x", {1, 97}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.Submit(Req("x", {1, 2}, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.Submit(Req("x", Prompt(500, 1), 100)).status().code(),
            StatusCode::kInvalidArgument);
  Result r = Drain(*e.Submit(Req("big", Prompt(40, 1), 2)));  // 40 tokens > 4 blocks * 4
  EXPECT_EQ(r.last.finish, Finish::kError);
  EXPECT_EQ(r.last.status.code(), StatusCode::kOutOfRange);
  Result ok = Drain(*e.Submit(Req("small", Prompt(5, 1), 3)));
  EXPECT_EQ(ok.tokens, Reference(Prompt(5, 1), 3, fo));
  e.Stop();
  ExpectPoolIdle(e);
}

TEST(Engine, CancelFreesBlocksAndLeases) {
  FakeRunnerOptions fo;
  FakeRunner runner(fo);
  Engine e(&runner, EngineOptions{});
  auto res = e.Reserve("lease-only", Prompt(10, 2), 10000);
  ASSERT_TRUE(res.ok());
  EXPECT_TRUE(e.Cancel("lease-only"));
  auto s = e.Submit(Req("c", Prompt(10, 3), 400));
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(e.Cancel("c"));  // marked; the loop finishes it at its next step
  e.Start();
  Result r = Drain(*s);
  EXPECT_EQ(r.last.finish, Finish::kCancelled);
  EXPECT_FALSE(e.Cancel("nope"));
  auto shortlease = e.Reserve("expires", Prompt(10, 4), 1);
  ASSERT_TRUE(shortlease.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  e.Stop();
  ExpectPoolIdle(e);
}

// Lease fence (decode side): a lease that ends uncommitted keeps its blocks out of the pool until
// its writer is known done (ReleaseFenced) or the fence time passes; a new lease never gets them.
TEST(Engine, EndedLeasesAreFencedUntilReleasedOrTimedOut) {
  FakeRunnerOptions fo;
  FakeRunner runner(fo);
  EngineOptions eo;
  eo.lease_fence_ms = 300;
  Engine e(&runner, eo);
  const int total = e.Stats().blocks.total_blocks;
  auto a = e.Reserve("a", Prompt(40, 1), 10000);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(e.LiveLease("a"), a->lease);
  EXPECT_TRUE(e.Cancel("a"));  // a P may still be writing: fenced, not freed
  EXPECT_EQ(e.LiveLease("a"), 0u);
  EngineStats st = e.Stats();
  EXPECT_EQ(st.fenced, 1);
  EXPECT_EQ(st.blocks.free_blocks + st.blocks.cached_blocks,
            total - static_cast<int>(a->blocks.size()));
  // A new lease for the same request never gets the fenced blocks.
  auto b = e.Reserve("a", Prompt(40, 1), 10000);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->lease, a->lease);
  for (BlockId x : b->blocks) {
    EXPECT_EQ(std::count(a->blocks.begin(), a->blocks.end(), x), 0) << "block " << x << " reused";
  }
  // The writer's final notice: freed at once. A second release is a no-op.
  EXPECT_TRUE(e.ReleaseFenced(a->lease));
  EXPECT_FALSE(e.ReleaseFenced(a->lease));
  EXPECT_FALSE(e.ReleaseFenced(b->lease));  // live, not fenced
  // Cancel with writer_done frees without a fence.
  EXPECT_TRUE(e.Cancel("a", /*writer_done=*/true));
  EXPECT_EQ(e.Stats().fenced, 0);
  // Expiry fences too, and the fence times out without a word from the writer.
  auto c = e.Reserve("c", Prompt(20, 2), 1);
  ASSERT_TRUE(c.ok());
  e.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(e.LiveLease("c"), 0u);
  EXPECT_EQ(e.Stats().fenced, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(e.Stats().fenced, 0);
  e.Stop();
  ExpectPoolIdle(e);
}

TEST(Engine, MaxQueueRefusesNewWorkWithResourceExhausted) {
  FakeRunnerOptions fo;
  FakeRunner runner(fo);
  EngineOptions eo;
  eo.max_queue = 2;
  Engine e(&runner, eo);  // not started: submissions stay queued
  ASSERT_TRUE(e.Submit(Req("q1", Prompt(8, 1), 4)).ok());
  ASSERT_TRUE(e.Reserve("l1", Prompt(8, 2), 10000).ok());
  auto s = e.Submit(Req("q2", Prompt(8, 3), 4));
  auto r = e.Reserve("l2", Prompt(8, 4), 10000);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("max_queue"), std::string::npos);
  ASSERT_TRUE(s.ok());  // waiting (1) < 2: a Submit counts only waiting sequences
  auto s3 = e.Submit(Req("q3", Prompt(8, 5), 4));
  EXPECT_EQ(s3.status().code(), StatusCode::kResourceExhausted);
  e.Cancel("l1", true);
  e.Start();
  EXPECT_EQ(Drain(*s).last.finish, Finish::kLength);  // queued work still completes
  e.Stop();
}

TEST(Engine, RemotePrefillThroughLayerHookMatchesReference) {
  // P computes the prompt and its layer hook copies each layer's KV of the sequence's blocks into
  // the blocks D reserved (what the transfer engine does between processes); D then decodes.
  FakeRunnerOptions fo;
  FakeRunner prunner(fo), drunner(fo);
  EngineOptions eo;
  eo.prefill_chunk_tokens = 6;
  Engine p(&prunner, eo), d(&drunner, eo);
  const std::vector<int32_t> prompt = Prompt(21, 9);
  // Warm D's prefix cache with the first 8 tokens so only the rest must be written.
  d.Start();
  Result warm = Drain(*d.Submit(Req("warm", {prompt.begin(), prompt.begin() + 9}, 1)));
  ASSERT_EQ(warm.tokens.size(), 1u);
  auto lease = d.Reserve("r", prompt, 10000);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->num_cached_tokens, 8);
  const KvLayout& L = prunner.kv_arena().layout;
  const int from_block = lease->num_cached_tokens / fo.block_size;
  p.set_layer_hook([&](const std::vector<ChunkInfo>& chunks, int layer) {
    for (const ChunkInfo& c : chunks) {
      for (int blk = std::max(from_block, c.start / fo.block_size);
           blk < (c.end + fo.block_size - 1) / fo.block_size; ++blk) {
        std::memcpy(static_cast<char*>(drunner.kv_arena().base) +
                        L.block_offset(layer, lease->blocks[blk]),
                    static_cast<const char*>(prunner.kv_arena().base) +
                        L.block_offset(layer, c.blocks[blk]),
                    L.block_layer_bytes());
      }
    }
  });
  p.Start();
  EngineRequest pr = Req("r", prompt, 1);
  pr.hold_blocks = true;
  Result pres = Drain(*p.Submit(pr));
  ASSERT_EQ(pres.tokens.size(), 1u);
  EXPECT_EQ(p.Stats().held, 1);
  p.Release("r");
  EngineRequest dr = Req("r", prompt, 10);
  dr.lease = lease->lease;
  dr.remote_first_token = pres.tokens[0];
  Result dres = Drain(*d.Submit(dr));
  EXPECT_EQ(dres.tokens, Reference(prompt, 10, fo));
  EXPECT_EQ(dres.last.cached_tokens, 8);
  p.Stop();
  d.Stop();
  ExpectPoolIdle(p);
  ExpectPoolIdle(d);
}

}  // namespace
}  // namespace pd::serving
