// OpenAI HTTP API: routes, access check, prompt building and the Generate-driven responses
// (one JSON or an SSE stream). See openai_server.h and docs/http-api.md.
#include "router/http/openai_server.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "common/logging.h"
#include "pdserve.grpc.pb.h"
#include "router/http/chat_template.h"
#include "router/http/openai_error.h"
#include "router/http/openai_request.h"
#include "router/http/sse.h"
#include "router/request_prep.h"

namespace pd::http {
namespace {

namespace v1 = ::pdserve::v1;

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void SendError(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  res.set_content(ErrorBody(e), "application/json");
}

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return OkStatus();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

// The router's retry hint (trailing metadata `retry-after-ms`), else `dflt`.
int RetryAfterMs(const grpc::ClientContext& ctx, int dflt) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find("retry-after-ms");
  if (it == md.end()) return dflt;
  try {
    return std::stoi(std::string(it->second.data(), it->second.size()));
  } catch (...) {
    return dflt;
  }
}

const char* FinishName(int reason) { return reason == v1::FINISH_REASON_STOP ? "stop" : "length"; }

// One Generate call in progress and what the response needs from it.
struct Gen {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  std::unique_ptr<StopMatcher> stop;
  OpenAiRequest req;
  std::string id, model;
  int64_t created = 0;
  int prompt_tokens = 0, completion_tokens = 0;
  std::string finish;        // "" until finished
  std::vector<int32_t> ids;  // generated ids (with the one that completed a stop string)
  v1::GenerateResponse first;
  bool have_first = false;

  // Handles one message: returns the text to emit; sets `finish` on the last one.
  std::string Take(const v1::GenerateResponse& m) {
    completion_tokens += m.token_ids_size();
    ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    std::string text = stop->Push(m.text());
    if (stop->stopped()) {
      finish = "stop";
      ctx.TryCancel();  // the router cancels the decode: the KV is freed now
      return text;
    }
    if (m.finish_reason() != 0) {
      finish = FinishName(m.finish_reason());
      if (m.has_usage()) completion_tokens = m.usage().completion_tokens();
      text += stop->Flush();
    }
    return text;
  }
  Json Usage() const {
    Json u;
    u["prompt_tokens"] = prompt_tokens;
    u["completion_tokens"] = completion_tokens;
    u["total_tokens"] = prompt_tokens + completion_tokens;
    return u;
  }
};

std::string RandomHex() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace

class OpenAiServer::Impl {
 public:
  Impl(OpenAiServerOptions o, std::shared_ptr<grpc::Channel> ch, std::vector<HttpModel> m)
      : opts_(std::move(o)), stub_(v1::Inference::NewStub(ch)), models_(std::move(m)) {}

  Status Start();
  void Stop() {
    if (!started_) return;
    svr_.stop();
    if (thread_.joinable()) thread_.join();
    started_ = false;
  }
  int port() const { return bound_; }

 private:
  bool Authorized(const httplib::Request& req, httplib::Response& res) const {
    const Status s = CheckApiKey(opts_.api_keys, req.get_header_value("Authorization"));
    if (s.ok()) return true;
    HttpError e = ErrorFromStatus(s, 0);
    res.set_header("WWW-Authenticate", "Bearer");
    SendError(res, e);
    return false;
  }
  const HttpModel* FindModel(const std::string& name) const {
    for (const HttpModel& m : models_) {
      if (m.name == name) return &m;
    }
    return nullptr;
  }
  Json ModelJson(const HttpModel& m) const {
    return {{"id", m.name},
            {"object", "model"},
            {"created", created_},
            {"owned_by", "pdserve"},
            {"max_model_len", m.max_model_len}};
  }
  void Models(const httplib::Request& req, httplib::Response& res);
  void Completions(const httplib::Request& req, httplib::Response& res, bool chat);
  Status PromptIds(const HttpModel& m, const OpenAiRequest& r, std::vector<int32_t>* ids,
                   std::string* param) const;
  void Respond(std::shared_ptr<Gen> g, httplib::Response& res);
  void Stream(std::shared_ptr<Gen> g, httplib::Response& res);
  Json Chunk(const Gen& g, const std::string& text, bool role, const char* finish) const;

