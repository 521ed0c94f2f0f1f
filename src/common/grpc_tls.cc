#include "common/grpc_tls.h"

#include <grpc/grpc_security_constants.h>

#include <fstream>
#include <sstream>

namespace pd {

namespace {

constexpr size_t kMaxPemBytes = 1 << 20;

// Reads a PEM file; `marker` is the text its first block must carry ("CERTIFICATE",
// "PRIVATE KEY"). Messages name the field and path only.
StatusOr<std::string> ReadPem(const std::string& path, const std::string& field,
                              const char* marker) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(field + ": cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string pem = ss.str();
  if (pem.size() > kMaxPemBytes) return InvalidArgument(field + ": '" + path + "' is over 1 MiB");
  const size_t begin = pem.find("-----BEGIN ");
  if (begin == std::string::npos || pem.find(marker, begin) == std::string::npos) {
    return InvalidArgument(field + ": '" + path + "' is not a PEM " + marker + " file");
  }
  return pem;
}

struct Pems {
  std::string ca, cert, key;
};

StatusOr<Pems> ReadAll(const TlsConfig& tls, const std::string& what) {
  Pems p;
  PD_ASSIGN_OR_RETURN(p.ca, ReadPem(tls.ca, what + ".ca", "CERTIFICATE"));
  PD_ASSIGN_OR_RETURN(p.cert, ReadPem(tls.cert, what + ".cert", "CERTIFICATE"));
  PD_ASSIGN_OR_RETURN(p.key, ReadPem(tls.key, what + ".key", "PRIVATE KEY"));
  return p;
}

}  // namespace

StatusOr<std::shared_ptr<grpc::ServerCredentials>> InternalServerCredentials(
    const TlsConfig& tls, const std::string& what) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  PD_ASSIGN_OR_RETURN(Pems p, ReadAll(tls, what));
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = p.ca;
  o.pem_key_cert_pairs.push_back({p.key, p.cert});
  return grpc::SslServerCredentials(o);
}

StatusOr<std::shared_ptr<grpc::ChannelCredentials>> InternalChannelCredentials(
    const TlsConfig& tls, const std::string& what, grpc::ChannelArguments* args) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  PD_ASSIGN_OR_RETURN(Pems p, ReadAll(tls, what));
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = p.ca;
  o.pem_private_key = p.key;
  o.pem_cert_chain = p.cert;
  if (!tls.server_name.empty() && args != nullptr) {
    args->SetSslTargetNameOverride(tls.server_name);
  }
  return grpc::SslCredentials(o);
}

}  // namespace pd
