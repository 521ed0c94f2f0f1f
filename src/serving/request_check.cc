#include "serving/request_check.h"

#include <cmath>

namespace pd::serving {

namespace v1 = ::pdserve::v1;

namespace {

std::string Num(int64_t v) { return std::to_string(v); }

}  // namespace

Status CheckRequestId(std::string_view id, bool may_be_empty) {
  if (id.empty()) {
    return may_be_empty ? OkStatus() : InvalidArgument("request_id is empty");
  }
  if (id.size() > kMaxRequestIdBytes) {
    return InvalidArgument("request_id is " + Num(static_cast<int64_t>(id.size())) +
                           " bytes; the limit is " + Num(kMaxRequestIdBytes));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c > 0x7e) {
      return InvalidArgument("request_id has a non-printable or non-ASCII byte at offset " +
                             Num(static_cast<int64_t>(i)));
    }
  }
  return OkStatus();
}

Status CheckSampling(const v1::SamplingParams& s) {
  if (!std::isfinite(s.temperature()) || s.temperature() > 100.0f) {
    return InvalidArgument("sampling.temperature must be a finite number <= 100, got " +
                           std::to_string(s.temperature()));
  }
  if (!std::isfinite(s.top_p()) || s.top_p() < 0.0f || s.top_p() > 1.0f) {
    return InvalidArgument("sampling.top_p must be in [0, 1], got " + std::to_string(s.top_p()));
  }
  if (s.top_k() < 0) {
    return InvalidArgument("sampling.top_k must be >= 0, got " + Num(s.top_k()));
  }
  return OkStatus();
}

Status CheckStopTokenIds(const google::protobuf::RepeatedField<int32_t>& ids, int vocab_size) {
  if (ids.size() > kMaxStopTokenIds) {
    return InvalidArgument("stop_token_ids has " + Num(ids.size()) + " entries; the limit is " +
                           Num(kMaxStopTokenIds));
  }
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return InvalidArgument("stop_token_ids[" + Num(i) + "] = " + Num(ids[i]) +
                             " is outside the vocabulary [0, " + Num(vocab_size) + ")");
    }
  }
  return OkStatus();
}

Status CheckStopStrings(const std::vector<std::string>& stops) {
  if (stops.size() > static_cast<size_t>(kMaxStopStrings)) {
    return InvalidArgument("stop has " + Num(static_cast<int64_t>(stops.size())) +
                           " sequences; the limit is " + Num(kMaxStopStrings));
  }
  for (size_t i = 0; i < stops.size(); ++i) {
    const std::string f = "stop[" + Num(static_cast<int64_t>(i)) + "]";
    if (stops[i].empty()) return InvalidArgument(f + " is empty");
    if (stops[i].size() > kMaxStopStringBytes) {
      return InvalidArgument(f + " is " + Num(static_cast<int64_t>(stops[i].size())) +
                             " bytes; the limit is " + Num(kMaxStopStringBytes));
    }
    if (FirstInvalidUtf8(stops[i]) >= 0) return InvalidArgument(f + " is not valid UTF-8");
  }
  return OkStatus();
}

Status CheckPromptAndBudget(const google::protobuf::RepeatedField<int32_t>& prompt,
                            int64_t max_tokens, const RequestLimits& l) {
  if (prompt.empty()) return InvalidArgument("prompt is empty");
  for (int i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= l.vocab_size) {
      return InvalidArgument("prompt token id " + Num(prompt[i]) + " at position " + Num(i) +
                             " is outside the vocabulary [0, " + Num(l.vocab_size) + ")");
    }
  }
  const int64_t limit = l.max_tokens_limit > 0 ? l.max_tokens_limit : l.max_model_len;
  if (max_tokens <= 0) return InvalidArgument("max_tokens must be > 0, got " + Num(max_tokens));
  if (max_tokens > limit) {
    return InvalidArgument("max_tokens " + Num(max_tokens) + " is above the limit " + Num(limit));
  }
  if (prompt.size() + max_tokens > l.max_model_len) {
    return InvalidArgument("prompt (" + Num(prompt.size()) + " tokens) + max_tokens (" +
                           Num(max_tokens) + ") exceeds the context of " + Num(l.max_model_len) +
                           " tokens");
  }
  return OkStatus();
}

