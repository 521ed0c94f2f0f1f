#!/usr/bin/env bash
# Packs what scripts/device-plan.sh needs into .dev/plan/ (git-ignored; carry `.dev/plan`):
#   bundle.tar.xz  bin/ (pd-profile, pd-sim AND the serving binaries pd-up, pd-router,
#                  pd-prefill, pd-decode, pd-bench, pd-makemodel, pd-client), all from ONE build
#                  dir, so the profile and the calibrated deployment run the same kernels;
#                  lib/ (the non-system shared libraries they need; CUDA's own come from the GPU
#                  machine); BUILD.txt (commit, dirty paths, build type, date).
# The sources are a clean export of HEAD (git archive) in PLAN_SRC (default /work/plan-src, a
# sibling of the checkout so that ccache's base_dir shares objects with the other build dirs):
# the checkout is shared by parallel sessions and its uncommitted edits must not end up in
# measured binaries. BUILD.txt records the commit. PLAN_SRC=. builds the checkout as it is.
# Usage: scripts/build-device-plan.sh   (build dir: $PLAN_SRC/build-plan-cuda, CUDA, dynamic)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SRC=${PLAN_SRC:-$(dirname "$REPO")/plan-src}
if [ "$SRC" != . ]; then
  commit=$(git rev-parse HEAD)
  # PLAN_KEEP=1: pack the export already there (whatever commit it is) without refreshing it.
  if [ -z "${PLAN_KEEP:-}" ] && [ "$(cat "$SRC/COMMIT" 2>/dev/null)" != "$commit" ]; then
    mkdir -p "$SRC"
    find "$SRC" -mindepth 1 -maxdepth 1 ! -name 'build-plan-cuda' -exec rm -rf {} +
    git archive HEAD | tar -x -C "$SRC"
    echo "$commit" > "$SRC/COMMIT"
  fi
  cd "$SRC"
fi
BUILD_DIR=${BUILD_DIR:-build-plan-cuda}
TARGETS="pd-profile pd-sim pd-up pd-router pd-prefill pd-decode pd-bench pd-makemodel pd-client"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPD_WITH_CUDA=ON \
    -DPD_STATIC_DEPS=OFF -DPD_BUILD_TESTS=OFF -DPD_BUILD_BENCH=OFF
fi
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "${PD_JOBS:-2}" --target $TARGETS
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
for t in $TARGETS; do
  f=$(find "$BUILD_DIR/src" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$f" ] || { echo "build-device-plan: no binary for $t" >&2; exit 1; }
  strip -o "$stage/bin/$t" "$f"
  # Non-system libraries (glibc, libstdc++, libgcc and CUDA's are on the GPU machine).
  ldd "$f" | awk '$3 ~ /^\// {print $3}' | grep -v -E \
    '/(libc|libm|libstdc\+\+|libgcc_s|librt|libpthread|libdl|ld-linux[^/]*)\.so|^/usr/local/cuda' |
    while read -r l; do cp -nL "$l" "$stage/lib/"; done || true
done
{
  if [ -f COMMIT ]; then
    echo "commit $(cat COMMIT) (clean export)"
  else
    echo "commit $(git rev-parse HEAD) + uncommitted: $(git status --porcelain \
      --untracked-files=no | awk '{print $2}' | tr '\n' ' ')"
  fi
  echo "build $BUILD_DIR $(grep -m1 CMAKE_BUILD_TYPE: "$BUILD_DIR/CMakeCache.txt")"
  echo "packed $(date -u +%FT%TZ)"
} > "$stage/BUILD.txt"
mkdir -p "$REPO/.dev/plan"
rm -f "$REPO/.dev/plan/planner.tar.xz" "$REPO/.dev/plan/serve-bundle.tar.xz"
tar -C "$stage" -cJf "$REPO/.dev/plan/bundle.tar.xz" bin lib BUILD.txt
cat "$stage/BUILD.txt"
rm -rf "$stage"
ls -la "$REPO/.dev/plan"
