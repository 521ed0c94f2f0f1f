// Tokenizer throughput: encode (first pass and steady state), decode, streaming decode, on one
// core. Target from issue 6: >= 1M tokens/s/core encoding ordinary English text.
//   tokenizer_bench [--tokenizer FILE]... [--text FILE] [--seconds S]
// Defaults: the Llama 3 and Qwen3 files from scripts/fetch_tokenizers.sh, and English prose from
// /usr/share/common-licenses/GPL-3 (35 KB), encoded paragraph by paragraph like prompts.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

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

void Bench(const std::string& path, const std::vector<std::string>& paras, double seconds) {
  auto t0 = Clock::now();
  auto loaded = pd::Tokenizer::FromFile(path);
  auto t1 = Clock::now();
  if (!loaded.ok()) {
    std::printf("%s: %s\n", path.c_str(), loaded.status().ToString().c_str());
    return;
  }
  const pd::Tokenizer& tok = **loaded;
  size_t bytes = 0;
  for (const auto& p : paras) bytes += p.size();
  // First pass: empty word cache.
  size_t tokens = 0;
  std::vector<std::vector<int32_t>> ids;
  auto c0 = Clock::now();
  for (const auto& p : paras) {
    auto r = tok.Encode(p, false);
    tokens += r->size();
    ids.push_back(std::move(*r));
  }
  double first = Seconds(c0, Clock::now());
  // Steady state.
  size_t enc_tokens = 0;
  int passes = 0;
  auto s0 = Clock::now();
  while (Seconds(s0, Clock::now()) < seconds) {
    for (const auto& p : paras) enc_tokens += tok.Encode(p, false)->size();
    ++passes;
  }
  double enc = Seconds(s0, Clock::now());
  // Decode and streaming decode.
  size_t dec_tokens = 0, dec_bytes = 0;
  auto d0 = Clock::now();
  while (Seconds(d0, Clock::now()) < seconds / 2) {
    for (const auto& v : ids) {
      dec_bytes += tok.Decode(v, false)->size();
      dec_tokens += v.size();
    }
  }
  double dec = Seconds(d0, Clock::now());
  size_t str_tokens = 0;
  auto i0 = Clock::now();
  while (Seconds(i0, Clock::now()) < seconds / 2) {
    for (const auto& v : ids) {
      pd::IncrementalDecoder d(tok, false);
      for (int32_t id : v) dec_bytes += d.Push(id)->size();
      dec_bytes += d.Finish().size();
      str_tokens += v.size();
    }
  }
  double str = Seconds(i0, Clock::now());
  const double target = 1e6;
  double steady = enc_tokens / enc;
  std::printf("%s\n  load %.2f s, vocab %d; text %zu paragraphs, %zu bytes, %zu tokens "
              "(%.2f bytes/token)\n",
              path.c_str(), Seconds(t0, t1), tok.vocab_size(), paras.size(), bytes, tokens,
              static_cast<double>(bytes) / tokens);
  std::printf("  encode first pass (cold cache): %8.2f M tokens/s  %6.1f MB/s  (%.2fx target)\n",
              tokens / first / 1e6, bytes / first / 1e6, tokens / first / target);
  std::printf("  encode steady, %3d passes:      %8.2f M tokens/s  %6.1f MB/s  (%.2fx target)\n",
              passes, steady / 1e6, passes * bytes / enc / 1e6, steady / target);
  std::printf("  decode:                         %8.2f M tokens/s\n", dec_tokens / dec / 1e6);
  std::printf("  streaming decode (Push per id): %8.2f M tokens/s  [checksum %zu]\n",
              str_tokens / str / 1e6, dec_bytes % 1000);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  std::string text_path = "/usr/share/common-licenses/GPL-3";
  double seconds = 2.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--tokenizer") paths.push_back(argv[i + 1]);
    else if (a == "--text") text_path = argv[i + 1];
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  if (paths.empty()) {
    const char* c = std::getenv("PD_CACHE");
    const char* home = std::getenv("HOME");
    std::string cache = c ? c : std::string(home ? home : "/root") + "/.cache/pdserve";
    paths = {cache + "/tokenizers/llama3/tokenizer.json", cache + "/tokenizers/qwen3/tokenizer.json"};
  }
  std::string text = ReadFile(text_path);
  if (text.empty()) {
    std::fprintf(stderr, "tokenizer_bench: no text in %s\n", text_path.c_str());
    return 1;
  }
  std::printf("tokenizer_bench: single thread, text %s; target 1.00 M tokens/s/core\n",
              text_path.c_str());
  for (const auto& p : paths) Bench(p, Paragraphs(text), seconds);
  return 0;
}
