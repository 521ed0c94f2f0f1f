#!/usr/bin/env bash
# Builds binaries for the GPU machine (gRPC/protobuf/yaml-cpp static, cudart static, cuBLAS
# dynamic; see shared/MACHINE-NOTES.md) into build-dev/, then packs the named targets, stripped,
# into .dev/gpu/bin.tar.xz (.dev is git-ignored; pass `.dev/gpu` in the device tool's carry).
# Usage: scripts/build-device.sh target [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=build-dev
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPD_STATIC_DEPS=ON \
    -DPD_WITH_CUDA=ON -DPD_BUILD_TESTS=ON
fi
cmake --build "$BUILD_DIR" -j "${PD_JOBS:-2}" --target "$@"
stage=$(mktemp -d)
mkdir -p "$stage/bin"
for t in "$@"; do
  f=$(find "$BUILD_DIR" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$f" ] || { echo "build-device: no binary for target $t" >&2; exit 1; }
  strip -o "$stage/bin/$t" "$f"
done
mkdir -p .dev/gpu
tar -C "$stage" -cJf .dev/gpu/bin.tar.xz bin
rm -rf "$stage"
ls -la .dev/gpu/bin.tar.xz
