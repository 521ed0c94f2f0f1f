#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang-14 and runs each for a fixed budget against
# its committed corpus. Exits non-zero if any target crashes or reports a sanitizer error.
#   scripts/fuzz.sh [target ...]        default: every tests/fuzz/corpus/<target> directory
#   FUZZ_SECONDS=60   budget per target (libFuzzer -max_total_time)
#   FUZZ_BUILD_DIR=build-fuzz   FUZZ_JOBS=2 (build parallelism)   FUZZ_ARGS="..." (extra flags)
# New coverage-increasing inputs go to $FUZZ_BUILD_DIR/fuzz-corpus/<target>/ (the committed corpus
# is only read). Crash inputs are written to $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/; a
# reproducer is: $FUZZ_BUILD_DIR/tests/fuzz/fuzz_<target> <crash file>. Runs one target at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_PER=${FUZZ_SECONDS:-60}
TARGETS=("$@")
# Default: every target with a committed corpus (tests/fuzz/corpus/<target>/).
if [ ${#TARGETS[@]} -eq 0 ]; then
  for d in tests/fuzz/corpus/*/; do TARGETS+=("$(basename "$d")"); done
fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPD_FUZZ=ON -DPD_WITH_CUDA=OFF -DPD_WITH_RDMA=OFF -DPD_SANITIZE=address,undefined \
    -DPD_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" --target "${TARGETS[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fail=0
for t in "${TARGETS[@]}"; do
  work="$BUILD/fuzz-corpus/$t" art="$BUILD/fuzz-artifacts/$t"
  mkdir -p "$work" "$art"
  log="$BUILD/fuzz-$t.log"
  echo "== fuzz_$t: ${SECONDS_PER}s (log $log)"
  # -rss_limit_mb: inputs are tiny; a parser that needs gigabytes is a bug worth seeing.
  # -timeout: one input taking > 10 s is reported as a hang.
  if "$BUILD/tests/fuzz/fuzz_$t" "$work" "tests/fuzz/corpus/$t" \
      -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$art/" ${FUZZ_ARGS:-} >"$log" 2>&1; then
    echo "   ok: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') execs," \
         "$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}') exec/s," \
         "cov $(grep -oE 'cov: [0-9]+' "$log" | tail -1)"
  else
    echo "   FAILED: see $log; inputs in $art/"
    grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -5 || true
    fail=1
  fi
done
exit $fail
