// OpenAI request parsing/validation, error mapping (HTTP status + OpenAI error body) and SSE
// framing / stop-string matching of the router's HTTP API.
#include "router/http/openai_request.h"

#include <gtest/gtest.h>

#include "router/http/openai_error.h"
#include "router/http/sse.h"

namespace pd::http {
namespace {

struct Parsed {
  StatusOr<OpenAiRequest> r;
  std::string param;
};

Parsed P(const std::string& body, bool chat = false) {
  std::string param;
  auto r = ParseOpenAiRequest(body, chat, &param);
  return {std::move(r), param};
}

// HTTP status and body of a refused request.
std::pair<int, Json> Refusal(const std::string& body, bool chat = false) {
  Parsed p = P(body, chat);
  EXPECT_FALSE(p.r.ok()) << body;
  const HttpError e = ErrorFromStatus(p.r.status(), 0, p.param);
  return {e.status, Json::parse(ErrorBody(e))};
}

TEST(OpenAiRequest, CompletionsFields) {
  Parsed p = P(R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0,"top_p":0.5,
                   "seed":7,"stop":["a","bc"],"stop_token_ids":[3],"stream":true,
                   "stream_options":{"include_usage":true},"n":1})");
  ASSERT_TRUE(p.r.ok()) << p.r.status().ToString();
  const OpenAiRequest& r = *p.r;
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt_text, "hi");
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_EQ(r.temperature, 0);
  EXPECT_EQ(r.top_p, 0.5);
  EXPECT_EQ(*r.seed, 7u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.stop_token_ids, (std::vector<int32_t>{3}));
  EXPECT_TRUE(r.stream && r.include_usage);
  Parsed ids = P(R"({"model":"m","prompt":[1,2,3],"stop":"x"})");
  ASSERT_TRUE(ids.r.ok());
  EXPECT_TRUE(ids.r->prompt_is_ids);
  EXPECT_EQ(ids.r->prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ids.r->stop, (std::vector<std::string>{"x"}));
  EXPECT_FALSE(ids.r->max_tokens.has_value());
}

TEST(OpenAiRequest, ChatFields) {
  Parsed p = P(R"({"model":"m","messages":[{"role":"system","content":"s"},
                  {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                  {"role":"assistant","content":null}],"max_completion_tokens":3,
                  "tools":[{"type":"function"}],"chat_template_kwargs":{"enable_thinking":false}})",
               true);
  ASSERT_TRUE(p.r.ok()) << p.r.status().ToString();
  EXPECT_EQ(p.r->messages.size(), 3u);
  EXPECT_EQ(p.r->messages[1]["content"], "ab");
  EXPECT_EQ(p.r->messages[2]["content"], "");
  EXPECT_EQ(*p.r->max_tokens, 3);
  EXPECT_EQ(p.r->template_vars["enable_thinking"], false);
  EXPECT_TRUE(p.r->template_vars.contains("tools"));
}

