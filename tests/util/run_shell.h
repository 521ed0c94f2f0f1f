// Test helper: runs a shell command and captures what it prints (stdout and stderr together).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace pd::testutil {

// Runs `cmd` through /bin/sh with stderr folded into stdout; appends the output to `*out` and
// returns the exit status (-1 if the command could not be started or did not exit normally).
inline int RunShell(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace pd::testutil
