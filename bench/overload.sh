#!/usr/bin/env bash
# Overload bench (issue 10 item 2): a local 1P1D deployment (CPU backend, tiny model) with
# router.max_inflight_requests = LIMIT, driven by pd-bench at a concurrency far above it. Clients
# do not retry: every RESOURCE_EXHAUSTED counts as shed. Prints, per offered concurrency, the
# shed fraction, the admitted requests' TTFT p50/p99 and the router's peak RSS.
#
#   bench/overload.sh [--build build] [--limit 16] [--concurrency "8 64 256"] [--duration-s 20]
# Each level runs for --duration-s; a shed client sends its next request at once (no back-off:
# the worst case for the router; well-behaved clients wait retry-after-ms).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build LIMIT=16 CONCS="8 64 256" DUR=20
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --concurrency) CONCS=$2; shift 2 ;;
    --duration-s) DUR=$2; shift 2 ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "overload.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
BUILD=$(cd "$BUILD" && pwd)
OUT=$(mktemp -d /tmp/pd-overload.XXXXXX)
mkdir -p "$OUT/logs"
MODEL=$BUILD/models/soak-tiny
[ -f "$MODEL/config.json" ] ||
  "$BUILD/src/tools/pd-makemodel" --preset tiny --out "$MODEL" --seed 1 --quiet
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port) PP=$(port) DP=$(port)
cat > "$OUT/deploy.yaml" <<EOF
version: 1
name: overload
defaults: {model: $MODEL, backend: cpu, cpu_threads: 1, kv: {blocks: 1024, block_size: 16}}
router: {host: 127.0.0.1, port: $RP, disagg_threshold_tokens: 48, max_inflight_requests: $LIMIT,
         retry_after_ms: 500}
prefill:
  - {name: prefill-0, port: $PP}
decode:
  - {name: decode-0, port: $DP}
EOF
"$BUILD/src/tools/pd-up" "$OUT/deploy.yaml" --log-dir "$OUT/logs" > "$OUT/pd-up.out" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true; wait $UP 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do grep -q '^ready' "$OUT/pd-up.out" && break; sleep 0.2; done
grep -q '^ready' "$OUT/pd-up.out" || { echo "overload: not ready"; cat "$OUT/pd-up.out"; exit 1; }
RPID=$(awk '$1=="started" && $2=="router" {print $4}' "$OUT/pd-up.out")
rss() { awk '/^VmRSS:/{print $2}' "/proc/$RPID/status"; }
echo "router.max_inflight_requests=$LIMIT, ${DUR} s per level, prompts 64..256 tokens, 32 output tokens"
printf "%-12s %-8s %-8s %-10s %-14s %-14s %-16s\n" concurrency shed% ok "ok/s" "TTFT p50 ms" "TTFT p99 ms" "router RSS MiB"
for c in $CONCS; do
  rss0=$(rss)
  ( peak=$rss0; while kill -0 $UP 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; echo $peak > "$OUT/peak.tmp"; mv "$OUT/peak.tmp" "$OUT/peak"; sleep 0.05; done ) &
  S=$!
  "$BUILD/src/tools/pd-bench" --addr "127.0.0.1:$RP" --concurrency "$c" --num-requests 100000000 --duration-s "$DUR" \
    --input-len 64:256 --output-len 32 --warmup 0 --json --no-progress > "$OUT/c$c.json" 2>/dev/null || true
  kill $S 2>/dev/null || true; wait $S 2>/dev/null || true
  python3 - "$OUT/c$c.json" "$c" "$rss0" "$(cat "$OUT/peak")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
tot = r["completed"] + r["failed"]
t = r["ttft_ms"]
print(f"{sys.argv[2]:<12} {100.0 * r['failed'] / max(tot, 1):<8.1f} {r['completed']:<8} "
      f"{r['completed'] / max(r['duration_s'], 1e-9):<10.1f} "
      f"{t.get('p50', 0):<14.0f} {t.get('p99', 0):<14.0f} "
      f"{int(sys.argv[3]) / 1024:.1f} -> {int(sys.argv[4]) / 1024:.1f}")
PY
done
