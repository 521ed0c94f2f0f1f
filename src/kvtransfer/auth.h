// Peer authentication of the transfer engine's control handshake (tcp and local transports):
// mutual HMAC-SHA256 challenge-response over a shared secret (EngineOptions::auth_secret).
//
//   initiator -> responder  HELLO      ... + nonce_i (32 random bytes)
//   responder -> initiator  CHALLENGE  nonce_r, proof_r = HMAC(secret, "pdkvx-auth-r" | nonce_i |
//                                                              nonce_r | initiator | responder)
//   initiator -> responder  RESPONSE   proof_i = HMAC(secret, "pdkvx-auth-i" | nonce_i | nonce_r |
//                                                      initiator | responder)
//   responder -> initiator  HELLO_ACK (or ERR UNAUTHENTICATED)
//
// Each side proves knowledge of the secret over nonces the other chose, so a recorded
// handshake cannot be replayed and neither side can be impersonated without the secret. Until
// the responder verified proof_i, the connection accepts no frame that touches memory. The
// secret itself never crosses the wire and is never logged.
#pragma once

#include <string>

namespace pd::kvtransfer::auth {

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;  // SHA-256

// kNonceBytes from the OS CSPRNG (OpenSSL RAND_bytes).
std::string NewNonce();
// HMAC-SHA256 of the handshake transcript; `role` is "r" (responder's proof) or "i".
std::string Proof(const std::string& secret, const char* role, const std::string& nonce_i,
                  const std::string& nonce_r, const std::string& initiator,
                  const std::string& responder);
// Constant-time comparison.
bool Equal(const std::string& a, const std::string& b);

}  // namespace pd::kvtransfer::auth
