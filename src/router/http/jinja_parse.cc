// Jinja subset: template lexing (tags, whitespace control, trim_blocks/lstrip_blocks) and the
// expression/statement parser. See jinja.h for the supported subset.
#include <cctype>
#include <set>

#include "router/http/jinja_ast.h"

namespace pd::jinja {
namespace {

[[noreturn]] void Syntax(const std::string& m) { throw JinjaError(JinjaError::kSyntax, m); }
[[noreturn]] void Unsupported(const std::string& m) {
  throw JinjaError(JinjaError::kUnsupported, m);
}

struct Piece {
  enum Kind { kText, kOut, kStmt } kind;
  std::string s;
};

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// End of a tag starting at `i` (just after its opening), honouring quoted strings.
size_t FindClose(const std::string& src, size_t i, const char* close) {
  char quote = 0;
  for (; i + 1 < src.size(); ++i) {
    const char c = src[i];
    if (quote) {
      if (c == '\\')
        ++i;
      else if (c == quote)
        quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == close[0] && src[i + 1] == close[1]) {
      return i;
    }
  }
  Syntax(std::string("unclosed tag (missing '") + close + "')");
}

std::vector<Piece> Lex(const std::string& src) {
  std::vector<Piece> out;
  std::string text;
  bool strip_next = false;  // `-` on the previous closing tag
  bool trim_nl = false;     // trim_blocks after a block/comment tag
  size_t i = 0;
  auto flush = [&] {
    if (!text.empty()) out.push_back({Piece::kText, text});
    text.clear();
  };
  while (i < src.size()) {
    const size_t open = src.find('{', i);
    const bool tag = open != std::string::npos && open + 1 < src.size() &&
                     (src[open + 1] == '{' || src[open + 1] == '%' || src[open + 1] == '#');
    const size_t end = tag ? open : (open == std::string::npos ? src.size() : open + 1);
    std::string chunk = src.substr(i, end - i);
    if (trim_nl) {
      if (chunk.starts_with("\r\n"))
        chunk.erase(0, 2);
      else if (chunk.starts_with("\n"))
        chunk.erase(0, 1);
    }
    if (strip_next) {
      size_t k = 0;
      while (k < chunk.size() && IsWs(chunk[k])) ++k;
      chunk.erase(0, k);
    }
    // Reset only once real text (or a tag) follows: an empty chunk keeps nothing to strip.
    strip_next = trim_nl = false;
    text += chunk;
    if (!tag) {
      i = end;
      continue;
    }
    const char kind = src[open + 1];
    size_t body = open + 2;
    const bool minus = body < src.size() && src[body] == '-';
    const bool plus = body < src.size() && src[body] == '+';
    if (minus || plus) ++body;
    if (minus) {
      while (!text.empty() && IsWs(text.back())) text.pop_back();
    } else if (!plus && kind != '{') {  // lstrip_blocks
      size_t k = open;
      while (k > 0 && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
      if (k == 0 || src[k - 1] == '\n') {
        const size_t n = open - k;
        if (text.size() >= n) text.resize(text.size() - n);
      }
    }
    const char* close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t c = kind == '#' ? src.find("#}", body) : FindClose(src, body, close);
    if (c == std::string::npos) Syntax("unclosed comment");
    std::string inner = src.substr(body, c - body);
    const bool rminus = !inner.empty() && inner.back() == '-';
    if (rminus || (!inner.empty() && inner.back() == '+')) inner.pop_back();
    flush();
    if (kind == '{') out.push_back({Piece::kOut, inner});
    if (kind == '%') out.push_back({Piece::kStmt, inner});
    strip_next = rminus;
    trim_nl = kind != '{' && !rminus;
    i = c + 2;
  }
  flush();
  return out;
}

// ---- expression tokens ----------------------------------------------------------------------

struct Tok {
  enum Kind { kName, kStr, kInt, kFloat, kOp, kEnd } kind;
  std::string s;
};

std::vector<Tok> Tokenize(const std::string& s) {
  std::vector<Tok> t;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (IsWs(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      t.push_back({Tok::kName, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool flt = false;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) ||
                              (s[j] == '.' && !flt && j + 1 < s.size() &&
                               std::isdigit(static_cast<unsigned char>(s[j + 1]))))) {
        flt |= s[j] == '.';
        ++j;
      }
      t.push_back({flt ? Tok::kFloat : Tok::kInt, s.substr(i, j - i)});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          v += s[j];
          continue;
        }
        const char e = s[++j];
        v += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
      }
      if (j >= s.size()) Syntax("unterminated string literal");
      t.push_back({Tok::kStr, v});
      i = j + 1;
    } else {
      static const char* kTwo[] = {"//", "==", "!=", "<=", ">=", "**"};
      std::string op(1, c);
      for (const char* two : kTwo) {
        if (s.compare(i, 2, two) == 0) op = two;
      }
      if (std::string("()[]{}.,:|~+-*/%<>=!").find(c) == std::string::npos) {
        Syntax(std::string("unexpected character '") + c + "'");
      }
      t.push_back({Tok::kOp, op});
      i += op.size();
    }
  }
  t.push_back({Tok::kEnd, ""});
  return t;
}

