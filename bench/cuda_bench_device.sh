#!/usr/bin/env bash
# CUDA backend check + benchmark in ONE device call (issue 3).
#   Here (build machine):  bash bench/cuda_bench_device.sh pack
#     builds cuda_kernels_test, cuda_runner_test, cuda_bench in build-cuda (Release,
#     PD_WITH_CUDA=ON) and strips them into .dev/cuda/bin (.dev/cuda/lib already holds the
#     spdlog/fmt/OpenBLAS .so files the GPU machine lacks; .dev is git-ignored).
#   GPU machine (run tool, carry [".dev/cuda"]):  bash bench/cuda_bench_device.sh run
#     1. gpu tests: every kernel vs its CPU twin (incl. tiled decode attention and the GEMV) and
#        whole-model golden parity;
#     2. cuda_bench noprefill: ceilings, GEMV vs cuBLAS, decode attention (tiled and old kernel),
#        decode steps b1..b256 at 1k/4k (prefill paths are unchanged by this work);
#     3. A/B: the decode steps again with the old paths (PD_CUDA_GEMV=0 PD_CUDA_DECODE_ATTN=simt);
#     4. compute-sanitizer memcheck (tiled attention + GEMV tests) and racecheck (tiled attention).
#   Logs under $OUT. Wall time about 6-7 minutes on an H100 (each step has its own timeout; the
#   total stays under the device tool's 600 s per call).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
if [ "$mode" = pack ]; then
  cmake --build build-cuda -j2 --target cuda_kernels_test cuda_runner_test cuda_bf16_reference_test cuda_bench || exit 1
  mkdir -p .dev/cuda/bin
  strip -o .dev/cuda/bin/cuda_kernels_test build-cuda/tests/model_cuda/cuda_kernels_test
  strip -o .dev/cuda/bin/cuda_runner_test build-cuda/tests/model_cuda/cuda_runner_test
  strip -o .dev/cuda/bin/cuda_bf16_reference_test build-cuda/tests/model_cuda/cuda_bf16_reference_test
  strip -o .dev/cuda/bin/cuda_bench build-cuda/bench/cuda_bench
  ls -la .dev/cuda/bin .dev/cuda/lib
  exit 0
fi
OUT=${OUT:-/tmp/pd-out}
mkdir -p "$OUT"
BIN=.dev/cuda/bin
export PD_TEST_DATA_DIR=$PWD/tests/data
export LD_LIBRARY_PATH=$PWD/.dev/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
rc=0
for t in cuda_kernels_test cuda_runner_test cuda_bf16_reference_test; do
  timeout 150 $BIN/$t > "$OUT/$t.log" 2>&1 || rc=1
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |\[  FAILED|Failure|\[golden|\[cpu-vs|\[bf16-ref|Expected|Which is|error" \
    "$OUT/$t.log" | head -40
done
echo "gpu tests: $([ $rc = 0 ] && echo PASS || echo FAIL)"
timeout 300 $BIN/cuda_bench noprefill 2>&1 | tee "$OUT/bench.log"
PD_CUDA_GEMV=0 PD_CUDA_DECODE_ATTN=simt timeout 120 $BIN/cuda_bench quick nogemv noattn noprefill \
  2>&1 | sed 's/^/old-paths /' | tee "$OUT/bench_old_paths.log"
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 90 $CS --tool memcheck --leak-check no --error-exitcode 3 $BIN/cuda_kernels_test \
  --gtest_filter='*TiledDecode*:*Gemv*' > "$OUT/memcheck.log" 2>&1; echo "memcheck rc=$?"
timeout 90 $CS --tool racecheck --error-exitcode 3 $BIN/cuda_kernels_test \
  --gtest_filter='*TiledDecode*' > "$OUT/racecheck.log" 2>&1; echo "racecheck rc=$?"
tail -2 "$OUT/memcheck.log" "$OUT/racecheck.log"
exit $rc
