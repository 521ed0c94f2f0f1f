#!/usr/bin/env bash
# Packs what scripts/device-plan.sh needs into .dev/plan/ (git-ignored; carry `.dev/plan`):
#   planner.tar.xz       bin/pd-profile, bin/pd-sim (CUDA build, dynamic; its non-system
#                        libraries are those of the serving bundle's lib/)
#   serve-bundle.tar.xz  the serving binaries + lib/ (pd-up, pd-router, pd-prefill, pd-decode,
#                        pd-bench, pd-makemodel, pd-client), e.g. a copy of .dev/gpu/bin.tar.xz
#                        (SERVE_BUNDLE=path to take another)
# Usage: scripts/build-device-plan.sh   (build dir: build-plan-cuda, PD_WITH_CUDA=ON, dynamic)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-plan-cuda}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPD_WITH_CUDA=ON \
    -DPD_STATIC_DEPS=OFF -DPD_BUILD_TESTS=OFF -DPD_BUILD_BENCH=OFF
fi
cmake --build "$BUILD_DIR" -j "${PD_JOBS:-2}" --target pd-profile pd-sim
mkdir -p .dev/plan
if [ -n "${SERVE_BUNDLE:-}" ]; then cp "$SERVE_BUNDLE" .dev/plan/serve-bundle.tar.xz; fi
[ -f .dev/plan/serve-bundle.tar.xz ] || cp .dev/gpu/bin.tar.xz .dev/plan/serve-bundle.tar.xz
stage=$(mktemp -d)
mkdir -p "$stage/bin"
for t in pd-profile pd-sim; do strip -o "$stage/bin/$t" "$BUILD_DIR/src/planner/$t"; done
tar -C "$stage" -cJf .dev/plan/planner.tar.xz bin
rm -rf "$stage"
ls -la .dev/plan
