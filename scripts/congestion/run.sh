#!/usr/bin/env bash
# Congestion experiment for the KV transfer engine (issue 5). Needs root (network namespaces,
# veth, tbf). Topology (facts in shared/MACHINE-NOTES.md):
#
#   kvx_P (prefill) --veth-- kvx_S (router) ==4 veth "spines", tbf RATE each== kvx_D (decode)
#   kvx_BG (background senders) --veth-- kvx_S
#
# D holds one address per spine (policy routing returns replies on the same spine); path i of
# the engine connects to D's address on spine i. Scenarios, each with all arms interleaved:
#   idle    no background
#   light   one TCP flow paced to LIGHT_MBPS on spine 0 (<= 30% of one path)
#   heavy   two bulk cubic flows on spine 0 (ECMP collision)
#   incast  one bulk cubic flow on every spine (other senders into the same decode host)
# Arms: single (1 connection on spine 0, kernel CC only: the offload analogue), rr (4 paths,
# round robin, no host CC), swift (4 paths, power of two + Swift), timely (4 paths, p2c + Timely).
#
# Usage: sudo scripts/congestion/run.sh [BUILD_DIR] [RUNS]     results in $OUT (default
# /tmp/kvx-results): <scenario>.jsonl (one line per transfer), bg_<scenario>.log (background
# sink: ns, cumulative bytes every 10 ms), capacity.json; then analyze.py prints the table.
set -euo pipefail
BUILD=${1:-build-xfer}
RUNS=${2:-30}
RATE=${RATE:-1gbit}
LINK_GBPS=${LINK_GBPS:-1}
LIGHT_MBPS=${LIGHT_MBPS:-150}
PAYLOAD=${PAYLOAD:-64M}
CHUNK=${CHUNK:-256K}
ARMS=${ARMS:-single,rr,swift,timely}
SCENARIOS=${SCENARIOS:-idle light heavy incast}
OUT=${OUT:-/tmp/kvx-results}
BENCH=$(readlink -f "$BUILD/bench/kvtransfer_bench")
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
NS="kvx_P kvx_D kvx_BG kvx_S"
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for n in $NS; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT

setup() {
  cleanup
  for n in $NS; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    ip netns exec "$n" sysctl -qw net.ipv4.tcp_no_metrics_save=1
    ip netns exec "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  ip netns exec kvx_S sysctl -qw net.ipv4.ip_forward=1
  ip link add kvxp0 netns kvx_P type veth peer name kvxs_p netns kvx_S
  ip link add kvxb0 netns kvx_BG type veth peer name kvxs_b netns kvx_S
  ip -n kvx_P addr add 10.90.0.1/24 dev kvxp0; ip -n kvx_P link set kvxp0 up
  ip -n kvx_S addr add 10.90.0.2/24 dev kvxs_p; ip -n kvx_S link set kvxs_p up
  ip -n kvx_BG addr add 10.91.0.1/24 dev kvxb0; ip -n kvx_BG link set kvxb0 up
  ip -n kvx_S addr add 10.91.0.2/24 dev kvxs_b; ip -n kvx_S link set kvxs_b up
  ip -n kvx_P route add default via 10.90.0.2
  ip -n kvx_BG route add default via 10.91.0.2
  for i in 0 1 2 3; do
    ip link add "kvxs_d$i" netns kvx_S type veth peer name "kvxd$i" netns kvx_D
    ip -n kvx_S addr add "10.100.$i.1/24" dev "kvxs_d$i"; ip -n kvx_S link set "kvxs_d$i" up
    ip -n kvx_D addr add "10.100.$i.2/24" dev "kvxd$i"; ip -n kvx_D link set "kvxd$i" up
    ip -n kvx_D rule add from "10.100.$i.2" table $((100 + i))
    ip -n kvx_D route add default via "10.100.$i.1" dev "kvxd$i" table $((100 + i))
    ip netns exec kvx_D sysctl -qw "net.ipv4.conf.kvxd$i.rp_filter=0"
    ip netns exec kvx_S sysctl -qw "net.ipv4.conf.kvxs_d$i.rp_filter=0"
    # burst must exceed the GSO packet size (MACHINE-NOTES).
    ip netns exec kvx_S tc qdisc add dev "kvxs_d$i" root tbf rate "$RATE" burst 128kb latency 2ms
  done
  ip -n kvx_D route add default via 10.100.0.1
}

BG=()
bg_start() {  # $1 = scenario
  BG=()
  case "$1" in
    idle) ;;
    light) ip netns exec kvx_BG "$BENCH" rawsend --to 10.100.0.2:9000 --cc cubic --mbps "$LIGHT_MBPS" & BG+=($!) ;;
    heavy) ip netns exec kvx_BG "$BENCH" rawsend --to 10.100.0.2:9000 --cc cubic --conns 2 & BG+=($!) ;;
    incast) for i in 0 1 2 3; do
              ip netns exec kvx_BG "$BENCH" rawsend --to "10.100.$i.2:9000" --cc cubic & BG+=($!)
            done ;;
  esac
  PIDS+=("${BG[@]}")
}

setup
echo "testbed up: 4 spines x $RATE (tbf burst 128kb latency 2ms)"
# Capacity of the fabric, measured now: 4 cubic flows per spine, 2 s.
ip netns exec kvx_D "$BENCH" rawsink --port 9000 & SINK=$!; PIDS+=($SINK)
sleep 0.3
CAP=()
for i in 0 1 2 3; do
  ip netns exec kvx_P "$BENCH" rawsend --to "10.100.$i.2:9000" --cc cubic --conns 2 --seconds 2 \
    > "$OUT/capacity_spine$i.json" &
  CAP+=($!)
done
for p in "${CAP[@]}"; do wait "$p" || true; done
cat "$OUT"/capacity_spine*.json
kill $SINK; wait $SINK 2>/dev/null || true

ip netns exec kvx_D "$BENCH" serve --listen 0.0.0.0 \
  --advertise 10.100.0.2,10.100.1.2,10.100.2.2,10.100.3.2 --arena "$PAYLOAD" --meta "$OUT/meta" &
PIDS+=($!)
while [ ! -s "$OUT/meta" ]; do sleep 0.1; done

for sc in $SCENARIOS; do
  ip netns exec kvx_D "$BENCH" rawsink --port 9000 --log "$OUT/bg_$sc.log" & SINK=$!; PIDS+=($SINK)
  sleep 0.3
  bg_start "$sc"
  sleep 3  # background alone (reference goodput) and cubic at steady state
  echo "scenario $sc: $RUNS rounds of arms $ARMS"
  ip netns exec kvx_P "$BENCH" send --meta "$OUT/meta" --arms "$ARMS" --runs $((RUNS + 1)) \
    --payload "$PAYLOAD" --chunk "$CHUNK" --kernel-cc cubic --link-gbps "$LINK_GBPS" --tag "$sc" \
    > "$OUT/$sc.jsonl"
  # stop this scenario's background senders (by pid), then the sink (which writes its log)
  for p in "${BG[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.5
  kill $SINK; wait $SINK 2>/dev/null || true
done
python3 "$HERE/analyze.py" "$OUT"