TEST(OpenAiRequest, BadInputIs400WithParam) {
  struct Case {
    const char* body;
    bool chat;
    const char* param;
    const char* says;
  } cases[] = {
      {"{not json", false, "", "not valid JSON"},
      {"[1]", false, "body", "JSON object"},
      {R"({"prompt":"x"})", false, "model", "is required"},
      {R"({"model":"m"})", false, "prompt", "is required"},
      {R"({"model":"m","prompt":7})", false, "prompt", "string or a list of token ids"},
      {R"({"model":"m","prompt":[1,-2]})", false, "prompt", "non-negative"},
      {R"({"model":"m","prompt":["a","b"]})", false, "prompt", "single prompt"},
      {R"({"model":"m","prompt":"x","n":2})", false, "n", "must be 1"},
      {R"({"model":"m","prompt":"x","max_tokens":-1})", false, "max_tokens", "positive integer"},
      {R"({"model":"m","prompt":"x","max_tokens":"5"})", false, "max_tokens", "positive integer"},
      {R"({"model":"m","prompt":"x","temperature":3})", false, "temperature", "between"},
      {R"({"model":"m","prompt":"x","top_p":"a"})", false, "top_p", "number"},
      {R"({"model":"m","prompt":"x","stop":[1]})", false, "stop", "list of strings"},
      {R"({"model":"m","prompt":"x","stop":""})", false, "stop", "not be empty"},
      {R"({"model":"m","prompt":"x","stream":"yes"})", false, "stream", "boolean"},
      {R"({"model":"m","prompt":"x","stream_options":{"include_usage":true}})", false,
       "stream_options", "only allowed"},
      {R"({"model":"m","prompt":"x","logprobs":2})", false, "logprobs", "not supported"},
      {R"({"model":"m","prompt":"x","stop_token_ids":[1.5]})", false, "stop_token_ids",
       "token ids"},
      {R"({"model":"m","messages":[]})", true, "messages", "non-empty"},
      {R"({"model":"m","messages":[{"content":"x"}]})", true, "messages[0].role", "string"},
      {R"({"model":"m","messages":[{"role":"user","content":5}]})", true, "messages[0].content",
       "string"},
  };
  for (const Case& c : cases) {
    auto [status, body] = Refusal(c.body, c.chat);
    EXPECT_EQ(status, 400) << c.body;
    EXPECT_EQ(body["error"]["type"], "invalid_request_error") << c.body;
    EXPECT_EQ(body["error"]["param"], *c.param ? Json(c.param) : Json()) << c.body;
    EXPECT_NE(body["error"]["message"].get<std::string>().find(c.says), std::string::npos)
        << c.body << " -> " << body.dump();
  }
}

TEST(OpenAiError, StatusMapping) {
  EXPECT_EQ(ErrorFromStatus(Unauthenticated("invalid API key"), 0).status, 401);
  const HttpError nf = ErrorFromStatus(NotFound("The model 'x' does not exist"), 0, "model");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.code, "model_not_found");
  const HttpError busy = ErrorFromStatus(ResourceExhausted("router overloaded"), 1500);
  EXPECT_EQ(busy.status, 429);
  EXPECT_EQ(busy.retry_after_s, 2);
  EXPECT_EQ(ErrorFromStatus(ResourceExhausted("x"), 0).retry_after_s, 1);
  EXPECT_EQ(ErrorFromStatus(Unavailable("no decode"), 0).status, 503);
  EXPECT_EQ(ErrorFromStatus(DeadlineExceeded("slow"), 0).status, 504);
  EXPECT_EQ(ErrorFromStatus(Internal("bug"), 0).status, 500);
  EXPECT_EQ(ErrorFromStatus(DataLoss("bug"), 0).status, 500);
  EXPECT_EQ(ErrorFromStatus(FailedPrecondition("template raised"), 0).status, 400);
  const Json b = Json::parse(ErrorBody(ErrorFromStatus(Unauthenticated("missing API key"), 0)));
  EXPECT_EQ(b, Json::parse(R"({"error":{"message":"missing API key","type":"authentication_error",
                                        "param":null,"code":"invalid_api_key"}})"));
}

TEST(Sse, Framing) {
  EXPECT_EQ(SseData(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
}

TEST(StopMatcher, HoldsBackPrefixesAndCutsAtTheStop) {
  StopMatcher m({"END", "\n\n"});
  EXPECT_EQ(m.Push("hello E"), "hello ");  // "E" may start "END"
  EXPECT_EQ(m.Push("x"), "Ex");
  EXPECT_EQ(m.Push("yz\n"), "yz");
  EXPECT_EQ(m.Push("a EN"), "\na ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push("D tail"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Push("more"), "");
  EXPECT_EQ(m.Flush(), "");
  StopMatcher n({"xyz"});
  EXPECT_EQ(n.Push("abx"), "ab");
  EXPECT_EQ(n.Flush(), "x");  // generation ended: held text was not a stop
  StopMatcher none({});
  EXPECT_EQ(none.Push("abc"), "abc");
}

}  // namespace
}  // namespace pd::http
