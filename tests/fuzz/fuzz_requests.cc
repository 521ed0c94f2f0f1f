// libFuzzer target: the gRPC requests a router or daemon receives, parsed from arbitrary bytes
// and run through the same checks the services use: router::PrepareGenerate (public
// GenerateRequest: field limits, model, tokenization, max_tokens, context) and
// serving::Validate{Reserve,Decode,Prefill}Request (internal requests).
// Input: byte 0 selects the message (% 4: Generate, Reserve, Decode, Prefill), the rest is its
// protobuf encoding. Accepted requests must satisfy the limits (checked independently here);
// refusals must be INVALID_ARGUMENT with a message.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "pdserve.pb.h"
#include "router/generate_check.h"
#include "serving/request_check.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace v1 = ::pdserve::v1;
constexpr int kVocab = 261;
constexpr int kContext = 128;
constexpr int kMaxTokensLimit = 64;
constexpr int kBlock = 16;

void Check(bool ok) {
  if (!ok) std::abort();
}

void AppendUtf8(uint32_t cp, std::string* s) {
  if (cp < 0x80) {
    s->push_back(static_cast<char>(cp));
  } else {  // the byte-level alphabet stays below U+0800
    s->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// GPT-2 byte-level BPE over 256 bytes + 3 merges + 2 added tokens (vocab 261), the tokenizer of
// tests/fuzz/make_corpus.py's tiny_tokenizer().
std::string TinyTokenizerJson() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xa1; b <= 0xac; ++b) bs.push_back(b);
  for (int b = 0xae; b <= 0xff; ++b) bs.push_back(b);
  std::vector<uint32_t> ch(256);
  std::vector<bool> in(256, false);
  for (int b : bs) in[b] = true, ch[b] = static_cast<uint32_t>(b);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (!in[b]) ch[b] = static_cast<uint32_t>(256 + n++);
  }
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string k;
    AppendUtf8(ch[b], &k);
    if (k == "\"" || k == "\\") k = "\\" + k;
    vocab += (b ? "," : "") + std::string("\"") + k + "\":" + std::to_string(b);
  }
  vocab += ",\"\xc4\xa0t\":256,\"he\":257,\"\xc4\xa0the\":258";
  return R"({"version":"1.0","normalizer":null,"added_tokens":[)"
         R"({"id":259,"content":"<s>","special":true,"normalized":false},)"
         R"({"id":260,"content":"<s>x","special":false,"normalized":false}],)"
         R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,)"
         R"("use_regex":true},"post_processor":{"type":"TemplateProcessing","single":[)"
         R"({"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],)"
         R"("special_tokens":{"<s>":{"id":"<s>","ids":[259],"tokens":["<s>"]}}},)"
         R"("decoder":{"type":"ByteLevel"},"model":{"type":"BPE","dropout":null,)"
         R"("unk_token":null,"vocab":{)" +
         vocab + R"(},"merges":["\u0120 t",["h","e"],["\u0120t","he"]]}})";
}

const std::vector<pd::router::ServedModel>& Models() {
  static const std::vector<pd::router::ServedModel> models = [] {
    std::vector<pd::router::ServedModel> m(2);
    auto tok = pd::Tokenizer::FromJson(TinyTokenizerJson());
    Check(tok.ok());
    m[0].name = "tiny";
    m[0].tokenizer = std::move(tok).value();
    m[1].name = "ids-only";
    for (auto& x : m) {
      x.config.vocab_size = kVocab;
      x.config.max_position_embeddings = kContext;
      x.block_size = kBlock;
      x.max_model_len = kContext;
    }
    return m;
  }();
  return models;
}

const pd::serving::RequestLimits kLimits = {kVocab, kContext, kMaxTokensLimit, kBlock};

// A refusal names what is wrong, with the code the services send for bad requests.
void CheckRefusal(const pd::Status& s) {
  Check(s.code() == pd::StatusCode::kInvalidArgument);
  Check(!s.message().empty());
}

