#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs pdserve on the embedded tiny model.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/build.sh
BUILD_DIR=${PD_BUILD_DIR:-build}
MODEL="$BUILD_DIR/models/tiny"
if [ ! -f "$MODEL/config.json" ]; then
  "$BUILD_DIR/src/tools/pd-makemodel" --preset tiny --out "$MODEL" --seed 1
fi
"$BUILD_DIR/src/tools/pd-generate" --model "$MODEL" --prompt-ids 1,2,3,4,5 --max-tokens 32
