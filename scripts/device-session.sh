#!/usr/bin/env bash
# One packed build for every device script: scripts/build-device.sh packs the CUDA test/bench
# binaries AND the serving/planner binaries of ONE build dir into .dev/gpu/bin.tar.xz (carry
# `.dev/gpu`). This wrapper unpacks it where the CUDA scripts expect their folder and runs one
# phase per device call (each stays under the device tool's 600 s per call):
#   here:  BUILD_DIR=build-dev scripts/build-device.sh cuda_kernels_test cuda_runner_test \
#            cuda_bench pd-up pd-router pd-prefill pd-decode pd-bench pd-makemodel pd-client \
#            pd-profile pd-sim kvtransfer_gpu_test kvtransfer_peer cuda_bf16_reference_test
#   there: bash scripts/device-session.sh decode    decode tests + sanitizer + cuda_bench decode
#                                                   + transformers side by side (hf_compare.py)
#          bash scripts/device-session.sh prefill   prefill kernel tests + sanitizer + prefill
#                                                   attention and whole prefill 1k..32k
#          bash scripts/device-session.sh serve     scripts/device-serve.sh (KV path arms)
#          bash scripts/device-session.sh plan      scripts/device-plan.sh (calibration)
#          bash scripts/device-session.sh chunks    pd-profile --chunks (chunked/mixed steps)
#          bash scripts/device-session.sh gputests  all label-gpu test binaries + 1B-shape bench
#          bash scripts/device-session.sh decodeab    sanitizer on the fused-merge test, decode steps
#                                                   fused vs PD_CUDA_FUSE_COMBINE=0, ablations
#          bash scripts/device-session.sh final      gputests summary + fused-merge A/B + colocated
#                                                   calibration points (scripts/plan-points-*.txt)
#          bash scripts/device-session.sh decodeprof  where a b1 decode step's time goes: ncu
#                                                   per-kernel times + PD_CUDA_ABLATE differences
# Logs under $OUT/<phase>/.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?phase: decode | prefill | serve | plan | chunks | gputests | decodeprof | decodeab | final}
shift
OUT=${OUT:-/tmp/pd-out}
export OUT=$OUT/$phase
mkdir -p "$OUT" .dev/x
[ -x .dev/x/bin/pd-profile ] || tar -C .dev/x -xJf .dev/gpu/bin.tar.xz
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
  gputests)  # every ctest label-gpu binary (what `ctest -L gpu` runs), then the 1B-shape bench
    B=.dev/x/bin; export LD_LIBRARY_PATH=$PWD/.dev/x/lib PD_TEST_DATA_DIR=$PWD/tests/data
    export PD_KVTRANSFER_PEER=$PWD/$B/kvtransfer_peer  # pack it with kvtransfer_gpu_test
    rc=0
    for t in cuda_kernels_test cuda_runner_test cuda_bf16_reference_test kvtransfer_gpu_test; do
      timeout 200 $B/$t > "$OUT/$t.log" 2>&1; r=$?; [ $r = 0 ] || rc=1
      echo "$t rc=$r: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/$t.log" | tr '\n' ' ')"
    done
    echo "gpu-labelled tests: $([ $rc = 0 ] && echo PASS || echo FAIL)"
    [ -n "${SKIP_1B:-}" ] || timeout 150 $B/cuda_bench 1b nogemv noattn 2>&1 | tee "$OUT/bench_1b.log" | grep -E "^(ceiling|decode|prefill)"
    # head-dim-64 tensor-core prefill (opt-in until verified: cuda_kernels_test above runs its
    # D = 64 cases): the 1B prompt path with it, same run
    [ -n "${SKIP_1B:-}" ] || PD_CUDA_PREFILL_D64=1 timeout 90 $B/cuda_bench 1b nogemv noattn nodecode 2>&1 |
      tee "$OUT/bench_1b_d64.log" | grep -E "^prefill" | sed 's/^/D64 /'
    ;;
  decodeprof)  # ncu per-kernel durations (serialized), then step times with kernels left out
    bash bench/cuda_bench_device.sh run profile
    B=.dev/x/bin; export LD_LIBRARY_PATH=$PWD/.dev/x/lib
    for ab in none norm rope attn norm,rope,attn gemv; do
      PD_CUDA_ABLATE=$([ $ab = none ] || echo $ab) timeout 60 $B/cuda_bench quick nogemv noattn \
        noprefill 2>&1 | grep "decode   batch" | sed "s/^/ablate=$ab /" | tee -a "$OUT/ablate.log"
    done
    ;;
  decodeab)  # the fused split merge: sanitizer on its test, decode steps fused vs CombineKernel
    B=.dev/x/bin; export LD_LIBRARY_PATH=$PWD/.dev/x/lib
    CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck; do
      timeout 120 $CS --tool $tool --error-exitcode 3 $B/cuda_kernels_test \
        --gtest_filter='*FusedMerge*:*MmaDecode*' > "$OUT/sanitize-$tool.log" 2>&1
      echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log")"
    done
    timeout 150 $B/cuda_bench nogemv noprefill 2>&1 | tee "$OUT/bench.log" | grep -E "^(ceiling|decode|attn)"
    for v in PD_CUDA_FUSE_COMBINE=0 PD_CUDA_ABLATE=norm,rope,attn PD_CUDA_ABLATE=attn; do
      env $v timeout 60 $B/cuda_bench quick nogemv noattn noprefill 2>&1 | grep "decode   batch" |
        sed "s/^/$v /" | tee -a "$OUT/ab.log"
    done
    ;;
  final)  # one call for the end of a session, within the 8 files that come back: every
    # label-gpu test binary (summary only), decode fused-merge A/B, then the colocated
    # calibration points with a profile that has mixed-step chunk points
    SKIP_1B=1 OUT=/tmp/pd-final bash "$0" gputests > "$OUT/gputests.txt" 2>&1
    grep -hE '^\[(mixed|prefill-runner|golden|cpu-vs)' /tmp/pd-final/gputests/*.log >> "$OUT/gputests.txt"
    cat "$OUT/gputests.txt"
    B=.dev/x/bin; export LD_LIBRARY_PATH=$PWD/.dev/x/lib
    for v in X=1 PD_CUDA_FUSE_COMBINE=0 X=1 PD_CUDA_FUSE_COMBINE=0; do
      env $v timeout 50 $B/cuda_bench quick nogemv noattn noprefill 2>&1 | grep "decode   batch" |
        sed "s/^/$v /" | tee -a "$OUT/ab.log"
    done
    POINTS_FILE=scripts/plan-points-colocated.txt TIME_BUDGET=${TIME_BUDGET:-300} COLO_RESERVE=0 \
      PROFILE_TIMEOUT=200 PROFILE_ARGS="--chunks ${CHUNKS:-1024@1024,1024@4096,1024@9216,2048@8192,1024@4096+8@1024,1024@9216+8@2048,1024@1024+32@1024,1024@1024+64@2048,1024@2048+128@1024}" \
      BUNDLE=.dev/gpu/bin.tar.xz bash scripts/device-plan.sh 2>&1 | tail -12
    ;;
  chunks)  # chunked-prefill and mixed-step costs (pd-profile --chunks) for the simulator
    B=.dev/x/bin; export LD_LIBRARY_PATH=$PWD/.dev/x/lib
    MD=/dev/shm; [ -w $MD ] || MD=/tmp
    $B/pd-makemodel --preset llama-3.1-8b --layers 1 --out $MD/one-layer --seed 1 --quiet
    python3 scripts/plan_fastmodel.py $MD/one-layer $MD/m8b 32
    # $KERNELS: environment for the runner (default: the kernels of the calibration-v2 bundle)
    env ${KERNELS:-PD_CUDA_PREFILL_ATTN=mma PD_CUDA_GEMV_STREAM=1} timeout 200 $B/pd-profile \
      --model $MD/m8b --backend cuda --out "$OUT/profile-chunks.json" --reps 3 --warmup 1 \
      --prefill-tokens 1024,2048,4096,8192,12288 --decode-batches 1,8 \
      --decode-contexts 1024,2048 2>&1 | tee "$OUT/profile-chunks.log" | grep -E "chunk|prefill|wrote"
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
