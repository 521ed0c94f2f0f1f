// Field checks of the pdserve.v1 requests that arrive over gRPC, shared by the router (public
// GenerateRequest) and the daemons (Reserve/Decode/Prefill). Pure functions of the message and
// the receiver's limits: no I/O, no engine state; fuzzed by tests/fuzz/fuzz_requests.cc.
// Every refusal is INVALID_ARGUMENT with a message naming the field and the limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "pdserve.pb.h"

namespace pd::serving {

// Hostile-input limits (see docs/reliability.md "Hostile input").
inline constexpr size_t kMaxRequestIdBytes = 256;   // request_id
inline constexpr int kMaxStopTokenIds = 256;        // stop_token_ids entries
inline constexpr int kMaxStopStrings = 16;          // stop sequences (HTTP API)
inline constexpr size_t kMaxStopStringBytes = 256;  // bytes of one stop sequence
inline constexpr size_t kMaxModelNameBytes = 256;   // model

// What the receiver serves: the model's vocabulary and context, and the KV block size.
struct RequestLimits {
  int vocab_size = 0;
  int max_model_len = 0;   // prompt + output tokens
  int max_tokens_limit = 0;  // 0 = max_model_len
  int block_size = 16;
};

// request_id: printable ASCII, at most kMaxRequestIdBytes; empty allowed only if `may_be_empty`.
Status CheckRequestId(std::string_view id, bool may_be_empty);
// temperature finite and <= 100 (<= 0 = greedy), top_p in [0, 1], top_k >= 0; NaN/Inf refused.
Status CheckSampling(const ::pdserve::v1::SamplingParams& s);
// At most kMaxStopTokenIds entries, each in [0, vocab).
Status CheckStopTokenIds(const google::protobuf::RepeatedField<int32_t>& ids, int vocab_size);
// Stop sequences (HTTP API): at most kMaxStopStrings, each 1..kMaxStopStringBytes of valid UTF-8.
Status CheckStopStrings(const std::vector<std::string>& stops);
// Prompt ids: non-empty, each in [0, vocab), and prompt + max_tokens within max_model_len;
// max_tokens in [1, limit].
Status CheckPromptAndBudget(const google::protobuf::RepeatedField<int32_t>& prompt,
                            int64_t max_tokens, const RequestLimits& l);
// Index of the first byte that is not part of well-formed UTF-8 (no overlongs, surrogates or
// code points above U+10FFFF), or -1 when `s` is valid.
int64_t FirstInvalidUtf8(std::string_view s);

// Internal requests as pd-decode / pd-prefill receive them.
Status ValidateReserveRequest(const ::pdserve::v1::ReserveRequest& r, const RequestLimits& l);
Status ValidateDecodeRequest(const ::pdserve::v1::DecodeRequest& r, const RequestLimits& l);
// Also parses r.target() into *target and checks it covers the prompt with l.block_size blocks.
Status ValidatePrefillRequest(const ::pdserve::v1::PrefillRequest& r, const RequestLimits& l,
                              ::pdserve::v1::TransferTarget* target);

}  // namespace pd::serving
