// A grpc.health.v1.Health/Check client without the generated health stubs (Debian ships neither
// health.proto nor its C++ code): the generic stub carries a hand-encoded HealthCheckRequest
// (field 1: service name) and decodes the HealthCheckResponse (field 1: ServingStatus enum).
// This is the call Kubernetes' native gRPC probes make.
#pragma once

#include <string>

#include "common/status.h"

namespace pd::health {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// Calls Check(service) on addr ("host:port"). The RPC's own error status if it fails (NOT_FOUND
// for a service the server never registered a status for).
StatusOr<ServingStatus> Check(const std::string& addr, const std::string& service,
                              int timeout_ms = 2000);

// Protobuf wire helpers (exposed for the unit test).
std::string EncodeCheckRequest(const std::string& service);
StatusOr<ServingStatus> DecodeCheckResponse(const std::string& bytes);

}  // namespace pd::health
