"""First inference on the CPU: its time, the minor page faults it takes (first
touches of memory) and its ratio to the same process's steady state, one fresh
process per run. The Runner writes its buffers at set-up, so the first
inference no longer pays their page faults; what is left are the kernels' own
scratch buffers and code pages.

    python3 bench/first_touch.py [--models resnet18 resnet50] [--layouts NHWC] [--runs 3]
                                 [--threads 2] [--baseline-kernels DIR [--baseline-without SOLVER,...]]

--baseline-kernels runs every case a second time, interleaved, with the CPU
code objects of another build (Context(kernel_dir=DIR)), leaving out the
solvers that build lacks (--baseline-without), to measure a kernel change.
"""
import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time
import numpy as np
import paskdnn, paskdnn.models
from paskdnn.graph import Runner
model, layout, threads, kernel_dir, without = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
kw = {}
if kernel_dir:
    kw["kernel_dir"] = kernel_dir
if without:
    off = set(without.split(","))
    kw["solvers"] = [s["name"] for s in paskdnn.solvers() if s["device"] == "cpu" and s["name"] not in off]
ctx = paskdnn.Context(num_threads=threads, **kw)
g = paskdnn.models.build(model, layout=layout)
r = Runner(g, ctx)
x = r.input(np.random.default_rng(0).standard_normal((1,) + tuple(g.input_shape)).astype(np.float32))
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t0 = time.perf_counter()
r.run(x)
t1 = time.perf_counter()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
ctx.wait_loads(timeout=600)
steady = []
for _ in range(10):
    t = time.perf_counter()
    r.run(x, record=False)
    steady.append(time.perf_counter() - t)
print(json.dumps(dict(first=1e3 * (t1 - t0), faults=faults, steady=1e3 * statistics.median(steady))))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], help="zoo models (default: %(default)s)")
    ap.add_argument("--layouts", nargs="+", default=["NHWC"], choices=["NCHW", "NHWC"])
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per case (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="the context's threads (default: %(default)s)")
    ap.add_argument("--baseline-kernels", default="", help="also run with this folder's CPU kernels")
    ap.add_argument("--baseline-without", default="", help="solvers (comma-separated) the baseline build lacks")
    args = ap.parse_args()
    builds = [("this build", "", "")]
    if args.baseline_kernels:
        builds.append(("baseline kernels", args.baseline_kernels, args.baseline_without))
    print("| model | layout | kernels | first inference, ms (each run) | steady, ms (each run) | first / steady "
          "(median) | minor page faults in the first inference (each run) |\n|---|---|---|---|---|---|---|")
    for m in args.models:
        for layout in args.layouts:
            res = {b[0]: [] for b in builds}
            for _ in range(args.runs):
                for label, kdir, without in builds:  # interleaved
                    out = subprocess.run([sys.executable, "-c", CHILD, m, layout, str(args.threads), kdir, without],
                                         check=True, capture_output=True, text=True)
                    res[label].append(json.loads(out.stdout))
            for label, _, _ in builds:
                rs = res[label]
                ratio = statistics.median(r["first"] / r["steady"] for r in rs)
                first = ", ".join("%.1f" % r["first"] for r in rs)
                steady = ", ".join("%.1f" % r["steady"] for r in rs)
                faults = ", ".join(str(r["faults"]) for r in rs)
                print(f"| {m} | {layout} | {label} | {first} | {steady} | {ratio:.2f} | {faults} |", flush=True)


if __name__ == "__main__":
    main()
