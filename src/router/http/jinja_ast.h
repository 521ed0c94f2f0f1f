// Internal to the Jinja subset (jinja.h): the syntax tree shared by jinja_parse.cc and
// jinja_eval.cc, and the error type used inside them (converted to Status at the boundary).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "router/http/jinja.h"

namespace pd::jinja {

// Thrown inside the parser/evaluator only; Template::Parse/Render turn it into a Status.
struct JinjaError : std::runtime_error {
  enum Kind { kSyntax, kUnsupported, kType, kRaised };
  JinjaError(Kind k, const std::string& m) : std::runtime_error(m), kind(k) {}
  Kind kind;
};

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  enum Op {
    kLit,     // lit
    kName,    // name
    kAttr,    // a[0].name
    kIndex,   // a[0][a[1]]
    kSlice,   // a[0][a[1]:a[2]:a[3]] (null entries = omitted)
    kCall,    // a[0](a[1..]) with kw
    kFilter,  // a[0] | name(a[1..]) with kw
    kTest,    // a[0] is [not] name(a[1..]); negate
    kNot,     // not a[0]
    kNeg,     // -a[0]
    kBin,     // a[0] name a[1]; name in + - * / // % ~ == != < > <= >= in notin and or
    kCond,    // a[0] if a[1] else a[2] (a[2] may be null)
    kList,    // [a...]
    kDict,    // {a[0]: a[1], ...}
  };
  Op op = kLit;
  Json lit;
  std::string name;
  bool negate = false;
  std::vector<ExprP> a;
  std::vector<std::pair<std::string, ExprP>> kw;
};

struct Node;
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;

struct Node {
  enum Kind { kText, kOut, kIf, kFor, kSet, kBreak, kContinue };
  Kind kind = kText;
  std::string text;                              // kText
  ExprP expr;                                    // kOut value, kFor iterable, kSet value
  std::vector<std::pair<ExprP, Body>> branches;  // kIf: (cond | null for else, body)
  std::vector<std::string> targets;              // kFor loop vars; kSet: {name} or {ns, attr}
  ExprP filter;                                  // kFor: `if cond` (optional)
  Body body, else_body;                          // kFor
};

// Parses a whole template into its top-level body.
Body ParseTemplate(const std::string& src);

}  // namespace pd::jinja
