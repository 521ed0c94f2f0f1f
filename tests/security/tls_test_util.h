// Test helpers: certificates made by scripts/gen-test-ca.sh into a fresh temp dir.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace pd::testing {

// Runs scripts/gen-test-ca.sh into a new temp dir; "" on failure.
inline std::string MakeTestCa(const std::string& tag) {
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("pd-tls-" + tag + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  const std::string script = std::string(PD_TEST_DATA_DIR) + "/../../scripts/gen-test-ca.sh";
  const std::string cmd = script + " " + dir + " >/dev/null";
  if (std::system(cmd.c_str()) != 0) return "";
  return dir;
}

}  // namespace pd::testing
