// Builds without PD_WITH_RDMA: the rdma transport reports that it was not built.
#include "kvtransfer/rdma/verbs.h"

namespace pd::kvtransfer::rdma {
StatusOr<std::unique_ptr<Verbs>> OpenIbverbs(const std::string&) {
  return Unimplemented("rdma: this build has no RDMA support (configure with PD_WITH_RDMA=ON)");
}
}  // namespace pd::kvtransfer::rdma
