// pd-client: sends one Generate request to the router and prints the streamed text (or ids) and
// the time to first token.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "tools/grpc_util.h"

namespace {

constexpr char kUsage[] =
    R"(usage: pd-client [--addr HOST:PORT] (--text "..." | --ids 1,2,3) [options]

  --addr HOST:PORT   router address                                  [127.0.0.1:8000]
  --api-key K        router API key                   [$PD_API_KEY; prefer the variable]
  --text S           prompt text (the model needs a tokenizer.json)
  --ids A,B,C        prompt token ids
  --model NAME       served model name                               [the router's first]
  --max-tokens N     tokens to generate                              [32]
  --temperature X    0 = greedy                                      [0]
  --top-p X          nucleus sampling                                [1]
  --top-k N          0 = off                                         [0]
  --seed N           sampling seed                                   [0]
  --ignore-eos       keep generating past end-of-sequence tokens
  --timeout-ms N     deadline for the whole request                  [0 = none]
  --print-ids        print token ids even when text is available

Streams text (or ids) to stdout as it arrives; TTFT and usage go to stderr.
Exit status: 0 ok, 1 request failed (the gRPC status is printed), 2 bad flags.
)";

bool ParseIds(const std::string& s, std::vector<int32_t>* out) {
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ',')) {
    char* end = nullptr;
    const long v = std::strtol(t.c_str(), &end, 10);
    if (t.empty() || *end != '\0') return false;
    out->push_back(static_cast<int32_t>(v));
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:8000", api_key;
  pd::client::GenerateParams p;
  p.max_tokens = 32;
  int timeout_ms = 0;
  bool print_ids = false, have_prompt = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pd-client: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--addr") {
      addr = next();
    } else if (a == "--api-key") {
      api_key = next();
    } else if (a == "--text") {
      p.text = next();
      have_prompt = true;
    } else if (a == "--ids") {
      if (!ParseIds(next(), &p.ids)) {
        std::fprintf(stderr, "pd-client: --ids wants comma-separated integers\n");
        return 2;
      }
      have_prompt = true;
    } else if (a == "--model") {
      p.model = next();
    } else if (a == "--max-tokens") {
      p.max_tokens = std::atoi(next().c_str());
    } else if (a == "--temperature") {
      p.temperature = std::atof(next().c_str());
    } else if (a == "--top-p") {
      p.top_p = std::atof(next().c_str());
    } else if (a == "--top-k") {
      p.top_k = std::atoi(next().c_str());
    } else if (a == "--seed") {
      p.seed = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--ignore-eos") {
      p.ignore_eos = true;
    } else if (a == "--timeout-ms") {
      timeout_ms = std::atoi(next().c_str());
    } else if (a == "--print-ids") {
      print_ids = true;
    } else {
      std::fprintf(stderr, "pd-client: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (!have_prompt) {
    std::fprintf(stderr, "pd-client: give --text or --ids\n%s", kUsage);
    return 2;
  }
  pd::client::Client client(addr, api_key);
  bool first_id = true;
  auto on_event = [&](const pd::client::StreamEvent& e) {
    if (!e.text.empty() && !print_ids) {
      std::fwrite(e.text.data(), 1, e.text.size(), stdout);
    } else if (e.text.empty() || print_ids) {
      for (int32_t id : e.ids) {
        std::printf("%s%d", first_id ? "" : ",", id);
        first_id = false;
      }
    }
    std::fflush(stdout);
  };
  const pd::client::GenerateResult r = client.Generate(p, on_event, timeout_ms);
  std::printf("\n");
  if (!r.status.ok()) {
    std::fprintf(stderr, "pd-client: %s\n", r.status.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr,
               "TTFT %.2f ms (router %.2f ms), E2E %.2f ms, finish %s, tokens: %d prompt "
               "(%d cached), %d completion\n",
               r.ttft_ms, r.server_ttft_ms, r.e2e_ms, r.finish_reason.c_str(), r.prompt_tokens,
               r.cached_tokens, r.completion_tokens);
  return 0;
}
