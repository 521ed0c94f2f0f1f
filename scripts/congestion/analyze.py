#!/usr/bin/env python3
"""Summarises a scripts/congestion/run.sh result directory: per scenario and arm the p50/p99
completion time, inflation vs the same arm on the idle fabric, the floor that the capacity left
by the background imposes, and the background flows' goodput. Writes summary.md + plot.svg."""
import bisect
import glob
import json
import os
import sys

LINK = float(os.environ.get("LINK_GBPS", "1"))
LIGHT = float(os.environ.get("LIGHT_MBPS", "150")) / 1000.0


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def load_runs(path, warmup=False):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                if warmup or r["run"] > 0:  # round 0 is warm-up
                    runs.append(r)
    return runs


def load_bg(path):
    ts, bs = [], []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                t, b = line.split()
                ts.append(int(t))
                bs.append(int(b))
    return ts, bs


def bytes_at(ts, bs, t):
    i = bisect.bisect_left(ts, t)
    if i <= 0:
        return bs[0] if bs else 0
    if i >= len(ts):
        return bs[-1]
    f = (t - ts[i - 1]) / max(1, ts[i] - ts[i - 1])
    return bs[i - 1] + f * (bs[i] - bs[i - 1])


# Capacity left to the KV transfer per spine (fraction of one link): fair share among bulk flows.
LEFT = {
    "idle": {"multi": [1, 1, 1, 1], "single": [1]},
    "light": {"multi": [1 - LIGHT / LINK, 1, 1, 1], "single": [1 - LIGHT / LINK]},
    "heavy": {"multi": [1 / 3, 1, 1, 1], "single": [1 / 3]},
    "incast": {"multi": [0.5] * 4, "single": [0.5]},
}


def floor_pct(sc, arm):
    kind = "single" if arm == "single" else "multi"
    full = 1 if kind == "single" else 4
    return (full / sum(LEFT[sc][kind]) - 1) * 100


def main(out):
    cap = []
    for p in sorted(glob.glob(os.path.join(out, "capacity_spine*.json"))):
        with open(p) as f:
            txt = f.read().strip()
            if txt:
                cap.append(json.loads(txt)["raw_gbps"])
    scen = [s for s in ["idle", "light", "heavy", "incast"]
            if os.path.exists(os.path.join(out, s + ".jsonl"))]
    data = {s: load_runs(os.path.join(out, s + ".jsonl")) for s in scen}
    arms = []
    for s in scen:
        for r in data[s]:
            if r["arm"] not in arms:
                arms.append(r["arm"])
    idle = {}
    for a in arms:
        idle[a] = [r["ms"] for r in data.get("idle", []) if r["arm"] == a and r["ok"]]
    lines = []
    if cap:
        lines.append("Measured capacity per spine (2 cubic flows, 2 s, all spines at once): " +
                     ", ".join("%.3f" % c for c in cap) + " Gbit/s (sum %.2f)" % sum(cap))
        lines.append("")
    best_idle = min((pct(v, 0.5) for v in idle.values() if v), default=float("nan"))
    lines.append("Inflation is vs the same arm on the idle fabric; 'vs best idle' compares with the "
                 "fastest arm's idle p50 (%.1f ms); floor = capacity the background leaves "
                 "(fair share among bulk flows); p99 of 30 samples ~ the maximum." % best_idle)
    lines.append("")
    lines.append("| scenario | arm | n | p50 ms | p99 ms | p50 infl. | p99 infl. | p50 vs best idle | "
                 "floor | p50 vs floor | bg alone Mb/s | bg during arm Mb/s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    plot = {}
    for s in scen:
        ts, bs = load_bg(os.path.join(out, "bg_%s.log" % s))
        first = min((r["start_ns"] for r in load_runs(os.path.join(out, s + ".jsonl"), True)),
                    default=0)
        bg_alone = float("nan")
        if ts and first:
            t0 = ts[0] + 1_000_000_000
            if first > t0:
                bg_alone = (bytes_at(ts, bs, first) - bytes_at(ts, bs, t0)) * 8 / (first - t0) * 1e3
        for a in arms:
            rs = [r for r in data[s] if r["arm"] == a]
            ms = [r["ms"] for r in rs if r["ok"]]
            if not ms:
                continue
            p50, p99 = pct(ms, 0.5), pct(ms, 0.99)
            i50, i99 = pct(idle[a], 0.5), pct(idle[a], 0.99)
            fl = floor_pct(s, a)
            vs_floor = (p50 / (i50 * (1 + fl / 100)) - 1) * 100
            bgb, bgt = 0.0, 0
            for r in rs:
                if ts:
                    bgb += bytes_at(ts, bs, r["end_ns"]) - bytes_at(ts, bs, r["start_ns"])
                    bgt += r["end_ns"] - r["start_ns"]
            bg_during = bgb * 8 / bgt * 1e3 if bgt else float("nan")
            fails = len(rs) - len(ms)
            lines.append("| %s | %s | %d%s | %.1f | %.1f | %+.1f%% | %+.1f%% | %+.1f%% | %+.1f%% | "
                         "%+.1f%% | %.0f | %.0f |" % (
                             s, a, len(ms), " (%d failed)" % fails if fails else "", p50, p99,
                             (p50 / i50 - 1) * 100, (p99 / i99 - 1) * 100,
                             (p50 / best_idle - 1) * 100, fl, vs_floor, bg_alone, bg_during))
            plot.setdefault(s, []).append((a, (p50 / i50 - 1) * 100, fl))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text + "\n")
    write_svg(os.path.join(out, "plot.svg"), plot)


def write_svg(path, plot):
    scen = [s for s in ["light", "heavy", "incast"] if s in plot]
    if not scen:
        return
    colors = {"single": "#d62728", "rr": "#ff7f0e", "swift": "#2ca02c", "timely": "#1f77b4"}
    vmax = max(max(v for _, v, _ in plot[s]) for s in scen)
    vmax = max(vmax, max(f for s in scen for _, _, f in plot[s])) * 1.1
    W, H, L, B = 760, 380, 60, 40
    gw = (W - L - 20) / len(scen)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif"'
           ' font-size="12">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="18" font-size="14">KV transfer p50 completion-time inflation vs idle '
           '(64 MB, 4 x 1 Gbit/s spines)</text>' % L]
    y = lambda v: H - B - (H - B - 40) * v / vmax
    for k in range(0, 11):
        v = vmax * k / 10
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>' % (L, W - 20, y(v), y(v)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>' % (L - 5, y(v) + 4, v))
    for gi, s in enumerate(scen):
        x0 = L + gi * gw + 10
        bw = (gw - 20) / len(plot[s])
        for ai, (a, v, fl) in enumerate(plot[s]):
            x = x0 + ai * bw
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' %
                       (x + 2, y(max(v, 0)), bw - 4, y(0) - y(max(v, 0)), colors.get(a, "#888")))
            out.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black" '
                       'stroke-dasharray="4,2"/>' % (x + 2, x + bw - 2, y(fl), y(fl)))
            out.append('<text x="%.1f" y="%.1f" text-anchor="middle">%.0f%%</text>' %
                       (x + bw / 2, y(max(v, 0)) - 4, v))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x + bw / 2, H - B + 14, a))
        out.append('<text x="%.1f" y="%d" text-anchor="middle" font-weight="bold">%s</text>' %
                   (x0 + (gw - 20) / 2, H - 8, s))
    out.append('<text x="%d" y="34">dashed: floor set by the capacity the background leaves</text>' % L)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kvx-results")
