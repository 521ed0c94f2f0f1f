// pd-up + pd-router + pd-client/pd-bench against fake daemons (fake_daemon.cc): real processes,
// real gRPC, real block accounting, a toy model. Covers routing, conditional disaggregation,
// prefix hits, retries after a killed prefill daemon, cancellation and bad requests without
// depending on a model backend.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "e2e_harness.h"
#include "tokenizer/tokenizer.h"
#include "tools/grpc_util.h"

namespace pd::e2e {
namespace {

namespace fs = std::filesystem;
using client::Client;
using client::GenerateParams;
using client::GenerateResult;

std::vector<int32_t> Expected(const std::vector<int32_t>& prompt, int n, int vocab = 2048) {
  std::vector<int32_t> t = prompt, out;
  for (int i = 0; i < n; ++i) {
    const int32_t next =
        static_cast<int32_t>((int64_t{t.back()} * 31 + int64_t(t.size()) * 7 + 3) % vocab);
    t.push_back(next);
    out.push_back(next);
  }
  return out;
}

std::vector<int32_t> Prompt(int len, int seed) {
  std::vector<int32_t> p(len);
  for (int i = 0; i < len; ++i) p[i] = (seed * 131 + i * 17) % 2000 + 1;
  return p;
}

// A bin dir where pd-prefill and pd-decode are the fake daemon and pd-router is the real one.
std::string FakeBinDir() {
  const std::string dir = std::string(PD_BUILD_DIR) + "/tests/e2e/fake-bin";
  fs::create_directories(dir);
  const std::string fake = std::string(PD_BUILD_DIR) + "/tests/e2e/pd-fake-daemon";
  for (const char* n : {"pd-prefill", "pd-decode"}) {
    fs::remove(dir + "/" + n);
    fs::create_symlink(fake, dir + "/" + n);
  }
  fs::remove(dir + "/pd-router");
  fs::create_symlink(BinPath("pd-router"), dir + "/pd-router");
  return dir;
}

GenerateResult Gen(Client& c, const std::vector<int32_t>& p, int n) {
  GenerateParams g;
  g.ids = p;
  g.max_tokens = n;
  return c.Generate(g, {}, 30000);
}

int64_t Free(const Deployment& d, const std::string& name) {
  auto s = GetDaemonStats(d.InstanceAddress(name), name.rfind("decode", 0) == 0);
  return s.ok() ? s->free_blocks : -1;
}

TEST(RouterFakeE2E, RoutesStreamsAndHitsThePrefixCache) {
  DeploySpec spec;
  spec.disagg_threshold = 32;
  spec.bin_dir = FakeBinDir();
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  const int64_t free0 = Free(**dep, "decode-0");
  EXPECT_EQ(free0, 256);
  for (int len : {1, 5, 31, 32, 100}) {
    const GenerateResult r = Gen(c, Prompt(len, len), 10);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.ids, Expected(Prompt(len, len), 10));
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.completion_tokens, 10);
    EXPECT_GT(r.ttft_ms, 0);
    EXPECT_EQ(r.token_times_ms.size(), 10u);
  }
  const GenerateResult again = Gen(c, Prompt(100, 100), 4);
  EXPECT_EQ(again.cached_tokens, 96);
  EXPECT_EQ(again.ids, Expected(Prompt(100, 100), 4));
  // Cached blocks count as free (evictable): the pool is back to its start.
  EXPECT_EQ(Free(**dep, "decode-0"), free0);
  auto h = c.Health();
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->serving);
  EXPECT_EQ(h->instances.size(), 2u);
}

int64_t PrefillsServed(const Deployment& d, const std::string& name) {
  auto s = GetDaemonStats(d.InstanceAddress(name), false);
  return s.ok() ? s->steps : -1;
}