// ---- expression parser ----------------------------------------------------------------------

class ExprParser {
 public:
  explicit ExprParser(const std::string& s) : t_(Tokenize(s)) {}

  bool AtEnd() const { return t_[p_].kind == Tok::kEnd; }
  bool IsName(const char* n) const { return t_[p_].kind == Tok::kName && t_[p_].s == n; }
  bool IsOp(const char* o) const { return t_[p_].kind == Tok::kOp && t_[p_].s == o; }
  bool TakeName(const char* n) { return IsName(n) ? (++p_, true) : false; }
  bool TakeOp(const char* o) { return IsOp(o) ? (++p_, true) : false; }
  void ExpectOp(const char* o) {
    if (!TakeOp(o)) Syntax(std::string("expected '") + o + "' near '" + t_[p_].s + "'");
  }
  std::string Name() {
    if (t_[p_].kind != Tok::kName) Syntax("expected a name near '" + t_[p_].s + "'");
    return t_[p_++].s;
  }
  void ExpectEnd() {
    if (!AtEnd()) Syntax("unexpected '" + t_[p_].s + "'");
  }

  // Full expression incl. `a if c else b`.
  ExprP Expression() {
    ExprP e = Or();
    if (!TakeName("if")) return e;
    auto c = Make(Expr::kCond);
    c->a.push_back(std::move(e));
    c->a.push_back(Or());
    c->a.push_back(TakeName("else") ? Expression() : nullptr);
    return c;
  }

