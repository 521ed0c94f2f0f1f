#!/usr/bin/env bash
# Runs on the GPU machine (device tool, carry `.dev/plan` from scripts/build-device-plan.sh):
#   1. makes the Llama-3.1-8B-shape model (random weights),
#   2. pd-profile --backend cuda -> profile.json (the planner's H100 profile),
#   3. calibration: pd-bench against configs/plan-calib-1p1d.yaml (P and D share GPU 0) and
#      configs/plan-calib-colocated.yaml at a few rates/mixes (JSON reports),
#   4. plots with matplotlib if the machine has it (else they are drawn here with gnuplot).
# Everything lands in $OUT/plan-results.tar.gz (+ profile.json, summary.txt).
# Local dry run on the CPU: BACKEND=cpu PRESET=tiny SCALE=cpu bash scripts/device-plan.sh
set -u
OUT=${OUT:-/tmp/out}
BACKEND=${BACKEND:-cuda}
PRESET=${PRESET:-llama-3.1-8b}
SCALE=${SCALE:-gpu}          # gpu: the H100 grid and calibration points; cpu: tiny ones
W=${WORK:-/tmp/pdplan}
R=$W/results
mkdir -p "$W" "$R/logs" "$OUT"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$R/summary.txt"; }
tar -C "$W" -xJf .dev/plan/serve-bundle.tar.xz
tar -C "$W" -xJf .dev/plan/planner.tar.xz
B=$W/bin
export LD_LIBRARY_PATH=$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
MODEL=$W/model-$PRESET
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  uname -a; nproc; } > "$R/machine.txt"
stamp "machine: $(head -1 "$R/machine.txt")"

# 1. model
"$B/pd-makemodel" --preset "$PRESET" --out "$MODEL" --seed 1 2>&1 | tail -1 | tee -a "$R/summary.txt"
stamp "model ready"

# 2. profile (SKIP_PROFILE=1: calibration only)
if [ -n "${SKIP_PROFILE:-}" ]; then
  :
elif [ "$SCALE" = gpu ]; then
  PARGS="--reps 3 --warmup 1"
else
  PARGS="--reps 3 --warmup 1 --prefill-tokens 16,64,256,512 --decode-batches 1,4,16 --decode-contexts 16,128,512"
fi
[ -n "${SKIP_PROFILE:-}" ] || timeout 240 "$B/pd-profile" --model "$MODEL" --backend "$BACKEND" --out "$R/profile.json" \
  --note "scripts/device-plan.sh, $PRESET random weights" $PARGS > "$R/profile.log" 2>&1
stamp "pd-profile rc $?"; tail -3 "$R/profile.log"
cp "$R/profile.json" "$OUT/profile.json" 2>/dev/null

# 3. calibration deployments
deploy() {  # name config -> starts pd-up, waits for ready
  local name=$1 cfg=$2
  sed -e "s|models/llama-3.1-8b|$MODEL|" -e "s|backend: cuda|backend: $BACKEND|" "$cfg" > "$W/$name.yaml"
  mkdir -p "$R/logs/$name"
  "$B/pd-up" "$W/$name.yaml" --log-dir "$R/logs/$name" --ready-timeout-s 200 > "$R/up-$name.txt" 2>&1 &
  UP=$!
  for i in $(seq 1 200); do
    grep -q '^ready' "$R/up-$name.txt" && break
    kill -0 $UP 2>/dev/null || break
    sleep 1
  done
  stamp "$name: $(grep -m1 '^ready' "$R/up-$name.txt" || echo NOT READY)"
}
undeploy() { kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; }
bench() {  # deployment point-name args...
  local dep=$1 pt=$2; shift 2
  timeout 150 "$B/pd-bench" --no-progress --json --slo-ttft-ms 500 --slo-tpot-ms 50 --warmup 2 \
    --seed 0 "$@" > "$R/bench-$dep-$pt.json" 2> "$R/bench-$dep-$pt.err"
  local rc=$?
  stamp "bench $dep $pt ($*) rc $rc: $(tr -d " \n" < "$R/bench-$dep-$pt.json" | grep -o "\"ttft_ms\":{[^}]*" | grep -o "\"p50\":[0-9.]*")"
  echo "$dep $pt $*" >> "$R/points.txt"
}
if [ "$SCALE" = gpu ]; then
  # A different seed per point: the same seed would repeat the earlier point's prompts, which
  # then hit the decode instance's prefix cache (the simulator does not model prefix caching).
  POINTS=("a --input-len 1024 --output-len 128 --rate 2 --num-requests 40 --seed 11"
          "b --input-len 1024 --output-len 128 --rate 5 --num-requests 60 --seed 12"
          "c --input-len 4096 --output-len 128 --rate 1 --num-requests 24 --seed 13")
else
  POINTS=("a --input-len 256 --output-len 16 --rate 2 --num-requests 12 --seed 11"
          "b --input-len 512 --output-len 16 --rate 4 --num-requests 12 --seed 12")
fi
for dep in 1p1d colocated; do
  deploy "$dep" "configs/plan-calib-$dep.yaml"
  for p in "${POINTS[@]}"; do
    # shellcheck disable=SC2086
    bench "$dep" $p
  done
  undeploy
  grep -h -i -E "kv blocks|KV pool|blocks of" "$R/logs/$dep"/*.log 2>/dev/null | head -4 > "$R/kv-$dep.txt"
  [ "$(( $(date +%s) - T0 ))" -gt 480 ] && { stamp "time budget: stopping"; break; }
done

# 4. plots (the CSVs come from pd-plan runs made beforehand, if carried)
if python3 -c "import matplotlib" 2>/dev/null; then
  stamp "matplotlib available"
  [ -d .dev/plan/csv ] && python3 scripts/plan_plots.py .dev/plan/csv "$R" >> "$R/summary.txt" 2>&1
else
  stamp "no matplotlib"
fi
tar -C "$W" -czf "$OUT/plan-results.tar.gz" results
cp "$R/summary.txt" "$OUT/summary.txt"
stamp "done"
