// pd-tokenize: encode text with a tokenizer.json, or decode ids.
//   pd-tokenize --tokenizer FILE (--text STR | --file F) [--no-special-tokens]
//   pd-tokenize --tokenizer FILE --decode 1,2,3 [--skip-special-tokens]
// Encoding prints the ids comma-separated on one line; decoding prints the text.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: pd-tokenize --tokenizer FILE (--text STR | --file F) "
               "[--no-special-tokens]\n"
               "       pd-tokenize --tokenizer FILE --decode IDS [--skip-special-tokens]\n"
               "  --text/--file  encode; prints ids comma-separated on one line\n"
               "  --decode IDS   decode comma-separated ids; prints the text\n"
               "  --no-special-tokens   don't add the post-processor's BOS/EOS when encoding\n"
               "  --skip-special-tokens drop special tokens when decoding\n");
  return 2;
}

bool ParseIds(const std::string& s, std::vector<int32_t>* ids) {
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (item.find_first_not_of(" \t", used) != std::string::npos) return false;
      ids->push_back(static_cast<int32_t>(v));
    } catch (...) {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tok_path, text, file, decode;
  bool have_text = false, have_decode = false, add_special = true, skip_special = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    if (a == "--tokenizer") {
      if (!next(&tok_path)) return Usage();
    } else if (a == "--text") {
      if (!next(&text)) return Usage();
      have_text = true;
    } else if (a == "--file") {
      if (!next(&file)) return Usage();
    } else if (a == "--decode") {
      if (!next(&decode)) return Usage();
      have_decode = true;
    } else if (a == "--no-special-tokens") {
      add_special = false;
    } else if (a == "--skip-special-tokens") {
      skip_special = true;
    } else {
      return Usage();
    }
  }
  int modes = static_cast<int>(have_text) + static_cast<int>(!file.empty()) +
              static_cast<int>(have_decode);
  if (tok_path.empty() || modes != 1) return Usage();
  auto tok = pd::Tokenizer::FromFile(tok_path);
  if (!tok.ok()) {
    std::fprintf(stderr, "pd-tokenize: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  if (have_decode) {
    std::vector<int32_t> ids;
    if (!ParseIds(decode, &ids)) {
      std::fprintf(stderr, "pd-tokenize: --decode wants comma-separated integers\n");
      return 2;
    }
    auto out = (*tok)->Decode(ids, skip_special);
    if (!out.ok()) {
      std::fprintf(stderr, "pd-tokenize: %s\n", out.status().ToString().c_str());
      return 1;
    }
    std::cout << *out << "\n";
    return 0;
  }
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "pd-tokenize: cannot open %s\n", file.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto ids = (*tok)->Encode(text, add_special);
  if (!ids.ok()) {
    std::fprintf(stderr, "pd-tokenize: %s\n", ids.status().ToString().c_str());
    return 1;
  }
  std::string line;
  for (size_t i = 0; i < ids->size(); ++i) {
    if (i) line += ',';
    line += std::to_string((*ids)[i]);
  }
  std::cout << line << "\n";
  return 0;
}
