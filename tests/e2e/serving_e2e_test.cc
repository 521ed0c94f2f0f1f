// End-to-end serving tests (label e2e): real pd-up / pd-router / pd-prefill / pd-decode processes
// on loopback, CPU backend, the tiny random model. Every greedy output is compared token for
// token with pd-generate (single process, no disaggregation) on the same model.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "e2e_harness.h"
#include "tools/grpc_util.h"

namespace pd::e2e {
namespace {

using client::Client;
using client::GenerateParams;
using client::GenerateResult;

std::vector<int32_t> Prompt(int len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(3, 2000);  // tiny vocab is 2048
  std::vector<int32_t> p(len);
  for (auto& t : p) t = tok(rng);
  return p;
}

GenerateResult Greedy(Client& c, const std::vector<int32_t>& prompt, int max_tokens) {
  GenerateParams p;
  p.ids = prompt;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return c.Generate(p, {}, 60000);
}

// Reference outputs, computed once per (prompt, max_tokens).
const std::vector<int32_t>& Reference(const std::vector<int32_t>& prompt, int max_tokens) {
  static std::map<std::pair<std::vector<int32_t>, int>, std::vector<int32_t>> cache;
  auto key = std::make_pair(prompt, max_tokens);
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto ref = ReferenceGenerate(TinyModelDir(), prompt, max_tokens);
    EXPECT_TRUE(ref.ok()) << ref.status().ToString();
    it = cache.emplace(key, ref.ok() ? *ref : std::vector<int32_t>{}).first;
  }
  return it->second;
}

void ExpectMatchesReference(Client& c, const std::vector<int32_t>& prompt, int max_tokens,
                            int* cached = nullptr) {
  const GenerateResult r = Greedy(c, prompt, max_tokens);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.ids, Reference(prompt, max_tokens)) << "prompt length " << prompt.size();
  EXPECT_EQ(r.prompt_tokens, static_cast<int>(prompt.size()));
  EXPECT_EQ(r.completion_tokens, max_tokens);
  if (cached) *cached = r.cached_tokens;
}

