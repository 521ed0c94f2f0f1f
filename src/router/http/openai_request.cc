#include "router/http/openai_request.h"

#include <cmath>
#include <limits>

namespace pd::http {
namespace {

// Accumulates the first error with its parameter name.
struct Checker {
  std::string* param;
  Status Bad(const std::string& name, const std::string& what) {
    *param = name;
    return InvalidArgument("'" + name + "' " + what);
  }
};

bool IsInt(const Json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

Status ReadNumber(Checker& c, const Json& body, const char* name, double lo, double hi,
                  double* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return OkStatus();
  if (!it->is_number()) return c.Bad(name, "must be a number");
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return c.Bad(name, "must be between " + Json(lo).dump() + " and " + Json(hi).dump());
  }
  *out = v;
  return OkStatus();
}

Status ReadIds(Checker& c, const Json& v, const char* name, std::vector<int32_t>* out) {
  for (const Json& x : v) {
    if (!IsInt(x) || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX) {
      return c.Bad(name, "must be a list of non-negative integer token ids");
    }
    out->push_back(static_cast<int32_t>(x.get<int64_t>()));
  }
  return OkStatus();
}

Status ReadPrompt(Checker& c, const Json& body, OpenAiRequest* r) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return c.Bad("prompt", "is required");
  Json p = *it;
  // A batch of one prompt ([["..."]] / [[1,2]]) is accepted; larger batches are not.
  if (p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array())) {
    if (p.size() != 1)
      return c.Bad("prompt", "must be a single prompt (batches are not supported)");
    p = Json(p[0]);
  }
  if (p.is_string()) {
    r->prompt_text = p.get<std::string>();
    if (r->prompt_text.empty()) return c.Bad("prompt", "must not be empty");
    return OkStatus();
  }
  if (!p.is_array() || p.empty()) return c.Bad("prompt", "must be a string or a list of token ids");
  r->prompt_is_ids = true;
  return ReadIds(c, p, "prompt", &r->prompt_ids);
}

Status ReadMessages(Checker& c, const Json& body, OpenAiRequest* r) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty()) {
    return c.Bad("messages", "must be a non-empty list of messages");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return c.Bad(name, "must be an object");
    if (!m.contains("role") || !m["role"].is_string())
      return c.Bad(name + ".role", "must be a string");
    Json msg = m;
    const Json content = m.contains("content") ? m["content"] : Json();
    if (content.is_array()) {  // content parts: only text is supported
      std::string text;
      for (const Json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return c.Bad(name + ".content", "parts must be {\"type\": \"text\", \"text\": ...}");
        }
        text += part["text"].get<std::string>();
      }
      msg["content"] = text;
    } else if (content.is_null()) {
      msg["content"] = "";  // e.g. an assistant turn with tool_calls only
    } else if (!content.is_string()) {
      return c.Bad(name + ".content", "must be a string or a list of text parts");
    }
    r->messages.push_back(std::move(msg));
  }
  if (body.contains("tools") && !body["tools"].is_null()) {
    if (!body["tools"].is_array()) return c.Bad("tools", "must be a list");
    r->template_vars["tools"] = body["tools"];
  }
  if (body.contains("chat_template_kwargs") && body["chat_template_kwargs"].is_object()) {
    for (auto kv = body["chat_template_kwargs"].begin(); kv != body["chat_template_kwargs"].end();
         ++kv) {
      r->template_vars[kv.key()] = kv.value();
    }
  }
  if (body.contains("add_generation_prompt")) {
    if (!body["add_generation_prompt"].is_boolean())
      return c.Bad("add_generation_prompt", "must be a boolean");
    r->add_generation_prompt = body["add_generation_prompt"].get<bool>();
  }
  return OkStatus();
}

Status ReadStop(Checker& c, const Json& body, OpenAiRequest* r) {
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      r->stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const Json& s : *it) {
        if (!s.is_string()) return c.Bad("stop", "must be a string or a list of strings");
        r->stop.push_back(s.get<std::string>());
      }
    } else {
      return c.Bad("stop", "must be a string or a list of strings");
    }
    if (r->stop.size() > kMaxStopStrings) return c.Bad("stop", "has more than 16 strings");
    for (const std::string& s : r->stop) {
      if (s.empty()) return c.Bad("stop", "strings must not be empty");
    }
  }
  if (auto it = body.find("stop_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return c.Bad("stop_token_ids", "must be a list of token ids");
    if (it->size() > kMaxStopTokenIds) return c.Bad("stop_token_ids", "has more than 256 ids");
    PD_RETURN_IF_ERROR(ReadIds(c, *it, "stop_token_ids", &r->stop_token_ids));
  }
  return OkStatus();
}