int64_t FirstInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    int len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);  // continuation byte, overlong lead (c0/c1) or > f4
    }
    if (i + len > n) return static_cast<int64_t>(i);
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

Status ValidateReserveRequest(const v1::ReserveRequest& r, const RequestLimits& l) {
  PD_RETURN_IF_ERROR(CheckRequestId(r.request_id(), false));
  PD_RETURN_IF_ERROR(CheckPromptAndBudget(r.prompt_ids(), r.max_tokens() > 0 ? r.max_tokens() : 1,
                                          l));
  if (r.lease_ms() < 0 || r.lease_ms() > 3600 * 1000) {
    return InvalidArgument("lease_ms must be in [0, 3600000], got " + Num(r.lease_ms()));
  }
  return OkStatus();
}

Status ValidateDecodeRequest(const v1::DecodeRequest& r, const RequestLimits& l) {
  PD_RETURN_IF_ERROR(CheckRequestId(r.request_id(), false));
  PD_RETURN_IF_ERROR(CheckPromptAndBudget(r.prompt_ids(), r.max_tokens(), l));
  PD_RETURN_IF_ERROR(CheckSampling(r.sampling()));
  PD_RETURN_IF_ERROR(CheckStopTokenIds(r.stop_token_ids(), l.vocab_size));
  if (!r.prefill_locally() && r.lease_id() == 0) {
    return InvalidArgument("remote prefill needs a lease_id (call Reserve)");
  }
  if (r.first_token() < -1 || r.first_token() >= l.vocab_size) {
    return InvalidArgument("first_token " + Num(r.first_token()) +
                           " is outside the vocabulary (or -1 = unknown)");
  }
  return OkStatus();
}

Status ValidatePrefillRequest(const v1::PrefillRequest& r, const RequestLimits& l,
                              v1::TransferTarget* target) {
  PD_RETURN_IF_ERROR(CheckRequestId(r.request_id(), false));
  PD_RETURN_IF_ERROR(CheckPromptAndBudget(r.prompt_ids(), 1, l));
  PD_RETURN_IF_ERROR(CheckSampling(r.sampling()));
  if (!target->ParseFromString(r.target())) {
    return InvalidArgument("target is not a serialized TransferTarget");
  }
  if (target->compat_hash() == 0) return InvalidArgument("target has no compat hash");
  const int64_t nblocks = (r.prompt_ids_size() + int64_t{l.block_size} - 1) / l.block_size;
  if (target->block_size() != l.block_size || target->block_ids_size() != nblocks) {
    return InvalidArgument("target has " + Num(target->block_ids_size()) + " blocks of " +
                           Num(target->block_size()) + " tokens; the " +
                           Num(r.prompt_ids_size()) + "-token prompt needs " + Num(nblocks) +
                           " of " + Num(l.block_size));
  }
  if (target->num_blocks() <= 0) return InvalidArgument("target has no num_blocks");
  for (int i = 0; i < target->block_ids_size(); ++i) {
    if (target->block_ids(i) < 0 || target->block_ids(i) >= target->num_blocks()) {
      return InvalidArgument("target block_ids[" + Num(i) + "] = " + Num(target->block_ids(i)) +
                             " is outside the decode pool [0, " + Num(target->num_blocks()) +
                             ")");
    }
  }
  if (target->cached_tokens() < 0 || target->cached_tokens() > r.prompt_ids_size() ||
      target->cached_tokens() % l.block_size != 0) {
    return InvalidArgument("target cached_tokens " + Num(target->cached_tokens()) +
                           " is not a block multiple within the prompt");
  }
  return OkStatus();
}

}  // namespace pd::serving
