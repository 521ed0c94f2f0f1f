// Chat prompts for /v1/chat/completions: the model's chat template (tokenizer_config.json
// `chat_template`, evaluated by the Jinja subset in jinja.h) or, when the model has none or it
// uses constructs outside the subset, the documented plain fallback (docs/http-api.md):
//   "<role>: <content>\n" per message, then "assistant:" when add_generation_prompt.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "router/http/jinja.h"

namespace pd::http {

using Json = jinja::Json;

class ChatTemplate {
 public:
  // From DIR/tokenizer_config.json: `chat_template` (a string, or a list of {name, template}
  // where "default" is taken), `bos_token` / `eos_token` (string or {"content": ...}).
  // NOT_FOUND when the file or the field is absent; UNIMPLEMENTED / INVALID_ARGUMENT when the
  // template cannot be parsed by the subset.
  static StatusOr<ChatTemplate> FromModelDir(const std::string& dir);
  // From a template source and the special token strings.
  static StatusOr<ChatTemplate> FromSource(const std::string& source, std::string bos_token,
                                           std::string eos_token);

  // Renders `messages` (a JSON array of {role, content, ...}) with add_generation_prompt, the
  // bos/eos tokens and the fields of `extra` (e.g. tools) as variables. FAILED_PRECONDITION when
  // the template raises (e.g. roles out of order): a client error.
  StatusOr<std::string> Render(const Json& messages, bool add_generation_prompt,
                               const Json& extra = Json::object()) const;

 private:
  ChatTemplate(jinja::Template t, std::string bos, std::string eos)
      : tmpl_(std::move(t)), bos_(std::move(bos)), eos_(std::move(eos)) {}
  jinja::Template tmpl_;
  std::string bos_, eos_;
};

// The plain fallback format (see above). Message content must be a string.
std::string RenderPlainChat(const Json& messages, bool add_generation_prompt);

}  // namespace pd::http
