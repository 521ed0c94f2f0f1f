#include "router/http/chat_template.h"

#include <fstream>
#include <sstream>

namespace pd::http {
namespace {

std::string TokenString(const Json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::FromSource(const std::string& source, std::string bos_token,
                                                std::string eos_token) {
  PD_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::Parse(source));
  return ChatTemplate(std::move(t), std::move(bos_token), std::move(eos_token));
}

StatusOr<ChatTemplate> ChatTemplate::FromModelDir(const std::string& dir) {
  const std::string path = dir + "/tokenizer_config.json";
  std::ifstream f(path);
  if (!f) return NotFound(path + " not found");
  std::stringstream ss;
  ss << f.rdbuf();
  Json cfg = Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object()) return InvalidArgument(path + ": not a JSON object");
  auto it = cfg.find("chat_template");
  std::string source;
  if (it != cfg.end() && it->is_string()) {
    source = it->get<std::string>();
  } else if (it != cfg.end() && it->is_array()) {
    for (const Json& e : *it) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string()) {
        source = e["template"].get<std::string>();
      }
    }
  }
  if (source.empty()) return NotFound(path + " has no chat_template");
  auto t = FromSource(source, TokenString(cfg, "bos_token"), TokenString(cfg, "eos_token"));
  if (!t.ok()) return t.status().WithContext(path);
  return t;
}

StatusOr<std::string> ChatTemplate::Render(const Json& messages, bool add_generation_prompt,
                                           const Json& extra) const {
  Json ctx = extra.is_object() ? extra : Json::object();
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = bos_;
  ctx["eos_token"] = eos_;
  return tmpl_.Render(ctx);
}

std::string RenderPlainChat(const Json& messages, bool add_generation_prompt) {
  std::string out;
  for (const Json& m : messages) {
    out += m.value("role", "user") + ": ";
    if (m.contains("content") && m["content"].is_string()) out += m["content"].get<std::string>();
    out += "\n";
  }
  if (add_generation_prompt) out += "assistant:";
  return out;
}

}  // namespace pd::http
