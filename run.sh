#!/usr/bin/env bash
# Quick start: installs what is missing, builds, makes the embedded tiny model and serves the
# local 1P1D deployment (configs/local.yaml: router on 127.0.0.1:8000, CPU backend) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/build.sh
BUILD_DIR=${PD_BUILD_DIR:-build}
MODEL="$BUILD_DIR/models/tiny"
if [ ! -f "$MODEL/config.json" ]; then
  "$BUILD_DIR/src/tools/pd-makemodel" --preset tiny --out "$MODEL" --seed 1
fi
if [ "$BUILD_DIR" != build ]; then
  echo "run.sh: configs/local.yaml expects the model at build/models/tiny" >&2
fi
echo "run.sh: serving configs/local.yaml; try: $BUILD_DIR/src/tools/pd-client --ids 1,2,3,4,5 --max-tokens 16" >&2
exec "$BUILD_DIR/src/tools/pd-up" configs/local.yaml
