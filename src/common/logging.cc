#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace pd {

void SetLogLevel(const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  spdlog::set_level(lvl);
}

void SetLogRole(const std::string& role) {
  auto logger = spdlog::stderr_color_mt(role.empty() ? "pd" : role);
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%n] %v");
}

}  // namespace pd
