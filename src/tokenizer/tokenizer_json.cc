// tokenizer.json loading: validates every component and builds TokenizerImpl.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/logging.h"
#include "common/json_excerpt.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode_tables.h"

namespace pd {
namespace {

using nlohmann::json;

std::string TypeOf(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) return j["type"];
  return JsonExcerpt(j, 60);
}

Status Unsupported(const std::string& what, const std::string& type) {
  return Unimplemented("tokenizer.json: unsupported " + what + " type '" + type + "'");
}

// Largest token id accepted (real vocabularies have < 300k ids); bounds the per-id tables a
// hostile file can make us allocate.
constexpr int64_t kMaxTokenId = (1 << 22) - 1;

// A token id from JSON: an integer in [0, kMaxTokenId]. Floats, negatives and huge values are
// INVALID_ARGUMENT (converting them to int32_t would be undefined or wrap).
StatusOr<int32_t> TokenId(const json& v, const std::string& what) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > kMaxTokenId) ||
      (!v.is_number_unsigned() && (v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId))) {
    return InvalidArgument("tokenizer.json: " + what + ": id " + JsonExcerpt(v) +
                           " is not an integer in [0, " + std::to_string(kMaxTokenId) + "]");
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

bool IsNullOrEmpty(const json& j, const char* key) {
  return !j.contains(key) || j[key].is_null() || (j[key].is_string() && j[key].get<std::string>().empty());
}

Status LoadNormalizer(const json& n, TokenizerImpl& t) {
  if (n.is_null()) return OkStatus();
  const std::string type = TypeOf(n);
  if (type == "NFC") {
    t.nfc = true;
    return OkStatus();
  }
  if (type == "Sequence") {
    for (const json& m : n.at("normalizers")) PD_RETURN_IF_ERROR(LoadNormalizer(m, t));
    return OkStatus();
  }
  return Unsupported("normalizer", type);
}

StatusOr<tok::SplitBehavior> ParseBehavior(const std::string& b) {
  if (b == "Isolated") return tok::SplitBehavior::kIsolated;
  if (b == "Removed") return tok::SplitBehavior::kRemoved;
  if (b == "MergedWithPrevious") return tok::SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return tok::SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return tok::SplitBehavior::kContiguous;
  return Unsupported("Split behavior", b);
}

Status LoadPreTokenizer(const json& p, TokenizerImpl& t) {
  const std::string type = TypeOf(p);
  if (type == "Sequence") {
    for (const json& m : p.at("pretokenizers")) PD_RETURN_IF_ERROR(LoadPreTokenizer(m, t));
    return OkStatus();
  }
  tok::PreTokStep step;
  if (type == "Split") {
    const json& pat = p.at("pattern");
    bool literal = pat.contains("String");
    if (!literal && !pat.contains("Regex")) return Unsupported("Split pattern", JsonExcerpt(pat));
    PD_ASSIGN_OR_RETURN(auto compiled, tok::SplitPattern::Create(
                                           pat.at(literal ? "String" : "Regex"), literal));
    step.pattern = std::move(compiled);
    PD_ASSIGN_OR_RETURN(step.behavior, ParseBehavior(p.at("behavior")));
    step.invert = p.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = tok::PreTokStep::Kind::kByteLevel;
    step.add_prefix_space = p.value("add_prefix_space", true);
    if (p.value("use_regex", true)) {
      PD_ASSIGN_OR_RETURN(auto compiled, tok::SplitPattern::Create(tok::kGpt2Pattern, false));
      step.pattern = std::move(compiled);
    }
  } else {
    return Unsupported("pre_tokenizer", type);
  }
  t.pre_steps.push_back(std::move(step));
  return OkStatus();
}

Status LoadPostProcessor(const json& p, TokenizerImpl& t) {
  if (p.is_null()) return OkStatus();
  const std::string type = TypeOf(p);
  if (type == "ByteLevel") return OkStatus();  // offsets only
  if (type == "Sequence") {
    for (const json& m : p.at("processors")) PD_RETURN_IF_ERROR(LoadPostProcessor(m, t));
    return OkStatus();
  }
  if (type != "TemplateProcessing") return Unsupported("post_processor", type);
  bool seen_sequence = false;
  for (const json& piece : p.at("single")) {
    if (piece.contains("Sequence")) {
      if (piece["Sequence"].value("id", "A") != "A" || seen_sequence) {
        return Unsupported("TemplateProcessing piece", JsonExcerpt(piece));
      }
      seen_sequence = true;
      continue;
    }
    const std::string name = piece.at("SpecialToken").at("id");
    const json& ids = p.at("special_tokens").at(name).at("ids");
    auto& dst = seen_sequence ? t.eos_ids : t.bos_ids;
    for (const json& id : ids) {
      PD_ASSIGN_OR_RETURN(int32_t v, TokenId(id, "post_processor token '" + name + "'"));
      if (static_cast<size_t>(v) >= t.id_token.size()) {
        return InvalidArgument("tokenizer.json: post_processor token '" + name + "': id " +
                               std::to_string(v) + " is not in the vocabulary");
      }
      dst.push_back(v);
    }
  }
  return OkStatus();
}

Status LoadDecoder(const json& d) {
  const std::string type = d.is_null() ? "null" : TypeOf(d);
  if (type == "ByteLevel") return OkStatus();
  if (type == "Sequence") {
    for (const json& m : d.at("decoders")) PD_RETURN_IF_ERROR(LoadDecoder(m));
    return OkStatus();
  }
  return Unsupported("decoder", type);
}

Status CheckBpeOptions(const json& m) {
  const std::string type = TypeOf(m);
  if (type != "BPE") return Unsupported("model", type);
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() > 0) {
    return Unsupported("BPE option", "dropout");
  }
  if (m.value("byte_fallback", false)) return Unsupported("BPE option", "byte_fallback");
  if (!IsNullOrEmpty(m, "continuing_subword_prefix")) {
    return Unsupported("BPE option", "continuing_subword_prefix");
  }
  if (!IsNullOrEmpty(m, "end_of_word_suffix")) return Unsupported("BPE option", "end_of_word_suffix");
  return OkStatus();
}