  OpenAiServerOptions opts_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::vector<HttpModel> models_;
  httplib::Server svr_;
  std::thread thread_;
  int bound_ = 0;
  bool started_ = false;
  int64_t created_ = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
};

Status OpenAiServer::Impl::Start() {
  const int threads = opts_.threads;
  svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr_.set_payload_max_length(opts_.max_body_bytes);
  svr_.Get("/v1/models", [this](const auto& q, auto& r) { Models(q, r); });
  svr_.Get(R"(/v1/models/(.+))", [this](const auto& q, auto& r) { Models(q, r); });
  svr_.Post("/v1/completions", [this](const auto& q, auto& r) { Completions(q, r, false); });
  svr_.Post("/v1/chat/completions", [this](const auto& q, auto& r) { Completions(q, r, true); });
  svr_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    HttpError e;
    e.status = res.status;
    e.type = "invalid_request_error";
    e.message = res.status == 404   ? "unknown route: " + req.method + " " + req.path
                : res.status == 413 ? "request body too large"
                                    : "HTTP error " + std::to_string(res.status);
    if (res.status == 404) e.code = "unknown_url";
    SendError(res, e);
  });
  svr_.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& ex) {
          what = ex.what();
        } catch (...) {
        }
        SendError(res, ErrorFromStatus(Internal(what), 0));
      });
  bound_ = opts_.port == 0 ? svr_.bind_to_any_port(opts_.host)
                           : (svr_.bind_to_port(opts_.host, opts_.port) ? opts_.port : -1);
  if (bound_ <= 0) {
    return Unavailable("HTTP: cannot listen on " + opts_.host + ":" + std::to_string(opts_.port));
  }
  thread_ = std::thread([this] { svr_.listen_after_bind(); });
  started_ = true;
  PD_LOG_INFO("OpenAI HTTP API on {}:{} ({} model(s), API keys {})", opts_.host, bound_,
              models_.size(), opts_.api_keys.enabled() ? "required" : "off");
  return OkStatus();
}

void OpenAiServer::Impl::Models(const httplib::Request& req, httplib::Response& res) {
  if (!Authorized(req, res)) return;
  if (req.matches.size() > 1) {
    const HttpModel* m = FindModel(req.matches[1]);
    if (!m) {
      return SendError(res, ErrorFromStatus(NotFound("The model '" + std::string(req.matches[1]) +
                                                     "' does not exist"),
                                            0, "model"));
    }
    return res.set_content(Dump(ModelJson(*m)), "application/json");
  }
  Json data = Json::array();
  for (const HttpModel& m : models_) data.push_back(ModelJson(m));
  res.set_content(Dump(Json{{"object", "list"}, {"data", data}}), "application/json");
}

Status OpenAiServer::Impl::PromptIds(const HttpModel& m, const OpenAiRequest& r,
                                     std::vector<int32_t>* ids, std::string* param) const {
  if (!r.chat && r.prompt_is_ids) {
    *ids = r.prompt_ids;
    return OkStatus();
  }
  *param = r.chat ? "messages" : "prompt";
  if (!m.tokenizer) {
    return InvalidArgument("model '" + m.name + "' has no tokenizer.json; send the prompt as " +
                           (r.chat ? "token ids to /v1/completions" : "a list of token ids"));
  }
  if (!r.chat) {  // as the router tokenizes gRPC text prompts
    PD_ASSIGN_OR_RETURN(*ids, m.tokenizer->Encode(r.prompt_text, /*add_special_tokens=*/true));
    return OkStatus();
  }
  bool templated = false;
  std::string prompt;
  if (m.chat) {
    StatusOr<std::string> s = m.chat->Render(r.messages, r.add_generation_prompt, r.template_vars);
    if (s.ok()) {
      prompt = std::move(s).value();
      templated = true;
    } else if (s.status().code() != StatusCode::kUnimplemented) {
      return s.status();  // the template refused the conversation: a client error
    } else {
      PD_LOG_WARN("{}: {}; using the plain chat format", m.name, s.status().message());
    }
  }
  if (!templated) prompt = RenderPlainChat(r.messages, r.add_generation_prompt);
  // A template writes its own BOS; the plain format gets the tokenizer's special tokens.
  PD_ASSIGN_OR_RETURN(*ids, m.tokenizer->Encode(prompt, /*add_special_tokens=*/!templated));
  return OkStatus();
}

