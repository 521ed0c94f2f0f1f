// Hooks of the "rdma" transport (rdma_transport.cc).
#pragma once

#include <functional>
#include <memory>

#include "kvtransfer/rdma/verbs.h"

namespace pd::kvtransfer::rdma {

using VerbsFactory = std::function<StatusOr<std::unique_ptr<Verbs>>()>;
// Replaces the libibverbs device with `factory` for engines started afterwards (tests use a
// FakeFabric); an empty factory restores the real device.
void SetVerbsFactoryForTesting(VerbsFactory factory);

}  // namespace pd::kvtransfer::rdma
