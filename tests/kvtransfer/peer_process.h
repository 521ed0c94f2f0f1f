// A kvtransfer_peer child process (tests/kvtransfer/kvtransfer_peer.cc) with pipes to its
// stdin / stdout, for the multi-process tests (e2e, local shm, CUDA IPC, auth).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "hex.h"

namespace pd::kvtransfer {

inline constexpr uint64_t kPeerCompat = 77;

class PeerProcess {
 public:
  // extra: flags after the positional ones (--transport local, --mem shm|gpu, --secret S).
  PeerProcess(const std::string& name, uint64_t bytes, int port = 0,
              std::vector<std::string> extra = {}, uint64_t compat = kPeerCompat) {
    int in[2], out[2];
    EXPECT_EQ(pipe(in), 0);
    EXPECT_EQ(pipe(out), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      // PD_KVTRANSFER_PEER: where the binary is when the tests run outside their build tree
      // (binaries carried to the GPU machine).
      const char* env = getenv("PD_KVTRANSFER_PEER");
      const std::string bin = env && *env ? std::string(env)
                                          : std::string(PD_BUILD_DIR) +
                                                "/tests/kvtransfer/kvtransfer_peer";
      std::vector<std::string> args = {bin, name, std::to_string(bytes), std::to_string(compat),
                                       std::to_string(port)};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    std::string first = Line();  // "META <hex>", or "ERROR ..."; log lines may come first
    for (int i = 0; i < 100 && !first.empty() && first.rfind("META ", 0) != 0 &&
                    first.rfind("ERROR ", 0) != 0;
         ++i) {
      first = Line();
    }
    if (first.rfind("META ", 0) != 0) {
      ADD_FAILURE() << "kvtransfer_peer did not start: " << first;
      return;
    }
    meta_ = FromHex(first.substr(5));
  }
  ~PeerProcess() { Kill(); }
  std::string Line() {
    char buf[1 << 16];
    if (!fgets(buf, sizeof(buf), from_)) return "";
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  std::string Ask(const std::string& cmd) {
    fprintf(to_, "%s\n", cmd.c_str());
    fflush(to_);
    return Line();
  }
  void Tell(const std::string& cmd) {  // a command whose answer is read later (Line)
    fprintf(to_, "%s\n", cmd.c_str());
    fflush(to_);
  }
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    if (to_) fclose(to_);
    if (from_) fclose(from_);
    to_ = from_ = nullptr;
  }
  const std::string& meta() const { return meta_; }
  int port() const { return std::stoi(meta_.substr(meta_.find("addr 127.0.0.1:") + 15)); }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string meta_;
};

inline uint64_t Fnv(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace pd::kvtransfer
