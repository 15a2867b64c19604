"""The ONNX importer's graph against the zoo's own, on the CPU: issue 15's aim
"the imported ResNet-50 within 1.5x of the zoo's ResNet-50 time".

    python3 bench/onnx_vs_zoo_cpu.py [--models resnet50,resnet18,mobilenet_v2] [--rounds 5]
                                     [--steady 10] [--layout NHWC] [--out bench/results]

For each model: the zoo graph (``paskdnn.models.build``, seeded weights, batch
norm folded) is written out as ONNX by bench/peer_ort.py's ``graph_to_onnx``
(Conv with bias, Add, Relu / Clip(0, 6), MaxPool, GlobalAveragePool, Flatten,
Gemm) and read back with ``paskdnn.load_onnx``; both graphs run in one
process on one ``Context("cpu", num_threads=1)``, interleaved: each round
times --steady runs of one, then of the other, by the thread's CPU time
(time.thread_time), so that a machine shared with other work does not skew
the ratio. Reports the medians, their ratio (imported / zoo), the import
time, the node counts and the outputs' agreement (max |diff| / max |zoo|).
What this does not cover: a torchvision export (unfused batch norm, Flatten
via Reshape) imports to the same nodes after folding, but its import takes
longer; that path is measured on the GPU machine (bench/onnx_gpu_check.py).

Writes <out>/onnx-vs-zoo-cpu-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,resnet18,mobilenet_v2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steady", type=int, default=10)
    ap.add_argument("--layout", default="NHWC", choices=("NCHW", "NHWC"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args()

    import paskdnn
    from paskdnn import models
    from paskdnn.graph import Runner
    from peer_ort import graph_to_onnx

    ctx = paskdnn.Context("cpu", num_threads=1)
    date = datetime.date.today().isoformat()
    rows = []
    for name in a.models.split(","):
        zoo = models.build(name, seed=0, layout=a.layout)
        model = graph_to_onnx(models.build(name, seed=0, layout="NCHW"), batch=1)
        t0 = time.perf_counter()
        imp = paskdnn.load_onnx(model, layout=a.layout, batch=1)
        import_ms = (time.perf_counter() - t0) * 1e3
        rz, ri = Runner(zoo, ctx, batch=1), Runner(imp, ctx, batch=1)
        x = np.random.default_rng(0).standard_normal(imp.onnx_input_shape).astype(np.float32)
        xz = rz.input(imp.input_from_onnx(x))
        xi = ri.input(imp.input_from_onnx(x))
        yz = np.array(rz.run(xz), np.float64)
        yi = np.array(ri.run(xi), np.float64)
        ctx.wait_loads(timeout=600)
        agree = float(np.abs(yz - yi).max() / max(np.abs(yz).max(), 1e-30))
        tz, ti = [], []
        for r in range(a.rounds):
            for runner, xin, times in ((rz, xz, tz), (ri, xi, ti)) if r % 2 == 0 else ((ri, xi, ti), (rz, xz, tz)):
                for _ in range(a.steady):
                    c0 = time.thread_time()
                    runner.run(xin, record=False)
                    times.append((time.thread_time() - c0) * 1e3)
        mz, mi = statistics.median(tz), statistics.median(ti)
        rows.append((name, len(zoo.nodes), len(imp.nodes), import_ms, mz, mi, mi / mz, agree))
        print(f"{name}: zoo {mz:.2f} ms, imported {mi:.2f} ms ({mi / mz:.3f}x), import {import_ms:.0f} ms, "
              f"nodes {len(zoo.nodes)} / {len(imp.nodes)}, max rel diff {agree:.1e}", flush=True)
    cmd = "python3 bench/onnx_vs_zoo_cpu.py " + " ".join(sys.argv[1:])
    lines = [f"# Imported ONNX graph against the zoo's graph, CPU ({date})", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread, thread CPU time, "
             f"{a.layout}, batch 1, medians of {a.rounds} interleaved rounds of {a.steady} runs; `{cmd}`.", "",
             "| model | zoo nodes | imported nodes | import (ms) | zoo (ms) | imported (ms) | imported / zoo | max rel diff |",
             "|---|---|---|---|---|---|---|---|"]
    for name, nz, ni, imp_ms, mz, mi, ratio, agree in rows:
        lines.append(f"| {name} | {nz} | {ni} | {imp_ms:.0f} | {mz:.2f} | {mi:.2f} | {ratio:.3f}x | {agree:.1e} |")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"onnx-vs-zoo-cpu-{date}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote " + path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