void OpenAiServer::Impl::Completions(const httplib::Request& req, httplib::Response& res,
                                     bool chat) {
  if (!Authorized(req, res)) return;
  std::string param;
  StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(req.body, chat, &param);
  if (!parsed.ok()) return SendError(res, ErrorFromStatus(parsed.status(), 0, param));
  auto g = std::make_shared<Gen>();
  g->req = std::move(parsed).value();
  const HttpModel* m = FindModel(g->req.model);
  if (!m) {
    return SendError(
        res,
        ErrorFromStatus(NotFound("The model '" + g->req.model + "' does not exist"), 0, "model"));
  }
  std::vector<int32_t> ids;
  if (Status s = PromptIds(*m, g->req, &ids, &param); !s.ok()) {
    return SendError(res, ErrorFromStatus(s, 0, param));
  }
  const OpenAiRequest& r = g->req;
  v1::GenerateRequest greq;
  greq.set_model(m->name);
  for (int32_t t : ids) greq.mutable_token_ids()->add_ids(t);
  int max_tokens = r.max_tokens.value_or(0);
  if (!r.max_tokens) {  // OpenAI: 16 for completions; chat: what the context leaves
    const int room = m->max_model_len - static_cast<int>(ids.size());
    max_tokens = chat ? std::max(1, std::min(room, opts_.max_tokens_limit)) : 16;
  }
  greq.set_max_tokens(max_tokens);
  greq.mutable_sampling()->set_temperature(static_cast<float>(r.temperature));
  greq.mutable_sampling()->set_top_p(static_cast<float>(r.top_p));
  greq.mutable_sampling()->set_top_k(r.top_k);
  greq.mutable_sampling()->set_seed(r.seed ? *r.seed : std::random_device{}());
  greq.set_ignore_eos(r.ignore_eos);
  for (int32_t t : r.stop_token_ids) greq.add_stop_token_ids(t);
  g->id = (chat ? "chatcmpl-" : "cmpl-") + RandomHex();
  g->model = m->name;
  g->created = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  g->prompt_tokens = static_cast<int>(ids.size());
  g->stop = std::make_unique<StopMatcher>(r.stop);
  const std::string auth = req.get_header_value("Authorization");
  if (!auth.empty()) g->ctx.AddMetadata("authorization", auth);
  g->reader = stub_->Generate(&g->ctx, greq);
  // Errors (bad request, overload, no instance) come before the first token: read it now so
  // that they get their HTTP status instead of a 200 stream.
  g->have_first = g->reader->Read(&g->first);
  if (!g->have_first) {
    const grpc::Status s = g->reader->Finish();
    const Status st =
        s.ok() ? Internal("the router ended the stream without a result") : FromGrpc(s);
    return SendError(res, ErrorFromStatus(st, RetryAfterMs(g->ctx, opts_.retry_after_ms)));
  }
  if (r.stream) return Stream(g, res);
  Respond(g, res);
}

