// kvtransfer_bench gpu: GPU arenas over tcp loopback through the bounce-buffer pipeline.
//
//   kvtransfer_bench gpu [--bytes 256M] [--runs 3] [--chunks 256K,1M] [--paths 1,4]
//                        [--slots 16] [--fake]
//   Prints, in one run: the pinned-host copy ceiling (one cudaMemcpyAsync of --bytes each way
//   between the GPU and cudaHostAlloc'd memory, through the engine's copier), the host->host
//   engine over loopback (the wire ceiling the staging adds to), and the engine moving
//   GPU->GPU, GPU->host and host->GPU, each as best-of---runs GB/s with its ratio to the
//   loopback host->host figure and to the copy ceiling. --fake uses the FakeDeviceCopier (host
//   memory, no delay) to exercise the pipeline without a GPU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#ifdef PD_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "kvtransfer/device_copier.h"
#include "kvtransfer/transfer_engine.h"

namespace pd::kvtransfer::bench {
namespace {

using Flags = std::map<std::string, std::string>;

uint64_t ParseBytes(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  const char u = end && *end ? static_cast<char>(*end | 0x20) : 0;
  if (u == 'k') v *= 1 << 10;
  if (u == 'm') v *= 1 << 20;
  if (u == 'g') v *= 1 << 30;
  return static_cast<uint64_t>(v);
}
std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    const size_t b = std::min(s.find(',', a), s.size());
    if (b > a) out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}
std::string F(const Flags& f, const std::string& k, const std::string& def) {
  auto it = f.find(k);
  return it == f.end() || it->second.empty() ? def : it->second;
}

struct Mem {
  bool fake;
  void* Alloc(size_t n) const {
#ifdef PD_WITH_CUDA
    if (!fake) {
      void* p = nullptr;
      if (cudaMalloc(&p, n) != cudaSuccess) return nullptr;
      cudaMemset(p, 1, n);
      cudaDeviceSynchronize();
      return p;
    }
#endif
    void* p = std::malloc(n);
    if (p) std::memset(p, 1, n);
    return p;
  }
  void Free(void* p) const {
#ifdef PD_WITH_CUDA
    if (!fake) {
      cudaFree(p);
      return;
    }
#endif
    std::free(p);
  }
};

std::shared_ptr<DeviceCopier> NewCopier(bool fake) {
  if (fake) return std::make_shared<FakeDeviceCopier>(std::chrono::microseconds{0});
  auto c = MakeCudaCopier(0);
  if (!c.ok()) {
    std::fprintf(stderr, "gpu bench: %s\n", c.status().ToString().c_str());
    return nullptr;
  }
  return *c;
}

// One copy of `bytes` each way between device memory and pinned host memory: GB/s.
std::pair<double, double> CopyCeiling(DeviceCopier& c, void* dev, uint64_t bytes, int runs) {
  void* pinned = c.AllocPinned(bytes);
  double best_d2h = 0, best_h2d = 0;
  for (int i = 0; i <= runs && pinned; ++i) {  // run 0 warms up
    for (int dir = 0; dir < 2; ++dir) {
      const CopyOp op = dir == 0 ? CopyOp{pinned, dev, bytes} : CopyOp{dev, pinned, bytes};
      const auto t0 = std::chrono::steady_clock::now();
      auto fence = c.Enqueue(std::span<const CopyOp>(&op, 1));
      if (!fence.ok() || !c.Wait(*fence, std::chrono::seconds(30)).ok()) return {0, 0};
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double& best = dir == 0 ? best_d2h : best_h2d;
      if (i > 0) best = std::max(best, bytes / s / 1e9);
    }
  }
  if (pinned) c.FreePinned(pinned);
  return {best_d2h, best_h2d};
}

// Best-of-runs GB/s of a WRITE of `bytes` between two engines over loopback.
double EngineGbs(const Mem& mem, bool src_dev, bool dst_dev, uint64_t bytes, uint64_t chunk,
                 int paths, int slots, int runs) {
  EngineOptions so, ro;
  so.name = "gsrc";
  ro.name = "gdst";
  so.compat_hash = ro.compat_hash = 9;
  so.chunk_bytes = ro.chunk_bytes = chunk;
  so.num_paths = paths;
  so.staging_slots = ro.staging_slots = slots;
  if (src_dev && !(so.device_copier = NewCopier(mem.fake))) return 0;
  if (dst_dev && !(ro.device_copier = NewCopier(mem.fake))) return 0;
  void* a = src_dev ? mem.Alloc(bytes) : std::calloc(bytes, 1);
  void* b = dst_dev ? mem.Alloc(bytes) : std::calloc(bytes, 1);
  double best = 0;
  {
    TransferEngine s(so), r(ro);
    const auto kind = [](bool d) { return d ? MemoryKind::kCuda : MemoryKind::kHost; };
    if (a && b && s.RegisterArena({a, bytes, kind(src_dev), 0}).ok() &&
        r.RegisterArena({b, bytes, kind(dst_dev), 0}).ok() && s.Start().ok() && r.Start().ok()) {
      auto peer = s.LoadRemoteMetadata(r.LocalMetadata());
      if (peer.ok() && s.Connect(*peer).ok()) {
        for (int i = 0; i <= runs; ++i) {  // run 0 warms up (first touch, slow start)
          const std::vector<Desc> d = {{0, 0, bytes}};
          auto id = s.Post(Op::kWrite, *peer, d, d, "done");
          if (!id.ok()) break;
          auto res = s.Wait(*id, std::chrono::milliseconds(120000));
          s.Release(*id);
          if (res.state != TransferState::kDone) {
            std::fprintf(stderr, "gpu bench: %s\n", res.status.ToString().c_str());
            break;
          }
          if (i > 0) best = std::max(best, bytes / (res.stats.duration_us() / 1e6) / 1e9);
        }
      }
    }
  }
  if (src_dev) mem.Free(a); else std::free(a);
  if (dst_dev) mem.Free(b); else std::free(b);
  return best;
}

}  // namespace

