#!/usr/bin/env bash
# Runs on the GPU machine (device tool, carry `.dev/plan` from scripts/build-device-plan.sh).
# ONE bundle = one build: the profile and the calibrated deployments run the same binaries.
#   1. the Llama-3.1-8B-shape model (random weights; one layer from pd-makemodel, copied to 32
#      by scripts/plan_fastmodel.py: same shapes and timings, ~15 s instead of ~85 s),
#   2. pd-profile --backend cuda -> profile.json,
#   3. calibration: pd-bench against configs/plan-calib-1p1d.yaml (P and D share GPU 0) and
#      configs/plan-calib-colocated.yaml at the points of POINTS_FILE (default: the built-in list),
#      every daemon's /metrics scraped after each point (prefix-cache hits, KV transfer seconds).
# PROFILE_ARGS: extra pd-profile flags (e.g. --chunks LIST).
# Stops starting points when TIME_BUDGET seconds (default 420) would be exceeded.
# Everything lands in $OUT/plan-results.tar.gz (+ profile.json, summary.txt).
# Local dry run on the CPU: BACKEND=cpu PRESET=tiny SCALE=cpu bash scripts/device-plan.sh
set -u
OUT=${OUT:-/tmp/out}
BACKEND=${BACKEND:-cuda}
PRESET=${PRESET:-llama-3.1-8b}
SCALE=${SCALE:-gpu}          # gpu: the H100 grid and calibration points; cpu: tiny ones
TB=${TIME_BUDGET:-420}
W=${WORK:-/tmp/pdplan}
R=$W/results
mkdir -p "$W" "$R/logs" "$OUT"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
stamp() { echo "[$(el)s] $*" | tee -a "$R/summary.txt"; }
tar -C "$W" -xJf "${BUNDLE:-.dev/plan/bundle.tar.xz}"
cp "$W/BUILD.txt" "$R/BUILD.txt"
B=$W/bin
export LD_LIBRARY_PATH=$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  uname -a; nproc; } > "$R/machine.txt"
stamp "machine: $(head -1 "$R/machine.txt"); $(head -1 "$R/BUILD.txt")"

# 1. model (tmpfs when there is one: the daemons map it from the page cache either way)
MD=/dev/shm
[ "$(df -Pk $MD 2>/dev/null | awk 'NR==2 {print $4}')" -gt 20000000 ] 2>/dev/null || MD=$W
MODEL=$MD/model-$PRESET
if [ "$PRESET" = tiny ]; then
  "$B/pd-makemodel" --preset tiny --out "$MODEL" --seed 1 --quiet
else
  "$B/pd-makemodel" --preset "$PRESET" --layers 1 --out "$MD/one-layer" --seed 1 --quiet 2>&1 | tail -1
  python3 scripts/plan_fastmodel.py "$MD/one-layer" "$MODEL" 32 | tee -a "$R/summary.txt"
  rm -rf "$MD/one-layer"
fi
stamp "model ready"

# 2. profile (SKIP_PROFILE=1: calibration only)
if [ "$SCALE" = gpu ]; then
  PARGS="--reps 3 --warmup 1"
else
  PARGS="--reps 3 --warmup 1 --prefill-tokens 16,64,256,512 --decode-batches 1,4,16 --decode-contexts 16,128,512"
fi
if [ -z "${SKIP_PROFILE:-}" ]; then
  # shellcheck disable=SC2086
  timeout ${PROFILE_TIMEOUT:-120} "$B/pd-profile" --model "$MODEL" --backend "$BACKEND" --out "$R/profile.json" \
    --note "scripts/device-plan.sh, $PRESET random weights, $(head -1 "$R/BUILD.txt")" $PARGS \
    ${PROFILE_ARGS:-} \
    > "$R/profile.log" 2>&1
  stamp "pd-profile rc $?"
  cp "$R/profile.json" "$OUT/profile.json" 2>/dev/null
fi

