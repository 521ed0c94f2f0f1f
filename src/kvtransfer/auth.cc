#include "kvtransfer/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdint>
#include <random>

namespace pd::kvtransfer::auth {

std::string NewNonce() {
  std::string n(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1) {
    std::random_device rd;  // OpenSSL's pool failed: still unpredictable, never constant
    for (char& c : n) c = static_cast<char>(rd());
  }
  return n;
}

std::string Proof(const std::string& secret, const char* role, const std::string& nonce_i,
                  const std::string& nonce_r, const std::string& initiator,
                  const std::string& responder) {
  std::string msg = std::string("pdkvx-auth-") + role;
  for (const std::string* part : {&nonce_i, &nonce_r, &initiator, &responder}) {
    const uint32_t n = static_cast<uint32_t>(part->size());  // length-prefixed: unambiguous
    msg.append(reinterpret_cast<const char*>(&n), 4);
    msg += *part;
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool Equal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace pd::kvtransfer::auth