TEST(RouterFakeE2E, ConditionalDisaggregationSkipsPForShortUncachedParts) {
  DeploySpec spec;
  spec.disagg_threshold = 32;
  spec.bin_dir = FakeBinDir();
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  EXPECT_EQ(PrefillsServed(**dep, "prefill-0"), 0);
  EXPECT_TRUE(Gen(c, Prompt(31, 1), 2).status.ok());  // 31 < 32: on decode
  EXPECT_EQ(PrefillsServed(**dep, "prefill-0"), 0);
  EXPECT_TRUE(Gen(c, Prompt(32, 2), 2).status.ok());  // remote
  EXPECT_EQ(PrefillsServed(**dep, "prefill-0"), 1);
  EXPECT_TRUE(Gen(c, Prompt(200, 3), 2).status.ok());  // remote
  EXPECT_EQ(PrefillsServed(**dep, "prefill-0"), 2);
  // Same 200-token prompt: 192 cached on decode, 8 uncached < 32 -> decode prefills itself.
  const GenerateResult hit = Gen(c, Prompt(200, 3), 2);
  EXPECT_EQ(hit.cached_tokens, 192);
  EXPECT_EQ(hit.ids, Expected(Prompt(200, 3), 2));
  EXPECT_EQ(PrefillsServed(**dep, "prefill-0"), 2);
}

TEST(RouterFakeE2E, RestartedPrefillRejoins) {
  DeploySpec spec;
  spec.disagg_threshold = 0;
  spec.restart = true;
  spec.bin_dir = FakeBinDir();
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  (*dep)->Kill("prefill-0");
  // While P is down, requests fall back to decode.
  bool saw_down = false;
  for (int i = 0; i < 40 && !saw_down; ++i) {
    auto h = c.Health();
    saw_down = h.ok() && !h->serving;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(saw_down);
  EXPECT_EQ(Gen(c, Prompt(100, 5), 3).ids, Expected(Prompt(100, 5), 3));
  // pd-up restarts it after 1 s; the next successful poll puts it back in rotation.
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    auto h = c.Health();
    back = h.ok() && h->serving;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(back);
  EXPECT_EQ(Gen(c, Prompt(100, 6), 3).ids, Expected(Prompt(100, 6), 3));
  EXPECT_EQ(PrefillsServed(**dep, "prefill-0"), 1);  // the new incarnation served it
}

TEST(RouterFakeE2E, BadRequests) {
  DeploySpec spec;
  spec.bin_dir = FakeBinDir();
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  GenerateParams p;
  p.max_tokens = 4;
  const GenerateResult empty = c.Generate(p);
  EXPECT_EQ(empty.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status.message(), "prompt is empty");
  p.ids = {1, 2, 5000};
  EXPECT_EQ(c.Generate(p).status.code(), StatusCode::kInvalidArgument);
  p.ids = {1, 2, 3};
  p.max_tokens = 0;
  EXPECT_EQ(c.Generate(p).status.code(), StatusCode::kInvalidArgument);
  p.max_tokens = 4;
  p.model = "nope";
  const GenerateResult unknown = c.Generate(p);
  EXPECT_EQ(unknown.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status.message().find("unknown model 'nope'"), std::string::npos);
  EXPECT_FALSE(SendMalformedGenerate((*dep)->endpoint()).ok());
  EXPECT_EQ(Gen(c, {1, 2, 3}, 4).ids, Expected({1, 2, 3}, 4));
}

TEST(RouterFakeE2E, KilledPrefillIsRetriedAndCancelsFreeBlocks) {
  DeploySpec spec;
  spec.num_prefill = 2;
  spec.disagg_threshold = 0;
  spec.bin_dir = FakeBinDir();
  spec.kv_blocks = 1024;
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  const int64_t free0 = Free(**dep, "decode-0");
  std::vector<GenerateResult> res(32);
  std::vector<std::thread> th;
  for (int i = 0; i < 32; ++i) {
    th.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(10 * i));
      Client c((*dep)->endpoint());
      res[i] = Gen(c, Prompt(400 + i, i), 6);  // ~50 ms of fake prefill each
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*dep)->Kill("prefill-0");
  for (auto& t : th) t.join();
  for (int i = 0; i < 32; ++i) {
    ASSERT_TRUE(res[i].status.ok()) << i << ": " << res[i].status.ToString();
    EXPECT_EQ(res[i].ids, Expected(Prompt(400 + i, i), 6));
  }
  // Cancel mid-stream.
  Client c((*dep)->endpoint());
  std::atomic<bool> cancel{false};
  GenerateParams p;
  p.ids = Prompt(64, 1);
  p.max_tokens = 500;
  int got = 0;
  const GenerateResult r = c.Generate(
      p,
      [&](const client::StreamEvent& e) {
        got += static_cast<int>(e.ids.size());
        if (got >= 3) cancel = true;
      },
      30000, &cancel);
  EXPECT_EQ(r.status.code(), StatusCode::kCancelled) << r.status.ToString();
  EXPECT_LT(r.ids.size(), 500u);
  int64_t now = -1;
  for (int i = 0; i < 50 && now != free0; ++i) {
    now = Free(**dep, "decode-0");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(now, free0);
}

TEST(RouterFakeE2E, ClientAndBenchTools) {
  DeploySpec spec;
  spec.bin_dir = FakeBinDir();
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  std::string out;
  EXPECT_EQ(RunCapture({BinPath("pd-client"), "--addr", (*dep)->endpoint(), "--ids", "1,2,3",
                        "--max-tokens", "4"},
                       &out),
            0);
  auto want = Expected({1, 2, 3}, 4);
  EXPECT_EQ(out, std::to_string(want[0]) + "," + std::to_string(want[1]) + "," +
                     std::to_string(want[2]) + "," + std::to_string(want[3]) + "\n");
  EXPECT_EQ(RunCapture({BinPath("pd-bench"), "--addr", (*dep)->endpoint(), "--input-len", "8:64",
                        "--output-len", "4:8", "--num-requests", "40", "--concurrency", "8",
                        "--json", "--no-progress", "--slo-ttft-ms", "10000"},
                       &out),
            0);
  EXPECT_NE(out.find("\"completed\": 40"), std::string::npos) << out;
  EXPECT_NE(out.find("\"failed\": 0"), std::string::npos) << out;
  EXPECT_NE(out.find("\"good_requests\": 40"), std::string::npos) << out;
  EXPECT_EQ(RunCapture(
                {BinPath("pd-bench"), "--addr", (*dep)->endpoint(), "--rate", "50",
                 "--num-requests", "20", "--input-len", "16", "--output-len", "4", "--no-progress"},
                &out),
            0);
  EXPECT_NE(out.find("requests: 20 completed, 0 failed"), std::string::npos) << out;
}

}  // namespace
}  // namespace pd::e2e

