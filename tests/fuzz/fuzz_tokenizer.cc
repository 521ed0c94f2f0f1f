// libFuzzer target: tokenizer.json loading (pd::Tokenizer::FromJson) and encode/decode.
// Input: tokenizer.json text, optionally followed by a NUL byte and the text to encode (without
// one, a fixed text with an added token and non-ASCII characters is encoded).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string_view json_text = in.substr(0, nul);
  const std::string_view text =
      nul == std::string_view::npos ? std::string_view("the <s>x h\xC3\xA9llo  \xF0\x9F\x98\x80!")
                                    : in.substr(nul + 1);
  auto t = pd::Tokenizer::FromJson(json_text);
  if (!t.ok()) {
    if (t.status().message().empty()) std::abort();
    return 0;
  }
  const pd::Tokenizer& tok = **t;
  for (bool special : {false, true}) {
    auto ids = tok.Encode(text, special);
    if (!ids.ok()) continue;
    for (int32_t id : *ids) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();  // Encode only yields valid ids
    }
    auto decoded = tok.Decode(*ids, false);
    if (!decoded.ok()) std::abort();
    pd::IncrementalDecoder dec(tok, false);
    std::string streamed;
    for (int32_t id : *ids) {
      auto piece = dec.Push(id);
      if (!piece.ok()) std::abort();
      streamed += *piece;
    }
    streamed += dec.Finish();
    if (streamed != *decoded) std::abort();  // the documented streaming invariant
    (void)tok.Decode(*ids, true);
  }
  // Out-of-range ids must be errors, not reads.
  const int32_t bad[] = {-1, tok.vocab_size(), INT32_MAX};
  for (int32_t id : bad) {
    if (tok.Decode(std::span<const int32_t>(&id, 1), false).ok()) std::abort();
    (void)tok.IdToToken(id);
    (void)tok.TokenBytes(id);
    (void)tok.IsSpecial(id);
  }
  return 0;
}
