#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repo root, with .dev/cuda carried:
#   .dev/cuda/bin/{cuda_kernels_test,cuda_runner_test,cuda_bench}   (built by the CUDA session)
# Pack here first:
#   cmake --build build-cuda --target cuda_kernels_test cuda_runner_test cuda_bench
#   strip the three into .dev/cuda/bin; copy libspdlog/libfmt/libopenblas/libgfortran/libquadmath
#   .so files into .dev/cuda/lib (the GPU machine has cuBLAS, not these).
# Writes logs under $OUT. Steps: tests, compute-sanitizer, benchmarks, transformers baseline.
# Usage: scripts/device-run.sh [tests] [sanitize] [bench] [hf]   (default: all)
set -uo pipefail
OUT=${OUT:-/tmp/pd-out}
mkdir -p "$OUT"
BIN=.dev/cuda/bin
export PD_TEST_DATA_DIR=$PWD/tests/data
export LD_LIBRARY_PATH=$PWD/.dev/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
steps=${*:-tests bench hf sanitize}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
has() { [[ " $steps " == *" $1 "* ]]; }
if has tests; then
  for t in cuda_kernels_test cuda_runner_test; do
    timeout 120 $BIN/$t 2>&1 | tee "$OUT/$t.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|\[golden|\[cpu-vs|Expected|Which is|error" | head -60
  done
fi
if has sanitize; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  timeout 100 $CS --tool memcheck --leak-check no --error-exitcode 3 $BIN/cuda_kernels_test \
    --gtest_filter='-*Sample*' > "$OUT/memcheck.log" 2>&1; echo "memcheck rc=$?"; tail -3 "$OUT/memcheck.log"
  timeout 100 $CS --tool racecheck --error-exitcode 3 $BIN/cuda_kernels_test \
    --gtest_filter='*Attention*:*Sample*' > "$OUT/racecheck.log" 2>&1; echo "racecheck rc=$?"; tail -3 "$OUT/racecheck.log"
fi
if has bench; then
  timeout 270 $BIN/cuda_bench 2>&1 | tee "$OUT/bench.log"
fi
if has hf; then
  PYTHONUNBUFFERED=1 timeout 150 python3 bench/hf_compare.py 2>&1 | grep -v Warning | tee "$OUT/hf.log"
fi
