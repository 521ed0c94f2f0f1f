// The harness parts that speak the internal and public protos directly.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "e2e_harness.h"
#include "pdserve.grpc.pb.h"

namespace pd::e2e {

namespace v1 = ::pdserve::v1;

namespace {
Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return OkStatus();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}
}  // namespace

StatusOr<DaemonStats> GetDaemonStats(const std::string& addr, bool is_decode) {
  auto ch = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::StatsRequest req;
  v1::StatsResponse resp;
  grpc::Status s = is_decode ? v1::DecodeService::NewStub(ch)->Stats(&ctx, req, &resp)
                             : v1::PrefillService::NewStub(ch)->Stats(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  DaemonStats d;
  d.total_blocks = resp.total_blocks();
  d.free_blocks = resp.free_blocks();
  d.waiting = resp.waiting();
  d.running = resp.running();
  d.steps = resp.steps();
  d.awaiting_kv = resp.awaiting_kv();
  d.leases = resp.leases();
  return d;
}

Status SendMalformedGenerate(const std::string& endpoint) {
  auto ch = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // Field 1 (request_id, a string) announced with 200 bytes that are not there: unparseable.
  const char bad[] = {0x0a, static_cast<char>(0xc8), 0x01, 'x'};
  grpc::Slice slice(bad, sizeof bad);
  grpc::ByteBuffer req(&slice, 1);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&ctx, "/pdserve.v1.Inference/Generate", &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  call->Write(req, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer resp;
  call->Read(&resp, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  grpc::Status st;
  call->Finish(&st, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return st.ok() ? OkStatus() : FromGrpc(st);
}

}  // namespace pd::e2e
