// Encoding, decoding and streaming decoding (loading lives in tokenizer_json.cc).
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode_tables.h"

namespace pd {

// ---- byte-level alphabet ------------------------------------------------------------------

const std::array<uint32_t, 256>& ByteToChar() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = printable ? b : 256 + n++;
    }
    return t;
  }();
  return table;
}

namespace {
const std::array<int16_t, 324>& CharToByte() {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[ByteToChar()[b]] = static_cast<int16_t>(b);
    return t;
  }();
  return table;
}
}  // namespace

bool ByteLevelToBytes(std::string_view token, std::string* out) {
  out->clear();
  const auto& inv = CharToByte();
  for (size_t i = 0; i < token.size();) {
    uint32_t cp = unicode::NextCodepoint(token, i);
    if (cp >= inv.size() || inv[cp] < 0) return false;
    out->push_back(static_cast<char>(inv[cp]));
  }
  return true;
}

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  for (char c : bytes) unicode::AppendUtf8(ByteToChar()[static_cast<unsigned char>(c)], out);
  return out;
}

// ---- added tokens -------------------------------------------------------------------------

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char b) const {
  for (const auto& [byte, child] : nodes_[node].next) {
    if (byte == b) return child;
  }
  return -1;
}

void AddedTokenMatcher::Add(const std::string& content, int32_t id) {
  if (content.empty()) return;
  first_byte_[static_cast<unsigned char>(content[0])] = true;
  int32_t node = 0;
  for (char c : content) {
    const auto b = static_cast<unsigned char>(c);
    int32_t child = Child(node, b);
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_[node].next.emplace_back(b, child);
      nodes_.emplace_back();
    }
    node = child;
  }
  nodes_[node].token = id;
}

bool AddedTokenMatcher::Find(std::string_view s, size_t pos, size_t* begin, size_t* len,
                             int32_t* id) const {
  for (size_t i = pos; i < s.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(s[i])]) continue;
    int32_t node = 0, best = -1;
    size_t best_len = 0;
    for (size_t j = i; j < s.size(); ++j) {
      node = Child(node, static_cast<unsigned char>(s[j]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_len = j + 1 - i;
      }
    }
    if (best >= 0) {
      *begin = i;
      *len = best_len;
      *id = best;
      return true;
    }
  }
  return false;
}

// ---- encoding -----------------------------------------------------------------------------

namespace {
struct PieceCtx {
  const tok::BpeModel* bpe;
  std::vector<int32_t>* out;
};
void OnPiece(void* ctx, std::string_view piece) {
  auto* c = static_cast<PieceCtx*>(ctx);
  c->bpe->EncodeWord(piece, *c->out);
}

// Splits text around matcher hits: calls seg(gap) for text between hits and pushes hit ids.
template <typename F>
void SplitAdded(const AddedTokenMatcher& m, std::string_view text, std::vector<int32_t>& out,
                F&& seg) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t b, len;
    int32_t id;
    if (m.empty() || !m.Find(text, pos, &b, &len, &id)) {
      seg(text.substr(pos));
      return;
    }
    if (b > pos) seg(text.substr(pos, b - pos));
    out.push_back(id);
    pos = b + len;
  }
}
}  // namespace

void TokenizerImpl::EncodeNormalizedPiece(std::string_view text, std::vector<int32_t>& out) const {
  PieceCtx ctx{bpe.get(), &out};
  tok::PreTokenize(pre_steps, text, &OnPiece, &ctx);
}

void TokenizerImpl::EncodeSegment(std::string_view text, std::vector<int32_t>& out) const {
  std::string normalized;
  if (nfc && !unicode::NfcQuickYes(text)) {
    normalized = unicode::Nfc(text);
    text = normalized;
  }
  SplitAdded(normalized_added, text, out,
             [&](std::string_view gap) { EncodeNormalizedPiece(gap, out); });
}

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                 bool add_special_tokens) const {
  size_t bad = unicode::FindInvalidUtf8(text);
  if (bad != std::string_view::npos) {
    return InvalidArgument("tokenizer: input is not valid UTF-8 (first bad byte at offset " +
                           std::to_string(bad) + ")");
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out = impl_->bos_ids;
  SplitAdded(impl_->raw_added, text, out,
             [&](std::string_view gap) { impl_->EncodeSegment(gap, out); });
  if (add_special_tokens) out.insert(out.end(), impl_->eos_ids.begin(), impl_->eos_ids.end());
  return out;
}

// ---- decoding -----------------------------------------------------------------------------

StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids,
                                        bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return OutOfRange("tokenizer: id " + std::to_string(id) + " outside vocabulary of " +
                        std::to_string(vocab_size()));
    }
    if (skip_special_tokens && impl_->id_special[id]) continue;
    bytes += impl_->id_bytes[id];
  }
  std::string out;
  out.reserve(bytes.size());
  unicode::AppendUtf8Lossy(bytes, out);
  return out;
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->id_bytes.size()); }

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->token_to_id.find(token);
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size() || impl_->id_token[id].empty()) return std::nullopt;
  return impl_->id_token[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_special[id];
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->id_bytes[id];
}

// ---- streaming ----------------------------------------------------------------------------

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {}

StatusOr<std::string> IncrementalDecoder::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) {
    return OutOfRange("tokenizer: id " + std::to_string(id) + " outside vocabulary of " +
                      std::to_string(tokenizer_->vocab_size()));
  }
  if (skip_special_ && tokenizer_->IsSpecial(id)) return std::string();
  pending_.append(tokenizer_->TokenBytes(id));
  size_t ready = pending_.size() - unicode::IncompleteUtf8Suffix(pending_);
  std::string out;
  unicode::AppendUtf8Lossy(std::string_view(pending_).substr(0, ready), out);
  pending_.erase(0, ready);
  return out;
}

std::string IncrementalDecoder::Finish() {
  std::string out;
  unicode::AppendUtf8Lossy(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace pd
