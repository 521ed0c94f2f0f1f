// Chat templates: the Jinja subset renders the real Llama 3 and Qwen3 templates byte-exactly as
// jinja2 3.1.6 does (golden strings from tests/http/gen_chat_golden.py), plus unit checks of the
// subset's constructs and of its refusals.
#include "router/http/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "router/http/jinja.h"

namespace pd::http {
namespace {

Json ReadJson(const std::string& name) {
  std::ifstream f(std::string(PD_TEST_DATA_DIR) + "/../http/data/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return Json::parse(ss.str());
}

TEST(ChatTemplate, GoldenLlama3AndQwen3) {
  const Json golden = ReadJson("chat_golden.json");
  ASSERT_GE(golden.size(), 10u);
  for (const Json& c : golden) {
    const Json t = ReadJson(c["template"].get<std::string>() + "_template.json");
    auto tmpl = ChatTemplate::FromSource(t["chat_template"], t["bos_token"], t["eos_token"]);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
    auto out = tmpl->Render(c["messages"], c["add_generation_prompt"], c["extra"]);
    ASSERT_TRUE(out.ok()) << c["case"] << ": " << out.status().ToString();
    EXPECT_EQ(*out, c["expected"].get<std::string>()) << c["template"] << " / " << c["case"];
  }
}

std::string R(const std::string& src, const Json& ctx = Json::object()) {
  auto t = jinja::Template::Parse(src);
  if (!t.ok()) return "PARSE: " + t.status().ToString();
  auto s = t->Render(ctx);
  return s.ok() ? *s : "RENDER: " + s.status().ToString();
}

TEST(Jinja, Expressions) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ 1 / 2 }}"),
            "7|3|-4|1|0.5");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none }}|{{ 'ab' + 'c' }}|{{ [1, 2] + [3] }}"), "a1None|abc|[1, 2, 3]");
  EXPECT_EQ(R("{{ x[::-1] }}|{{ x[1:] }}|{{ x[-1] }}|{{ 'hello'[1:3] }}", {{"x", {1, 2, 3}}}),
            "[3, 2, 1]|[2, 3]|3|el");
  EXPECT_EQ(R("{{ 'a' in 'cat' }}|{{ 2 not in [1] }}|{{ 'k' in d }}", {{"d", {{"k", 1}}}}),
            "True|True|True");
  EXPECT_EQ(R("{{ 'y' if a else 'n' }}{{ 'y' if b else 'n' }}", {{"a", true}, {"b", false}}), "yn");
  EXPECT_EQ(R("{{ '  x \n' | trim }}|{{ 'a,b' .split(',') | length }}|{{ 'AbC' | lower }}"),
            "x|2|abc");
  EXPECT_EQ(R("{{ ' x '.strip() }}|{{ '\nx'.lstrip('\n') }}|{{ 'x\n'.rstrip() }}|{{ "
              "'ab'.startswith('a') }}"),
            "x|x|x|True");
  EXPECT_EQ(R("{{ u is defined }}|{{ n is none }}|{{ s is string }}|{{ f is false }}|{{ u is not "
              "defined }}",
              {{"n", nullptr}, {"s", "x"}, {"f", false}}),
            "False|True|True|True|True");
  EXPECT_EQ(R("{{ m.role }}|{{ m['content'] }}|{{ m.missing is defined }}",
              {{"m", {{"role", "user"}, {"content", "hi"}}}}),
            "user|hi|False");
  EXPECT_EQ(R("{{ d | tojson }}", {{"d", {{"b", 1}, {"a", {1.5, "é\"", true, nullptr}}}}}),
            "{\"b\": 1, \"a\": [1.5, \"é\\\"\", true, null]}");
}

TEST(Jinja, StatementsAndWhitespace) {
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index0 }}{{ x }}{% if loop.last %}.{% endif %}{% endfor %}",
              {{"xs", {"a", "b"}}}),
            "0a1b.");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}"
              "{{ ns.n }}",
              {{"xs", {1, 2, 3}}}),
            "6");
  // set inside a loop does not leak out of it (why templates use namespace()).
  EXPECT_EQ(R("{% set v = 1 %}{% for x in [1] %}{% set v = 2 %}{% endfor %}{{ v }}"), "1");
  EXPECT_EQ(R("{% if a %}A{% elif b %}B{% else %}C{% endif %}", {{"b", true}}), "B");
  EXPECT_EQ(R("a  \n  {%- if true -%}  \n b {%- endif %}"), "ab");
  EXPECT_EQ(R("x\n  {% if true %}\ny{% endif %}\nz"), "x\nyz");  // lstrip + trim blocks
  EXPECT_EQ(R("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "13");
  EXPECT_EQ(R("{{ raise_exception('bad role') }}"),
            "RENDER: FAILED_PRECONDITION: chat template: bad role");
}

TEST(Jinja, UnsupportedIsReported) {
  EXPECT_NE(R("{% macro f() %}{% endmacro %}").find("UNIMPLEMENTED"), std::string::npos);
  EXPECT_NE(R("{{ x | wordwrap }}", {{"x", "a"}}).find("filter 'wordwrap'"), std::string::npos);
  EXPECT_NE(R("{% if x %}").find("INVALID_ARGUMENT"), std::string::npos);
}

TEST(ChatTemplate, PlainFallback) {
  const Json msgs = {{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", "U"}}};
  EXPECT_EQ(RenderPlainChat(msgs, true), "system: S\nuser: U\nassistant:");
  EXPECT_EQ(RenderPlainChat(msgs, false), "system: S\nuser: U\n");
}

}  // namespace
}  // namespace pd::http
