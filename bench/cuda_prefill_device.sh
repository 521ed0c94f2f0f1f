#!/usr/bin/env bash
# Prefill attention (issue 3, third round): check + benchmark in ONE device call.
#   Here (build machine):  bash bench/cuda_prefill_device.sh pack
#     builds cuda_kernels_test, cuda_runner_test, cuda_bench in $PD_BUILD_DIR (default
#     build-cuda-pf; Release, PD_WITH_CUDA=ON) and strips them into $PD_DEV_DIR/bin (default
#     .dev/cudapf; git-ignored); copies the spdlog/fmt/OpenBLAS .so files from .dev/cuda/lib.
#   GPU machine (run tool, carry [".dev/cudapf"]):  bash bench/cuda_prefill_device.sh run [full]
#     (PD_SKIP_RUNNER_TEST=1 leaves out the golden-parity test; the sanitizer runs use
#     PD_PREFILL_TEST_QUICK=1: block size 16 cases only)
#     1. cuda_kernels_test: both prefill kernels vs the CPU twin (wgmma, mma.sync);
#        cuda_runner_test (golden parity, chunked == one-shot);
#     2. compute-sanitizer memcheck + racecheck on the wgmma kernel's test;
#     3. prefill attention alone 8k/16k/32k, wgmma and mma.sync in the same process;
#     4. whole 8B-shape prefill (1k/4k; with `full` also 16k/32k), wgmma, and with
#        PD_CUDA_PREFILL_ATTN=mma (1k/4k; all four with PD_MMA_FULL=1).
#   Logs under $OUT; a summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
DEV=${PD_DEV_DIR:-.dev/cudapf}
BUILD=${PD_BUILD_DIR:-build-cuda-pf}
if [ "$mode" = pack ]; then
  cmake --build "$BUILD" -j2 --target cuda_kernels_test cuda_runner_test cuda_bench || exit 1
  mkdir -p "$DEV/bin" "$DEV/lib"
  cp -n .dev/cuda/lib/* "$DEV/lib/" 2>/dev/null
  strip -o "$DEV/bin/cuda_kernels_test" "$BUILD/tests/model_cuda/cuda_kernels_test"
  strip -o "$DEV/bin/cuda_runner_test" "$BUILD/tests/model_cuda/cuda_runner_test"
  strip -o "$DEV/bin/cuda_bench" "$BUILD/bench/cuda_bench"
  du -sh "$DEV"
  exit 0
fi
full=${2:-}
OUT=${OUT:-/tmp/pd-out}
mkdir -p "$OUT"
BIN=$DEV/bin
export PD_TEST_DATA_DIR=$PWD/tests/data
export LD_LIBRARY_PATH=$PWD/$DEV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"
rc=0
PD_CUDA_PREFILL_ATTN=wgmma timeout 80 $BIN/cuda_kernels_test --gtest_filter='*Prefill*' > "$OUT/kernels.log" 2>&1 || rc=1
grep -E "^\[  (PASSED|FAILED) |\[       OK|Failure|Expected|Which is|variant|error" "$OUT/kernels.log" | head -30
if [ $rc != 0 ]; then  # diagnostic: the wgmma kernel with the V descriptor strides swapped
  PD_PREFILL_TEST_QUICK=1 PD_CUDA_PREFILL_ATTN=wgmma PD_CUDA_PREFILL_VDESC=swap timeout 30 $BIN/cuda_kernels_test --gtest_filter='*PrefillAttentionWgmma*' \
    > "$OUT/kernels_vswap.log" 2>&1; echo "vswap rc=$?"; grep -E "^\[  (PASSED|FAILED) " "$OUT/kernels_vswap.log"
fi
if [ "${PD_SKIP_RUNNER_TEST:-0}" != 1 ]; then
  timeout 100 $BIN/cuda_runner_test > "$OUT/runner.log" 2>&1 || rc=1
  grep -E "^\[  (PASSED|FAILED) |\[  FAILED|Failure" "$OUT/runner.log" | head -10
fi
echo "gpu tests: $([ $rc = 0 ] && echo PASS || echo FAIL)"
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
PD_PREFILL_TEST_QUICK=1 PD_CUDA_PREFILL_ATTN=wgmma timeout 40 $CS --tool memcheck --leak-check no --error-exitcode 3 $BIN/cuda_kernels_test \
  --gtest_filter='*PrefillAttentionWgmma*' > "$OUT/memcheck.log" 2>&1; echo "memcheck rc=$?"
PD_PREFILL_TEST_QUICK=1 PD_CUDA_PREFILL_ATTN=wgmma timeout 40 $CS --tool racecheck --error-exitcode 3 $BIN/cuda_kernels_test \
  --gtest_filter='*PrefillAttentionWgmma*' > "$OUT/racecheck.log" 2>&1; echo "racecheck rc=$?"
tail -n 2 "$OUT/memcheck.log" "$OUT/racecheck.log"
q=quick; [ "$full" = full ] && [ $rc = 0 ] && q=  # a failing kernel: short bench only
PD_CUDA_PREFILL_ATTN=wgmma timeout 120 $BIN/cuda_bench $q nogemv noattn nodecode prefillattn 2>&1 | tee "$OUT/bench.log"
qm=quick; [ "${PD_MMA_FULL:-0}" = 1 ] && qm=$q  # the mma.sync whole prefill: 1k/4k unless asked
PD_CUDA_PREFILL_ATTN=mma timeout 100 $BIN/cuda_bench $qm nogemv noattn nodecode 2>&1 \
  | grep -E "^prefill|^ceiling" | sed 's/^/mma-kernel /' | tee "$OUT/bench_mma.log"
echo "=== summary"
grep -E "^attn|^prefill|^ceiling" "$OUT/bench.log"
cat "$OUT/bench_mma.log"
exit $rc
