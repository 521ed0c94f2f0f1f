// OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} with the HTTP status,
// mapped from pd::Status (= gRPC) codes in one place (ErrorFromStatus).
#pragma once

#include <string>

#include "common/status.h"

namespace pd::http {

struct HttpError {
  int status = 500;
  std::string type;  // invalid_request_error, authentication_error, ...
  std::string message;
  std::string param;      // "" -> null
  std::string code;       // "" -> null
  int retry_after_s = 0;  // > 0: send a Retry-After header (429, 503)
};

// INVALID_ARGUMENT/OUT_OF_RANGE/FAILED_PRECONDITION -> 400, UNAUTHENTICATED -> 401,
// PERMISSION_DENIED -> 403, NOT_FOUND -> 404, RESOURCE_EXHAUSTED -> 429 with Retry-After
// (retry_after_ms rounded up to seconds, at least 1), UNIMPLEMENTED -> 501,
// UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504, anything else -> 500.
HttpError ErrorFromStatus(const Status& s, int retry_after_ms, const std::string& param = "");

// The JSON body of an error.
std::string ErrorBody(const HttpError& e);

}  // namespace pd::http
