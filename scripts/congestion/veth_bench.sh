#!/usr/bin/env bash
# kvtransfer_bench over one unshaped veth pair between two network namespaces (needs root):
# plain-TCP capacity (1 and 4 connections) measured first, then the engine's GB/s for several
# chunk sizes and path counts, payload 256 MB. Usage: sudo scripts/congestion/veth_bench.sh [BUILD]
set -euo pipefail
BUILD=${1:-build-xfer}
BENCH=$(readlink -f "$BUILD/bench/kvtransfer_bench")
OUT=${OUT:-/tmp/kvx-veth}
PAYLOAD=${PAYLOAD:-256M}
RUNS=${RUNS:-5}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del kvxv_A 2>/dev/null || true
  ip netns del kvxv_B 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add kvxv_A; ip netns add kvxv_B
ip link add kvxva netns kvxv_A type veth peer name kvxvb netns kvxv_B
ip -n kvxv_A addr add 10.95.0.1/24 dev kvxva; ip -n kvxv_A link set kvxva up; ip -n kvxv_A link set lo up
ip -n kvxv_B addr add 10.95.0.2/24 dev kvxvb; ip -n kvxv_B link set kvxvb up; ip -n kvxv_B link set lo up
ip netns exec kvxv_B "$BENCH" rawsink --port 9000 & PIDS+=($!)
sleep 0.3
for c in 1 4; do
  echo -n "plain TCP capacity, $c conn(s): "
  ip netns exec kvxv_A "$BENCH" rawsend --to 10.95.0.2:9000 --conns $c --seconds 2
done
rm -f "$OUT/meta"
ip netns exec kvxv_B "$BENCH" serve --listen 0.0.0.0 --advertise 10.95.0.2 --arena "$PAYLOAD" --meta "$OUT/meta" & PIDS+=($!)
while [ ! -s "$OUT/meta" ]; do sleep 0.1; done
for chunk in 64K 256K 1M; do
  ip netns exec kvxv_A "$BENCH" send --meta "$OUT/meta" --arms single,swift --runs "$RUNS" \
    --payload "$PAYLOAD" --chunk "$chunk" --link-gbps 100 --tag "chunk=$chunk" | tee -a "$OUT/runs.jsonl"
done
