#!/usr/bin/env python3
"""Compares pd-bench measurements (scripts/device-plan.sh results) with pd-sim's predictions.

Usage:
  scripts/plan_calibrate.py RESULTS_DIR PD_SIM [--profile F.json] [--link-gbps X]
      [--stage-gbps X] [--step-overhead-ms X] [--seq-overhead-ms X] [--share-penalty X]
      [--link-lanes N] [--chunk-factor X] [--link-latency-ms X]
      [--fit DEP:PT,DEP:PT,...] [--fit-params link-gbps,step-overhead-ms] [--label NAME]
  scripts/plan_calibrate.py --predict POINTS_FILE PD_SIM --p-kv-tokens N --d-kv-tokens N
      --colo-kv-tokens N [same model flags]

RESULTS_DIR holds profile.json, points.txt ("dep pt pd-bench-args"), bench-<dep>-<pt>.json and
logs/<dep>/*.log (each daemon's pool from its "N KV blocks of 16 tokens" line). Prints one row
per point: TTFT p50, output throughput and TPOT p50, measured vs simulated, relative errors.

--fit: the listed points form the fitting set; the parameters in --fit-params are chosen to
minimise sum over the fitting set of (TTFT p50 error^2 + TPOT p50 error^2) (grid search), then
every point is reported with its set (fit / held-out) and the errors of each set summarised.
Without --fit every point is a priori (nothing was fitted on it).
--predict: no measurements; prints the simulator's numbers for the points of a points file
("dep pt est_s pd-bench-args", as scripts/device-plan.sh takes) - the prediction written down
before a device run.
Writes calibration-<label>.csv (and .md) beside the results.
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
ENGINES["1p1d-mirror"] = ENGINES["1p1d"]
GRIDS = {
    "link-gbps": [round(2 * 1.1 ** i, 3) for i in range(40)],  # 2 .. 82 Gbit/s
    "stage-gbps": [round(20 * 1.15 ** i, 2) for i in range(30)],  # 20 .. 1150 Gbit/s
    "step-overhead-ms": [round(0.1 * i, 2) for i in range(41)],  # 0 .. 4 ms
    "share-penalty": [round(0.7 + 0.05 * i, 2) for i in range(13)],  # 0.7 .. 1.3
    "seq-overhead-ms": [round(0.005 * i, 3) for i in range(21)],  # 0 .. 0.1 ms
    "link-lanes": [1, 2, 3, 4],
    "chunk-factor": [round(1 + 0.05 * i, 2) for i in range(31)],  # 1 .. 2.5
    "link-latency-ms": [1] + [5 * i for i in range(1, 21)],  # 1 .. 100 ms per transfer
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


def simulate(sim, profile, dep, bargs, params, pools):
    cmd = [sim, "--profile", profile, "--json",
           "--input", flag(bargs, "--input-len", "128"),
           "--output", flag(bargs, "--output-len", "64"),
           "--rate", flag(bargs, "--rate", "inf"),
           "--num-requests", flag(bargs, "--num-requests", "100"),
           "--seed", flag(bargs, "--seed", "0"), "--slo-ttft-ms", "500", "--slo-tpot-ms", "50"]
    for k, v in sorted(params.items()):
        cmd += ["--" + k, str(v)]
    cmd += ENGINES[dep]
    if pools.get("d"):
        cmd += ["--d-kv-tokens", str(pools["d"])]
    if pools.get("p") and dep != "colocated":
        cmd += ["--p-kv-tokens", str(pools["p"])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    return j["ttft_ms"]["p50"], j["output_token_throughput"], j["tpot_ms"]["p50"]


def rel(s, m):
    return (s - m) / m if m else 0.0


def main():
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    predict = argv[0] == "--predict"
    if predict:
        argv = argv[1:]
    results, sim, extra = argv[0], argv[1], argv[2:]
    params = {"link-gbps": float(flag(extra, "--link-gbps", "10")),
              "stage-gbps": float(flag(extra, "--stage-gbps", "0")),
              "step-overhead-ms": float(flag(extra, "--step-overhead-ms", "0")),
              "share-penalty": float(flag(extra, "--share-penalty", "1.0")),
              "seq-overhead-ms": float(flag(extra, "--seq-overhead-ms", "0")),
              "link-lanes": int(flag(extra, "--link-lanes", "1")),
              "chunk-factor": float(flag(extra, "--chunk-factor", "1")),
              "link-latency-ms": float(flag(extra, "--link-latency-ms", "1"))}
    label = flag(extra, "--label", "apriori")
    if predict:
        profile = flag(extra, "--profile", "configs/profiles/llama-3.1-8b-h100.json")
        print("| deployment | point | pd-bench args | TTFT50 sim | out tok/s sim | TPOT50 sim |")
        print("|---|---|---|---|---|---|")
        with open(results) as f:
            for line in f:
                p = line.split()
                if not p:
                    continue
                dep, pt, bargs = p[0], p[1], p[3:]
                pools = {"d": int(flag(extra, "--colo-kv-tokens" if dep == "colocated"
                                       else "--d-kv-tokens", "0")),
                         "p": int(flag(extra, "--p-kv-tokens", "0"))}
                st, so, sp = simulate(sim, profile, dep, bargs, params, pools)
                print("| %s | %s | `%s` | %.1f | %.1f | %.2f |" % (dep, pt, " ".join(bargs), st,
                                                                   so, sp))
        return 0
    profile = flag(extra, "--profile", os.path.join(results, "profile.json"))
    fit = [x for x in flag(extra, "--fit", "").split(",") if x]
    fit_params = [x for x in flag(extra, "--fit-params", "").split(",") if x]
    with open(os.path.join(results, "points.txt")) as f:
        points = [line.split() for line in f if line.strip()]
    data = []
    for p in points:
        dep, pt, bargs = p[0], p[1], p[2:]
        with open(os.path.join(results, "bench-%s-%s.json" % (dep, pt))) as f:
            meas = json.load(f)
        pools = {"d": kv_tokens(results, dep, "decode-0"), "p": kv_tokens(results, dep, "prefill-0")}
        data.append((dep, pt, bargs, meas, pools))

    def loss(par, subset):
        tot = 0.0
        for dep, pt, bargs, meas, pools in subset:
            st, _, sp = simulate(sim, profile, dep, bargs, par, pools)
            tot += rel(st, meas["ttft_ms"]["p50"]) ** 2 + rel(sp, meas["tpot_ms"]["p50"]) ** 2
        return tot

    fitset = [d for d in data if "%s:%s" % (d[0], d[1]) in fit]
    if fit_params and fitset:
        # Coordinate-wise grid search, three sweeps (the parameters are nearly separable: the
        # link only moves 1P1D TTFT, the step overhead every step).
        for _ in range(3):
            for k in fit_params:
                best = min(GRIDS[k], key=lambda v: loss(dict(params, **{k: v}), fitset))
                params[k] = best
        print("fitted on %s: %s (loss %.4f)" % (",".join(fit), " ".join(
            "%s=%g" % (k, params[k]) for k in fit_params), loss(params, fitset)))
    print("parameters: " + " ".join("--%s %g" % kv for kv in sorted(params.items())))
    rows = []
    for dep, pt, bargs, meas, pools in data:
        st, so, sp = simulate(sim, profile, dep, bargs, params, pools)
        mt, mo, mp = meas["ttft_ms"]["p50"], meas["output_token_throughput"], meas["tpot_ms"]["p50"]
        s = "fit" if "%s:%s" % (dep, pt) in fit else ("held-out" if fit_params else "a priori")
        rows.append((dep, pt, s, " ".join(bargs), mt, st, rel(st, mt), mo, so, rel(so, mo), mp, sp,
                     rel(sp, mp)))
    hdr = ("deployment", "point", "set", "pd-bench args", "TTFT50 meas", "TTFT50 sim", "err",
           "out tok/s meas", "out tok/s sim", "err", "TPOT50 meas", "TPOT50 sim", "err")
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        ok = lambda e: "%+.1f%%%s" % (100 * e, "" if abs(e) <= 0.15 else " ✗")
        lines.append("| %s | %s | %s | `%s` | %.1f | %.1f | %s | %.1f | %.1f | %s | %.2f | %.2f | "
                     "%+.1f%% |" % (r[0], r[1], r[2], r[3], r[4], r[5], ok(r[6]), r[7], r[8],
                                   ok(r[9]), r[10], r[11], 100 * r[12]))
    for s in ("fit", "held-out", "a priori"):
        sub = [r for r in rows if r[2] == s]
        if sub:
            n_ok = sum(1 for r in sub if abs(r[6]) <= 0.15 and abs(r[9]) <= 0.15)
            lines.append("")
            lines.append("%s: %d points, both metrics within 15%% at %d; max |TTFT err| %.1f%%, "
                         "max |out tok/s err| %.1f%%" % (
                             s, len(sub), n_ok, 100 * max(abs(r[6]) for r in sub),
                             100 * max(abs(r[9]) for r in sub)))
    print("\n".join(lines))
    base = os.path.join(results, "calibration-%s" % label)
    with open(base + ".md", "w") as f:
        f.write("parameters: " + " ".join("--%s %g" % kv for kv in sorted(params.items())) + "\n\n")
        f.write("\n".join(lines) + "\n")
    with open(base + ".csv", "w") as f:
        f.write("deployment,point,set,ttft_meas,ttft_sim,ttft_err,out_meas,out_sim,out_err,"
                "tpot_meas,tpot_sim,tpot_err\n")
        for r in rows:
            f.write("%s,%s,%s,%.3f,%.3f,%.4f,%.3f,%.3f,%.4f,%.3f,%.3f,%.4f\n" % (
                r[0], r[1], r[2], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
