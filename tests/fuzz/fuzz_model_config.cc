// libFuzzer target: config.json parsing (pd::ParseModelConfig) and validation.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = pd::ParseModelConfig(text);
  if (!c.ok()) {
    if (c.status().message().empty()) std::abort();  // errors must say what is wrong
    return 0;
  }
  // A config that parses must validate cleanly (ParseModelConfig validates) and be usable.
  if (!c->Validate().ok()) std::abort();
  volatile size_t kv = c->KvBytesPerToken(2);
  (void)kv;
  return 0;
}