void OpenAiServer::Impl::Respond(std::shared_ptr<Gen> g, httplib::Response& res) {
  std::string text = g->Take(g->first);
  v1::GenerateResponse m;
  while (g->finish.empty() && g->reader->Read(&m)) text += g->Take(m);
  if (!g->finish.empty() && g->finish == "stop" && g->stop->stopped()) {
    while (g->reader->Read(&m)) {
    }
  }
  const grpc::Status s = g->reader->Finish();
  if (g->finish.empty()) {
    const Status st =
        s.ok() ? Internal("the router ended the stream without a finish") : FromGrpc(s);
    return SendError(res, ErrorFromStatus(st, RetryAfterMs(g->ctx, opts_.retry_after_ms)));
  }
  Json choice = {{"index", 0}};
  if (g->req.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = g->finish;
  choice["token_ids"] = g->ids;  // extension: what was generated (models without tokenizer.json)
  Json out = {{"id", g->id},
              {"object", g->req.chat ? "chat.completion" : "text_completion"},
              {"created", g->created},
              {"model", g->model},
              {"choices", Json::array({choice})},
              {"usage", g->Usage()}};
  res.set_content(Dump(out), "application/json");
}

Json OpenAiServer::Impl::Chunk(const Gen& g, const std::string& text, bool role,
                               const char* finish) const {
  Json choice = {{"index", 0}};
  if (g.req.chat) {
    Json delta = Json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || role) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish ? Json(finish) : Json();
  Json c = {{"id", g.id},
            {"object", g.req.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", g.created},
            {"model", g.model},
            {"choices", Json::array({choice})}};
  if (g.req.include_usage) c["usage"] = nullptr;
  return c;
}

void OpenAiServer::Impl::Stream(std::shared_ptr<Gen> g, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [this, g](size_t, httplib::DataSink& sink) {
    auto put = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
    auto send = [&](const Json& j) { return put(SseData(Dump(j))); };
    auto gone = [&] {  // the client disconnected: cancel the Generate call (frees its KV)
      g->ctx.TryCancel();
      v1::GenerateResponse drain;
      while (g->reader->Read(&drain)) {
      }
      g->reader->Finish();
      PD_LOG_INFO("{}: HTTP client disconnected; request cancelled", g->id);
      return false;
    };
    if (g->req.chat && !send(Chunk(*g, "", true, nullptr))) return gone();
    v1::GenerateResponse m = g->first;
    bool have = true;
    while (have) {
      const std::string text = g->Take(m);
      const bool last = !g->finish.empty();
      if (!text.empty() || (last && !g->req.chat)) {
        if (!send(Chunk(*g, text, false, last && !g->req.chat ? g->finish.c_str() : nullptr))) {
          return gone();
        }
      }
      if (last) break;
      have = g->reader->Read(&m);
    }
    if (g->stop->stopped()) {
      while (g->reader->Read(&m)) {
      }
    }
    const grpc::Status s = g->reader->Finish();
    if (g->finish.empty()) {  // the stream failed after it started: an error event
      const Status st =
          s.ok() ? Internal("the router ended the stream without a finish") : FromGrpc(s);
      const HttpError e = ErrorFromStatus(st, RetryAfterMs(g->ctx, opts_.retry_after_ms));
      put(SseData(ErrorBody(e)));
    } else {
      if (g->req.chat) send(Chunk(*g, "", false, g->finish.c_str()));
      if (g->req.include_usage) {
        Json u = Chunk(*g, "", false, nullptr);
        u["choices"] = Json::array();
        u["usage"] = g->Usage();
        send(u);
      }
    }
    put(SseDone());
    sink.done();
    return true;
  });
}

OpenAiServer::OpenAiServer(OpenAiServerOptions opts, std::shared_ptr<grpc::Channel> router,
                           std::vector<HttpModel> models)
    : impl_(std::make_unique<Impl>(std::move(opts), std::move(router), std::move(models))) {}
OpenAiServer::~OpenAiServer() { Stop(); }
Status OpenAiServer::Start() { return impl_->Start(); }
void OpenAiServer::Stop() { impl_->Stop(); }
int OpenAiServer::port() const { return impl_->port(); }

}  // namespace pd::http
