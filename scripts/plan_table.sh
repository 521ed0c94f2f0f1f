#!/usr/bin/env bash
# Recomputes docs/planning.md's ratio table and plots from the committed profiles (CPU only).
# Usage: scripts/plan_table.sh [BUILD_DIR]   -> docs/planning/*.txt, *.csv, *.png
# PLAN_ARGS: extra pd-plan/pd-sim flags for every row (e.g. the calibrated --step-overhead-ms);
# TCP_GBPS: the link of the "-tcp10" rows (default 10; the calibrated TCP rate in docs).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-loader}/src/planner
P8=${P8:-configs/profiles/llama-3.1-8b-h100.json}
P123=(${P123_TP4:-configs/profiles/dense-123b-h100-tp4.json} ${P123_TP8:-configs/profiles/dense-123b-h100-tp8.json})
O=${O:-docs/planning}
mkdir -p "$O"
plan() {  # name args...
  local name=$1; shift
  echo "== pd-plan $*" | tee "$O/$name.txt"
  # shellcheck disable=SC2086
  "$B/pd-plan" "$@" ${PLAN_ARGS:-} --csv "$O/$name.csv" | tee -a "$O/$name.txt"
}
for mix in 10k/1k 5k/1k 1k/1k; do
  m=${mix//\//-}
  plan "8b-$m-slo500" --profile $P8 --preset "$mix" --gpus 8 --slo-ttft-ms 500 --slo-tpot-ms 50
  plan "8b-$m-slo2000" --profile $P8 --preset "$mix" --gpus 8 --slo-ttft-ms 2000 --slo-tpot-ms 50
  # the TCP transport as measured on loopback (docs/benchmarks.md: ~1-1.7 GB/s) instead of an
  # RDMA-class 100 Gbit/s per GPU
  plan "8b-$m-slo2000-tcp10" --profile $P8 --preset "$mix" --gpus 8 --slo-ttft-ms 2000 \
    --slo-tpot-ms 50 --link-gbps "${TCP_GBPS:-10}"
  plan "123b-$m" --profile "${P123[0]}" --profile "${P123[1]}" --preset "$mix" --gpus 32 \
    --slo-ttft-ms 3000 --slo-tpot-ms 50
done
# Goodput vs offered rate: pd-plan's best xPyD for 8 GPUs vs 8 colocated instances.
for mix in 10k/1k 5k/1k 1k/1k; do
  m=${mix//\//-}
  best=$(grep -o 'best disaggregated: [0-9]*P[0-9]*D' "$O/8b-$m-slo2000.txt" | awk '{print $3}')
  x=${best%%P*}; rest=${best#*P}; y=${rest%D}
  k=$(( 8 / (x + y) )); [ "$k" -ge 1 ] || k=1
  dep="$((x * k))P$((y * k))D"
  g=$(grep -E "^$best " "$O/8b-$m-slo2000.txt" | awk '{print $3}')
  top=$(python3 -c "print(max(0.5, float('$g') * $k * 1.6))")
  rates=$(python3 -c "t=$top; print(','.join('%.3g' % (t * i / 8) for i in range(1, 9)))")
  in=${mix%%/*}; in=${in/k/000}; out=${mix#*/}; out=${out/k/000}
  python3 scripts/plan_sweep.py "$B/pd-sim" $P8 "$in" "$out" "$O/goodput-8b-$m.png" "$dep" \
    "colocated:$(( (x + y) * k ))" --rates "$rates" --slo-ttft-ms 2000 --slo-tpot-ms 50 \
    --sim-args "--d-max-batch-tokens 8192 ${PLAN_ARGS:-}" \
    --title "Llama-3.1-8B shape on H100 ($mix): $dep vs $(( (x + y) * k )) colocated"
done
