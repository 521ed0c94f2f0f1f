// Jinja subset: the evaluator (values, scopes, filters, tests, methods) and Template.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "router/http/jinja_ast.h"

namespace pd::jinja {
namespace {

[[noreturn]] void Unsupported(const std::string& m) {
  throw JinjaError(JinjaError::kUnsupported, m);
}
[[noreturn]] void TypeErr(const std::string& m) { throw JinjaError(JinjaError::kType, m); }

// A value: undefined, a JSON value, or a namespace (shared, mutable attributes).
struct Value {
  bool undef = false;
  Json j;
  std::shared_ptr<Json> ns;
  static Value Undef() {
    Value v;
    v.undef = true;
    return v;
  }
  static Value Of(Json x) {
    Value v;
    v.j = std::move(x);
    return v;
  }
  const Json& json() const { return ns ? *ns : j; }
};

bool Truthy(const Value& v) {
  if (v.undef) return false;
  if (v.ns) return true;
  const Json& j = v.j;
  if (j.is_null()) return false;
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>() != 0;
  if (j.is_number()) return j.get<double>() != 0;
  if (j.is_string()) return !j.get_ref<const std::string&>().empty();
  return !j.empty();
}

std::string PyFloat(double d) {
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (std::isnan(d)) return "nan";
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {  // shortest round-trip, like Python's repr
    std::snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string PyRepr(const Json& j);

// str(x) as Python prints it.
std::string Str(const Value& v) {
  if (v.undef) return "";
  const Json& j = v.json();
  if (j.is_string()) return j.get<std::string>();
  return PyRepr(j);
}

std::string PyRepr(const Json& j) {
  if (j.is_null()) return "None";
  if (j.is_boolean()) return j.get<bool>() ? "True" : "False";
  if (j.is_number_integer()) return std::to_string(j.get<int64_t>());
  if (j.is_number_unsigned()) return std::to_string(j.get<uint64_t>());
  if (j.is_number()) return PyFloat(j.get<double>());
  if (j.is_string()) return "'" + j.get<std::string>() + "'";
  std::string s = j.is_array() ? "[" : "{";
  bool first = true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!first) s += ", ";
    first = false;
    if (j.is_object()) s += "'" + it.key() + "': ";
    s += PyRepr(*it);
  }
  return s + (j.is_array() ? "]" : "}");
}

bool IsWsChar(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string Strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto in = [&](char c) {
    if (!chars || chars->undef || chars->j.is_null()) return IsWsChar(c);
    return chars->j.get_ref<const std::string&>().find(c) != std::string::npos;
  };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && in(s[b])) ++b;
  if (right)
    while (e > b && in(s[e - 1])) --e;
  return s.substr(b, e - b);
}

Json Split(const std::string& s, const Value* sep) {
  Json out = Json::array();
  if (!sep || sep->undef || sep->j.is_null()) {  // whitespace runs
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsWsChar(s[i])) ++i;
      size_t j = i;
      while (j < s.size() && !IsWsChar(s[j])) ++j;
      if (j > i) out.push_back(s.substr(i, j - i));
      i = j;
    }
    return out;
  }
  const std::string& d = sep->j.get_ref<const std::string&>();
  if (d.empty()) TypeErr("split: empty separator");
  size_t i = 0;
  for (size_t k; (k = s.find(d, i)) != std::string::npos; i = k + d.size()) {
    out.push_back(s.substr(i, k - i));
  }
  out.push_back(s.substr(i));
  return out;
}

int64_t Len(const Value& v) {
  const Json& j = v.json();
  if (v.undef) return 0;
  if (j.is_string()) return static_cast<int64_t>(j.get_ref<const std::string&>().size());
  if (j.is_array() || j.is_object()) return static_cast<int64_t>(j.size());
  TypeErr("object of type " + std::string(j.type_name()) + " has no length");
}

const std::string& StrRef(const Value& v, const char* what) {
  if (v.undef || !v.json().is_string()) TypeErr(std::string(what) + " needs a string");
  return v.json().get_ref<const std::string&>();
}

int Cmp(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.get<std::string>().compare(b.get<std::string>());
  TypeErr(std::string("cannot compare ") + a.type_name() + " and " + b.type_name());
}