 private:
  static ExprP Make(Expr::Op op) {
    auto e = std::make_unique<Expr>();
    e->op = op;
    return e;
  }
  static ExprP Bin(const std::string& op, ExprP l, ExprP r) {
    auto e = Make(Expr::kBin);
    e->name = op;
    e->a.push_back(std::move(l));
    e->a.push_back(std::move(r));
    return e;
  }
  ExprP Or() {
    ExprP e = And();
    while (TakeName("or")) e = Bin("or", std::move(e), And());
    return e;
  }
  ExprP And() {
    ExprP e = Not();
    while (TakeName("and")) e = Bin("and", std::move(e), Not());
    return e;
  }
  ExprP Not() {
    if (!TakeName("not")) return Compare();
    auto e = Make(Expr::kNot);
    e->a.push_back(Not());
    return e;
  }
  ExprP Compare() {
    ExprP e = Add();
    for (;;) {
      static const char* kOps[] = {"==", "!=", "<=", ">=", "<", ">"};
      bool hit = false;
      for (const char* o : kOps) {
        if (TakeOp(o)) {
          e = Bin(o, std::move(e), Add());
          hit = true;
          break;
        }
      }
      if (hit) continue;
      if (TakeName("in")) {
        e = Bin("in", std::move(e), Add());
      } else if (IsName("not") && t_[p_ + 1].kind == Tok::kName && t_[p_ + 1].s == "in") {
        p_ += 2;
        e = Bin("notin", std::move(e), Add());
      } else {
        return e;
      }
    }
  }
  ExprP Add() {
    ExprP e = Concat();
    for (;;) {
      if (TakeOp("+"))
        e = Bin("+", std::move(e), Concat());
      else if (TakeOp("-"))
        e = Bin("-", std::move(e), Concat());
      else
        return e;
    }
  }
  ExprP Concat() {
    ExprP e = Mul();
    while (TakeOp("~")) e = Bin("~", std::move(e), Mul());
    return e;
  }
  ExprP Mul() {
    ExprP e = Unary();
    for (;;) {
      if (IsOp("**")) Unsupported("operator '**'");
      const char* op = IsOp("*")    ? "*"
                       : IsOp("//") ? "//"
                       : IsOp("/")  ? "/"
                       : IsOp("%")  ? "%"
                                    : nullptr;
      if (!op) return e;
      ++p_;
      e = Bin(op, std::move(e), Unary());
    }
  }
  ExprP Unary() {
    if (TakeOp("-")) {
      auto e = Make(Expr::kNeg);
      e->a.push_back(Unary());
      return e;
    }
    if (TakeOp("+")) return Unary();
    return FilterTest(Postfix(Primary()));
  }
  void Args(Expr* e, const char* close) {
    while (!TakeOp(close)) {
      if (t_[p_].kind == Tok::kName && t_[p_ + 1].kind == Tok::kOp && t_[p_ + 1].s == "=") {
        std::string k = Name();
        ++p_;
        e->kw.emplace_back(k, Expression());
      } else {
        e->a.push_back(Expression());
      }
      if (!IsOp(close)) ExpectOp(",");
    }
  }
  ExprP FilterTest(ExprP e) {
    for (;;) {
      if (TakeOp("|")) {
        auto f = Make(Expr::kFilter);
        f->name = Name();
        f->a.push_back(std::move(e));
        if (TakeOp("(")) Args(f.get(), ")");
        e = std::move(f);
      } else if (TakeName("is")) {
        auto t = Make(Expr::kTest);
        t->negate = TakeName("not");
        t->name = Name();
        t->a.push_back(std::move(e));
        if (TakeOp("(")) Args(t.get(), ")");
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  ExprP Postfix(ExprP e) {
    for (;;) {
      if (TakeOp(".")) {
        auto x = Make(Expr::kAttr);
        x->name = Name();
        x->a.push_back(std::move(e));
        e = std::move(x);
      } else if (TakeOp("[")) {
        e = Subscript(std::move(e));
      } else if (TakeOp("(")) {
        auto x = Make(Expr::kCall);
        x->a.push_back(std::move(e));
        Args(x.get(), ")");
        e = std::move(x);
      } else {
        return e;
      }
    }
  }
  ExprP Subscript(ExprP e) {
    ExprP parts[3];
    int n = 0;
    for (;;) {
      if (!IsOp(":") && !IsOp("]")) parts[n] = Expression();
      if (TakeOp("]")) break;
      ExpectOp(":");
      if (++n > 2) Syntax("too many ':' in a slice");
    }
    if (n == 0) {
      auto x = Make(Expr::kIndex);
      x->a.push_back(std::move(e));
      x->a.push_back(std::move(parts[0]));
      return x;
    }
    auto x = Make(Expr::kSlice);
    x->a.push_back(std::move(e));
    for (auto& q : parts) x->a.push_back(std::move(q));
    return x;
  }
  ExprP Primary() {
    const Tok t = t_[p_++];
    auto lit = [](Json v) {
      auto e = Make(Expr::kLit);
      e->lit = std::move(v);
      return e;
    };
    switch (t.kind) {
      case Tok::kStr: {
        std::string s = t.s;
        while (t_[p_].kind == Tok::kStr) s += t_[p_++].s;  // adjacent literals concatenate
        return lit(s);
      }
      case Tok::kInt:
        return lit(std::stoll(t.s));
      case Tok::kFloat:
        return lit(std::stod(t.s));
      case Tok::kName: {
        if (t.s == "true" || t.s == "True") return lit(true);
        if (t.s == "false" || t.s == "False") return lit(false);
        if (t.s == "none" || t.s == "None") return lit(nullptr);
        auto e = Make(Expr::kName);
        e->name = t.s;
        return e;
      }
      case Tok::kOp:
        if (t.s == "(") {
          ExprP e = Expression();
          if (IsOp(",")) Unsupported("tuples");
          ExpectOp(")");
          return e;
        }
        if (t.s == "[") {
          auto e = Make(Expr::kList);
          Args(e.get(), "]");
          if (!e->kw.empty()) Syntax("'=' in a list");
          return e;
        }
        if (t.s == "{") {
          auto e = Make(Expr::kDict);
          while (!TakeOp("}")) {
            e->a.push_back(Expression());
            ExpectOp(":");
            e->a.push_back(Expression());
            if (!IsOp("}")) ExpectOp(",");
          }
          return e;
        }
        break;
      case Tok::kEnd:
        Syntax("unexpected end of expression");
    }
    Syntax("unexpected '" + t.s + "'");
  }

  std::vector<Tok> t_;
  size_t p_ = 0;
};

// ---- statements -----------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::vector<Piece> pieces) : ps_(std::move(pieces)) {}

  // Parses nodes until a statement whose keyword is in `ends` (returned, with its parser
  // positioned after the keyword) or the end of the template (returns "").
  std::string ParseBody(Body* out, const std::set<std::string>& ends, ExprParser** end_tag) {
    while (i_ < ps_.size()) {
      Piece& pc = ps_[i_++];
      if (pc.kind == Piece::kText) {
        auto n = std::make_unique<Node>();
        n->text = pc.s;
        out->push_back(std::move(n));
        continue;
      }
      if (pc.kind == Piece::kOut) {
        ExprParser ep(pc.s);
        auto n = std::make_unique<Node>();
        n->kind = Node::kOut;
        n->expr = ep.Expression();
        ep.ExpectEnd();
        out->push_back(std::move(n));
        continue;
      }
      cur_ = std::make_unique<ExprParser>(pc.s);
      const std::string kw = cur_->Name();
      if (ends.count(kw)) {
        *end_tag = cur_.get();
        return kw;
      }
      out->push_back(Statement(kw));
    }
    if (!ends.empty()) Syntax("missing '{% " + *ends.rbegin() + " %}'");
    return "";
  }

 private:
  NodeP Statement(const std::string& kw) {
    auto n = std::make_unique<Node>();
    ExprParser& ep = *cur_;
    if (kw == "if") {
      n->kind = Node::kIf;
      ExprP cond = ep.Expression();
      ep.ExpectEnd();
      for (;;) {
        Body b;
        ExprParser* end = nullptr;
        std::unique_ptr<ExprParser> keep;
        const std::string k = ParseBody(&b, {"elif", "else", "endif"}, &end);
        keep = std::move(cur_);
        n->branches.emplace_back(std::move(cond), std::move(b));
        if (k == "endif") break;
        if (k == "elif") {
          cond = end->Expression();
        } else {
          cond = nullptr;
          if (n->branches.back().first == nullptr) Syntax("two '{% else %}' in one if");
        }
        end->ExpectEnd();
      }
      return n;
    }
    if (kw == "for") {
      n->kind = Node::kFor;
      n->targets.push_back(ep.Name());
      while (ep.TakeOp(",")) n->targets.push_back(ep.Name());
      if (!ep.TakeName("in")) Syntax("expected 'in' in for");
      n->expr = ep.Expression();  // `x if c` inside is parsed as a filter below
      if (n->expr->op == Expr::kCond && !n->expr->a[2]) {  // `for x in xs if cond`
        n->filter = std::move(n->expr->a[1]);
        n->expr = std::move(n->expr->a[0]);
      }
      if (ep.IsName("recursive")) Unsupported("recursive for loops");
      ep.ExpectEnd();
      ExprParser* end = nullptr;
      std::string k = ParseBody(&n->body, {"else", "endfor"}, &end);
      if (k == "else") {
        end->ExpectEnd();
        ParseBody(&n->else_body, {"endfor"}, &end);
      }
      return n;
    }
    if (kw == "set") {
      n->kind = Node::kSet;
      n->targets.push_back(ep.Name());
      if (ep.TakeOp(".")) n->targets.push_back(ep.Name());
      if (ep.IsOp(",")) Unsupported("tuple assignment in set");
      if (!ep.TakeOp("=")) Unsupported("block set ({% set x %}...{% endset %})");
      n->expr = ep.Expression();
      ep.ExpectEnd();
      return n;
    }
    if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? Node::kBreak : Node::kContinue;
      ep.ExpectEnd();
      return n;
    }
    Unsupported("statement '{% " + kw + " %}'");
  }

  std::vector<Piece> ps_;
  size_t i_ = 0;
  std::unique_ptr<ExprParser> cur_;
};

}  // namespace

Body ParseTemplate(const std::string& src) {
  Parser p(Lex(src));
  Body b;
  ExprParser* end = nullptr;
  const std::string k = p.ParseBody(&b, {}, &end);
  if (!k.empty()) Syntax("unexpected '{% " + k + " %}'");
  return b;
}

}  // namespace pd::jinja
