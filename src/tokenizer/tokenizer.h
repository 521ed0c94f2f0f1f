// Hugging Face tokenizer.json (byte-level BPE: Llama 3, Qwen2/Qwen3) — encode, decode, streaming.
//
// Supported tokenizer.json components:
//   model: BPE (merges as "a b" strings or ["a","b"] pairs; byte-level vocab; ignore_merges).
//   normalizer: null, NFC, Sequence of those.
//   pre_tokenizer: Split (regex, behavior Isolated/Removed...), ByteLevel, Sequence of those.
//   decoder: ByteLevel (also as a Sequence member).  post_processor: TemplateProcessing,
//   ByteLevel, Sequence (used only to add BOS/EOS-style tokens when add_special_tokens is true).
//   added_tokens: matched literally (leftmost-longest) before pre-tokenization, special and
//   non-special alike; normalized=false ones on the raw text, normalized=true ones after the
//   normalizer. The lstrip/rstrip/single_word options are not supported (load error).
// Encodings match Hugging Face `tokenizers` byte for byte on the Llama 3 and Qwen3 files
// (tests/tokenizer, reference from tokenizers 0.23.2). Unicode tables: Unicode 14.
// Anything else makes FromFile/FromJson fail with INVALID_ARGUMENT/UNIMPLEMENTED naming the
// unsupported component type.
//
// Thread safety: a Tokenizer is immutable after construction; all const methods may be called
// concurrently from many threads. IncrementalDecoder is per-stream and not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pd {

class TokenizerImpl;

class Tokenizer {
 public:
  // Reads and parses a tokenizer.json file. NOT_FOUND if the file can't be read.
  static StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // Parses tokenizer.json text. INVALID_ARGUMENT on malformed JSON, UNIMPLEMENTED naming the
  // component type on unsupported components.
  static StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Encodes UTF-8 text into token ids, exactly as HF `tokenizers` `encode(text,
  // add_special_tokens)`. Added/special token strings in the text (e.g. "<|im_start|>") are
  // recognised and map to their ids. With add_special_tokens the post-processor's template tokens
  // (e.g. Llama 3's <|begin_of_text|>) are added. Invalid UTF-8 input → INVALID_ARGUMENT with the
  // byte offset of the first bad sequence (nothing is replaced silently).
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // Decodes ids into text. Byte sequences that don't form valid UTF-8 (e.g. a prefix cut in the
  // middle of a character) become U+FFFD, as HF does. Out-of-range id → OUT_OF_RANGE (HF
  // silently drops it). skip_special_tokens drops added tokens marked "special".
  StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Number of ids: max(model vocab id, added token id) + 1.
  int vocab_size() const;
  // Id of a token string (vocab entry in its byte-level spelling, or an added token's content).
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Token string of an id (byte-level spelling for vocab entries); nullopt if out of range.
  std::optional<std::string> IdToToken(int32_t id) const;
  // True if the id is an added token marked "special".
  bool IsSpecial(int32_t id) const;
  // Raw bytes that the id decodes to (special tokens: their content). Empty if out of range.
  std::string_view TokenBytes(int32_t id) const;

 private:
  explicit Tokenizer(std::unique_ptr<TokenizerImpl> impl);
  std::unique_ptr<TokenizerImpl> impl_;
};

// Streaming detokenization: Push ids one at a time, get text as soon as it is complete UTF-8.
// Invariant: concatenation of all Push() results plus Finish() == tokenizer.Decode(all ids).
// The Tokenizer must outlive the decoder.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);

  // Appends one id; returns the newly completed text (possibly empty while a multi-byte
  // character is incomplete). OUT_OF_RANGE for an invalid id.
  StatusOr<std::string> Push(int32_t id);
  // Flushes any pending incomplete bytes (as U+FFFD, like Decode) and returns them.
  std::string Finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes not yet emitted (an incomplete UTF-8 sequence)
};

}  // namespace pd
