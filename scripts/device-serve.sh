#!/usr/bin/env bash
# Runs on the GPU machine (device tool): the h100-1p1d deployment (prefill + decode daemons on
# GPU 0, Llama-3.1-8B shape, random weights) measured with pd-bench, once per ARM, each arm a
# variant of configs/h100-1p1d.yaml that differs only in how the KV crosses between the daemons:
#   mirror  transport tcp,   gpu_kv mirror: GPU -> host mirror -> loopback TCP -> mirror -> GPU
#   tcp     transport tcp,   gpu_kv auto:   GPU arena registered directly, pinned bounce buffers
#   local   transport local, gpu_kv auto:   CUDA IPC, device -> device, no host copy
#   local16k  local with P's old batch (16384 tokens per forward, 8192-token chunks)
# Per arm: a 300-token greedy probe through P -> D (its token ids must be equal in every arm: the
# KV bytes that D decodes from are the same), then the workloads of WORKLOADS (name|pd-bench args;
# default: the seed's 1k/1k and 10k/1k mixes with 128 output tokens, see below), then the
# daemons' KV-registration log lines. FULL_ARMS additionally run the full presets (1k/1k and
# 10k/1k: 1024 output tokens). Steps stop starting once TIME_BUDGET seconds have passed.
# Binaries: scripts/build-device.sh (carry .dev/gpu); a dynamic build carries lib/.
# Usage there: bash scripts/device-serve.sh   (results: $OUT/summary.txt, $OUT/serve.tar.gz)
#   ARMS="mirror tcp local" FULL_ARMS=local FULL="1k1k 10k1k" TIME_BUDGET=540 (defaults shown)
#   KVBENCH_SLOTS="16 64": also kvtransfer_bench gpu with that many bounce slots (~20 s each)
set -u
OUT=${OUT:-/tmp/out}
ARMS=${ARMS:-mirror tcp local}
FULL_ARMS=${FULL_ARMS:-local}
FULL=${FULL:-1k1k 10k1k}     # which full presets FULL_ARMS run
TB=${TIME_BUDGET:-540}
SHORT_OUT=${SHORT_OUT:-128}
R=/tmp/pd/results
rm -rf "$R"
mkdir -p /tmp/pd "$R/logs" "$OUT"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
stamp() { echo "[$(el)s] $*" | tee -a "$R/summary.txt"; }
left() { [ "$(el)" -lt "$TB" ]; }
CONFIG=${CONFIG:-configs/h100-1p1d.yaml}  # dry runs here: a CPU config and BIN=<build>/bin dir
if [ -n "${BIN:-}" ]; then B=$BIN; else tar -C /tmp/pd -xJf .dev/gpu/bin.tar.xz; B=/tmp/pd/bin; fi
export LD_LIBRARY_PATH=/tmp/pd/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -z "${SKIP_UNSEEN:-1}" ]; then
  printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/pd/lib exec %s/pd-generate "$@"\n' "$B" > /tmp/pd/pd-generate.sh
  chmod +x /tmp/pd/pd-generate.sh
  echo "== unseen-model check (issue 2)"
  python3 tests/golden/check_unseen.py /tmp/pd/pd-generate.sh /tmp/unseen 2>&1 |
    grep -E "MATCH|DIFF|Error" | tee "$R/unseen.txt"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current --format=csv,noheader
  nproc; uname -r; date -u; cat /tmp/pd/BUILD.txt 2>/dev/null; } | tee "$R/machine.txt"

# Model: one random layer copied to 32 (same shapes and timings; ~15 s instead of ~85 s), in
# /dev/shm when it has room (the daemons read it from the page cache either way).
if [ ! -f models/llama-3.1-8b/config.json ] && [ -z "${BIN:-}" ]; then
  MD=/dev/shm
  avail=$(df -Pk "$MD" 2>/dev/null | awk 'NR==2 {print $4}')
  [ "${avail:-0}" -gt 20000000 ] && [ -w "$MD" ] || MD=$PWD/models
  mkdir -p models
  "$B/pd-makemodel" --preset llama-3.1-8b --layers 1 --out "$MD/one-layer" --seed 1 --quiet 2>&1 | tail -1
  python3 scripts/plan_fastmodel.py "$MD/one-layer" "$MD/llama-3.1-8b-fast" 32 | tail -1
  rm -rf "$MD/one-layer"
  [ "$MD" = "$PWD/models" ] && mv "$MD/llama-3.1-8b-fast" models/llama-3.1-8b ||
    ln -sfn "$MD/llama-3.1-8b-fast" models/llama-3.1-8b
fi
stamp "model ready"

# pd-bench workloads: name|args. The seed differs per workload (no prefix-cache hits between
# workloads of one arm) and is the same in every arm (same prompts).
SHORT_WL=("1k-$SHORT_OUT|--preset 1k/1k --output-len $SHORT_OUT --concurrency 16 --num-requests 48 --warmup 2 --seed 11"
          "10k-$SHORT_OUT|--preset 10k/1k --output-len $SHORT_OUT --concurrency 4 --num-requests 12 --warmup 1 --seed 12")
FULL_WL=("1k1k|--preset 1k/1k --concurrency 16 --num-requests 48 --warmup 2 --seed 13"
         "10k1k|--preset 10k/1k --concurrency 4 --num-requests 12 --warmup 1 --seed 14")
if [ -n "${DRY:-}" ]; then  # mechanics check on a CPU config (tiny model, small loads)
  SHORT_WL=("dry|--input-len 64 --output-len 8 --concurrency 4 --num-requests 8 --warmup 1 --seed 11")
  FULL_WL=()
