// libFuzzer target: the safetensors header parser (pd::SafetensorsFile::Open). The input is the
// whole file; it is handed over as an in-memory file (memfd, opened by its /proc/self/fd path).
// Every tensor the parser accepts is read at its first and last byte: a range outside the file
// would fault (SIGBUS/SEGV on the mapping).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  auto f = pd::SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  close(fd);  // the mapping keeps the file alive
  if (!f.ok()) {
    if (f.status().message().empty()) std::abort();
    return 0;
  }
  unsigned sum = 0;
  for (const auto& [name, t] : (*f)->tensors()) {
    if (t.offset + t.nbytes > (*f)->file_size() || (*f)->Find(name) != &t) std::abort();
    if (t.nbytes == 0) continue;
    const auto* b = static_cast<const volatile uint8_t*>(t.data);
    sum += b[0] + b[t.nbytes - 1];
  }
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}
