#include "router/generate_check.h"

#include "serving/request_check.h"

namespace pd::router {

StatusOr<PreparedRequest> PrepareGenerate(const std::vector<ServedModel>& models,
                                          const ::pdserve::v1::GenerateRequest& req,
                                          int max_tokens_limit) {
  PD_RETURN_IF_ERROR(serving::CheckRequestId(req.request_id(), /*may_be_empty=*/true));
  if (req.model().size() > serving::kMaxModelNameBytes) {
    return InvalidArgument("model name is " + std::to_string(req.model().size()) +
                           " bytes; the limit is " + std::to_string(serving::kMaxModelNameBytes));
  }
  PD_RETURN_IF_ERROR(serving::CheckSampling(req.sampling()));
  PromptInput in;
  in.model = req.model();
  in.is_text = req.has_text() || !req.has_token_ids();
  in.text = req.text();
  in.ids.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
  in.max_tokens = req.max_tokens();
  PD_ASSIGN_OR_RETURN(PreparedRequest p, PrepareRequest(models, in, max_tokens_limit));
  PD_RETURN_IF_ERROR(serving::CheckStopTokenIds(req.stop_token_ids(), p.model->config.vocab_size));
  return p;
}

}  // namespace pd::router
