// Access control and hostile input end to end (label e2e): a pd-up deployment (real pd-router,
// pd-prefill, pd-decode, CPU backend, tiny model) whose internal gRPC runs over mutual TLS with
// certificates made by scripts/gen-test-ca.sh at test time, and whose router requires API keys
// from a key file.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "e2e_harness.h"
#include "pdserve.grpc.pb.h"
#include "tls_test_util.h"
#include "tools/grpc_util.h"

namespace pd::e2e {
namespace {

namespace v1 = ::pdserve::v1;
using client::Client;
using client::GenerateParams;

constexpr char kKey[] = "sk-test-7f3a9c0e5b2d4e6f8a1b";
constexpr char kOtherKey[] = "sk-test-other-key-0000000000";

std::string Tls(const std::string& dir, const std::string& who) {
  return "{ca: " + dir + "/ca.pem, cert: " + dir + "/" + who + ".pem, key: " + dir + "/" + who +
         "-key.pem}";
}

// One deployment for the whole suite (starting one costs seconds).
class SecurityE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = testing::MakeTestCa("e2e");
    other_ = testing::MakeTestCa("e2e-other");
    if (ca_.empty() || other_.empty()) return;
    key_file_ = ca_ + "/api-keys";
    std::ofstream(key_file_) << "# test keys\n" << kKey << "\n" << kOtherKey << "\n";
    DeploySpec spec;
    spec.num_prefill = 1;
    spec.num_decode = 1;
    spec.disagg_threshold = 0;  // every prompt goes through P: both internal channels are used
    spec.extra_defaults = "  tls: " + Tls(ca_, "server") + "\n";
    spec.extra_router = "  api_key_file: " + key_file_ + "\n  internal_tls: " +
                        Tls(ca_, "client") + "\n  max_request_bytes: 1048576\n";
    auto dep = Deployment::Start(spec);
    if (!dep.ok()) {
      start_error_ = dep.status().ToString();
      return;
    }
    dep_ = std::move(dep).value().release();
  }
  static void TearDownTestSuite() {
    delete dep_;
    dep_ = nullptr;
    std::filesystem::remove_all(ca_);
    std::filesystem::remove_all(other_);
  }
  void SetUp() override {
    ASSERT_FALSE(ca_.empty() || other_.empty()) << "gen-test-ca.sh failed";
    ASSERT_NE(dep_, nullptr) << start_error_;
  }

  static GenerateParams Params(std::vector<int32_t> ids, int max_tokens) {
    GenerateParams p;
    p.ids = std::move(ids);
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    return p;
  }

