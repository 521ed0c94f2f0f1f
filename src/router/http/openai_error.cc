#include "router/http/openai_error.h"

#include <nlohmann/json.hpp>

namespace pd::http {

HttpError ErrorFromStatus(const Status& s, int retry_after_ms, const std::string& param) {
  HttpError e;
  e.message = s.message();
  e.param = param;
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kFailedPrecondition:
      e.status = 400;
      e.type = "invalid_request_error";
      break;
    case StatusCode::kUnauthenticated:
      e.status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case StatusCode::kPermissionDenied:
      e.status = 403;
      e.type = "permission_error";
      break;
    case StatusCode::kNotFound:
      e.status = 404;
      e.type = "invalid_request_error";
      e.code = param == "model" ? "model_not_found" : "not_found";
      break;
    case StatusCode::kResourceExhausted:
      e.status = 429;
      e.type = "rate_limit_error";
      e.code = "overloaded";
      e.retry_after_s = std::max(1, (retry_after_ms + 999) / 1000);
      break;
    case StatusCode::kUnimplemented:
      e.status = 501;
      e.type = "invalid_request_error";
      e.code = "unsupported";
      break;
    case StatusCode::kUnavailable:
      e.status = 503;
      e.type = "service_unavailable";
      break;
    case StatusCode::kDeadlineExceeded:
      e.status = 504;
      e.type = "timeout";
      break;
    default:
      e.status = 500;
      e.type = "internal_error";
  }
  return e;
}

std::string ErrorBody(const HttpError& e) {
  nlohmann::ordered_json j;
  j["error"]["message"] = e.message;
  j["error"]["type"] = e.type;
  j["error"]["param"] =
      e.param.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.param);
  j["error"]["code"] = e.code.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.code);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace pd::http