fi
PROBE=$(python3 -c "print(','.join(str((i * 7919 + 13) % ${PROBE_VOCAB:-32000}) for i in range(300)))")
ADDR=${ADDR:-127.0.0.1:8000}

arm_config() {  # arm -> config path
  local kind=tcp gpu_kv=auto batch=
  case $1 in
    mirror) gpu_kv=mirror ;;
    tcp) ;;
    local) kind=local ;;
    local16k) kind=local batch=1 ;;  # P's batch as before: one 16k-token forward, 8k chunks
  esac
  sed -e "s/kind: [a-z]*,/kind: $kind,/" -e "s/gpu_kv: [a-z]*/gpu_kv: $gpu_kv/" \
    ${batch:+-e "s/max_batch_tokens: 2048/max_batch_tokens: 16384/"} \
    ${batch:+-e "s/prefill_chunk_tokens: 2048/prefill_chunk_tokens: 8192/"} \
    "$CONFIG" > "/tmp/pd/serve-$1.yaml"
  echo "/tmp/pd/serve-$1.yaml"
}

run_bench() {  # arm, name, args...
  local arm=$1 name=$2; shift 2
  # shellcheck disable=SC2068
  timeout "${BENCH_TIMEOUT:-200}" "$B/pd-bench" --addr "$ADDR" --no-progress --json --slo-ttft-ms 500 --slo-tpot-ms 50 $@ \
    > "$R/bench-$arm-$name.json" 2> "$R/bench-$arm-$name.err"
  stamp "$arm $name rc $? ($*)"
}

for arm in $ARMS; do
  left || { stamp "budget: arm $arm skipped"; continue; }
  cfg=$(arm_config "$arm")
  mkdir -p "$R/logs/$arm"
  "$B/pd-up" "$cfg" --log-dir "$R/logs/$arm" --ready-timeout-s 240 > "$R/up-$arm.txt" 2>&1 &
  UP=$!
  for _ in $(seq 1 240); do
    grep -q '^ready' "$R/up-$arm.txt" && break
    kill -0 $UP 2>/dev/null || break
    sleep 1
  done
  stamp "$arm: $(grep -c '^ready' "$R/up-$arm.txt") ready"
  grep -h "registered with\|host mirror\|GPU arenas on device" "$R/logs/$arm"/*.log |
    sed 's/^.*\] //' | tee -a "$R/summary.txt"
  "$B/pd-client" --addr "$ADDR" --ids "$PROBE" --max-tokens 16 --ignore-eos --print-ids > "$R/probe-$arm.txt" \
    2> "$R/probe-$arm.err"
  stamp "$arm probe: $(head -c 100 "$R/probe-$arm.txt") | $(tail -1 "$R/probe-$arm.err")"
  for wl in "${SHORT_WL[@]}"; do
    left && run_bench "$arm" "${wl%%|*}" ${wl#*|}
  done
  if [[ " $FULL_ARMS " == *" $arm "* ]]; then
    for wl in "${FULL_WL[@]}"; do
      [[ " $FULL " == *" ${wl%%|*} "* ]] && left && run_bench "$arm" "${wl%%|*}" ${wl#*|}
    done
  fi
  kill -TERM $UP; wait $UP
  stamp "$arm: $(cat "$R/logs/$arm"/*.log | grep -cE "prefill failed|fall(ing)? ?back") log lines about failed prefills / fallbacks"
done

# The transfer engine alone (docs/kvtransfer.md "GPU arenas"): bounce pipeline vs loopback TCP
# vs the pinned copy ceiling, default 16 bounce slots and 64.
for slots in ${KVBENCH_SLOTS:-}; do
  left || break
  timeout 120 "$B/kvtransfer_bench" gpu --bytes 256M --runs 3 --chunks 256K,1M --paths 1,4 \
    --slots "$slots" > "$R/kvbench-slots$slots.txt" 2>&1
  stamp "kvtransfer_bench gpu --slots $slots rc $?"
  cat "$R/kvbench-slots$slots.txt" | tee -a "$R/summary.txt"
done

python3 - "$R" <<'EOF' | tee -a "$R/summary.txt"
import glob, json, os, sys
r = sys.argv[1]
print("| arm | workload | ok/failed | TTFT p50 / p90 / p99 ms | TPOT p50 / p99 ms | out tok/s | total tok/s | good |")
print("|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(r, "bench-*.json"))):
    arm, wl = os.path.basename(f)[6:-5].split("-", 1)
    try:
        d = json.load(open(f))
    except Exception as e:
        print(f"| {arm} | {wl} | unreadable ({e}) |"); continue
    t, p = d["ttft_ms"], d["tpot_ms"]
    print(f"| {arm} | {wl} | {d['completed']}/{d['failed']} | {t['p50']:.0f} / {t['p90']:.0f} / "
          f"{t['p99']:.0f} | {p['p50']:.2f} / {p['p99']:.2f} | {d['output_token_throughput']:.0f} | "
          f"{d['total_token_throughput']:.0f} | {d['good_requests']} of {d['completed']} |")
EOF
echo "probe outputs: $(cat "$R"/probe-*.txt 2>/dev/null | sort -u | wc -l) distinct over the arms" |
  tee -a "$R/summary.txt"
cp "$R/summary.txt" "$OUT/summary.txt"
tar -C /tmp/pd -czf "$OUT/serve.tar.gz" results
stamp "done"