int GpuBench(const Flags& f) {
  const Mem mem{f.count("--fake") > 0 || f.count("fake") > 0};
  const uint64_t bytes = ParseBytes(F(f, "bytes", "256M"));
  const int runs = std::atoi(F(f, "runs", "3").c_str());
  const int slots = std::atoi(F(f, "slots", "16").c_str());
  auto copier = NewCopier(mem.fake);
  if (!copier) return 1;
  void* dev = mem.Alloc(bytes);
  if (!dev) return 1;
  const auto [d2h, h2d] = CopyCeiling(*copier, dev, bytes, runs);
  mem.Free(dev);
  std::printf("# gpu arenas over tcp loopback (%s copier), payload %llu MiB, "
              "best of %d after a warm-up\n",
              copier->name().c_str(), static_cast<unsigned long long>(bytes >> 20), runs);
  std::printf("copy ceiling (one cudaMemcpyAsync, pinned host): D2H %.2f GB/s, H2D %.2f GB/s\n",
              d2h, h2d);
  std::printf("%-8s %-6s %-10s %-8s %-12s %-10s\n", "chunk", "paths", "mode", "GB/s",
              "vs_host_tcp", "vs_copy");
  for (const std::string& cs : SplitList(F(f, "chunks", "256K,1M"))) {
    for (const std::string& ps : SplitList(F(f, "paths", "1,4"))) {
      const uint64_t chunk = ParseBytes(cs);
      const int paths = std::atoi(ps.c_str());
      const double host = EngineGbs(mem, false, false, bytes, chunk, paths, slots, runs);
      const double ceil = std::min(d2h, h2d);
      const struct { const char* name; bool s, d; } modes[] = {
          {"host->host", false, false}, {"gpu->gpu", true, true},
          {"gpu->host", true, false}, {"host->gpu", false, true}};
      for (const auto& m : modes) {
        const double g = m.s || m.d ? EngineGbs(mem, m.s, m.d, bytes, chunk, paths, slots, runs)
                                    : host;
        std::printf("%-8s %-6d %-10s %-8.2f %-12.2f %-10.3f\n", cs.c_str(), paths, m.name, g,
                    host > 0 ? g / host : 0, ceil > 0 ? g / ceil : 0);
      }
    }
  }
  return 0;
}

}  // namespace pd::kvtransfer::bench