  // Generate with a raw (possibly unparseable) message body.
  static grpc::Status RawGenerate(const std::string& body, const std::string& key) {
    auto ch = grpc::CreateChannel(dep_->endpoint(), grpc::InsecureChannelCredentials());
    grpc::GenericStub stub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
    grpc::Slice slice(body.data(), body.size());
    grpc::ByteBuffer req(&slice, 1);
    grpc::CompletionQueue cq;
    auto call = stub.PrepareCall(&ctx, "/pdserve.v1.Inference/Generate", &cq);
    call->StartCall(reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    cq.Next(&tag, &ok);
    call->Write(req, grpc::WriteOptions().set_last_message(), reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);
    grpc::ByteBuffer resp;
    grpc::Status st;
    bool done = false;
    while (!done) {  // read until the stream ends, then take the status
      call->Read(&resp, reinterpret_cast<void*>(3));
      cq.Next(&tag, &ok);
      done = !ok;
    }
    call->Finish(&st, reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
    return st;
  }

  // Stats on a daemon's internal port with the given channel credentials.
  static grpc::Status DaemonStats(const std::string& name,
                                  const std::shared_ptr<grpc::ChannelCredentials>& creds) {
    auto ch = grpc::CreateChannel(dep_->InstanceAddress(name), creds);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::StatsResponse resp;
    if (name.rfind("decode", 0) == 0) {
      return v1::DecodeService::NewStub(ch)->Stats(&ctx, v1::StatsRequest(), &resp);
    }
    return v1::PrefillService::NewStub(ch)->Stats(&ctx, v1::StatsRequest(), &resp);
  }

  static std::shared_ptr<grpc::ChannelCredentials> Ssl(const std::string& ca_dir,
                                                       const std::string& cert_dir) {
    auto read = [](const std::string& p) {
      std::ifstream f(p);
      return std::string(std::istreambuf_iterator<char>(f), {});
    };
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = read(ca_dir + "/ca.pem");
    if (!cert_dir.empty()) {
      o.pem_cert_chain = read(cert_dir + "/client.pem");
      o.pem_private_key = read(cert_dir + "/client-key.pem");
    }
    return grpc::SslCredentials(o);
  }

  static std::string ca_, other_, key_file_, start_error_;
  static Deployment* dep_;
};
std::string SecurityE2E::ca_, SecurityE2E::other_, SecurityE2E::key_file_,
    SecurityE2E::start_error_;
Deployment* SecurityE2E::dep_ = nullptr;

TEST_F(SecurityE2E, RightKeyGeneratesTheReferenceOverMutualTls) {
  const std::vector<int32_t> prompt = {5, 17, 300, 42, 7, 99, 1000, 3, 8, 64, 65, 66, 67, 68,
                                       69, 70, 71, 72, 73, 74};
  auto ref = ReferenceGenerate(TinyModelDir(), prompt, 8);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  for (const char* key : {kKey, kOtherKey}) {
    Client c(dep_->endpoint(), key);
    const auto r = c.Generate(Params(prompt, 8), {}, 60000);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.ids, *ref);
    auto models = c.ListModels();
    EXPECT_TRUE(models.ok() && !models->empty()) << models.status().ToString();
  }
}

TEST_F(SecurityE2E, MissingOrWrongKeyIsUnauthenticated) {
  ::unsetenv("PD_API_KEY");
  Client none(dep_->endpoint());
  auto r = none.Generate(Params({1, 2, 3}, 4), {}, 10000);
  EXPECT_EQ(r.status.code(), StatusCode::kUnauthenticated) << r.status.ToString();
  EXPECT_NE(r.status.message().find("missing API key"), std::string::npos);
  EXPECT_TRUE(r.ids.empty());
  EXPECT_EQ(none.ListModels().status().code(), StatusCode::kUnauthenticated);

  Client wrong(dep_->endpoint(), "sk-test-wrong");
  r = wrong.Generate(Params({1, 2, 3}, 4), {}, 10000);
  EXPECT_EQ(r.status.code(), StatusCode::kUnauthenticated) << r.status.ToString();
  EXPECT_EQ(r.status.message(), "invalid API key");
  // A prefix of a valid key is not a key.
  Client prefix(dep_->endpoint(), std::string(kKey).substr(0, 10));
  EXPECT_EQ(prefix.Generate(Params({1, 2, 3}, 4), {}, 10000).status.code(),
            StatusCode::kUnauthenticated);
  // Health stays open (probes carry no key).
  auto h = none.Health(5000);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  // The environment variable is the tools' way to send the key.
  ::setenv("PD_API_KEY", kKey, 1);
  Client env(dep_->endpoint());
  EXPECT_TRUE(env.Generate(Params({1, 2, 3}, 2), {}, 60000).status.ok());
  ::unsetenv("PD_API_KEY");
}

TEST_F(SecurityE2E, KeysNeverReachTheLogs) {
  Client wrong(dep_->endpoint(), "sk-test-wrong-should-not-be-logged");
  (void)wrong.Generate(Params({1, 2, 3}, 2), {}, 10000);
  std::ifstream f(dep_->LogPath("router"));
  ASSERT_TRUE(f.good()) << dep_->LogPath("router");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string log = ss.str();
  EXPECT_NE(log.find("API keys required"), std::string::npos);
  for (const char* k : {kKey, kOtherKey, "sk-test-wrong-should-not-be-logged"}) {
    EXPECT_EQ(log.find(k), std::string::npos) << "key in the router log";
  }
}

TEST_F(SecurityE2E, DaemonsRejectClientsWithoutTheDeploymentsCertificate) {
  for (const std::string& name : {std::string("decode-0"), std::string("prefill-0")}) {
    // The router's certificate (same CA) gets in.
    grpc::Status s = DaemonStats(name, Ssl(ca_, ca_));
    EXPECT_TRUE(s.ok()) << name << ": " << s.error_message();
    // Plaintext, TLS without a client certificate, and a certificate of another CA: refused.
    s = DaemonStats(name, grpc::InsecureChannelCredentials());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << name;
    s = DaemonStats(name, Ssl(ca_, ""));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << name;
    s = DaemonStats(name, Ssl(ca_, other_));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << name;
  }
}

TEST_F(SecurityE2E, HostileRequestsGetClearErrorsAndTheRouterKeepsServing) {
  Client c(dep_->endpoint(), kKey);
  auto expect = [&](const GenerateParams& p, StatusCode code, const std::string& needle) {
    const auto r = c.Generate(p, {}, 20000);
    EXPECT_EQ(r.status.code(), code) << needle << ": " << r.status.ToString();
    EXPECT_NE(r.status.message().find(needle), std::string::npos) << r.status.message();
  };
  expect(Params({1, 2, 3}, 1 << 30), StatusCode::kInvalidArgument, "above the limit");
  expect(Params(std::vector<int32_t>(4095, 5), 8), StatusCode::kInvalidArgument,
         "exceeds the context of 4096 tokens");  // tiny model: 4096 positions
  expect(Params({1, 2, 1 << 20}, 4), StatusCode::kInvalidArgument, "outside the vocabulary");
  GenerateParams nan = Params({1, 2, 3}, 4);
  nan.temperature = std::nan("");
  expect(nan, StatusCode::kInvalidArgument, "sampling.temperature");

  // Messages built by hand (the client library would not send them).
  v1::GenerateRequest flood;
  for (int i = 0; i < 10; ++i) flood.mutable_token_ids()->add_ids(i + 1);
  flood.set_max_tokens(4);
  for (int i = 0; i < 5000; ++i) flood.add_stop_token_ids(7);
  grpc::Status s = RawGenerate(flood.SerializeAsString(), kKey);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("stop_token_ids has 5000 entries"), std::string::npos);

