#!/usr/bin/env python3
"""Compares pd-bench measurements (scripts/device-plan.sh results) with pd-sim's predictions.

Usage: scripts/plan_calibrate.py RESULTS_DIR PD_SIM [--link-gbps X] [--share-penalty X]
                                 [--profile F.json]
RESULTS_DIR holds profile.json, points.txt, bench-<dep>-<pt>.json and logs/<dep>/*.log (the KV
pool of each daemon is read from its "N KV blocks of 16 tokens" line). Prints one row per point
with TTFT p50 and output throughput, measured vs simulated, and the relative errors; writes
calibration.csv beside the results.
"""
import json
import os
import re
import subprocess
import sys

ENGINES = {  # configs/plan-calib-*.yaml
    "1p1d": ["--prefill", "1", "--decode", "1", "--shared-gpu",
             "--p-max-batch-tokens", "16384", "--p-max-seqs", "16", "--p-chunk", "8192",
             "--d-max-batch-tokens", "4096", "--d-max-seqs", "256", "--d-chunk", "1024"],
    "colocated": ["--prefill", "0", "--decode", "1",
                  "--d-max-batch-tokens", "4096", "--d-max-seqs", "256", "--d-chunk", "1024"],
}


def kv_tokens(results, dep, inst):
    """The daemon's KV pool from its log, or from kv-<dep>.txt (the log lines kept)."""
    for path in (os.path.join(results, "logs", dep, inst + ".log"),
                 os.path.join(results, "kv-%s.txt" % dep)):
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    m = re.search(inst + r": \S+ backend, (\d+) KV blocks of (\d+) tokens", line)
                    if m:
                        return int(m.group(1)) * int(m.group(2))
        except OSError:
            pass
    return 0


def flag(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    results, sim = sys.argv[1], sys.argv[2]
    extra = sys.argv[3:]
    link = flag(extra, "--link-gbps", "10")
    penalty = flag(extra, "--share-penalty", "1.0")
    profile = flag(extra, "--profile", os.path.join(results, "profile.json"))
    rows = []
    with open(os.path.join(results, "points.txt")) as f:
        points = [line.split() for line in f if line.strip()]
    for p in points:
        dep, pt, bargs = p[0], p[1], p[2:]
        with open(os.path.join(results, "bench-%s-%s.json" % (dep, pt))) as f:
            meas = json.load(f)
        cmd = [sim, "--profile", profile, "--json",
               "--input", flag(bargs, "--input-len", "128"),
               "--output", flag(bargs, "--output-len", "64"),
               "--rate", flag(bargs, "--rate", "inf"),
               "--num-requests", flag(bargs, "--num-requests", "100"),
               "--seed", flag(bargs, "--seed", "0"), "--slo-ttft-ms", "500", "--slo-tpot-ms", "50",
               "--link-gbps", link, "--link-latency-ms", "1", "--share-penalty", penalty]
        cmd += ENGINES[dep]
        d = kv_tokens(results, dep, "decode-0")
        if d:
            cmd += ["--d-kv-tokens", str(d)]
        pk = kv_tokens(results, dep, "prefill-0")
        if pk:
            cmd += ["--p-kv-tokens", str(pk)]
        simr = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        mt, st = meas["ttft_ms"]["p50"], simr["ttft_ms"]["p50"]
        mo, so = meas["output_token_throughput"], simr["output_token_throughput"]
        mp, sp = meas["tpot_ms"]["p50"], simr["tpot_ms"]["p50"]
        rows.append((dep, pt, " ".join(bargs), mt, st, (st - mt) / mt if mt else 0, mo, so,
                     (so - mo) / mo if mo else 0, mp, sp))
    hdr = ("deployment", "point", "pd-bench args", "TTFT50 meas", "TTFT50 sim", "err",
           "out tok/s meas", "out tok/s sim", "err", "TPOT50 meas", "TPOT50 sim")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        print("| %s | %s | `%s` | %.1f | %.1f | %+.1f%% | %.1f | %.1f | %+.1f%% | %.2f | %.2f |"
              % (r[0], r[1], r[2], r[3], r[4], 100 * r[5], r[6], r[7], 100 * r[8], r[9], r[10]))
    with open(os.path.join(results, "calibration.csv"), "w") as f:
        f.write("deployment,point,ttft_meas,ttft_sim,ttft_err,out_meas,out_sim,out_err\n")
        for r in rows:
            f.write("%s,%s,%.3f,%.3f,%.4f,%.3f,%.3f,%.4f\n" % (r[0], r[1], r[3], r[4], r[5], r[6],
                                                            r[7], r[8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
