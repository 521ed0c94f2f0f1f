#!/usr/bin/env bash
# Sanitizer CI stage (CPU only):
#   1. ASan+UBSan build in $ASAN_BUILD_DIR (default build-asan), then `ctest -L unit`.
#   2. With TSAN=1 (default 0: the TSan build is a second full build): TSan build in
#      $TSAN_BUILD_DIR (default build-tsan) and the concurrency-heavy unit tests
#      (kvtransfer|kvcache|router|scheduler).
# SAN_TESTS=REGEX limits both stages to the unit tests matching it (only those targets are built;
# default: every unit test). Only test executables are built, not daemons, tools or benchmarks.
# Extra ctest arguments are passed through.
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
# Test names are their target names (pd_add_test); build just those.
unit_targets() {  # $1 build dir, $2 name regex
  (cd "$1" && ctest -N -L unit -R "$2" 2>/dev/null) | awk '/Test +#[0-9]+:/{print $3}'
}
run_stage() {  # $1 build dir, $2 name regex, rest: ctest args
  local dir=$1 re=$2
  shift 2
  mapfile -t targets < <(unit_targets "$dir" "$re")
  [ ${#targets[@]} -gt 0 ] || { echo "no unit tests match '$re'"; return 1; }
  # Tests that run a tool or script rather than their own executable (pd_generate_golden,
  # tokenizer_fetch, ...) are not targets; SAN_BUILD_ALL=1 builds the whole tree for them.
  local known build=()
  known=$(ninja -C "$dir" -t targets all 2>/dev/null | cut -d: -f1)
  for t in "${targets[@]}"; do
    if grep -qx "$t" <<<"$known"; then build+=("$t"); fi
  done
  [ "${SAN_BUILD_ALL:-0}" = 1 ] && build=(all)
  cmake --build "$dir" -j "$JOBS" --target "${build[@]}" &&
    (cd "$dir" && ctest -L unit -R "$re" --output-on-failure -j "$JOBS" "$@")
}
run_stage "$ASAN" "${SAN_TESTS:-.}" "$@" || fail=1

if [ "${TSAN:-0}" = 1 ]; then
  echo "== TSan: $TSAN_DIR"
  [ -f "$TSAN_DIR/CMakeCache.txt" ] || cmake -S . -B "$TSAN_DIR" "${common[@]}" -DPD_SANITIZE=thread
  run_stage "$TSAN_DIR" "${SAN_TESTS:-kvtransfer|kvcache|router|scheduler}" "$@" || fail=1
fi
exit $fail
