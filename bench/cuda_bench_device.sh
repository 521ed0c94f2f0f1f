#!/usr/bin/env bash
# CUDA backend check + benchmark in ONE device call (issue 3).
#   Here (build machine):  bash bench/cuda_bench_device.sh pack
#     builds cuda_kernels_test, cuda_runner_test, cuda_bench in build-cuda (Release,
#     PD_WITH_CUDA=ON) and strips them into .dev/cuda/bin (.dev/cuda/lib already holds the
#     spdlog/fmt/OpenBLAS .so files the GPU machine lacks; .dev is git-ignored).
#   GPU machine (run tool, carry [".dev/cuda"]):  bash bench/cuda_bench_device.sh run [steps...]
#   (with PD_CUDA_DEV=<dir> on both sides, carry [<dir>] instead)
#   steps (default: tests bench ab sanitize):
#     tests     gpu tests: every kernel vs its CPU twin (incl. the decode attention kernels and the
#               GEMV) and whole-model golden parity;
#     bench     cuda_bench noprefill: ceilings, GEMV vs cuBLAS, decode attention (every variant),
#               decode steps b1..b256 at 1k/4k;
#     ab        the decode steps again with the previous paths (PD_CUDA_DECODE_ATTN=tiled, and
#               PD_CUDA_GEMV=0 PD_CUDA_DECODE_ATTN=simt);
#     sanitize  compute-sanitizer memcheck (decode attention + GEMV tests) and racecheck (decode
#               attention);
#     profile   ncu per-kernel times of one graph-replayed decode step, batch 1 ctx 1k.
#   Logs under $OUT. Each step has its own timeout; the total stays under the device tool's 600 s
#   per call.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
# PD_CUDA_DEV (default .dev/cuda) names the carried folder: parallel sessions pack their own.
DEV=${PD_CUDA_DEV:-.dev/cuda}
BUILD=${PD_CUDA_BUILD:-build-cuda}
if [ "$mode" = pack ]; then
  cmake --build $BUILD -j2 --target cuda_kernels_test cuda_runner_test cuda_bf16_reference_test cuda_bench || exit 1
  mkdir -p $DEV/bin
  [ -d $DEV/lib ] || cp -r .dev/cuda/lib $DEV/lib
  strip -o $DEV/bin/cuda_kernels_test $BUILD/tests/model_cuda/cuda_kernels_test
  strip -o $DEV/bin/cuda_runner_test $BUILD/tests/model_cuda/cuda_runner_test
  strip -o $DEV/bin/cuda_bf16_reference_test $BUILD/tests/model_cuda/cuda_bf16_reference_test
  strip -o $DEV/bin/cuda_bench $BUILD/bench/cuda_bench
  ls -la $DEV/bin $DEV/lib
  exit 0
fi
OUT=${OUT:-/tmp/pd-out}
mkdir -p "$OUT"
BIN=$DEV/bin
export PD_TEST_DATA_DIR=$PWD/tests/data
export LD_LIBRARY_PATH=$PWD/$DEV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
shift || true
steps=${*:-tests bench ab sanitize}
has() { [[ " $steps " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
rc=0
if has tests; then
  for t in cuda_kernels_test cuda_runner_test; do
    filt=; [ $t = cuda_kernels_test ] && filt=--gtest_filter=-*Prefill*  # prefill: its own script
    timeout 150 $BIN/$t $filt > "$OUT/$t.log" 2>&1 || rc=1
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |\[  FAILED|Failure|\[golden|\[cpu-vs|\[bf16-ref|Expected|Which is|error" \
      "$OUT/$t.log" | head -40
  done
  echo "gpu tests: $([ $rc = 0 ] && echo PASS || echo FAIL)"
fi
echo "[t=${SECONDS}s]"
if has bench; then
  timeout 300 $BIN/cuda_bench noprefill 2>&1 | tee "$OUT/bench.log"
fi
echo "[t=${SECONDS}s]"
if has ab; then  # round-2 paths (CUDA-core tiled attention, no PDL, no fusion), then one knob each
  PD_CUDA_DECODE_ATTN=tiled PD_CUDA_PDL=0 PD_CUDA_FUSE=0 timeout 120 $BIN/cuda_bench nogemv noattn \
    noprefill 2>&1 | sed 's/^/round2-paths /' | grep "decode   batch" | tee "$OUT/bench_ab.log"
  PD_CUDA_PDL=0 timeout 120 $BIN/cuda_bench nogemv noattn noprefill 2>&1 \
    | sed "s/^/PD_CUDA_PDL=0 /" | grep "decode   batch" | tee -a "$OUT/bench_ab.log"
  for knob in PD_CUDA_GEMV_UNROLL=16 PD_CUDA_FUSE=0 PD_CUDA_DECODE_TILE=4 none; do
    env $([ $knob = none ] && echo X=1 || echo $knob) timeout 60 $BIN/cuda_bench quick nogemv noattn \
      noprefill 2>&1 | sed "s/^/$knob /" | grep "decode   batch" | tee -a "$OUT/bench_ab.log"
  done
fi
echo "[t=${SECONDS}s]"
if has sanitize; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  timeout 120 $CS --tool memcheck --leak-check no --error-exitcode 3 $BIN/cuda_kernels_test \
    --gtest_filter='*MmaDecode*:*Gemv*:*Programmatic*:*AddRmsNormShapes*' > "$OUT/sanitize.log" 2>&1
  echo "memcheck rc=$?"
  timeout 120 $CS --tool racecheck --error-exitcode 3 $BIN/cuda_kernels_test \
    --gtest_filter='*MmaDecode*:*GemvSwiglu*:*AddRmsNormShapes*' >> "$OUT/sanitize.log" 2>&1
  echo "racecheck rc=$?"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitize.log"
fi
echo "[t=${SECONDS}s]"
if has profile; then
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
  timeout 90 $NCU --profile-from-start off --cache-control none --clock-control none \
    --launch-count 120 --metrics gpu__time_duration.sum --csv $BIN/cuda_bench nogemv noattn profileb1 \
    > "$OUT/ncu_b1.csv" 2> /dev/null; echo "ncu rc=$?"
  python3 - "$OUT/ncu_b1.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    u = r[ui]; v = float(r[vi].replace(",", "")) * {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(u, 1.0)
    k = r[ki].split("(")[0][:90]; tot[k] += v; cnt[k] += 1
print("ncu kernels %d, sum %.1f us" % (sum(cnt.values()), sum(tot.values())))
for k, v in sorted(tot.items(), key=lambda x: -x[1]):
    print("ncu %9.1f us %4d x %7.2f us  %s" % (v, cnt[k], v / cnt[k], k))
PY
fi
echo "[t=${SECONDS}s]"
exit $rc
