// Internal state of a loaded tokenizer (shared by tokenizer.cc and tokenizer_json.cc).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"

namespace pd {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = false;
};

// Literal matcher for added tokens: leftmost, then longest match (a byte trie).
class AddedTokenMatcher {
 public:
  void Add(const std::string& content, int32_t id);
  bool empty() const { return nodes_.size() <= 1; }
  // Finds the leftmost-longest token occurrence in s at or after pos.
  bool Find(std::string_view s, size_t pos, size_t* begin, size_t* len, int32_t* id) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // byte -> child node
    int32_t token = -1;                                    // id if a token ends here
  };
  int32_t Child(int32_t node, unsigned char b) const;
  std::array<bool, 256> first_byte_{};
  std::vector<Node> nodes_ = std::vector<Node>(1);  // node 0 is the root
};

class TokenizerImpl {
 public:
  // Model.
  std::unique_ptr<tok::BpeModel> bpe;
  // Per id: raw bytes it decodes to, token string (byte-level spelling), special flag.
  std::vector<std::string> id_bytes;
  std::vector<std::string> id_token;
  std::vector<char> id_special;
  tok::BytesToId token_to_id;  // byte-level spelling / added-token content -> id
  // Pipeline.
  bool nfc = false;
  AddedTokenMatcher raw_added;         // added tokens with normalized=false
  AddedTokenMatcher normalized_added;  // normalized=true (contents normalized)
  std::vector<tok::PreTokStep> pre_steps;
  std::vector<int32_t> bos_ids, eos_ids;  // TemplateProcessing around the sequence

  void EncodeNormalizedPiece(std::string_view text, std::vector<int32_t>& out) const;
  void EncodeSegment(std::string_view text, std::vector<int32_t>& out) const;
};

// Bytes -> byte-level characters (GPT-2 bytes_to_unicode), and the inverse.
const std::array<uint32_t, 256>& ByteToChar();
// Maps a byte-level string back to raw bytes; false if some character is not in the table.
bool ByteLevelToBytes(std::string_view token, std::string* out);
std::string BytesToByteLevel(std::string_view bytes);

}  // namespace pd
