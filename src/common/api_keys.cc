#include "common/api_keys.h"

#include <algorithm>
#include <cstdint>
#include <fstream>

namespace pd {

namespace {

// Printable ASCII without blanks: keys travel in a header after "Bearer ".
bool ValidKeyChar(char c) { return c > 0x20 && c < 0x7f; }

Status CheckKey(std::string_view k, const std::string& where) {
  if (k.empty()) return InvalidArgument(where + ": empty API key");
  if (k.size() > ApiKeySet::kMaxKeyBytes) {
    return InvalidArgument(where + ": API key longer than " +
                           std::to_string(ApiKeySet::kMaxKeyBytes) + " bytes");
  }
  if (!std::all_of(k.begin(), k.end(), ValidKeyChar)) {
    return InvalidArgument(where +
                           ": API key must be printable ASCII without spaces or control bytes");
  }
  return OkStatus();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Compares over exactly kMaxKeyBytes (+ the length) whatever the inputs, without early exit.
bool ConstantTimeEqual(std::string_view a, const std::string& b) {
  uint32_t diff = static_cast<uint32_t>(a.size() ^ b.size());
  for (size_t i = 0; i < ApiKeySet::kMaxKeyBytes; ++i) {
    const uint8_t x = i < a.size() ? static_cast<uint8_t>(a[i]) : 0;
    const uint8_t y = i < b.size() ? static_cast<uint8_t>(b[i]) : 0;
    diff |= static_cast<uint32_t>(x ^ y);
  }
  // volatile: keep the compiler from turning the loop into an early-exit memcmp.
  volatile uint32_t v = diff;
  return v == 0;
}

}  // namespace

StatusOr<ApiKeySet> ApiKeySet::Load(const std::vector<std::string>& inline_keys,
                                    const std::string& key_file) {
  ApiKeySet set;
  for (size_t i = 0; i < inline_keys.size(); ++i) {
    PD_RETURN_IF_ERROR(CheckKey(inline_keys[i], "router.api_keys[" + std::to_string(i) + "]"));
    set.keys_.push_back(inline_keys[i]);
  }
  if (!key_file.empty()) {
    std::ifstream f(key_file);
    if (!f) return NotFound(key_file + ": cannot read the API key file");
    std::string line;
    int lineno = 0;
    size_t from_file = 0;
    while (std::getline(f, line)) {
      ++lineno;
      const std::string_view k = Trim(line);
      if (k.empty() || k.front() == '#') continue;
      PD_RETURN_IF_ERROR(CheckKey(k, key_file + ":" + std::to_string(lineno)));
      set.keys_.emplace_back(k);
      ++from_file;
    }
    if (from_file == 0) return InvalidArgument(key_file + ": the API key file has no key");
  }
  std::sort(set.keys_.begin(), set.keys_.end());
  set.keys_.erase(std::unique(set.keys_.begin(), set.keys_.end()), set.keys_.end());
  return set;
}

bool ApiKeySet::Allows(std::string_view presented) const {
  if (keys_.empty()) return true;
  if (presented.empty() || presented.size() > kMaxKeyBytes) return false;
  bool ok = false;
  for (const std::string& k : keys_) ok |= ConstantTimeEqual(presented, k);  // no early exit
  return ok;
}

std::string_view BearerToken(std::string_view authorization) {
  std::string_view s = Trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (s.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = s[i];
    if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != kScheme[i]) return {};
  }
  s.remove_prefix(kScheme.size());
  if (s.front() != ' ' && s.front() != '\t') return {};
  return Trim(s);
}

Status CheckApiKey(const ApiKeySet& keys, std::string_view authorization) {
  if (!keys.enabled()) return OkStatus();
  const std::string_view key = BearerToken(authorization);
  if (key.empty()) {
    return Unauthenticated("missing API key: send 'authorization: Bearer <key>'");
  }
  if (!keys.Allows(key)) return Unauthenticated("invalid API key");
  return OkStatus();
}

}  // namespace pd