template <typename Ids>
void CheckBudget(const Ids& ids, int64_t max_tokens) {
  Check(ids.size() > 0);
  for (int32_t t : ids) Check(t >= 0 && t < kVocab);
  Check(max_tokens >= 1 && max_tokens <= kMaxTokensLimit);
  Check(static_cast<int64_t>(ids.size()) + max_tokens <= kContext);
}

template <typename Stops>
void CheckStops(const Stops& stops) {
  Check(stops.size() <= pd::serving::kMaxStopTokenIds);
  for (int32_t t : stops) Check(t >= 0 && t < kVocab);
}

void Generate(const v1::GenerateRequest& req) {
  auto r = pd::router::PrepareGenerate(Models(), req, kMaxTokensLimit);
  if (!r.ok()) return CheckRefusal(r.status());
  CheckBudget(r->ids, r->max_tokens);
  CheckStops(req.stop_token_ids());
  Check(r->max_tokens == req.max_tokens());
  Check(r->chain.size() == r->ids.size() / kBlock);
  Check(req.request_id().size() <= pd::serving::kMaxRequestIdBytes);
  const bool text = req.has_text() || !req.has_token_ids();
  if (text) {  // the prompt is exactly the tokenizer's encoding of the text
    Check(r->model->tokenizer != nullptr);
    auto ids = r->model->tokenizer->Encode(req.text(), true);
    Check(ids.ok() && *ids == r->ids);
  } else {
    Check(r->ids == std::vector<int32_t>(req.token_ids().ids().begin(), req.token_ids().ids().end()));
  }
}

void Reserve(const v1::ReserveRequest& req) {
  const pd::Status s = pd::serving::ValidateReserveRequest(req, kLimits);
  if (!s.ok()) return CheckRefusal(s);
  CheckBudget(req.prompt_ids(), req.max_tokens() > 0 ? req.max_tokens() : 1);
  Check(!req.request_id().empty() && req.lease_ms() >= 0);
}

void Decode(const v1::DecodeRequest& req) {
  const pd::Status s = pd::serving::ValidateDecodeRequest(req, kLimits);
  if (!s.ok()) return CheckRefusal(s);
  CheckBudget(req.prompt_ids(), req.max_tokens());
  CheckStops(req.stop_token_ids());
  Check(req.prefill_locally() || req.lease_id() != 0);
  Check(req.sampling().top_p() >= 0 && req.sampling().top_p() <= 1 && req.sampling().top_k() >= 0);
}

void Prefill(const v1::PrefillRequest& req) {
  v1::TransferTarget t;
  const pd::Status s = pd::serving::ValidatePrefillRequest(req, kLimits, &t);
  if (!s.ok()) return CheckRefusal(s);
  CheckBudget(req.prompt_ids(), 1);
  Check(t.block_size() == kBlock);
  Check(t.block_ids_size() == (req.prompt_ids_size() + kBlock - 1) / kBlock);
  for (int32_t b : t.block_ids()) Check(b >= 0 && b < t.num_blocks());
  Check(t.cached_tokens() % kBlock == 0 && t.cached_tokens() <= req.prompt_ids_size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {  // parse errors (invalid UTF-8 strings) are expected here
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  if (size == 0) return 0;
  const void* msg = data + 1;
  const int len = static_cast<int>(std::min<size_t>(size - 1, 1 << 20));
  switch (data[0] % 4) {
    case 0: {
      v1::GenerateRequest r;
      if (r.ParseFromArray(msg, len)) Generate(r);
      break;
    }
    case 1: {
      v1::ReserveRequest r;
      if (r.ParseFromArray(msg, len)) Reserve(r);
      break;
    }
    case 2: {
      v1::DecodeRequest r;
      if (r.ParseFromArray(msg, len)) Decode(r);
      break;
    }
    default: {
      v1::PrefillRequest r;
      if (r.ParseFromArray(msg, len)) Prefill(r);
      break;
    }
  }
  return 0;
}
