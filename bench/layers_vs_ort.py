"""Per-layer times of a zoo model on the CPU, paskdnn (NHWC) against ONNX Runtime,
in one process, taking turns.

    python3 bench/layers_vs_ort.py [--model resnet18] [--threads 2] [--rounds 6] [--runs 5]

paskdnn: ``Runner.run(timed=True)`` (one perf_counter interval a layer). ONNX
Runtime: the same seeded weights exported by bench/peer_ort.py's ``graph_to_onnx``
(every node named after its output, so that the profile's fused nodes carry the
zoo layer's name), ``SessionOptions.enable_profiling``, each node's
``*_kernel_time`` event. Rounds alternate the engines (``--runs`` inferences
each); each layer's number is the median over all runs. Prints a Markdown table:
layer, its shape class, paskdnn's solver and ms, ORT's op and ms, the ratio,
and the totals per class.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def layer_class(node, shapes) -> str:
    if node.op != "conv2d":
        return node.op
    w = node.weights["weight"]
    o, i, kh, kw = (int(d) for d in w.shape)
    out = shapes[node.output]
    hw = out[1] if len(out) == 4 else 0  # NHWC
    s = node.params.get("stride", 1)
    s = s if isinstance(s, int) else s[0]
    if kh == 1:
        return f"1x1 s{s} @{hw}"
    if node.params.get("groups", 1) > 1:
        g = node.params["groups"]
        return f"dw {kh}x{kw} s{s} @{hw}" if g == o and i == 1 else f"grouped {kh}x{kw} s{s} @{hw}"
    if i <= 4:
        return f"stem {kh}x{kw} c{i}"
    return f"{kh}x{kw} s{s} @{hw}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import paskdnn
    from paskdnn import models
    from paskdnn.graph import Runner, infer_shapes
    from peer_ort import graph_to_onnx

    g_nchw = models.build(a.model, seed=0, layout="NCHW")
    m = graph_to_onnx(g_nchw)
    for n in m.graph.node:
        n.name = n.output[0]
    work = tempfile.mkdtemp()
    opath = os.path.join(work, "m.onnx")
    onnx.save(m, opath)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(work, "prof")
    sess = ort.InferenceSession(opath, so, providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)

    ctx = paskdnn.Context("cpu", policy="pask", num_threads=a.threads)
    g = models.build(a.model, seed=0, layout="NHWC")
    shapes = infer_shapes(g, 1)
    nchw_nodes = {n.name: n for n in g_nchw.nodes}
    runner = Runner(g, ctx)
    xin = runner.input(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    runner.run(xin)
    ctx.wait_loads(timeout=600)
    for _ in range(3):
        runner.run(xin, record=False)
        sess.run(None, {iname: x})

    pk = collections.defaultdict(list)
    solver = {}
    pk_total, ort_total = [], []
    for r in range(a.rounds):
        for _ in range(a.runs):
            t0 = time.perf_counter()
            runner.run(xin, timed=True)
            pk_total.append((time.perf_counter() - t0) * 1e3)
            for e in runner.report:
                pk[e["layer"]].append(e["ms"])
                solver[e["layer"]] = e["solver"]
        time.sleep(0.05)
        for _ in range(a.runs):
            t0 = time.perf_counter()
            sess.run(None, {iname: x})
            ort_total.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.05)
    prof = sess.end_profiling()
    with open(prof) as f:
        events = json.load(f)
    ok = collections.defaultdict(list)
    oop = {}
    # the warm-up runs come first in the profile: keep the last rounds*runs of each node
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            nm = e["name"][: -len("_kernel_time")]
            ok[nm].append(e["dur"] / 1e3)
            oop[nm] = e["args"].get("op_name", "")
    n_keep = a.rounds * a.runs
    ort_by_layer = {}
    for nm, v in ok.items():
        base = nm[: -len("_nchwc")] if nm.endswith("_nchwc") else nm
        for suffix in (".relu6", ".relu", ".clip", ".add", ".conv", ".gemm"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        ort_by_layer.setdefault(base, []).append((nm, statistics.median(v[-n_keep:])))
    rows = []
    cls_tot = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for node in g.nodes:
        if node.name not in pk:
            continue
        p = statistics.median(pk[node.name])
        oe = ort_by_layer.pop(node.name, []) + ort_by_layer.pop(node.output, [])
        o = sum(t for _, t in oe)
        c = layer_class(nchw_nodes[node.name], shapes)
        rows.append((node.name, c, solver[node.name], p, ",".join(oop[n] for n, _ in oe), o))
        t = cls_tot[c]
        t[0] += p
        t[1] += o
        t[2] += 1
    print(f"# {a.model}: paskdnn NHWC total {statistics.median(pk_total):.2f} ms (timed, per-layer sync), "
          f"ORT total {statistics.median(ort_total):.2f} ms (profiling on); {n_keep} runs each\n")
    print("| layer | class | paskdnn solver | paskdnn ms | ORT op | ORT ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, c, s, p, op, o in rows:
        print(f"| {name} | {c} | {s} | {p:.3f} | {op} | {o:.3f} | {p / o if o else float('nan'):.2f} |")
    for nm, v in ort_by_layer.items():  # ORT's own nodes (layout reorders, a separate flatten)
        for n, t in v:
            print(f"| ({n}) | ORT only | | | {oop[n]} | {t:.3f} | |")
            cls_tot["ORT only"][1] += t
            cls_tot["ORT only"][2] += 1
    print("\n| class | layers | paskdnn ms | ORT ms | diff ms | ratio |")
    print("|---|---|---|---|---|---|")
    for c, (p, o, n) in sorted(cls_tot.items(), key=lambda kv: -(kv[1][0] - kv[1][1])):
        print(f"| {c} | {n} | {p:.3f} | {o:.3f} | {p - o:+.3f} | {p / o if o else float('nan'):.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(rows=rows, pk_total=pk_total, ort_total=ort_total,
                           ort_nodes={k: statistics.median(v[-n_keep:]) for k, v in ok.items()}), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