namespace pd::e2e {
namespace {

// A byte-level BPE tokenizer.json with no merges: token id == byte value (GPT-2 byte mapping).
std::string ByteTokenizerJson() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cp(256, -1);
  for (int b : bs) cp[b] = b;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (cp[b] < 0) cp[b] = 256 + n++;
  }
  auto utf8 = [](int c) {
    std::string s;
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
    return s;
  };
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string tok = utf8(cp[b]);
    if (tok == "\"" || tok == "\\") tok = "\\" + tok;
    vocab += (b ? "," : "") + std::string("\"") + tok + "\":" + std::to_string(b);
  }
  return R"({"version":"1.0","added_tokens":[],"normalizer":null,)"
         R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false},)"
         R"("post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},)"
         R"("model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,)"
         R"("end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{)" +
         vocab + R"(},"merges":[]}})";
}

TEST(RouterFakeE2E, TextPromptsAreTokenizedAndStreamedAsText) {
  const std::string dir = std::string(PD_BUILD_DIR) + "/models/e2e-bytes";
  std::string out;
  ASSERT_EQ(RunCapture({BinPath("pd-makemodel"), "--preset", "tiny", "--vocab", "256", "--out", dir,
                        "--quiet"},
                       &out),
            0);
  { std::ofstream(dir + "/tokenizer.json") << ByteTokenizerJson(); }
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  DeploySpec spec;
  spec.bin_dir = FakeBinDir();
  spec.model_dir = dir;
  auto dep = Deployment::Start(spec, 30);
  ASSERT_TRUE(dep.ok()) << dep.status().ToString();
  Client c((*dep)->endpoint());
  auto models = c.ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_TRUE((*models)[0].has_tokenizer);
  GenerateParams p;
  p.text = "Hello, world! \xc3\xa9t\xc3\xa9";
  p.max_tokens = 24;
  std::string streamed;
  const GenerateResult r = c.Generate(
      p, [&](const client::StreamEvent& e) { streamed += e.text; }, 30000);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  std::vector<int32_t> prompt(p.text.begin(), p.text.end());
  for (auto& t : prompt) t &= 0xff;
  EXPECT_EQ(r.prompt_tokens, static_cast<int>(prompt.size()));
  const auto want = Expected(prompt, 24, 256);
  EXPECT_EQ(r.ids, want);
  EXPECT_EQ(r.text, *(*tok)->Decode(want, true));
  EXPECT_EQ(streamed, r.text);
}

}  // namespace
}  // namespace pd::e2e
