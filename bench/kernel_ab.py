"""In-process A/B of CPU kernel folders on zoo models: one runner a folder
(``Context(kernel_dir=...)``, e.g. copies of <build>/src/kernels before and
after a change to one kernel), the runners taking turns, so that a machine
whose speed drifts treats them alike.

    python3 bench/kernel_ab.py --dirs A=/tmp/kA,F=/tmp/kF [--models resnet18,resnet50,mobilenet_v2]
                               [--rounds 24] [--runs 5] [--timed 0] [--threads 2] [--clock wall|thread]
                               [--layers all|substring,...]

Each round runs every runner --runs times (``record=False``; the order reversed
every other round) and then --timed times with per-layer timing. Prints per
model each runner's median over all runs and its ratio to the first, the median
(and range) of the per-round ratios, p25 and p10; with --layers, per-layer
medians and minima. The outputs of every runner are checked against the first's.
``--clock thread`` times the calling thread's CPU time (with ``--threads 1``,
less disturbed by other jobs on the other cores). Run it in both orders.
"""
import argparse
import collections
import statistics
import time

import numpy as np

import paskdnn
from paskdnn import models
from paskdnn.graph import Runner

ap = argparse.ArgumentParser()
ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
ap.add_argument("--dirs", required=True)  # label=dir,label=dir
ap.add_argument("--rounds", type=int, default=8)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--timed", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--clock", default="wall", choices=("wall", "thread"))
ap.add_argument("--layers", default="")  # substrings; per-layer rows printed for these ('all')
a = ap.parse_args()
clk = time.perf_counter if a.clock == "wall" else time.thread_time
dirs = [d.split("=", 1) for d in a.dirs.split(",")]
x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
for name in a.models.split(","):
    g = models.build(name, seed=0, layout="NHWC")
    rs = []
    for lab, d in dirs:
        ctx = paskdnn.Context("cpu", policy="pask", num_threads=a.threads, kernel_dir=d)
        r = Runner(g, ctx)
        xi = r.input(x)
        y = np.array(r.run(xi))
        ctx.wait_loads(timeout=600)
        for _ in range(3): r.run(xi, record=False)
        rs.append((lab, r, xi, y))
    for lab, r, xi, y in rs[1:]:
        err = np.abs(y - rs[0][3]).max() / np.abs(rs[0][3]).max()
        assert err < 1e-4, (lab, err)
    tot = collections.defaultdict(list)
    per = collections.defaultdict(lambda: collections.defaultdict(list))
    solv = {}
    rmed = collections.defaultdict(list)
    for rd in range(a.rounds):
        order = rs if rd % 2 == 0 else rs[::-1]
        for lab, r, xi, _ in order:
            ts = []
            for _ in range(a.runs):
                t0 = clk(); r.run(xi, record=False); ts.append((clk() - t0) * 1e3)
            tot[lab] += ts
            rmed[lab].append(statistics.median(ts))
            for _ in range(a.timed):
                r.run(xi, timed=True)
                for e in r.report:
                    per[lab][e["layer"]].append(e["ms"]); solv[(lab, e["layer"])] = e["solver"]
    base = dirs[0][0]
    mb = statistics.median(tot[base])
    line = f"{name}: " + ", ".join(f"{lab} {statistics.median(tot[lab]):.2f} ms ({statistics.median(tot[lab]) / mb:.3f}x)" for lab, _ in dirs)
    # per-round ratio medians (paired)
    line += " | paired round ratios: " + ", ".join(
        f"{lab} {statistics.median([b / a0 for a0, b in zip(rmed[base], rmed[lab])]):.3f} [{min(b / a0 for a0, b in zip(rmed[base], rmed[lab])):.3f}-{max(b / a0 for a0, b in zip(rmed[base], rmed[lab])):.3f}]" for lab, _ in dirs[1:])
    line += " | p25: " + ", ".join(f"{lab} {sorted(tot[lab])[len(tot[lab]) // 4]:.2f}" for lab, _ in dirs)
    line += " | p10: " + ", ".join(f"{lab} {sorted(tot[lab])[len(tot[lab]) // 10]:.2f}" for lab, _ in dirs)
    print(line, flush=True)
    if a.layers:
        for layer in per[base]:
            if a.layers != "all" and not any(s in layer for s in a.layers.split(",")):
                continue
            vals = [statistics.median(per[lab][layer]) for lab, _ in dirs] + [min(per[lab][layer]) for lab, _ in dirs]
            print(f"  {layer:28s} " + " ".join(f"{v:7.3f}" for v in vals) + "  " + "med " + " ".join(f"{v / vals[0]:.3f}" for v in vals[1:len(dirs)]) + " min " + " ".join(f"{v / vals[len(dirs)]:.3f}" for v in vals[len(dirs) + 1:]), flush=True)
