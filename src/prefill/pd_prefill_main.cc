// pd-prefill --config F [--instance NAME] [--fake-runner]: the prefill daemon (PrefillService).
#include <cstdio>

#include "prefill/prefill_service.h"

int main(int argc, char** argv) {
  auto d = pd::serving::SetupDaemon(argc, argv, pd::InstanceRole::kPrefill);
  if (!d.ok()) {
    std::fprintf(stderr, "pd-prefill: %s\n", d.status().ToString().c_str());
    return 2;
  }
  int rc = 0;
  {
    pd::prefill::PrefillServiceImpl service(d->get());
    (*d)->engine->set_layer_hook([&service](const std::vector<pd::serving::ChunkInfo>& chunks,
                                            int layer) { service.OnLayer(chunks, layer); });
    (*d)->engine->Start();
    rc = pd::serving::RunGrpcServer((*d)->inst, {&service});
    (*d)->engine->Stop();
  }
  return rc;
}
