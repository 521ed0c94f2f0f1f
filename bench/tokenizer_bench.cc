// Tokenizer throughput on one core: encode (cold word cache and steady state), decode, streaming
// decode. Target from issue 6: >= 1M tokens/s/core encoding ordinary English text.
//   tokenizer_bench [--tokenizer FILE]... [--text FILE]... [--seconds S]
// Defaults: the Llama 3 and Qwen3 files from scripts/fetch_tokenizers.sh, and the English prose of
// /usr/share/common-licenses/* (~300 KB), encoded paragraph by paragraph like prompts.
// Rates are given per thread-CPU second ("/core", immune to other processes on a shared machine)
// and per wall second.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

struct Timer {
  double wall = 0, cpu = 0;
  static double Wall() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static double Cpu() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
  // Runs body repeatedly (at least once) until min_cpu seconds of CPU time have passed; returns
  // the number of runs.
  int Run(double min_cpu, const std::function<void()>& body) {
    double w0 = Wall(), c0 = Cpu();
    int runs = 0;
    do {
      body();
      ++runs;
    } while (Cpu() - c0 < min_cpu);
    wall = Wall() - w0;
    cpu = Cpu() - c0;
    return runs;
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Splits text into paragraphs (blank-line separated), each kept with its trailing newlines.
std::vector<std::string> Paragraphs(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    end = end == std::string::npos ? text.size() : end + 2;
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

void Report(const char* what, double units, const Timer& t, double target) {
  std::printf("  %-34s %7.2f M tokens/s/core (cpu %.3f s)  %7.2f M tokens/s wall", what,
              units / t.cpu / 1e6, t.cpu, units / t.wall / 1e6);
  if (target > 0) std::printf("  %.2fx target", units / t.cpu / target);
  std::printf("\n");
}

void Bench(const std::string& path, const std::vector<std::string>& paras, double seconds) {
  Timer load;
  pd::StatusOr<std::unique_ptr<pd::Tokenizer>> loaded = pd::Internal("not loaded");
  load.Run(0, [&] { loaded = pd::Tokenizer::FromFile(path); });
  if (!loaded.ok()) {
    std::printf("%s: %s\n", path.c_str(), loaded.status().ToString().c_str());
    return;
  }
  const pd::Tokenizer& tok = **loaded;
  size_t bytes = 0, tokens = 0;
  for (const auto& p : paras) bytes += p.size();
  std::vector<std::vector<int32_t>> ids;
  Timer cold, steady, dec, stream;
  cold.Run(0, [&] {  // one pass with an empty word cache
    for (const auto& p : paras) {
      ids.push_back(std::move(*tok.Encode(p, false)));
      tokens += ids.back().size();
    }
  });
  int enc_runs = steady.Run(seconds, [&] {
    for (const auto& p : paras) (void)tok.Encode(p, false);
  });
  size_t sink = 0;
  int dec_runs = dec.Run(seconds / 2, [&] {
    for (const auto& v : ids) sink += tok.Decode(v, false)->size();
  });
  int str_runs = stream.Run(seconds / 2, [&] {
    for (const auto& v : ids) {
      pd::IncrementalDecoder d(tok, false);
      for (int32_t id : v) sink += d.Push(id)->size();
      sink += d.Finish().size();
    }
  });
  std::printf("%s\n  load %.2f s (cpu %.2f s), vocab %d; %zu paragraphs, %zu bytes, %zu tokens "
              "(%.2f bytes/token)\n",
              path.c_str(), load.wall, load.cpu, tok.vocab_size(), paras.size(), bytes, tokens,
              static_cast<double>(bytes) / tokens);
  Report("encode, first pass (cold cache):", tokens, cold, 1e6);
  Report("encode, steady state:", static_cast<double>(tokens) * enc_runs, steady, 1e6);
  Report("decode:", static_cast<double>(tokens) * dec_runs, dec, 0);
  Report("streaming decode (Push per id):", static_cast<double>(tokens) * str_runs, stream, 0);
  std::printf("  [checksum %zu]\n", sink % 1000);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths, texts;
  double seconds = 2.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--tokenizer") paths.push_back(argv[i + 1]);
    else if (a == "--text") texts.push_back(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  if (paths.empty()) {
    const char* c = std::getenv("PD_CACHE");
    const char* home = std::getenv("HOME");
    std::string cache = c ? c : std::string(home ? home : "/root") + "/.cache/pdserve";
    paths = {cache + "/tokenizers/llama3/tokenizer.json", cache + "/tokenizers/qwen3/tokenizer.json"};
  }
  if (texts.empty()) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/usr/share/common-licenses", ec)) {
      if (e.is_regular_file() && !e.is_symlink()) texts.push_back(e.path());
    }
    std::sort(texts.begin(), texts.end());
  }
  std::string text;
  for (const auto& t : texts) text += ReadFile(t) + "\n\n";
  if (text.size() < 100) {
    std::fprintf(stderr, "tokenizer_bench: no text (pass --text FILE)\n");
    return 1;
  }
  std::printf("tokenizer_bench: one thread, %zu text files (%zu bytes); target 1.00 M tokens/s/core\n",
              texts.size(), text.size());
  for (const auto& p : paths) Bench(p, Paragraphs(text), seconds);
  return 0;
}
