// A small Jinja2 subset, enough for Hugging Face chat templates (Llama 3, Qwen3). Semantics follow
// transformers' apply_chat_template environment: trim_blocks=True, lstrip_blocks=True, `tojson`
// as json.dumps(ensure_ascii=False) with ", "/": " separators and keys in insertion order,
// `raise_exception(msg)` as a global. Supported:
//   {{ expr }}, {# comments #}, whitespace control ({%- -%} {{- -}}),
//   {% if/elif/else/endif %}, {% for x[, y] in expr [if cond] %}...{% else %}...{% endfor %} with
//   loop.index/index0/first/last/length/revindex/revindex0, {% break %}/{% continue %},
//   {% set x = e %}, {% set ns.attr = e %} with namespace(...).
//   Expressions: literals (str, int, float, true/false/none, lists, dicts), names, .attr,
//   [index] (negative too), [a:b:step] slices, calls, `a if c else b`, or/and/not, comparisons,
//   in / not in, is [not] <test>, + - * / // % ~, filters (| name(args)).
//   Filters: trim, length, count, tojson, string, lower, upper, first, last, join, default/d,
//   list, items, abs, int, float, capitalize, reverse. Tests: defined, undefined, none, string,
//   number, integer, float, boolean, true, false, mapping, iterable, sequence, even, odd.
//   Methods: str.startswith/endswith/split/strip/lstrip/rstrip/upper/lower/replace/title,
//   dict.get/items/keys/values. Globals: namespace(), raise_exception(), range().
// Anything else (macros, call blocks, block set, unknown filters...) is an error of kind
// kUnsupported. Strings are byte strings (indexing/slicing counts bytes).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace pd::jinja {

using Json = nlohmann::ordered_json;

class TemplateImpl;

class Template {
 public:
  // Parses `source`. UNIMPLEMENTED for constructs outside the subset (message says which),
  // INVALID_ARGUMENT for syntax errors.
  static StatusOr<Template> Parse(const std::string& source);

  // Renders with the top-level variables of `context` (a JSON object). Errors:
  // FAILED_PRECONDITION "raise_exception: <msg>" when the template raises; UNIMPLEMENTED for an
  // unsupported filter/test/method met while rendering; INVALID_ARGUMENT for type errors.
  StatusOr<std::string> Render(const Json& context) const;

  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

 private:
  Template();
  std::unique_ptr<TemplateImpl> impl_;
};

// json.dumps(v, ensure_ascii=False) as Python writes it (", " and ": " separators, key order
// kept, floats like Python's repr where it matters for small values).
std::string PyJsonDumps(const Json& v);

}  // namespace pd::jinja
