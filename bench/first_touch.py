"""First inference on the CPU: its time and the minor page faults it takes
(first touches of memory), one fresh process per run. The Runner writes its
buffers at set-up, so the first inference no longer pays their page faults.

    python3 bench/first_touch.py [--models resnet18 resnet50] [--runs 3]
"""
import argparse
import subprocess
import sys

CHILD = r"""
import resource, sys, time
import numpy as np
import paskdnn, paskdnn.models
from paskdnn.graph import Runner
g = paskdnn.models.build(sys.argv[1], layout="NHWC")
r = Runner(g, paskdnn.Context(num_threads=2))
x = r.input(np.random.default_rng(0).standard_normal((1,) + tuple(g.input_shape)).astype(np.float32))
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t0 = time.perf_counter()
r.run(x)
t1 = time.perf_counter()
print(f"{1e3 * (t1 - t0):.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], help="zoo models (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per model (default: %(default)s)")
    args = ap.parse_args()
    print("| model | first inference, ms (each run) | minor page faults in it (each run) |\n|---|---|---|")
    for m in args.models:
        ms, faults = [], []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", CHILD, m], check=True, capture_output=True, text=True)
            a, b = out.stdout.split()
            ms.append(a)
            faults.append(b)
        print(f"| {m} | {', '.join(ms)} | {', '.join(faults)} |")


if __name__ == "__main__":
    main()