  // Over router.max_request_bytes (1 MiB here): refused by gRPC before parsing.
  v1::GenerateRequest big;
  big.set_text(std::string(2 << 20, 'a'));
  big.set_max_tokens(4);
  s = RawGenerate(big.SerializeAsString(), kKey);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // Invalid UTF-8 in the (proto3 string) text field: the message does not parse.
  std::string bad = "\x1a\x04" "ab\xff\xfe" "\x28\x04";  // text = "ab\xff\xfe", max_tokens = 4
  // gRPC answers a request it cannot parse with INTERNAL before any handler runs (documented in
  // docs/reliability.md; the OpenAI HTTP API gives 400).
  s = RawGenerate(bad, kKey);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL) << s.error_message();
  // Unauthenticated garbage is refused as unauthenticated, whatever the body.
  s = RawGenerate(bad, "");
  EXPECT_FALSE(s.ok());

  // After all of that the deployment still serves correct output.
  const std::vector<int32_t> prompt = {9, 8, 7, 6, 5};
  auto ref = ReferenceGenerate(TinyModelDir(), prompt, 6);
  ASSERT_TRUE(ref.ok());
  const auto r = c.Generate(Params(prompt, 6), {}, 60000);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.ids, *ref);
}

}  // namespace
}  // namespace pd::e2e
