#include "router/request_prep.h"

#include <filesystem>

#include "kvcache/block_manager.h"

namespace pd::router {

StatusOr<ServedModel> LoadServedModel(const InstanceConfig& instance) {
  ServedModel m;
  m.name = instance.model_name;
  m.dir = instance.model;
  PD_ASSIGN_OR_RETURN(m.config, LoadModelConfig(instance.model));
  const std::string tok = instance.model + "/tokenizer.json";
  if (std::filesystem::exists(tok)) {
    PD_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> t, Tokenizer::FromFile(tok));
    m.tokenizer = std::move(t);
  }
  m.block_size = instance.kv.block_size;
  m.max_model_len =
      instance.max_model_len > 0 ? instance.max_model_len : m.config.max_position_embeddings;
  return m;
}

StatusOr<PreparedRequest> PrepareRequest(const std::vector<ServedModel>& models,
                                         const PromptInput& in, int max_tokens_limit) {
  PreparedRequest r;
  if (models.empty()) return Unavailable("no model is served");
  if (in.model.empty()) {
    r.model = &models.front();
  } else {
    std::string names;
    for (const ServedModel& m : models) {
      if (m.name == in.model) r.model = &m;
      names += (names.empty() ? "" : ", ") + m.name;
    }
    if (!r.model)
      return InvalidArgument("unknown model '" + in.model + "' (served: " + names + ")");
  }
  const ServedModel& m = *r.model;
  if (in.is_text) {
    if (in.text.empty()) return InvalidArgument("prompt is empty");
    if (!m.tokenizer) {
      return InvalidArgument("model '" + m.name + "' has no tokenizer.json; send token ids");
    }
    // Tokenizing costs time linear in the text: refuse text that cannot be a prompt first.
    const int64_t max_bytes = int64_t{m.max_model_len} * kMaxTextBytesPerToken;
    if (static_cast<int64_t>(in.text.size()) > max_bytes) {
      return InvalidArgument("prompt text is " + std::to_string(in.text.size()) +
                             " bytes; the limit is " + std::to_string(max_bytes) + " (" +
                             std::to_string(kMaxTextBytesPerToken) + " bytes per context token)");
    }
    auto ids = m.tokenizer->Encode(in.text, /*add_special_tokens=*/true);
    if (!ids.ok()) return InvalidArgument("prompt text: " + ids.status().message());
    r.ids = std::move(ids).value();
    if (r.ids.empty()) return InvalidArgument("prompt is empty after tokenization");
  } else {
    if (in.ids.empty()) return InvalidArgument("prompt is empty");
    const int vocab = m.config.vocab_size;
    for (size_t i = 0; i < in.ids.size(); ++i) {
      if (in.ids[i] < 0 || in.ids[i] >= vocab) {
        return InvalidArgument("prompt token id " + std::to_string(in.ids[i]) + " at position " +
                               std::to_string(i) + " is outside the vocabulary [0, " +
                               std::to_string(vocab) + ")");
      }
    }
    r.ids = in.ids;
  }
  if (in.max_tokens <= 0) {
    return InvalidArgument("max_tokens must be > 0, got " + std::to_string(in.max_tokens));
  }
  if (in.max_tokens > max_tokens_limit) {
    return InvalidArgument("max_tokens " + std::to_string(in.max_tokens) + " is above the limit " +
                           std::to_string(max_tokens_limit));
  }
  const int64_t need = static_cast<int64_t>(r.ids.size()) + in.max_tokens;
  if (need > m.max_model_len) {
    return InvalidArgument("prompt (" + std::to_string(r.ids.size()) + " tokens) + max_tokens (" +
                           std::to_string(in.max_tokens) + ") exceeds the context of " +
                           std::to_string(m.max_model_len) + " tokens");
  }
  r.max_tokens = in.max_tokens;
  r.chain = PrefixBlockHashes(r.ids.data(), r.ids.size(), m.block_size);
  return r;
}

}  // namespace pd::router
