// Request preparation in the router: the served models (config.json facts + optional
// tokenizer.json) and the checks every Generate request passes before it is placed. Bad requests
// get INVALID_ARGUMENT with a message naming what is wrong; nothing reaches a daemon.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/deploy_config.h"
#include "common/status.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

namespace pd::router {

struct ServedModel {
  std::string name;  // served name (InstanceConfig::model_name)
  std::string dir;
  ModelConfig config;
  std::shared_ptr<const Tokenizer> tokenizer;  // null without DIR/tokenizer.json
  int block_size = 16;
  int max_model_len = 0;  // prompt + output limit
};

// Loads DIR/config.json (+ DIR/tokenizer.json when present) of the instance's model.
StatusOr<ServedModel> LoadServedModel(const InstanceConfig& instance);

// The request as it arrives (proto-independent).
struct PromptInput {
  std::string model;  // "" = the first served model
  bool is_text = false;
  std::string text;
  std::vector<int32_t> ids;
  int max_tokens = 0;
};

struct PreparedRequest {
  const ServedModel* model = nullptr;
  std::vector<int32_t> ids;  // prompt token ids
  int max_tokens = 0;
  std::vector<uint64_t> chain;  // prefix hash chain of the prompt's full blocks
};

// Text prompts longer than this many bytes per context token are refused before tokenizing.
inline constexpr int kMaxTextBytesPerToken = 64;

// Checks and tokenizes. INVALID_ARGUMENT for: unknown model, empty prompt, text without a
// tokenizer ("model has no tokenizer.json"), text over kMaxTextBytesPerToken * context bytes,
// invalid UTF-8 (the tokenizer's error), ids outside [0, vocab), max_tokens <= 0 or above
// max_tokens_limit, prompt + max_tokens above the model's context.
StatusOr<PreparedRequest> PrepareRequest(const std::vector<ServedModel>& models,
                                         const PromptInput& in, int max_tokens_limit);

}  // namespace pd::router
