#!/usr/bin/env bash
# Hardening stage of CI (issue 10 item 4), run by ./test.sh after the main suite (PD_HARDENING=0
# skips it). CPU only, three steps, each a separate build dir so the main build stays untouched:
#   1. ASan+UBSan (clang-14, PD_FUZZ=ON) build of the whole CPU tree in $HARD_BUILD_DIR
#      (default build-hard); runs every unit and e2e test (fuzz replays included) with leases and
#      timeouts stretched by PD_TEST_TIME_SCALE (default 4: sanitized daemons are 2-4x slower).
#   2. libFuzzer: every target in tests/fuzz for $FUZZ_SECONDS (default 20) each, same build.
#   3. TSan (clang-14) build of the concurrency-heavy unit tests in $TSAN_BUILD_DIR (default
#      build-tsan): block manager, transfer engine, router scheduler/pool, serving engine and
#      handoff, metrics, CPU runner threads; Debian's uninstrumented gRPC/abseil internals are
#      suppressed by tests/sanitizers/tsan.supp (our code never is).
# HARD_LABELS (default 'unit|e2e') picks step 1's ctest labels; HARD_EXCLUDE (default 'soak|chaos')
# excludes labels from it (the 3-minute soak and the chaos/overload tests, minutes of fault
# timers that a 4x time scale would stretch past the CI budget, run once, unsanitized, in the
# main suite).
# Exits non-zero if any step fails; every step runs even after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${HARD_JOBS:-2}
HARD=${HARD_BUILD_DIR:-build-hard}
TSAN_DIR=${TSAN_BUILD_DIR:-build-tsan}
TSAN_TESTS=${TSAN_TESTS:-kvcache_test|kvtransfer_test|router_scheduler|router_instance_pool|serving_engine|serving_handoff|metrics_test|cpu_runner}
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPD_WITH_CUDA=OFF -DPD_BUILD_BENCH=OFF)
export CC=clang-14 CXX=clang++-14
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export PD_TEST_TIME_SCALE=${PD_TEST_TIME_SCALE:-4}
fail=0
step() { echo; echo "== hardening: $* ($(date +%T))"; }

step "1/3 ASan+UBSan build ($HARD)"
[ -f "$HARD/CMakeCache.txt" ] ||
  cmake -S . -B "$HARD" "${common[@]}" -DPD_FUZZ=ON -DPD_SANITIZE=address,undefined >/dev/null
if cmake --build "$HARD" -j "$JOBS"; then
  step "1/3 ASan+UBSan tests (labels ${HARD_LABELS:-unit|e2e}, time scale $PD_TEST_TIME_SCALE)"
  (cd "$HARD" && ctest --output-on-failure -j "$JOBS" --repeat until-pass:2 \
     -L "${HARD_LABELS:-unit|e2e}" -LE "${HARD_EXCLUDE:-soak|chaos}") || fail=1

  step "2/3 libFuzzer, ${FUZZ_SECONDS:-20} s per target"
  FUZZ_BUILD_DIR="$HARD" FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh || fail=1
else
  fail=1
fi

step "3/3 TSan build + concurrency tests ($TSAN_DIR)"
[ -f "$TSAN_DIR/CMakeCache.txt" ] ||
  cmake -S . -B "$TSAN_DIR" "${common[@]}" -DPD_SANITIZE=thread >/dev/null
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp}
mapfile -t tsan_targets < <(cd "$TSAN_DIR" && ctest -N -R "$TSAN_TESTS" | awk '/Test +#[0-9]+:/{print $3}')
if cmake --build "$TSAN_DIR" -j "$JOBS" --target "${tsan_targets[@]}"; then
  (cd "$TSAN_DIR" && ctest --output-on-failure -j "$JOBS" -R "$TSAN_TESTS") ||
    fail=1
else
  fail=1
fi
step "done: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
