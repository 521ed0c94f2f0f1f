#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, e2e; gpu tests skip without a GPU),
# then the hardening stage (scripts/ci-hardening.sh: ASan+UBSan suite, libFuzzer budgets, TSan).
#   ./test.sh                 everything (what CI runs)
#   ./test.sh -R router       only the main-suite tests matching (ctest args; hardening skipped)
#   PD_HARDENING=0 ./test.sh  main suite only
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/build.sh
main=0
# until-pass:2 absorbs one timing flake of a multi-process test on a loaded 2-core machine; a
# real failure fails twice and still fails the run.
(cd "${PD_BUILD_DIR:-build}" &&
   ctest --output-on-failure -j "${PD_TEST_JOBS:-2}" --repeat until-pass:2 "$@") || main=1
hard=0 hard_msg=skipped
if [ "${PD_HARDENING:-1}" != 0 ] && [ $# -eq 0 ]; then
  if bash scripts/ci-hardening.sh; then hard_msg=PASS; else hard=1 hard_msg=FAIL; fi
fi
echo "test.sh: main suite $([ $main = 0 ] && echo PASS || echo FAIL), hardening $hard_msg"
exit $((main | hard))
