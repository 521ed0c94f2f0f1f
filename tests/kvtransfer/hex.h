// Hex text of binary metadata blobs, for the multi-process kvtransfer tests (kvtransfer_peer
// prints and reads blobs as hex on its stdin / stdout).
#pragma once

#include <string>

namespace pd::kvtransfer {

inline std::string ToHex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string hex;
  for (unsigned char ch : bytes) {
    hex += d[ch >> 4];
    hex += d[ch & 15];
  }
  return hex;
}

inline std::string FromHex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return bytes;
}

}  // namespace pd::kvtransfer
