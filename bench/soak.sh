#!/usr/bin/env bash
# Soak (issue 10 item 6): a local 1P1D deployment (CPU backend, tiny model) under moderate
# steady load for a fixed time, sampling every process's RSS, the daemons' KV blocks in use and
# the router's error counts over time.
#
#   bench/soak.sh [--duration-s 1800] [--concurrency 4] [--build build] [--out DIR] [--check]
#
# Load: pd-bench rounds of 20 s (fixed concurrency, prompts 40..256 tokens, outputs 8..64, 1/3 of
# the prompts sharing a 32-token prefix; router.disagg_threshold_tokens 48 so both the P->D path
# and D's own prefill run). Every --sample-s seconds one CSV line goes to OUT/soak.csv:
#   t_s, rss_kib of router / prefill-0 / decode-0, used KV blocks of prefill-0 / decode-0,
#   requests completed and failed so far (pd-bench), router non-ok outcomes (/metrics).
# --check (CI): exit 1 unless 0 failed requests and 0 router errors, every process's RSS at the
# end is within max(24 MiB, 15%) of its RSS after the warm-up (the sample at 1/4 of the run),
# and both pools' used blocks are back to their start value after the load drains.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=1800 CONC=4 BUILD=build OUT="" CHECK=0 SAMPLE=5
while [ $# -gt 0 ]; do
  case "$1" in
    --duration-s) DURATION=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --sample-s) SAMPLE=$2; shift 2 ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
BUILD=$(cd "$BUILD" && pwd)
OUT=${OUT:-$(mktemp -d /tmp/pd-soak.XXXXXX)}
mkdir -p "$OUT/logs"
MODEL=$BUILD/models/soak-tiny
[ -f "$MODEL/config.json" ] ||
  "$BUILD/src/tools/pd-makemodel" --preset tiny --out "$MODEL" --seed 1 --quiet
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port) PP=$(port) DP=$(port) RM=$(port) PM=$(port) DM=$(port)
cat > "$OUT/deploy.yaml" <<EOF
version: 1
name: soak
defaults:
  model: $MODEL
  backend: cpu
  cpu_threads: 1
  kv: {blocks: 1024, block_size: 16}
  max_seqs: 64
  max_batch_tokens: 1024
  prefill_chunk_tokens: 256
router:
  host: 127.0.0.1
  port: $RP
  metrics_port: $RM
  disagg_threshold_tokens: 48
  health_interval_ms: 500
prefill:
  - {name: prefill-0, port: $PP, metrics_port: $PM}
decode:
  - {name: decode-0, port: $DP, metrics_port: $DM}
EOF
"$BUILD/src/tools/pd-up" "$OUT/deploy.yaml" --log-dir "$OUT/logs" > "$OUT/pd-up.out" 2>&1 &
UP=$!
cleanup() { kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do grep -q '^ready' "$OUT/pd-up.out" && break; sleep 0.2; done
grep -q '^ready' "$OUT/pd-up.out" || { echo "soak: deployment not ready"; cat "$OUT/pd-up.out"; exit 1; }
pid_of() { awk -v n="$1" '$1=="started" && $2==n {print $4}' "$OUT/pd-up.out" | tail -1; }
PIDS=("$(pid_of router)" "$(pid_of prefill-0)" "$(pid_of decode-0)")
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo -1; }
used() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^pd_kv_blocks\{state="used"/{print $2}'; }
router_errors() {
  curl -s "http://127.0.0.1:$RM/metrics" |
    awk '/^pd_router_requests_total\{/ && !/outcome="ok"/ {s+=$2} END {print s+0}'
}
echo "t_s,rss_router_kib,rss_prefill_kib,rss_decode_kib,used_prefill,used_decode,completed,failed,router_errors" > "$OUT/soak.csv"
USED0_P=$(used $PM) USED0_D=$(used $DM)
echo 0 > "$OUT/completed" && echo 0 > "$OUT/failed"
T0=$(date +%s)
sample() {
  local t=$(( $(date +%s) - T0 ))
  echo "$t,$(rss "${PIDS[0]}"),$(rss "${PIDS[1]}"),$(rss "${PIDS[2]}"),$(used $PM),$(used $DM),$(cat "$OUT/completed"),$(cat "$OUT/failed"),$(router_errors)" >> "$OUT/soak.csv"
}
( while true; do sample; sleep "$SAMPLE"; done ) &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true; cleanup' EXIT
round=0
while [ $(( $(date +%s) - T0 )) -lt "$DURATION" ]; do
  left=$(( DURATION - ($(date +%s) - T0) ))
  len=$(( left < 20 ? left : 20 ))
  [ "$len" -lt 1 ] && break
  shared=$(( round % 3 == 0 ? 32 : 0 ))
  "$BUILD/src/tools/pd-bench" --addr "127.0.0.1:$RP" --concurrency "$CONC" --num-requests 1000000 \
    --duration-s "$len" --input-len 40:256 --output-len 8:64 --shared-prefix $shared \
    --seed $round --warmup 0 --timeout-ms 60000 --json --no-progress > "$OUT/round.json" 2>>"$OUT/bench.err" || true
  python3 - "$OUT" <<'PY'
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/round.json"))
for k in ("completed", "failed"):
    v = int(open(f"{d}/{k}").read()) + int(r[k])
    open(f"{d}/{k}", "w").write(str(v))
if r["failed"]:
    print("round errors:", r.get("errors"), file=sys.stderr)
PY
  round=$((round + 1))
done
sleep 3  # drain: leases and finished sequences free their blocks
sample
kill $SAMPLER 2>/dev/null || true
python3 - "$OUT" "$CHECK" "$USED0_P" "$USED0_D" <<'PY'
import csv, sys
out, check, u0p, u0d = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3]), float(sys.argv[4])
rows = list(csv.DictReader(open(out + "/soak.csv")))
last, warm = rows[-1], rows[max(1, len(rows) // 4)]
print(f"soak: {last['t_s']} s, {last['completed']} requests completed, {last['failed']} failed, "
      f"router non-ok outcomes {last['router_errors']}; samples in {out}/soak.csv")
ok = int(last["failed"]) == 0 and float(last["router_errors"]) == 0
for p in ("router", "prefill", "decode"):
    a, b = float(warm[f"rss_{p}_kib"]), float(last[f"rss_{p}_kib"])
    peak = max(float(r[f"rss_{p}_kib"]) for r in rows)
    bound = max(24 * 1024, 0.15 * a)
    good = b - a <= bound
    ok &= good
    print(f"  {p}: RSS {a/1024:.1f} MiB after warm-up (t={warm['t_s']} s) -> {b/1024:.1f} MiB at "
          f"the end (peak {peak/1024:.1f}); growth bound {bound/1024:.1f} MiB: {'ok' if good else 'EXCEEDED'}")
for p, u0 in (("prefill", u0p), ("decode", u0d)):
    u = float(last[f"used_{p}"])
    peak = max(float(r[f"used_{p}"]) for r in rows)
    good = u == u0
    ok &= good
    print(f"  {p}: used KV blocks {u0:.0f} at start, peak {peak:.0f}, {u:.0f} at the end: "
          f"{'ok' if good else 'NOT BACK'}")
print("soak:", "PASS" if ok else "FAIL")
sys.exit(0 if ok or not check else 1)
PY
