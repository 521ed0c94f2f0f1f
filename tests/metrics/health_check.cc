#include "health_check.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <vector>

namespace pd::health {

std::string EncodeCheckRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;  // proto3: the default value is not on the wire
  out.push_back(0x0a);              // field 1, length-delimited
  size_t n = service.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + service;
}

StatusOr<ServingStatus> DecodeCheckResponse(const std::string& bytes) {
  int status = 0;  // absent field = UNKNOWN
  size_t i = 0;
  while (i < bytes.size()) {
    const uint8_t tag = static_cast<uint8_t>(bytes[i++]);
    if (tag != 0x08) return InvalidArgument("unexpected field tag in HealthCheckResponse");
    uint64_t v = 0;
    for (int shift = 0; i < bytes.size(); shift += 7) {
      const uint8_t b = static_cast<uint8_t>(bytes[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    status = static_cast<int>(v);
  }
  if (status < 0 || status > 3) return InvalidArgument("ServingStatus out of range");
  return static_cast<ServingStatus>(status);
}

StatusOr<ServingStatus> Check(const std::string& addr, const std::string& service,
                              int timeout_ms) {
  auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  const std::string req = EncodeCheckRequest(service);
  grpc::Slice slice(req);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::Status st;
  call->Finish(&response, &st, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) return Internal("health check: completion queue failed");
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!st.ok()) return Status(static_cast<StatusCode>(st.error_code()), st.error_message());
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return Internal("health check: unreadable response");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return DecodeCheckResponse(bytes);
}

}  // namespace pd::health
