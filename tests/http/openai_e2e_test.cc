// e2e: a real 1P1D deployment (pd-up, tiny model with a byte-level tokenizer.json and a chat
// template in tokenizer_config.json) serving the OpenAI HTTP API (router.http_port) behind an
// API key, driven by the official OpenAI Node SDK (tests/http/openai_sdk_test.cjs). Greedy
// outputs over HTTP must equal gRPC Generate's for the same prompt; a client that disconnects
// mid-stream must get its request cancelled and its KV freed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "e2e_harness.h"
#include "tools/grpc_util.h"

namespace pd::e2e {
namespace {

using client::Client;
using client::GenerateParams;
using Json = nlohmann::json;
constexpr char kKey[] = "sk-pdserve-test";

std::string ByteTokenizerJson() {  // bytes 0..255 as GPT-2 byte-level tokens, no merges
  std::vector<int> cp(256, -1);
  for (int b = '!'; b <= '~'; ++b) cp[b] = b;
  for (int b = 0xA1; b <= 0xAC; ++b) cp[b] = b;
  for (int b = 0xAE; b <= 0xFF; ++b) cp[b] = b;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (cp[b] < 0) cp[b] = 256 + n++;
  }
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    const int c = cp[b];
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
    vocab[s] = b;
  }
  Json bl = {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", false}};
  return Json{{"version", "1.0"},
              {"added_tokens", Json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", bl},
              {"post_processor", nullptr},
              {"decoder", bl},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", Json::array()}}}}
      .dump();
}

// The chat template of the test model and what it renders for one user message.
constexpr char kTemplate[] =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
std::string RenderedChat(const std::string& user) {
  return "<s><|user|>" + user + "\n<|assistant|>";
}

std::string ModelDir() {
  const std::string dir = std::string(PD_BUILD_DIR) + "/models/http-bytes";
  std::string out;
  EXPECT_EQ(RunCapture({BinPath("pd-makemodel"), "--preset", "tiny", "--vocab", "256", "--out", dir,
                        "--seed", "3", "--quiet"},
                       &out),
            0);
  std::ofstream(dir + "/tokenizer.json") << ByteTokenizerJson();
  std::ofstream(dir + "/tokenizer_config.json")
      << Json{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"chat_template", kTemplate}}.dump();
  return dir;
}

// One HTTP/1.1 exchange on a raw socket; returns the status line + headers + body.
std::string RawHttp(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "";
  }
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::string Post(const std::string& path, const std::string& body, const std::string& auth) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
         (auth.empty() ? "" : "Authorization: Bearer " + auth + "\r\n") +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

class OpenAiE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    http_port_ = FreePort();
    DeploySpec spec;
    spec.model_dir = ModelDir();
    spec.extra_router =
        "  http_port: " + std::to_string(http_port_) + "\n  api_keys: [" + kKey + "]\n";
    auto d = Deployment::Start(spec);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    dep_ = std::move(d).value().release();
    for (int i = 0; i < 100; ++i) {  // the HTTP server starts right after the gRPC one
      if (RawHttp(http_port_, "GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n")
              .starts_with("HTTP/1.1 401")) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "HTTP API not up on port " << http_port_;
  }
  static void TearDownTestSuite() {
    delete dep_;
    dep_ = nullptr;
  }

  static inline Deployment* dep_ = nullptr;
  static inline int http_port_ = 0;
};

// The SDK run: streaming/non-streaming chat and completions, stop strings, errors (asserted in
// the script); here its greedy outputs are compared with gRPC Generate on the same prompts.
TEST_F(OpenAiE2E, OpenAiNodeSdkMatchesGrpc) {
  std::string modules;
  const int rc =
      RunCapture({std::string(PD_SOURCE_DIR) + "/scripts/fetch_openai_sdk.sh"}, &modules);
  if (rc == 3 << 8 || rc == 3) GTEST_SKIP() << "npm could not install openai (no network?)";
  ASSERT_EQ(rc, 0) << "scripts/fetch_openai_sdk.sh failed";
  while (!modules.empty() && modules.back() == '\n') modules.pop_back();
  const std::string prompt = "The quick brown fox", user = "  Hello there!  ";
  const std::string cmd = "PD_OPENAI_MODULES='" + modules +
                          "' PD_HTTP_BASE=http://127.0.0.1:" + std::to_string(http_port_) +
                          "/v1 PD_MODEL=http-bytes PD_API_KEY=" + kKey + " node " + PD_SOURCE_DIR +
                          "/tests/http/openai_sdk_test.cjs '" + prompt + "' '" + user + "'";
  std::string out;
  ASSERT_EQ(RunCapture({"/bin/sh", "-c", cmd}, &out), 0) << out;
  const Json r = Json::parse(out.substr(out.find('{')));
  Client c(dep_->endpoint(), kKey);
  GenerateParams p;
  p.model = "http-bytes";
  p.max_tokens = 24;
  p.text = prompt;
  const auto g = c.Generate(p);
  ASSERT_TRUE(g.status.ok()) << g.status.ToString();
  EXPECT_EQ(r["completion"]["text"], g.text) << "greedy completion over HTTP == gRPC";
  EXPECT_EQ(r["completion"]["usage"]["prompt_tokens"], static_cast<int>(prompt.size()));
  EXPECT_EQ(r["completion"]["usage"]["completion_tokens"], static_cast<int>(g.ids.size()));
  EXPECT_EQ(r["completion"]["finish"], g.finish_reason);
  // Chat: the template renders "<s><|user|>Hello there!\n<|assistant|>" (content trimmed).
  p.text = RenderedChat("Hello there!");
  const auto gc = c.Generate(p);
  ASSERT_TRUE(gc.status.ok()) << gc.status.ToString();
  EXPECT_EQ(r["chat"]["text"], gc.text) << "greedy chat over HTTP == gRPC on the rendered prompt";
  EXPECT_EQ(r["chat"]["usage"]["prompt_tokens"], static_cast<int>(p.text.size()));
  EXPECT_EQ(r["chat"]["usage"]["completion_tokens"], static_cast<int>(gc.ids.size()));
  const std::string stop = r["stop"]["stop"];
  EXPECT_EQ(r["stop"]["text"], g.text.substr(0, g.text.find(stop)));
}

// Raw HTTP: OpenAI error bodies and codes the SDK hides, token-id prompts, stop_token_ids.
TEST_F(OpenAiE2E, ErrorsAndTokenIdPrompts) {
  std::string r =
      RawHttp(http_port_, Post("/v1/completions", R"({"model":"http-bytes","prompt":"x"})", ""));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 401")) << r;
  EXPECT_NE(r.find(R"("type":"authentication_error")"), std::string::npos) << r;
  r = RawHttp(http_port_, Post("/v1/completions", "{bad", kKey));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << r;
  r = RawHttp(http_port_, Post("/v1/nope", "{}", kKey));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 404")) << r;
  EXPECT_NE(r.find(R"("error":{)"), std::string::npos) << r;
  // Context overflow is refused by the router's own checks -> 400 with its message.
  r = RawHttp(http_port_,
              Post("/v1/completions",
                   R"({"model":"http-bytes","prompt":"x","max_tokens":100000000})", kKey));
  EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << r;
  // Token-id prompt + stop_token_ids: equal to gRPC with the same ids and stop ids.
  Client c(dep_->endpoint(), kKey);
  GenerateParams p;
  p.model = "http-bytes";
  p.ids = {72, 101, 108, 108, 111};
  p.max_tokens = 16;
  const auto g = c.Generate(p);
  ASSERT_TRUE(g.status.ok());
  ASSERT_GE(g.ids.size(), 4u);
  r = RawHttp(http_port_,
              Post("/v1/completions",
                   R"({"model":"http-bytes","prompt":[72,101,108,108,111],"max_tokens":16,
                                   "temperature":0,"stop_token_ids":[)" +
                       std::to_string(g.ids[3]) + "]}",
                   kKey));
  ASSERT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
  const Json j = Json::parse(r.substr(r.find("\r\n\r\n") + 4));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  size_t first = 0;
  while (g.ids[first] != g.ids[3]) ++first;
  EXPECT_EQ(j["usage"]["completion_tokens"], static_cast<int>(first + 1));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
}

// A streaming client that goes away: the request is cancelled and decode frees its KV.
TEST_F(OpenAiE2E, DisconnectCancelsAndFreesKv) {
  const std::string daddr = dep_->InstanceAddress(dep_->decode_names()[0]);
  auto before = GetDaemonStats(daddr, true);
  ASSERT_TRUE(before.ok());
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(http_port_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string req = Post(
      "/v1/completions",
      R"({"model":"http-bytes","prompt":"Tell me a long story","max_tokens":500,"ignore_eos":true,"stream":true})",
      kKey);
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) {
    const ssize_t n = read(fd, buf, sizeof buf);
    ASSERT_GT(n, 0) << got;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200")) << got;
  EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  close(fd);
  bool freed = false;
  for (int i = 0; i < 200 && !freed; ++i) {
    auto s = GetDaemonStats(daddr, true);
    ASSERT_TRUE(s.ok());
    freed = s->running == 0 && s->leases == 0 && s->free_blocks == before->free_blocks;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(freed) << "decode still holds the request's KV after the client left";
  std::ifstream log(dep_->LogPath("router"));
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_NE(ss.str().find("HTTP client disconnected; request cancelled"), std::string::npos)
      << "the stream was not cancelled (did it run to completion instead?)";
}

}  // namespace
}  // namespace pd::e2e
