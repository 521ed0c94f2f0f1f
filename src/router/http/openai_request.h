// Parsing and validation of OpenAI /v1/completions and /v1/chat/completions bodies. Errors are
// INVALID_ARGUMENT (-> HTTP 400) with a message naming the parameter; *bad_param gets its name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "router/http/jinja.h"

namespace pd::http {

using Json = jinja::Json;

struct OpenAiRequest {
  bool chat = false;
  std::string model;
  // Completions: the prompt (a string, or token ids: a list of ints).
  bool prompt_is_ids = false;
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;
  // Chat: messages (content parts joined into one string) and template variables
  // (tools, chat_template_kwargs such as enable_thinking).
  Json messages = Json::array();
  Json template_vars = Json::object();
  bool add_generation_prompt = true;
  std::optional<int> max_tokens;  // max_tokens or max_completion_tokens
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;  // extension (vLLM): 0 = off
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;        // `stop`: a string or a list of strings
  std::vector<int32_t> stop_token_ids;  // extension (vLLM name): stop on these ids
  bool ignore_eos = false;              // extension (vLLM)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Largest accepted number of stop strings / stop token ids.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopTokenIds = 256;

// Parses a request body. `chat` selects the endpoint's schema.
StatusOr<OpenAiRequest> ParseOpenAiRequest(std::string_view body, bool chat,
                                           std::string* bad_param);

}  // namespace pd::http
