#!/usr/bin/env bash
# One packed build for every device script: scripts/build-device.sh packs the CUDA test/bench
# binaries AND the serving/planner binaries of ONE build dir into .dev/gpu/bin.tar.xz (carry
# `.dev/gpu`). This wrapper unpacks it where the CUDA scripts expect their folder and runs one
# phase per device call (each stays under the device tool's 600 s per call):
#   here:  BUILD_DIR=build-dev scripts/build-device.sh cuda_kernels_test cuda_runner_test \
#            cuda_bench pd-up pd-router pd-prefill pd-decode pd-bench pd-makemodel pd-client \
#            pd-profile pd-sim
#   there: bash scripts/device-session.sh decode    decode tests + sanitizer + cuda_bench decode
#                                                   + transformers side by side (hf_compare.py)
#          bash scripts/device-session.sh prefill   prefill kernel tests + sanitizer + prefill
#                                                   attention and whole prefill 1k..32k
#          bash scripts/device-session.sh serve     scripts/device-serve.sh (KV path arms)
#          bash scripts/device-session.sh plan      scripts/device-plan.sh (calibration)
# Logs under $OUT/<phase>/.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?phase: decode | prefill | serve | plan}
shift
OUT=${OUT:-/tmp/pd-out}
export OUT=$OUT/$phase
mkdir -p "$OUT" .dev/x
[ -x .dev/x/bin/cuda_bench ] || tar -C .dev/x -xJf .dev/gpu/bin.tar.xz
cp .dev/x/BUILD.txt "$OUT/BUILD.txt"
export PD_CUDA_DEV=.dev/x PD_DEV_DIR=.dev/x
case $phase in
  decode)
    bash bench/cuda_bench_device.sh run ${*:-tests sanitize bench}
    PYTHONUNBUFFERED=1 timeout 170 python3 bench/hf_compare.py 2>&1 | grep -v Warning |
      tee "$OUT/hf.log"
    ;;
  prefill) bash bench/cuda_prefill_device.sh run "${1:-full}" ;;
  serve) bash scripts/device-serve.sh ;;
  plan) BUNDLE=.dev/gpu/bin.tar.xz bash scripts/device-plan.sh ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
