#!/usr/bin/env bash
# Sanitizer CI stage (CPU only):
#   1. ASan+UBSan build in $ASAN_BUILD_DIR (default build-asan), then `ctest -L unit`.
#   2. With TSAN=1 (default 0: the TSan build is a second full build): TSan build in
#      $TSAN_BUILD_DIR (default build-tsan) and the concurrency-heavy unit tests
#      (kvtransfer|kvcache|router|scheduler).
# Extra ctest arguments are passed through, e.g. scripts/sanitize.sh -R fuzz_.
# Exits non-zero if any stage fails.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${SAN_JOBS:-2}
ASAN=${ASAN_BUILD_DIR:-build-asan}
TSAN_DIR=${TSAN_BUILD_DIR:-build-tsan}
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPD_WITH_CUDA=OFF -DPD_WITH_RDMA=OFF
        -DPD_BUILD_BENCH=OFF)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

fail=0
echo "== ASan+UBSan: $ASAN"
[ -f "$ASAN/CMakeCache.txt" ] || cmake -S . -B "$ASAN" "${common[@]}" -DPD_SANITIZE=address,undefined
cmake --build "$ASAN" -j "$JOBS"
(cd "$ASAN" && ctest -L unit --output-on-failure -j "$JOBS" "$@") || fail=1

if [ "${TSAN:-0}" = 1 ]; then
  echo "== TSan: $TSAN_DIR"
  [ -f "$TSAN_DIR/CMakeCache.txt" ] || cmake -S . -B "$TSAN_DIR" "${common[@]}" -DPD_SANITIZE=thread
  cmake --build "$TSAN_DIR" -j "$JOBS"
  (cd "$TSAN_DIR" && ctest -L unit -R 'kvtransfer|kvcache|router|scheduler' --output-on-failure \
     -j "$JOBS" "$@") || fail=1
fi
exit $fail
