// gRPC credentials of the internal channels (router -> pd-prefill / pd-decode) from a TlsConfig
// (deploy_config.h): mutual TLS when configured, plaintext otherwise. Library pd_grpc_tls.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>

#include "common/deploy_config.h"
#include "common/status.h"

namespace pd {

// Server side of an internal port. tls.enabled(): the server presents tls.cert/tls.key and
// requires every client to present a certificate that chains to tls.ca
// (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY); otherwise insecure.
// NOT_FOUND / INVALID_ARGUMENT naming the file (`what`.ca|cert|key) that can't be read or is not
// PEM. The key's contents never appear in messages.
StatusOr<std::shared_ptr<grpc::ServerCredentials>> InternalServerCredentials(
    const TlsConfig& tls, const std::string& what);

// Client side: presents tls.cert/tls.key and verifies the server against tls.ca (and, when set,
// tls.server_name, written into *args as the SSL target name override); otherwise insecure.
StatusOr<std::shared_ptr<grpc::ChannelCredentials>> InternalChannelCredentials(
    const TlsConfig& tls, const std::string& what, grpc::ChannelArguments* args);

}  // namespace pd
