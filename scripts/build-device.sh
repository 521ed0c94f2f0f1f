#!/usr/bin/env bash
# Builds binaries for the GPU machine and packs the named targets, stripped, into
# .dev/gpu/bin.tar.xz (.dev is git-ignored; pass `.dev/gpu` in the device tool's carry), with a
# BUILD.txt (commit, dirty files, build dir, date).
#   BUILD_DIR (default build-dev): created as a static build (gRPC/protobuf/yaml-cpp static,
#   cudart static, cuBLAS dynamic; see shared/MACHINE-NOTES.md) when it does not exist. An
#   existing dynamic CUDA build (e.g. build-srvA) works too: its non-system shared libraries
#   (ldd, minus glibc, libstdc++/libgcc and the CUDA/RDMA libraries the GPU machine has) go
#   into lib/ next to bin/, and scripts/device-serve.sh puts lib/ on LD_LIBRARY_PATH.
# Usage: [BUILD_DIR=build-srvA] scripts/build-device.sh target [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-dev}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPD_STATIC_DEPS=ON \
    -DPD_WITH_CUDA=ON -DPD_BUILD_TESTS=ON
fi
cmake --build "$BUILD_DIR" -j "${PD_JOBS:-2}" --target "$@"
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libpthread|libdl\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcublas|libcudart|libnvidia|libibverbs|librdmacm|libnl-)'
for t in "$@"; do
  f=$(find "$BUILD_DIR" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$f" ] || { echo "build-device: no binary for target $t" >&2; exit 1; }
  strip -o "$stage/bin/$t" "$f"
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] || cp -nL "$path" "$stage/lib/$name"
  done
done
{ echo "commit $(git rev-parse --short HEAD) ($(git status --porcelain --untracked-files=no | wc -l) modified files)"
  echo "build dir $BUILD_DIR ($(grep -E '^CMAKE_BUILD_TYPE' "$BUILD_DIR/CMakeCache.txt" | cut -d= -f2)), packed $(date -u +%FT%TZ)"
  echo "targets: $*"; } > "$stage/BUILD.txt"
mkdir -p .dev/gpu
tar -C "$stage" -cJf .dev/gpu/bin.tar.xz bin lib BUILD.txt
rm -rf "$stage"
ls -la .dev/gpu/bin.tar.xz