// Fills the per-id tables from model.vocab; by_bytes maps raw token bytes to ids.
Status LoadVocab(const json& vocab, int32_t max_added_id, TokenizerImpl& t,
                 tok::BytesToId& by_bytes) {
  int32_t max_id = max_added_id;
  for (const auto& [tok, id_json] : vocab.items()) {
    PD_ASSIGN_OR_RETURN(int32_t id, TokenId(id_json, "vocab token '" + tok + "'"));
    max_id = std::max(max_id, id);
  }
  t.id_bytes.assign(max_id + 1, std::string());
  t.id_token.assign(max_id + 1, std::string());
  t.id_special.assign(max_id + 1, 0);
  by_bytes.reserve(vocab.size());
  t.token_to_id.reserve(vocab.size() + 512);
  std::string raw;
  for (const auto& [tok, id_json] : vocab.items()) {
    const int32_t id = id_json.get<int32_t>();  // checked by TokenId above
    t.id_token[id] = tok;
    t.token_to_id[tok] = id;
    if (ByteLevelToBytes(tok, &raw)) {
      t.id_bytes[id] = raw;
      by_bytes.emplace(raw, id);
    } else {
      t.id_bytes[id] = tok;  // the ByteLevel decoder passes such tokens through unchanged
    }
  }
  return OkStatus();
}

// Builds the merge table; merges are "a b" strings or ["a", "b"] pairs, rank = position.
StatusOr<tok::MergeTable> LoadMerges(const json& merges, const tok::BytesToId& token_to_id) {
  tok::MergeTable table;
  table.Reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& mj = merges[rank];
    std::string a, b;
    if (mj.is_string()) {
      const std::string s = mj;
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return InvalidArgument("tokenizer.json: bad merge '" + s + "'");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      a = mj.at(0);
      b = mj.at(1);
    }
    auto ia = token_to_id.find(a), ib = token_to_id.find(b), im = token_to_id.find(a + b);
    if (ia == token_to_id.end() || ib == token_to_id.end() || im == token_to_id.end()) {
      return InvalidArgument("tokenizer.json: merge '" + a + " " + b + "' uses a token not in vocab");
    }
    table.Insert(ia->second, ib->second, static_cast<int32_t>(rank), im->second);
  }
  return table;
}

