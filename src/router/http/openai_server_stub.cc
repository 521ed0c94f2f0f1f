// OpenAiServer in builds without cpp-httplib (PD_STATIC_DEPS): Start() is UNIMPLEMENTED.
#include "router/http/openai_server.h"

namespace pd::http {

class OpenAiServer::Impl {};

OpenAiServer::OpenAiServer(OpenAiServerOptions, std::shared_ptr<grpc::Channel>,
                           std::vector<HttpModel>) {}
OpenAiServer::~OpenAiServer() = default;
Status OpenAiServer::Start() {
  return Unimplemented(
      "this pd-router was built without cpp-httplib: router.http_port is not served");
}
void OpenAiServer::Stop() {}
int OpenAiServer::port() const { return 0; }

}  // namespace pd::http