Status ReadBool(Checker& c, const Json& body, const char* name, bool* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return OkStatus();
  if (!it->is_boolean()) return c.Bad(name, "must be a boolean");
  *out = it->get<bool>();
  return OkStatus();
}

Status ReadUnsupported(Checker& c, const Json& body) {
  if (auto it = body.find("n"); it != body.end() && !it->is_null()) {
    if (!IsInt(*it) || it->get<int64_t>() != 1)
      return c.Bad("n", "must be 1 (only one choice per request is supported)");
  }
  if (auto it = body.find("best_of");
      it != body.end() && !it->is_null() && !(IsInt(*it) && it->get<int64_t>() == 1)) {
    return c.Bad("best_of", "must be 1");
  }
  for (const char* name : {"logprobs", "top_logprobs", "echo", "suffix", "logit_bias"}) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null() || *it == false || (it->is_object() && it->empty()))
      continue;
    if (std::string(name) == "suffix" && it->is_string() && it->get<std::string>().empty())
      continue;
    return c.Bad(name, "is not supported");
  }
  return OkStatus();
}

Status ReadMaxTokens(Checker& c, const Json& body, OpenAiRequest* r) {
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) continue;
    if (!IsInt(*it) || it->get<int64_t>() < 1 || it->get<int64_t>() > INT32_MAX) {
      return c.Bad(name, "must be a positive integer");
    }
    r->max_tokens = static_cast<int>(it->get<int64_t>());
  }
  return OkStatus();
}

Status Parse(Checker& c, const Json& body, bool chat, OpenAiRequest* r) {
  if (!body.is_object()) return c.Bad("body", "must be a JSON object");
  r->chat = chat;
  auto m = body.find("model");
  if (m == body.end() || !m->is_string() || m->get<std::string>().empty()) {
    return c.Bad("model", "is required (a string; GET /v1/models lists them)");
  }
  r->model = m->get<std::string>();
  PD_RETURN_IF_ERROR(chat ? ReadMessages(c, body, r) : ReadPrompt(c, body, r));
  PD_RETURN_IF_ERROR(ReadUnsupported(c, body));
  PD_RETURN_IF_ERROR(ReadMaxTokens(c, body, r));
  PD_RETURN_IF_ERROR(ReadNumber(c, body, "temperature", 0, 2, &r->temperature));
  PD_RETURN_IF_ERROR(ReadNumber(c, body, "top_p", 0, 1, &r->top_p));
  if (r->top_p == 0) return c.Bad("top_p", "must be greater than 0");
  if (auto it = body.find("top_k"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < -1 || it->get<int64_t>() > 1 << 20) {
      return c.Bad("top_k", "must be an integer >= -1 (-1 or 0: off)");
    }
    r->top_k = std::max<int>(0, static_cast<int>(it->get<int64_t>()));
  }
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) return c.Bad("seed", "must be an integer");
    r->seed = static_cast<uint64_t>(it->get<int64_t>());
  }
  PD_RETURN_IF_ERROR(ReadStop(c, body, r));
  PD_RETURN_IF_ERROR(ReadBool(c, body, "stream", &r->stream));
  PD_RETURN_IF_ERROR(ReadBool(c, body, "ignore_eos", &r->ignore_eos));
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return c.Bad("stream_options", "must be an object");
    if (!r->stream) return c.Bad("stream_options", "is only allowed when 'stream' is true");
    PD_RETURN_IF_ERROR(ReadBool(c, *it, "include_usage", &r->include_usage));
  }
  return OkStatus();
}

}  // namespace

StatusOr<OpenAiRequest> ParseOpenAiRequest(std::string_view body, bool chat,
                                           std::string* bad_param) {
  bad_param->clear();
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return InvalidArgument("the request body is not valid JSON");
  }
  OpenAiRequest r;
  Checker c{bad_param};
  try {
    PD_RETURN_IF_ERROR(Parse(c, j, chat, &r));
  } catch (const std::exception& e) {  // nlohmann type errors on odd shapes
    return InvalidArgument(std::string("bad request body: ") + e.what());
  }
  return r;
}

}  // namespace pd::http
