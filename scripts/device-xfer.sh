#!/usr/bin/env bash
# GPU checks of the KV transfer engine, run on the GPU machine (device tool) from the repo root
# with .dev/xfer carried. Pack here first (build-xfer-cuda: PD_WITH_CUDA=ON, PD_STATIC_DEPS=ON):
#   scripts/device-xfer.sh --pack
# then on the device:  bash scripts/device-xfer.sh            (logs under $OUT)
# Steps: kvtransfer_gpu_test (tcp GPU<->GPU/host through pinned bounce buffers, CUDA IPC across
# two processes over the local transport), the fake-copier staging tests on that machine, and
# `kvtransfer_bench gpu` (bounce pipeline vs host->host loopback vs the pinned copy ceiling).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--pack" ]; then
  B=${BUILD_DIR:-build-xfer-cuda}
  cmake --build "$B" -j "${PD_JOBS:-2}" --target kvtransfer_gpu_test kvtransfer_peer \
    kvtransfer_bench kvtransfer_test || exit 1
  mkdir -p .dev/xfer/bin
  for t in tests/kvtransfer/kvtransfer_gpu_test tests/kvtransfer/kvtransfer_peer \
           tests/kvtransfer/kvtransfer_test bench/kvtransfer_bench; do
    strip -o ".dev/xfer/bin/$(basename $t)" "$B/$t" || exit 1
  done
  du -sh .dev/xfer
  exit 0
fi
OUT=${OUT:-/tmp/pd-out}
mkdir -p "$OUT"
BIN=$PWD/.dev/xfer/bin
export PD_KVTRANSFER_PEER=$BIN/kvtransfer_peer
nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current \
  --format=csv | tee "$OUT/gpu.txt"
nproc | sed 's/^/cpus: /' | tee -a "$OUT/gpu.txt"
timeout 120 "$BIN/kvtransfer_gpu_test" 2>&1 | tee "$OUT/gpu_test.log" |
  grep -E "^\[  (PASSED|FAILED|SKIPPED|  OK) |^\[  FAILED|Failure|Expected|Which is|error" | head -40
timeout 90 "$BIN/kvtransfer_test" --gtest_filter='Staging*:Local*' 2>&1 | tee "$OUT/staging.log" |
  grep -E "^\[  (PASSED|FAILED) |Failure" | head -20
timeout 240 "$BIN/kvtransfer_bench" gpu --bytes "${XFER_BYTES:-256M}" --runs 3 \
  --chunks 256K,1M --paths 1,4 2>&1 | tee "$OUT/gpu_bench.log"
