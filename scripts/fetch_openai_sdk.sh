#!/usr/bin/env bash
# Installs the official OpenAI Node SDK (npm `openai`, pinned) into a cache outside the tree for
# the HTTP API e2e test (tests/http). Idempotent. Prints the node_modules directory.
#   PD_CACHE (default ~/.cache/pdserve) selects the cache root.
# Exit status 3: npm could not fetch it (no network) -- the test skips with that message.
set -euo pipefail
version="4.104.0"
cache="${PD_CACHE:-$HOME/.cache/pdserve}"
prefix="$cache/npm-openai-$version"
pkg="$prefix/node_modules/openai/package.json"
if [[ ! -s "$pkg" ]]; then
  command -v npm >/dev/null 2>&1 || { echo "fetch_openai_sdk: npm not installed" >&2; exit 3; }
  mkdir -p "$prefix"
  if ! npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
      "openai@$version" >&2; then
    echo "fetch_openai_sdk: npm install openai@$version failed (no network?)" >&2
    exit 3
  fi
fi
[[ -s "$pkg" ]] || { echo "fetch_openai_sdk: missing $pkg after npm install" >&2; exit 1; }
echo "$prefix/node_modules"
