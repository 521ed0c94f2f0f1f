// Internal gRPC mutual TLS (common/grpc_tls.h) against a real gRPC server on loopback: a client
// with a certificate of the deployment's CA gets through; no certificate, a certificate of
// another CA, plaintext, and a server of another CA are all refused. Certificates come from
// scripts/gen-test-ca.sh at test time.
#include "common/grpc_tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "pdserve.grpc.pb.h"
#include "tls_test_util.h"

namespace pd {
namespace {

namespace v1 = ::pdserve::v1;

class StatsOnly final : public v1::DecodeService::Service {
  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*,
                     v1::StatsResponse* r) override {
    r->set_role("decode");
    return grpc::Status::OK;
  }
};

TlsConfig Side(const std::string& dir, const std::string& who) {
  TlsConfig t;
  t.ca = dir + "/ca.pem";
  t.cert = dir + "/" + who + ".pem";
  t.key = dir + "/" + who + "-key.pem";
  return t;
}

class GrpcTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = testing::MakeTestCa("a");
    other_ = testing::MakeTestCa("b");
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(ca_);
    std::filesystem::remove_all(other_);
  }
  void SetUp() override { ASSERT_FALSE(ca_.empty() || other_.empty()) << "gen-test-ca.sh failed"; }

  // Starts a server with `tls` on a free loopback port.
  void Serve(const TlsConfig& tls) {
    auto creds = InternalServerCredentials(tls, "decode-0.tls");
    ASSERT_TRUE(creds.ok()) << creds.status().ToString();
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", *creds, &port_);
    b.RegisterService(&svc_);
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_ && port_ > 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }
  grpc::Status Call(const std::shared_ptr<grpc::ChannelCredentials>& creds,
                    const grpc::ChannelArguments& args = {}) {
    auto ch = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), creds, args);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::StatsResponse resp;
    return v1::DecodeService::NewStub(ch)->Stats(&ctx, v1::StatsRequest(), &resp);
  }
  grpc::Status CallWith(const TlsConfig& tls) {
    grpc::ChannelArguments args;
    auto creds = InternalChannelCredentials(tls, "router.internal_tls", &args);
    EXPECT_TRUE(creds.ok()) << creds.status().ToString();
    return Call(*creds, args);
  }

  static std::string ca_, other_;
  StatsOnly svc_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};
std::string GrpcTls::ca_, GrpcTls::other_;

TEST_F(GrpcTls, ClientWithCertOfTheSameCaIsAccepted) {
  Serve(Side(ca_, "server"));
  const grpc::Status s = CallWith(Side(ca_, "client"));
  EXPECT_TRUE(s.ok()) << s.error_message();
  TlsConfig named = Side(ca_, "client");
  named.server_name = "localhost";  // SAN DNS:localhost also matches
  EXPECT_TRUE(CallWith(named).ok());
}

TEST_F(GrpcTls, ClientWithoutCertIsRejected) {
  Serve(Side(ca_, "server"));
  grpc::SslCredentialsOptions o;
  std::ifstream f(ca_ + "/ca.pem");
  o.pem_root_certs.assign(std::istreambuf_iterator<char>(f), {});
  const grpc::Status s = Call(grpc::SslCredentials(o));  // trusts the server, presents nothing
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(GrpcTls, ClientWithCertOfAnotherCaIsRejected) {
  Serve(Side(ca_, "server"));
  TlsConfig stranger = Side(other_, "client");
  stranger.ca = ca_ + "/ca.pem";  // trusts the real server, but its own cert is from CA b
  const grpc::Status s = CallWith(stranger);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(GrpcTls, PlaintextClientIsRejected) {
  Serve(Side(ca_, "server"));
  const grpc::Status s = Call(grpc::InsecureChannelCredentials());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(GrpcTls, ServerOfAnotherCaIsRejectedByTheClient) {
  Serve(Side(other_, "server"));
  TlsConfig t = Side(other_, "client");  // a valid client cert for that server...
  t.ca = ca_ + "/ca.pem";                // ...but the router trusts only CA a
  const grpc::Status s = CallWith(t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(GrpcTls, WrongServerNameIsRejected) {
  Serve(Side(ca_, "server"));
  TlsConfig t = Side(ca_, "client");
  t.server_name = "not-in-the-san.example";
  const grpc::Status s = CallWith(t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(GrpcTls, PlaintextWhenNotConfigured) {
  Serve(TlsConfig());
  EXPECT_TRUE(Call(grpc::InsecureChannelCredentials()).ok());
  EXPECT_TRUE(CallWith(TlsConfig()).ok());
}

TEST(GrpcTlsFiles, BadFilesAreNamedNotEchoed) {
  const std::string dir = testing::MakeTestCa("files");
  ASSERT_FALSE(dir.empty());
  TlsConfig t = Side(dir, "server");
  t.key = dir + "/missing-key.pem";
  auto a = InternalServerCredentials(t, "decode-0.tls");
  EXPECT_EQ(a.status().code(), StatusCode::kNotFound);
  EXPECT_NE(a.status().message().find("decode-0.tls.key"), std::string::npos);
  t = Side(dir, "server");
  t.key = dir + "/server.pem";  // a certificate where the key should be
  auto b = InternalChannelCredentials(t, "router.internal_tls", nullptr);
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("router.internal_tls.key"), std::string::npos);
  EXPECT_EQ(b.status().message().find("BEGIN"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pd
