// A short, bounded description of a JSON value for error messages about files we do not control
// (config.json, tokenizer.json, safetensors headers). Never recurses: nlohmann's dump() does, so
// dumping a hostile, deeply nested value ([[[[...]]]] 100k deep) overflows the stack, and dumping
// a huge one builds a huge message. Header-only (nlohmann/json is header-only).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace pd {

// Scalars as JSON text (strings quoted, cut to max_chars), short flat arrays of numbers as JSON
// ("[2, -1]"), other containers as their kind and size: "an array of 3 elements",
// "an object of 2 keys".
inline std::string JsonExcerpt(const nlohmann::json& v, size_t max_chars = 40) {
  if (v.is_array() && v.size() <= 8) {  // short arrays of scalars verbatim: [2, -1]
    bool flat = true;
    for (const auto& e : v) flat = flat && e.is_primitive() && !e.is_string();
    if (flat) {
      std::string d = v.dump();
      if (d.size() <= max_chars) return d;
    }
  }
  if (v.is_array()) return "an array of " + std::to_string(v.size()) + " elements";
  if (v.is_object()) return "an object of " + std::to_string(v.size()) + " keys";
  if (v.is_binary()) return "a binary value";
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() <= max_chars) return nlohmann::json(s).dump();
    return nlohmann::json(s.substr(0, max_chars)).dump() + "...";
  }
  std::string d = v.dump();  // number, boolean or null: no recursion, short
  return d.size() <= max_chars ? d : d.substr(0, max_chars) + "...";
}

}  // namespace pd
