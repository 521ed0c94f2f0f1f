// Router::InProcessChannel (router_service.h).
#include "router/router_impl.h"
#include "router/router_service.h"

namespace pd::router {

std::shared_ptr<grpc::Channel> Router::InProcessChannel() { return impl_->InProcessChannel(); }

}  // namespace pd::router
