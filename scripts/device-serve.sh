#!/usr/bin/env bash
# Runs on the GPU machine (device tool): the h100-1p1d deployment (prefill + decode daemons on
# GPU 0, Llama-3.1-8B shape, random weights) measured with pd-bench at the seed's 1k/1k and
# 10k/1k mixes. Binaries come from scripts/build-device.sh (carry .dev/gpu), or a dynamic build
# packed with its shared libraries in lib/.
# Usage there: bash scripts/device-serve.sh   (results under $OUT)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/pd "$OUT/logs"
tar -C /tmp/pd -xJf .dev/gpu/bin.tar.xz
B=/tmp/pd/bin
# Dynamic builds carry their non-system shared libraries in lib/ (static builds have none).
# Only our binaries see them (python/torch keep the system's).
printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/pd/lib exec %s/pd-generate "$@"\n' "$B" > /tmp/pd/pd-generate.sh
chmod +x /tmp/pd/pd-generate.sh
if [ -z "${SKIP_UNSEEN:-}" ]; then
echo "== unseen-model check (issue 2)"
python3 tests/golden/check_unseen.py /tmp/pd/pd-generate.sh /tmp/unseen 2>&1 | grep -E "MATCH|DIFF|Error" | tee "$OUT/unseen.txt"
fi
export LD_LIBRARY_PATH=/tmp/pd/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ ! -f models/llama-3.1-8b/config.json ]; then
  "$B/pd-makemodel" --preset llama-3.1-8b --out models/llama-3.1-8b --seed 1 2>&1 | tail -2
fi
"$B/pd-up" configs/h100-1p1d.yaml --log-dir "$OUT/logs" --ready-timeout-s 300 > "$OUT/up.txt" 2>&1 &
UP=$!
for i in $(seq 1 300); do
  grep -q '^ready' "$OUT/up.txt" && break
  kill -0 $UP 2>/dev/null || break
  sleep 1
done
cat "$OUT/up.txt"
"$B/pd-client" --ids 1,2,3,4,5 --max-tokens 8 --ignore-eos --print-ids 2>&1 | tail -3
run_bench() {  # name, args...
  local name=$1; shift
  echo "== pd-bench $*"
  timeout 240 "$B/pd-bench" --no-progress --slo-ttft-ms 500 --slo-tpot-ms 50 "$@" \
    > "$OUT/$name.txt" 2>&1
  echo "rc $?"; tail -25 "$OUT/$name.txt"
}
run_bench bench_1k1k --preset 1k/1k --concurrency 16 --num-requests 48 --warmup 2
run_bench bench_10k1k --preset 10k/1k --concurrency 4 --num-requests 12 --warmup 1
kill -TERM $UP; wait $UP
tail -n 5 "$OUT"/logs/*.log