bool Equal(const Value& a, const Value& b) {
  if (a.undef || b.undef) return a.undef && b.undef;
  const Json &x = a.json(), &y = b.json();
  if (x.is_number() && y.is_number() && !x.is_boolean() && !y.is_boolean()) return Cmp(x, y) == 0;
  return x == y;
}

bool Contains(const Value& hay, const Value& needle) {
  const Json& h = hay.json();
  if (h.is_string())
    return h.get_ref<const std::string&>().find(StrRef(needle, "'in'")) != std::string::npos;
  if (h.is_array()) {
    for (const Json& e : h) {
      if (Equal(Value::Of(e), needle)) return true;
    }
    return false;
  }
  if (h.is_object())
    return !needle.undef && needle.j.is_string() && h.contains(needle.j.get<std::string>());
  if (hay.undef) return false;
  TypeErr(std::string("'in' needs a string, list or dict, not ") + h.type_name());
}

int64_t Int(const Value& v, const char* what) {
  if (v.undef || !v.json().is_number_integer()) TypeErr(std::string(what) + " must be an integer");
  return v.json().get<int64_t>();
}

Json SliceOf(const Json& x, const Value* lo, const Value* hi, const Value* st) {
  const int64_t n = x.is_string() ? static_cast<int64_t>(x.get_ref<const std::string&>().size())
                                  : static_cast<int64_t>(x.size());
  const int64_t step = st ? Int(*st, "slice step") : 1;
  if (step == 0) TypeErr("slice step cannot be zero");
  auto norm = [&](const Value* v, int64_t dflt) {
    if (!v) return dflt;
    int64_t i = Int(*v, "slice index");
    if (i < 0) i += n;
    return step > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = norm(lo, step > 0 ? 0 : n - 1), e = norm(hi, step > 0 ? n : -1);
  std::string s;
  Json arr = Json::array();
  for (int64_t i = b; step > 0 ? i < e : i > e; i += step) {
    if (x.is_string())
      s += x.get_ref<const std::string&>()[i];
    else
      arr.push_back(x[static_cast<size_t>(i)]);
  }
  return x.is_string() ? Json(s) : arr;
}

class Evaluator {
 public:
  explicit Evaluator(const Json& ctx) {
    scopes_.push_back({});
    for (auto it = ctx.begin(); it != ctx.end(); ++it) scopes_[0][it.key()] = Value::Of(*it);
  }

  void Run(const Body& body, std::string* out) {
    for (const NodeP& n : body) {
      if (brk_ || cont_) return;
      Exec(*n, out);
    }
  }

 private:
  enum { kBreakSignal };

  void Exec(const Node& n, std::string* out) {
    switch (n.kind) {
      case Node::kText:
        *out += n.text;
        return;
      case Node::kOut:
        *out += Str(Eval(*n.expr));
        return;
      case Node::kIf:
        for (const auto& [cond, body] : n.branches) {
          if (!cond || Truthy(Eval(*cond))) {
            Run(body, out);
            return;
          }
        }
        return;
      case Node::kFor:
        return For(n, out);
      case Node::kSet: {
        Value v = Eval(*n.expr);
        if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = std::move(v);
          return;
        }
        Value target = Lookup(n.targets[0]);
        if (!target.ns)
          TypeErr("cannot set an attribute of '" + n.targets[0] + "' (not a namespace)");
        (*target.ns)[n.targets[1]] = v.undef ? Json() : v.json();
        return;
      }
      case Node::kBreak:
        brk_ = true;
        return;
      case Node::kContinue:
        cont_ = true;
        return;
    }
  }

  void For(const Node& n, std::string* out) {
    Value it = Eval(*n.expr);
    Json items = Json::array();
    const Json& src = it.json();
    if (src.is_array())
      items = src;
    else if (src.is_object())
      for (auto e = src.begin(); e != src.end(); ++e) items.push_back(e.key());
    else if (src.is_string())
      for (char c : src.get_ref<const std::string&>()) items.push_back(std::string(1, c));
    else if (!it.undef)
      TypeErr(std::string("cannot iterate over ") + src.type_name());
    if (n.filter) {
      Json kept = Json::array();
      for (const Json& x : items) {
        scopes_.push_back({});
        Bind(n, x);
        if (Truthy(Eval(*n.filter))) kept.push_back(x);
        scopes_.pop_back();
      }
      items = std::move(kept);
    }
    const size_t len = items.size();
    for (size_t i = 0; i < len; ++i) {
      scopes_.push_back({});
      Bind(n, items[i]);
      Json loop = {
          {"index0", i},   {"index", i + 1},      {"first", i == 0},         {"last", i + 1 == len},
          {"length", len}, {"revindex", len - i}, {"revindex0", len - i - 1}};
      scopes_.back()["loop"] = Value::Of(std::move(loop));
      Run(n.body, out);
      scopes_.pop_back();
      cont_ = false;
      if (brk_) {
        brk_ = false;
        break;
      }
    }
    if (len == 0) Run(n.else_body, out);
  }

  void Bind(const Node& n, const Json& x) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = Value::Of(x);
      return;
    }
    if (!x.is_array() || x.size() != n.targets.size()) TypeErr("cannot unpack loop item");
    for (size_t k = 0; k < n.targets.size(); ++k) scopes_.back()[n.targets[k]] = Value::Of(x[k]);
  }

  Value Lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      auto f = s->find(name);
      if (f != s->end()) return f->second;
    }
    return Value::Undef();
  }

  Value Eval(const Expr& e) {
    switch (e.op) {
      case Expr::kLit:
        return Value::Of(e.lit);
      case Expr::kName:
        return Lookup(e.name);
      case Expr::kAttr:
        return Attr(Eval(*e.a[0]), e.name);
      case Expr::kIndex:
        return Index(Eval(*e.a[0]), Eval(*e.a[1]));
      case Expr::kSlice: {
        Value x = Eval(*e.a[0]);
        if (!x.json().is_array() && !x.json().is_string())
          TypeErr("only lists and strings can be sliced");
        Value p[3];
        for (int k = 0; k < 3; ++k)
          if (e.a[k + 1]) p[k] = Eval(*e.a[k + 1]);
        return Value::Of(SliceOf(x.json(), e.a[1] ? &p[0] : nullptr, e.a[2] ? &p[1] : nullptr,
                                 e.a[3] ? &p[2] : nullptr));
      }
      case Expr::kCall:
        return Call(e);
      case Expr::kFilter:
        return Filter(e);
      case Expr::kTest:
        return Value::Of(Test(e) != e.negate);
      case Expr::kNot:
        return Value::Of(!Truthy(Eval(*e.a[0])));
      case Expr::kNeg: {
        Value v = Eval(*e.a[0]);
        if (v.json().is_number_integer()) return Value::Of(-v.json().get<int64_t>());
        if (v.json().is_number()) return Value::Of(-v.json().get<double>());
        TypeErr("unary '-' needs a number");
      }
      case Expr::kBin:
        return Binary(e);
      case Expr::kCond:
        if (Truthy(Eval(*e.a[1]))) return Eval(*e.a[0]);
        return e.a[2] ? Eval(*e.a[2]) : Value::Undef();
      case Expr::kList: {
        Json arr = Json::array();
        for (const ExprP& x : e.a) {
          Value v = Eval(*x);
          arr.push_back(v.undef ? Json() : v.json());
        }
        return Value::Of(arr);
      }
      case Expr::kDict: {
        Json obj = Json::object();
        for (size_t k = 0; k + 1 < e.a.size(); k += 2)
          obj[Str(Eval(*e.a[k]))] = Eval(*e.a[k + 1]).json();
        return Value::Of(obj);
      }
    }
    TypeErr("bad expression");
  }

  static Value Attr(const Value& v, const std::string& name) {
    const Json& j = v.json();
    if (j.is_object()) {
      auto f = j.find(name);
      return f == j.end() ? Value::Undef() : Value::Of(*f);
    }
    return Value::Undef();
  }

  static Value Index(const Value& v, const Value& k) {
    const Json& j = v.json();
    if (k.undef) return Value::Undef();
    if (j.is_object()) return Attr(v, Str(k));
    if (j.is_array() || j.is_string()) {
      const int64_t n = Len(v);
      int64_t i = Int(k, "index");
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undef();
      if (j.is_array()) return Value::Of(j[static_cast<size_t>(i)]);
      return Value::Of(std::string(1, j.get_ref<const std::string&>()[i]));
    }
    return Value::Undef();
  }

  Value Binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = Eval(*e.a[0]);
      return Truthy(l) ? Eval(*e.a[1]) : l;
    }
    if (op == "or") {
      Value l = Eval(*e.a[0]);
      return Truthy(l) ? l : Eval(*e.a[1]);
    }
    const Value l = Eval(*e.a[0]), r = Eval(*e.a[1]);
    if (op == "==") return Value::Of(Equal(l, r));
    if (op == "!=") return Value::Of(!Equal(l, r));
    if (op == "in") return Value::Of(Contains(r, l));
    if (op == "notin") return Value::Of(!Contains(r, l));
    if (op == "~") return Value::Of(Str(l) + Str(r));
    const Json &x = l.json(), &y = r.json();
    if (op == "<") return Value::Of(Cmp(x, y) < 0);
    if (op == ">") return Value::Of(Cmp(x, y) > 0);
    if (op == "<=") return Value::Of(Cmp(x, y) <= 0);
    if (op == ">=") return Value::Of(Cmp(x, y) >= 0);
    if (op == "+" && x.is_string() && y.is_string())
      return Value::Of(x.get<std::string>() + y.get<std::string>());
    if (op == "+" && x.is_array() && y.is_array()) {
      Json z = x;
      for (const Json& q : y) z.push_back(q);
      return Value::Of(z);
    }
    if (l.undef || r.undef || !x.is_number() || !y.is_number()) {
      TypeErr("unsupported operand types for " + op + ": " +
              (l.undef ? "undefined" : x.type_name()) + " and " +
              (r.undef ? "undefined" : y.type_name()));
    }
    const bool ints = x.is_number_integer() && y.is_number_integer();
    if (ints && op != "/") {
      const int64_t a = x.get<int64_t>(), b = y.get<int64_t>();
      if ((op == "//" || op == "%") && b == 0) TypeErr("integer division by zero");
      if (op == "+") return Value::Of(a + b);
      if (op == "-") return Value::Of(a - b);
      if (op == "*") return Value::Of(a * b);
      const int64_t q = a / b - ((a % b != 0) && ((a < 0) != (b < 0)));  // floor
      if (op == "//") return Value::Of(q);
      return Value::Of(a - q * b);
    }
    const double a = x.get<double>(), b = y.get<double>();
    if (op == "+") return Value::Of(a + b);
    if (op == "-") return Value::Of(a - b);
    if (op == "*") return Value::Of(a * b);
    if (b == 0) TypeErr("division by zero");
    if (op == "/") return Value::Of(a / b);
    if (op == "//") return Value::Of(std::floor(a / b));
    return Value::Of(a - std::floor(a / b) * b);
  }

  std::vector<Value> Args(const Expr& e, size_t from) {
    std::vector<Value> v;
    for (size_t k = from; k < e.a.size(); ++k) v.push_back(Eval(*e.a[k]));
    return v;
  }

  Value Call(const Expr& e) {
    const Expr& callee = *e.a[0];
    std::vector<Value> args = Args(e, 1);
    const Value* a0 = args.empty() ? nullptr : &args[0];
    if (callee.op == Expr::kName) {
      if (callee.name == "namespace") {
        Value v;
        v.ns = std::make_shared<Json>(Json::object());
        for (const auto& [k, x] : e.kw) (*v.ns)[k] = Eval(*x).json();
        return v;
      }
      if (callee.name == "raise_exception") {
        throw JinjaError(JinjaError::kRaised, a0 ? Str(*a0) : "raise_exception");
      }
      if (callee.name == "range") {
        int64_t lo = 0, hi = a0 ? Int(*a0, "range") : 0;
        if (args.size() >= 2) {
          lo = hi;
          hi = Int(args[1], "range");
        }
        Json r = Json::array();
        for (int64_t i = lo; i < hi && i - lo < 1000000; ++i) r.push_back(i);
        return Value::Of(r);
      }
      Unsupported("function '" + callee.name + "'");
    }
    if (callee.op != Expr::kAttr) Unsupported("call of a non-method expression");
    const Value self = Eval(*callee.a[0]);
    const std::string& m = callee.name;
    const Json& j = self.json();
    if (j.is_string()) {
      const std::string& s = j.get_ref<const std::string&>();
      if (m == "startswith") return Value::Of(s.starts_with(StrRef(*a0, "startswith")));
      if (m == "endswith") return Value::Of(s.ends_with(StrRef(*a0, "endswith")));
      if (m == "strip") return Value::Of(Strip(s, a0, true, true));
      if (m == "lstrip") return Value::Of(Strip(s, a0, true, false));
      if (m == "rstrip") return Value::Of(Strip(s, a0, false, true));
      if (m == "split") return Value::Of(Split(s, a0));
      if (m == "upper" || m == "lower") return Value::Of(Case(s, m == "upper"));
      if (m == "replace" && args.size() == 2)
        return Value::Of(Replace(s, StrRef(args[0], "replace"), StrRef(args[1], "replace")));
      if (m == "title") return Value::Of(Title(s));
    }
    if (j.is_object()) {
      if (m == "get") {
        Value v = a0 ? Attr(self, Str(*a0)) : Value::Undef();
        return v.undef && args.size() > 1 ? args[1] : (v.undef ? Value::Of(nullptr) : v);
      }
      if (m == "items") {
        Json r = Json::array();
        for (auto it = j.begin(); it != j.end(); ++it) r.push_back({it.key(), *it});
        return Value::Of(r);
      }
      if (m == "keys") {
        Json r = Json::array();
        for (auto it = j.begin(); it != j.end(); ++it) r.push_back(it.key());
        return Value::Of(r);
      }
      if (m == "values") {
        Json r = Json::array();
        for (const Json& x : j) r.push_back(x);
        return Value::Of(r);
      }
    }
    if (self.undef) TypeErr("method '" + m + "' called on an undefined value");
    Unsupported(std::string("method '") + m + "' of " + j.type_name());
  }

  static std::string Case(std::string s, bool up) {
    for (char& c : s)
      c = static_cast<char>(up ? std::toupper(static_cast<unsigned char>(c))
                               : std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  static std::string Title(std::string s) {
    bool start = true;
    for (char& c : s) {
      const unsigned char u = static_cast<unsigned char>(c);
      c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
      start = !std::isalnum(u);
    }
    return s;
  }
  static std::string Replace(const std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) TypeErr("replace: empty pattern");
    std::string r;
    size_t i = 0;
    for (size_t k; (k = s.find(from, i)) != std::string::npos; i = k + from.size())
      r += s.substr(i, k - i) + to;
    return r + s.substr(i);
  }

  Value Filter(const Expr& e) {
    const Value v = Eval(*e.a[0]);
    std::vector<Value> args = Args(e, 1);
    const std::string& f = e.name;
    const Json& j = v.json();
    if (f == "trim") return Value::Of(Strip(Str(v), args.empty() ? nullptr : &args[0], true, true));
    if (f == "length" || f == "count") return Value::Of(Len(v));
    if (f == "string") return Value::Of(Str(v));
    if (f == "lower" || f == "upper") return Value::Of(Case(Str(v), f == "upper"));
    if (f == "capitalize") {
      std::string s = Case(Str(v), false);
      if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
      return Value::Of(s);
    }
    if (f == "tojson") {
      for (const auto& [k, x] : e.kw)
        if (k != "ensure_ascii" && k != "sort_keys") Unsupported("tojson(" + k + "=...)");
      if (!e.kw.empty()) Unsupported("tojson arguments");
      return Value::Of(PyJsonDumps(v.undef ? Json() : j));
    }
    if (f == "first" || f == "last") {
      if (!j.is_array() || j.empty()) return Value::Undef();
      return Value::Of(f == "first" ? j.front() : j.back());
    }
    if (f == "join") {
      std::string sep = args.empty() ? "" : Str(args[0]), r;
      if (!j.is_array()) TypeErr("join needs a list");
      for (size_t k = 0; k < j.size(); ++k) r += (k ? sep : "") + Str(Value::Of(j[k]));
      return Value::Of(r);
    }
    if (f == "default" || f == "d") {
      const bool boolean =
          (args.size() > 1 && Truthy(args[1])) || (!e.kw.empty() && Truthy(Eval(*e.kw[0].second)));
      if (v.undef || (boolean && !Truthy(v))) return args.empty() ? Value::Of("") : args[0];
      return v;
    }
    if (f == "list") {
      if (j.is_array()) return v;
      if (j.is_string()) {
        Json r = Json::array();
        for (char c : j.get<std::string>()) r.push_back(std::string(1, c));
        return Value::Of(r);
      }
      TypeErr("list needs a list or string");
    }
    if (f == "items") {
      if (!j.is_object()) TypeErr("items needs a dict");
      Json r = Json::array();
      for (auto it = j.begin(); it != j.end(); ++it) r.push_back({it.key(), *it});
      return Value::Of(r);
    }
    if (f == "reverse") {
      if (j.is_array()) {
        Json r = j;
        std::reverse(r.begin(), r.end());
        return Value::Of(r);
      }
      std::string s = Str(v);
      std::reverse(s.begin(), s.end());
      return Value::Of(s);
    }
    if (f == "abs") {
      if (j.is_number_integer()) return Value::Of(std::llabs(j.get<int64_t>()));
      if (j.is_number()) return Value::Of(std::fabs(j.get<double>()));
      TypeErr("abs needs a number");
    }
    if (f == "int") {
      if (j.is_number()) return Value::Of(static_cast<int64_t>(j.get<double>()));
      try {
        return Value::Of(std::stoll(Str(v)));
      } catch (...) {
        return Value::Of(0);
      }
    }
    if (f == "float") {
      if (j.is_number()) return Value::Of(j.get<double>());
      try {
        return Value::Of(std::stod(Str(v)));
      } catch (...) {
        return Value::Of(0.0);
      }
    }
    Unsupported("filter '" + f + "'");
  }

  bool Test(const Expr& e) {
    const Value v = Eval(*e.a[0]);
    const Json& j = v.json();
    const std::string& t = e.name;
    if (t == "defined") return !v.undef;
    if (t == "undefined") return v.undef;
    if (v.undef && t != "none") return false;
    if (t == "none") return !v.undef && j.is_null();
    if (t == "string") return j.is_string();
    if (t == "number") return j.is_number() && !j.is_boolean();
    if (t == "integer") return j.is_number_integer();
    if (t == "float") return j.is_number_float();
    if (t == "boolean") return j.is_boolean();
    if (t == "true") return j.is_boolean() && j.get<bool>();
    if (t == "false") return j.is_boolean() && !j.get<bool>();
    if (t == "mapping") return j.is_object() || static_cast<bool>(v.ns);
    if (t == "iterable") return j.is_array() || j.is_object() || j.is_string();
    if (t == "sequence") return j.is_array() || j.is_string() || j.is_object();
    if (t == "even" || t == "odd") return (Int(v, "even/odd") % 2 == 0) == (t == "even");
    Unsupported("test 'is " + t + "'");
  }

  std::vector<std::map<std::string, Value>> scopes_;
  bool brk_ = false, cont_ = false;
};