// Reads the BPE model (vocab, merges, options) into the id tables and t.bpe.
Status LoadModel(const json& m, int32_t max_added_id, TokenizerImpl& t) {
  PD_RETURN_IF_ERROR(CheckBpeOptions(m));
  tok::BytesToId by_bytes;
  PD_RETURN_IF_ERROR(LoadVocab(m.at("vocab"), max_added_id, t, by_bytes));
  std::array<int32_t, 256> byte_ids;
  for (int b = 0; b < 256; ++b) {
    auto it = by_bytes.find(std::string(1, static_cast<char>(b)));
    byte_ids[b] = it == by_bytes.end() ? -1 : it->second;
  }
  PD_ASSIGN_OR_RETURN(tok::MergeTable table, LoadMerges(m.at("merges"), t.token_to_id));
  tok::BpeModel::Config cfg;
  cfg.ignore_merges = m.value("ignore_merges", false);
  cfg.fuse_unk = m.value("fuse_unk", false);
  if (!IsNullOrEmpty(m, "unk_token")) {
    auto it = t.token_to_id.find(m["unk_token"].get<std::string>());
    if (it != t.token_to_id.end()) cfg.unk_id = it->second;
  }
  t.bpe = std::make_unique<tok::BpeModel>(cfg, byte_ids, std::move(by_bytes), std::move(table));
  return OkStatus();
}

Status LoadAddedTokens(const json& added, TokenizerImpl& t) {
  std::string raw;
  for (const json& a : added) {
    const std::string content = a.at("content");
    for (const char* opt : {"lstrip", "rstrip", "single_word"}) {
      if (a.value(opt, false)) {
        return Unimplemented("tokenizer.json: added token '" + content + "' uses unsupported " +
                             "option '" + opt + "'");
      }
    }
    const int32_t id = a.at("id");  // checked by TokenId in Load()
    t.id_token[id] = content;
    t.id_special[id] = a.value("special", false);
    t.id_bytes[id] = ByteLevelToBytes(content, &raw) ? raw : content;
    t.token_to_id[content] = id;
    if (a.value("normalized", false)) {
      t.normalized_added.Add(t.nfc ? unicode::Nfc(content) : content, id);
    } else {
      t.raw_added.Add(content, id);
    }
  }
  return OkStatus();
}

Status Load(const json& j, TokenizerImpl& t) {
  if (!j.is_object()) return InvalidArgument("tokenizer.json: top level is not an object");
  for (const char* k : {"truncation", "padding"}) {
    if (j.contains(k) && !j[k].is_null()) {
      PD_LOG_WARN("tokenizer.json: ignoring '{}' settings (pdserve applies its own limits)", k);
    }
  }
  const json empty = json::array();
  const json& added = j.contains("added_tokens") ? j["added_tokens"] : empty;
  int32_t max_added = -1;
  for (const json& a : added) {
    PD_ASSIGN_OR_RETURN(int32_t id, TokenId(a.at("id"), "added token"));
    max_added = std::max(max_added, id);
  }
  PD_RETURN_IF_ERROR(LoadModel(j.at("model"), max_added, t));
  PD_RETURN_IF_ERROR(LoadNormalizer(j.value("normalizer", json()), t));
  PD_RETURN_IF_ERROR(LoadAddedTokens(added, t));
  const json pre = j.value("pre_tokenizer", json());
  if (pre.is_null()) {
    return Unimplemented("tokenizer.json: pre_tokenizer null (only byte-level BPE is supported)");
  }
  PD_RETURN_IF_ERROR(LoadPreTokenizer(pre, t));
  bool byte_level = false;
  for (const auto& s : t.pre_steps) byte_level |= s.kind == tok::PreTokStep::Kind::kByteLevel;
  if (!byte_level) {
    return Unimplemented("tokenizer.json: pre_tokenizer has no ByteLevel step (only byte-level "
                         "BPE is supported)");
  }
  PD_RETURN_IF_ERROR(LoadPostProcessor(j.value("post_processor", json()), t));
  return LoadDecoder(j.value("decoder", json()));
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text) {
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    json j = json::parse(json_text);
    PD_RETURN_IF_ERROR(Load(j, *impl));
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("tokenizer.json: malformed: ") + e.what());
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("tokenizer: cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  auto result = FromJson(ss.str());
  if (!result.ok()) return result.status().WithContext(path);
  return result;
}

}  // namespace pd
