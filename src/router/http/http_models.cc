// LoadHttpModels (openai_server.h): the served models as the HTTP layer sees them.
#include "common/logging.h"
#include "router/http/chat_template.h"
#include "router/http/openai_server.h"
#include "router/request_prep.h"

namespace pd::http {

StatusOr<std::vector<HttpModel>> LoadHttpModels(const DeployConfig& cfg) {
  std::vector<HttpModel> out;
  for (const InstanceConfig& inst : cfg.decode) {
    bool seen = false;
    for (const HttpModel& m : out) seen |= m.name == inst.model_name;
    if (seen) continue;
    PD_ASSIGN_OR_RETURN(router::ServedModel sm, router::LoadServedModel(inst));
    HttpModel m;
    m.name = sm.name;
    m.tokenizer = sm.tokenizer;
    m.max_model_len = sm.max_model_len;
    StatusOr<ChatTemplate> t = ChatTemplate::FromModelDir(inst.model);
    if (t.ok()) {
      m.chat = std::make_shared<const ChatTemplate>(std::move(t).value());
    } else {
      m.chat_note = t.status().message();
      if (t.status().code() != StatusCode::kNotFound) {
        PD_LOG_WARN("{}: chat template not usable ({}); /v1/chat/completions uses the plain format",
                    m.name, m.chat_note);
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace pd::http
