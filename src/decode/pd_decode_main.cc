// pd-decode --config F [--instance NAME] [--fake-runner]: the decode daemon (DecodeService).
#include <cstdio>

#include "decode/decode_service.h"

int main(int argc, char** argv) {
  auto d = pd::serving::SetupDaemon(argc, argv, pd::InstanceRole::kDecode);
  if (!d.ok()) {
    std::fprintf(stderr, "pd-decode: %s\n", d.status().ToString().c_str());
    return 2;
  }
  (*d)->engine->Start();
  int rc = 0;
  {
    pd::decode::DecodeServiceImpl service(d->get());
    rc = pd::serving::RunGrpcServer((*d)->inst, {&service});
    (*d)->engine->Stop();
  }
  return rc;
}
