// API keys of the router's public APIs (gRPC pdserve.v1.Inference and the OpenAI HTTP API).
// Clients send `authorization: Bearer <key>` (gRPC metadata or HTTP header). Keys come from the
// deployment YAML (router.api_keys) and/or a file (router.api_key_file, one key per line, '#'
// comments). No keys configured = access control off (every request is allowed).
//
// Keys are secrets: they never appear in logs, in error messages or in Status texts produced
// here (errors name the file and line, never the key). Comparison is constant-time in the
// presented key's contents and in the configured keys' contents and lengths.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pd {

class ApiKeySet {
 public:
  // Longest accepted key in bytes (longer presented keys are refused without comparing).
  static constexpr size_t kMaxKeyBytes = 256;

  ApiKeySet() = default;  // disabled: Allows() is true for anything

  // Union of `inline_keys` and the keys in `key_file` ("" = no file). Each key: 1..256 bytes of
  // printable ASCII without spaces. INVALID_ARGUMENT naming the list index or file:line of a bad
  // key (never its text); NOT_FOUND if the file can't be read. Duplicates are kept once.
  static StatusOr<ApiKeySet> Load(const std::vector<std::string>& inline_keys,
                                  const std::string& key_file);

  // True when at least one key is configured (requests must present one).
  bool enabled() const { return !keys_.empty(); }
  // Number of distinct keys.
  size_t size() const { return keys_.size(); }
  // True if access control is off, or `presented` equals one of the keys. Runs in time that
  // depends only on the number of keys (every key is compared over kMaxKeyBytes).
  bool Allows(std::string_view presented) const;

 private:
  std::vector<std::string> keys_;
};

// The key of an `authorization` header/metadata value "Bearer <key>" (scheme case-insensitive,
// surrounding blanks ignored); empty if the value is not a Bearer credential.
std::string_view BearerToken(std::string_view authorization);

// OK if `keys` is disabled or the Bearer key of `authorization` is allowed; otherwise
// UNAUTHENTICATED: "missing API key: send 'authorization: Bearer <key>'" when no Bearer
// credential was sent, "invalid API key" when one was sent but is not configured.
// `authorization` is the header/metadata value ("" when absent).
Status CheckApiKey(const ApiKeySet& keys, std::string_view authorization);

}  // namespace pd
