// libFuzzer target: the deployment YAML loader (pd::ParseDeployConfig, library pd_config).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/deploy_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = pd::ParseDeployConfig(text);
  if (!c.ok()) {
    if (c.status().message().empty()) std::abort();  // errors must say what is wrong
    return 0;
  }
  if (!c->Validate().ok()) std::abort();  // ParseDeployConfig validates
  for (const auto* list : {&c->prefill, &c->decode}) {
    for (const pd::InstanceConfig& i : *list) {
      if (c->FindInstance(i.name) == nullptr) std::abort();
      (void)i.Address();
    }
  }
  (void)c->GetInstance("no-such-instance");
  (void)c->ModelNames();
  return 0;
}
