// The router's check of a public pdserve.v1.GenerateRequest: field limits shared with the
// daemons (serving/request_check.h: request_id, sampling, stop_token_ids) and then
// PrepareRequest (model, prompt, tokenization, max_tokens, context). Pure: fuzzed by
// tests/fuzz/fuzz_requests.cc with the same code path RouterImpl::Generate runs.
#pragma once

#include <vector>

#include "common/status.h"
#include "pdserve.pb.h"
#include "router/request_prep.h"

namespace pd::router {

// INVALID_ARGUMENT naming the field for any refusal; otherwise the prepared request.
StatusOr<PreparedRequest> PrepareGenerate(const std::vector<ServedModel>& models,
                                          const ::pdserve::v1::GenerateRequest& req,
                                          int max_tokens_limit);

}  // namespace pd::router