void DumpTo(const Json& v, std::string* out) {
  if (v.is_object()) {
    *out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) *out += ", ";
      first = false;
      *out += Json(it.key()).dump(-1, ' ', false) + ": ";
      DumpTo(*it, out);
    }
    *out += '}';
  } else if (v.is_array()) {
    *out += '[';
    for (size_t k = 0; k < v.size(); ++k) {
      if (k) *out += ", ";
      DumpTo(v[k], out);
    }
    *out += ']';
  } else if (v.is_number_float()) {
    *out += PyFloat(v.get<double>());
  } else {
    *out += v.dump(-1, ' ', false);
  }
}

Status ToStatus(const JinjaError& e) {
  switch (e.kind) {
    case JinjaError::kSyntax:
      return InvalidArgument(std::string("chat template: ") + e.what());
    case JinjaError::kUnsupported:
      return Status(StatusCode::kUnimplemented,
                    std::string("chat template uses ") + e.what() +
                        ", which pdserve's Jinja subset does not support");
    case JinjaError::kRaised:
      return FailedPrecondition(std::string("chat template: ") + e.what());
    case JinjaError::kType:
      break;
  }
  return InvalidArgument(std::string("chat template: ") + e.what());
}

}  // namespace

std::string PyJsonDumps(const Json& v) {
  std::string out;
  DumpTo(v, &out);
  return out;
}

class TemplateImpl {
 public:
  Body body;
};

Template::Template() : impl_(std::make_unique<TemplateImpl>()) {}
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

StatusOr<Template> Template::Parse(const std::string& source) {
  Template t;
  try {
    t.impl_->body = ParseTemplate(source);
  } catch (const JinjaError& e) {
    return ToStatus(e);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("chat template: ") + e.what());
  }
  return t;
}

StatusOr<std::string> Template::Render(const Json& context) const {
  std::string out;
  try {
    Evaluator ev(context);
    ev.Run(impl_->body, &out);
  } catch (const JinjaError& e) {
    return ToStatus(e);
  } catch (const std::exception& e) {  // nlohmann type errors and the like
    return InvalidArgument(std::string("chat template: ") + e.what());
  }
  return out;
}

}  // namespace pd::jinja
