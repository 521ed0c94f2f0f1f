// The one place that includes spdlog. Use PD_LOG_INFO("x={}", x) etc.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace pd {
// Sets the global level from a name: trace, debug, info, warn, error, off. Unknown names keep info.
void SetLogLevel(const std::string& level);
// Prefixes every line with the process role, e.g. "prefill-0".
void SetLogRole(const std::string& role);
}  // namespace pd

#define PD_LOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define PD_LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define PD_LOG_INFO(...) SPDLOG_INFO(__VA_ARGS__)
#define PD_LOG_WARN(...) SPDLOG_WARN(__VA_ARGS__)
#define PD_LOG_ERROR(...) SPDLOG_ERROR(__VA_ARGS__)
