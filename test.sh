#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, e2e; gpu tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/build.sh
cd "${PD_BUILD_DIR:-build}"
ctest --output-on-failure -j "${PD_TEST_JOBS:-2}" "$@"
