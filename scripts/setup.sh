#!/usr/bin/env bash
# Installs every Debian package the build and the tests need. Idempotent: does nothing when all
# are present; runs `apt-get update` at most once.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libpcre2-dev
  libgtest-dev libgmock-dev
  libibverbs-dev librdmacm-dev
  libopenblas-dev
  iproute2 python3 procps
  clang-14 libclang-rt-14-dev
  prometheus yamllint libcpp-httplib-dev
  openssl
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# npm (tokenizer test data): this machine kind ships Node.js with npm; install Debian's only if absent.
if ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
# kubectl (offline `kubectl kustomize` in the manifest test): some images ship their own.
if ! command -v kubectl >/dev/null 2>&1; then missing+=(kubernetes-client); fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