// Every daemon's free KV blocks return to their starting count (no leaked blocks).
void ExpectNoLeakedBlocks(const Deployment& d, const std::map<std::string, int64_t>& start,
                          const std::vector<std::string>& skip = {}) {
  for (const auto& [name, free0] : start) {
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    int64_t now = -1;
    // Leases and cancelled sequences are released asynchronously. A lease whose prefill died
    // without a word stays fenced for prefill_ms + transfer_ms + 1 s (16 s here, stretched by
    // PD_TEST_TIME_SCALE): allow that and a margin.
    const char* scale_env = std::getenv("PD_TEST_TIME_SCALE");
    const int scale = scale_env != nullptr ? std::max(1, std::atoi(scale_env)) : 1;
    for (int i = 0; i < 300 * scale && now != free0; ++i) {
      auto s = GetDaemonStats(d.InstanceAddress(name), name.rfind("decode", 0) == 0);
      if (s.ok()) now = s->free_blocks;
      if (now != free0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(now, free0) << name << " leaked KV blocks";
  }
}

std::map<std::string, int64_t> FreeBlocks(const Deployment& d) {
  std::map<std::string, int64_t> m;
  for (const auto& names : {d.prefill_names(), d.decode_names()}) {
    for (const std::string& n : names) {
      auto s = GetDaemonStats(d.InstanceAddress(n), n.rfind("decode", 0) == 0);
      EXPECT_TRUE(s.ok()) << n << ": " << s.status().ToString();
      if (s.ok()) m[n] = s->free_blocks;
    }
  }
  return m;
}

TEST(ServingE2E, OneP1DMatchesPdGenerateRemoteLocalAndPrefixHits) {
  DeploySpec spec;
  spec.disagg_threshold = 32;  // < 32 uncached tokens: decode prefills itself
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  const auto free0 = FreeBlocks(**dep);

  auto models = c.ListModels();
  ASSERT_TRUE(models.ok()) << models.status().ToString();
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ((*models)[0].vocab_size, 2048);

  ExpectMatchesReference(c, Prompt(5, 1), 16);    // short: prefilled on decode
  ExpectMatchesReference(c, Prompt(100, 2), 16);  // long: prefilled on P, KV pushed to D
  ExpectMatchesReference(c, Prompt(33, 3), 8);    // just above the threshold: remote
  // Prefix-cache hit: same 100-token prompt again; 96 tokens (6 full blocks) are cached, the
  // 4 uncached tokens are below the threshold, so D prefills them itself on top of the cache.
  int cached = -1;
  ExpectMatchesReference(c, Prompt(100, 2), 16, &cached);
  EXPECT_EQ(cached, 96);
  // A prompt sharing 64 tokens with a cached one, 60 new tokens: remote prefill on top of hits.
  auto p = Prompt(100, 2);
  p.resize(64);
  auto tail = Prompt(60, 4);
  p.insert(p.end(), tail.begin(), tail.end());
  ExpectMatchesReference(c, p, 12, &cached);
  EXPECT_EQ(cached, 64);
  ExpectNoLeakedBlocks(**dep, free0);
}

TEST(ServingE2E, BadRequestsAreInvalidArgumentAndTheDaemonsStayUp) {
  DeploySpec spec;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  auto expect_invalid = [&](GenerateParams p, const std::string& what) {
    const GenerateResult r = c.Generate(p, {}, 10000);
    EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument) << what << ": " << r.status.ToString();
    EXPECT_FALSE(r.status.message().empty()) << what;
    EXPECT_TRUE(r.ids.empty()) << what;
    // The next request still works.
    ExpectMatchesReference(c, Prompt(20, 9), 4);
  };
  GenerateParams ok;
  ok.ids = Prompt(10, 5);
  ok.max_tokens = 4;
  GenerateParams p = ok;
  p.ids.clear();
  expect_invalid(p, "empty prompt");
  p = ok;
  p.ids[3] = 2048;
  expect_invalid(p, "id outside vocab");
  p.ids[3] = -5;
  expect_invalid(p, "negative id");
  p = ok;
  p.max_tokens = 0;
  expect_invalid(p, "max_tokens 0");
  p.max_tokens = -3;
  expect_invalid(p, "max_tokens < 0");
  p.max_tokens = 513;  // router.max_tokens_limit is 512 in the harness
  expect_invalid(p, "max_tokens above limit");
  p = ok;
  p.ids = Prompt(4090, 6);  // tiny context is 4096
  p.max_tokens = 16;
  expect_invalid(p, "prompt longer than context");
  p = ok;
  p.model = "no-such-model";
  expect_invalid(p, "unknown model");
  p = ok;
  p.ids.clear();
  p.text = "hello";
  expect_invalid(p, "text without tokenizer.json");
  auto raw = SendMalformedGenerate((*dep)->endpoint());
  EXPECT_FALSE(raw.ok()) << "malformed message accepted";
  ExpectMatchesReference(c, Prompt(20, 9), 4);
}

TEST(ServingE2E, TwoP2DSixtyFourConcurrentMixedRequests) {
  DeploySpec spec;
  spec.num_prefill = 2;
  spec.num_decode = 2;
  spec.disagg_threshold = 24;
  spec.kv_blocks = 512;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  const auto free0 = FreeBlocks(**dep);
  // 8 distinct prompts (4..300 tokens) x 8 repeats, mixed output lengths.
  const int lens[8] = {4, 17, 31, 48, 96, 150, 220, 300};
  std::vector<std::pair<std::vector<int32_t>, int>> work;
  for (int i = 0; i < 64; ++i) work.emplace_back(Prompt(lens[i % 8], 100 + i % 8), 4 + (i % 8) * 3);
  for (const auto& [prompt, n] : work) Reference(prompt, n);  // compute references first
  std::vector<GenerateResult> results(work.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < work.size(); ++i) {
    threads.emplace_back([&, i] {
      Client c((*dep)->endpoint());
      results[i] = Greedy(c, work[i].first, work[i].second);
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < work.size(); ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.ToString();
    EXPECT_EQ(results[i].ids, Reference(work[i].first, work[i].second)) << "request " << i;
  }
  ExpectNoLeakedBlocks(**dep, free0);
}

TEST(ServingE2E, KilledPrefillDaemonAndClientCancelsLeakNothing) {
  DeploySpec spec;
  spec.num_prefill = 2;
  spec.num_decode = 1;
  spec.disagg_threshold = 0;  // everything through P
  spec.kv_blocks = 512;
  auto dep = Deployment::Start(spec);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  const auto free0 = FreeBlocks(**dep);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 24; ++i) prompts.push_back(Prompt(200 + 10 * (i % 5), 300 + i));
  for (const auto& p : prompts) Reference(p, 8);
  std::vector<GenerateResult> results(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * i));
      Client c((*dep)->endpoint());
      results[i] = Greedy(c, prompts[i], 8);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  (*dep)->Kill("prefill-0");
  for (auto& t : threads) t.join();
  int ok = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (results[i].status.ok()) {
      ++ok;
      EXPECT_EQ(results[i].ids, Reference(prompts[i], 8)) << "request " << i;
    } else {
      EXPECT_FALSE(results[i].status.message().empty()) << "request " << i;
    }
  }
  EXPECT_GE(ok, 20) << "retry on prefill-1 / fallback to decode should save most requests";
  // Client cancellation mid-stream frees blocks on decode too.
  {
    Client c((*dep)->endpoint());
    std::atomic<bool> cancel{false};
    GenerateParams p;
    p.ids = Prompt(64, 7);
    p.max_tokens = 400;
    p.ignore_eos = true;
    int got = 0;
    const GenerateResult r = c.Generate(
        p,
        [&](const client::StreamEvent& e) {
          got += e.ids.size();
          if (got >= 3) cancel = true;
        },
        60000, &cancel);
    EXPECT_EQ(r.status.code(), StatusCode::kCancelled) << r.status.ToString();
    EXPECT_LT(static_cast<int>(r.ids.size()), 400);
  }
  ExpectMatchesReference(*std::make_unique<Client>((*dep)->endpoint()), Prompt(40, 8), 6);
  ExpectNoLeakedBlocks(**dep, free0, {"prefill-0"});
}

}  // namespace
}  // namespace pd::e2e
