#!/usr/bin/env python3
"""Goodput vs request rate for a few deployments, simulated with pd-sim, plotted with gnuplot.

Usage: scripts/plan_sweep.py PD_SIM PROFILE ISL OSL OUT.png "1P7D" "colocated:8" ... \
           [--rates 1,2,4] [--slo-ttft-ms 500] [--slo-tpot-ms 50] [--horizon-s 180] [--title T]
A deployment is "xPyD" or "colocated:N". Each point simulates rate x horizon requests (at least
200, the first quarter is warm-up) with pd-sim's defaults (the engines of configs/h100-1p1d.yaml,
100 Gbit/s per GPU). Writes OUT.dat (rate, then goodput per deployment) and OUT.png (gnuplot
pngcairo; matplotlib is not installed on the build machine).
"""
import json
import re
import subprocess
import sys


def opt(args, name, default):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return default


def main():
    args = sys.argv[1:]
    rates = [float(x) for x in opt(args, "--rates", "1,2,4,8").split(",")]
    ttft = opt(args, "--slo-ttft-ms", "500")
    tpot = opt(args, "--slo-tpot-ms", "50")
    horizon = float(opt(args, "--horizon-s", "180"))
    title = opt(args, "--title", "")
    extra = opt(args, "--sim-args", "").split()
    if len(args) < 6:
        print(__doc__)
        return 2
    sim, profile, isl, osl, out = args[:5]
    deps = args[5:]
    table = []
    for r in rates:
        n = max(200, int(r * horizon))
        row = [r]
        for d in deps:
            m = re.fullmatch(r"(\d+)P(\d+)D", d)
            x, y = (m.group(1), m.group(2)) if m else ("0", d.split(":")[1])
            cmd = [sim, "--profile", profile, "--json", "--input", isl, "--output", osl,
                   "--rate", str(r), "--num-requests", str(n), "--warmup", str(n // 4),
                   "--prefill", x, "--decode", y, "--slo-ttft-ms", ttft, "--slo-tpot-ms", tpot,
                   "--seed", "1"] + extra
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                            text=True).stdout)
            # goodput = offered rate x fraction of the scored requests meeting both SLOs (the
            # report's good/duration would count the drain tail after the last arrival)
            row.append(r * res["good_requests"] / max(1, n - n // 4))
        table.append(row)
        print(" ".join("%.4g" % v for v in row), flush=True)
    with open(out[:-4] + ".dat", "w") as f:
        f.write("# rate " + " ".join(d.replace(" ", "_") for d in deps) + "\n")
        for row in table:
            f.write(" ".join("%.6g" % v for v in row) + "\n")
    plots = ", ".join("'%s' using 1:%d with linespoints lw 2 title '%s'"
                      % (out[:-4] + ".dat", i + 2, d.replace(":", " x")) for i, d in enumerate(deps))
    plots += ", x with lines dt 2 lc rgb 'gray' title 'offered rate'"
    gp = """set terminal pngcairo size 800,500 font 'sans,11'
set output '%s'
set title '%s'
set xlabel 'offered request rate (req/s, Poisson)'
set ylabel 'goodput (req/s meeting TTFT<=%s ms and TPOT<=%s ms)'
set key top left
set grid
plot %s
""" % (out, title, ttft, tpot, plots)
    subprocess.run(["gnuplot"], input=gp, text=True, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