# 3. calibration deployments
scrape() {  # file: every daemon's /metrics (ports from the deployment YAML)
  for p in $(grep -o 'metrics_port: [0-9]*' "$W/$DEP.yaml" | awk '{print $2}'); do
    echo "## port $p"
    python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$p/metrics', timeout=3).read().decode())" 2>&1 |
      grep -E '^pd_(prefix|kv_transfer_(bytes|seconds_(sum|count))|engine_requests|engine_batch_tokens_(sum|count))'
  done > "$1"
}
deploy() {  # name config -> starts pd-up, waits for ready
  DEP=$1
  sed -e "s|models/llama-3.1-8b|$MODEL|" -e "s|backend: cuda|backend: $BACKEND|" "$2" > "$W/$DEP.yaml"
  mkdir -p "$R/logs/$DEP"
  "$B/pd-up" "$W/$DEP.yaml" --log-dir "$R/logs/$DEP" --ready-timeout-s 200 > "$R/up-$DEP.txt" 2>&1 &
  UP=$!
  for _ in $(seq 1 200); do
    grep -q '^ready' "$R/up-$DEP.txt" && break
    kill -0 $UP 2>/dev/null || break
    sleep 1
  done
  stamp "$DEP: $(grep -m1 '^ready' "$R/up-$DEP.txt" || echo NOT READY)"
}
undeploy() { kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; }
bench() {  # point-name est-seconds args...
  local pt=$1 est=$2; shift 2
  local left=$(( TB - $(el) ))
  if [ "$left" -lt $(( est + 25 )) ]; then stamp "skip $DEP $pt: ${left}s left, needs ~${est}s"; return; fi
  local lim=$(( est * 3 )); [ $lim -gt $(( left - 20 )) ] && lim=$(( left - 20 ))
  timeout "$lim" "$B/pd-bench" --no-progress --json --slo-ttft-ms 500 --slo-tpot-ms 50 \
    --warmup 1 "$@" > "$R/bench-$DEP-$pt.json" 2> "$R/bench-$DEP-$pt.err"
  local rc=$?
  scrape "$R/metrics-$DEP-$pt.txt"
  stamp "bench $DEP $pt ($*) rc $rc: $(tr -d " \n" < "$R/bench-$DEP-$pt.json" | grep -o '"ttft_ms":{[^}]*' | grep -o '"p50":[0-9.]*') $(tr -d " \n" < "$R/bench-$DEP-$pt.json" | grep -o '"output_token_throughput":[0-9.]*')"
  [ $rc -eq 0 ] && echo "$DEP $pt $*" >> "$R/points.txt"
}
# Points: "name est_s pd-bench-args". A seed per point (repeated prompts would hit the decode
# instance's prefix cache). est_s = expected wall time (arrivals + last request's life).
if [ -n "${POINTS_FILE:-}" ]; then
  mapfile -t P1 < <(grep '^1p1d ' "$POINTS_FILE" | cut -d' ' -f2-)
  mapfile -t P2 < <(grep '^colocated ' "$POINTS_FILE" | cut -d' ' -f2-)
elif [ "$SCALE" = gpu ]; then
  P1=("k1 22 --input-len 1024 --output-len 1024 --rate 2 --num-requests 20 --seed 21"
      "x1 32 --input-len 10240 --output-len 1024 --rate 0.5 --num-requests 8 --seed 22"
      "xs 30 --input-len 10240 --output-len 1024 --rate 4 --num-requests 10 --seed 23"
      "ks 24 --input-len 1024 --output-len 1024 --rate 12 --num-requests 60 --seed 24"
      "m1 24 --input-len 5120 --output-len 1024 --rate 1 --num-requests 10 --seed 25")
  P2=("k1 22 --input-len 1024 --output-len 1024 --rate 2 --num-requests 20 --seed 21"
      "ks 22 --input-len 1024 --output-len 1024 --rate 30 --num-requests 64 --seed 24"
      "x1 32 --input-len 10240 --output-len 1024 --rate 0.5 --num-requests 8 --seed 22"
      "xs 26 --input-len 10240 --output-len 1024 --rate 4 --num-requests 10 --seed 23"
      "m1 24 --input-len 5120 --output-len 1024 --rate 1 --num-requests 10 --seed 25")
else
  P1=("a 10 --input-len 256 --output-len 16 --rate 2 --num-requests 12 --seed 11"
      "b 10 --input-len 512 --output-len 16 --rate 4 --num-requests 12 --seed 12")
  P2=("${P1[@]}")
fi
# 1P1D may use the time up to COLO_RESERVE seconds before the end; colocated gets the rest.
COLO_RESERVE=${COLO_RESERVE:-150}
TB_ALL=$TB
TB=$(( TB_ALL - COLO_RESERVE ))
if [ ${#P1[@]} -gt 0 ]; then  # a POINTS_FILE may name only one deployment
  deploy 1p1d configs/plan-calib-1p1d.yaml
  # shellcheck disable=SC2086
  for p in "${P1[@]}"; do bench $p; done
  undeploy
fi
TB=$TB_ALL
if [ ${#P2[@]} -gt 0 ]; then
  deploy colocated configs/plan-calib-colocated.yaml
  # shellcheck disable=SC2086
  for p in "${P2[@]}"; do bench $p; done
  undeploy
fi
for d in 1p1d colocated; do
  grep -h -E "KV blocks of|GPU KV arena" "$R/logs/$d"/*.log 2>/dev/null | head -4 > "$R/kv-$d.txt"
done
tar -C "$W" -czf "$OUT/plan-results.tar.gz" results
cp "$R/summary.txt" "$OUT/summary.txt"
stamp "done"
