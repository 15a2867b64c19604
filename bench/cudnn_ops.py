"""cuDNN provider benchmark (device machine): paskdnn's cuDNN solvers against
cuDNN through PyTorch on ResNet-50's convolution shapes, GEMM and pooling
(steady state, the aim is parity: within 5%), and the cost of building each
ResNet-50 layer's plan (heuristics query, plan finalisation) and of cuDNN's
handle.

    python bench/cudnn_ops.py [--quick] [--out bench/results/cudnn.md]

Both sides run the same plain convolution (no bias, no activation: PyTorch
adds those in separate kernels). PyTorch runs with cudnn.benchmark on (it
times every algorithm once); paskdnn takes the first configuration cuDNN's
heuristics (mode A) return that finalises. Times: medians of CUDA-event timed
CUDA-graph replays (kernel time, no host overhead) and eager loops.
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import torch

import paskdnn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_ops import conv_layers, cuda_time, graph_time  # noqa: E402

F = torch.nn.functional


def trace_events(ctx, work):
    path = os.path.join(work, "trace.json")
    ctx.export_trace(path)
    with open(path) as f:
        return json.load(f)["traceEvents"]


def plan_costs(work, shapes, quick):
    """Fresh context per layer, no loader threads: the first call builds the plan on the caller."""
    rows = []
    # the handle (library initialisation) on a loader thread of a pask context
    ctx = paskdnn.Context("cuda", cache_dir=os.path.join(work, "c0"), policy="pask", solvers=["conv2d.cudnn"])
    ctx.wait_loads(120)
    handle_ms = sum(e["dur"] for e in trace_events(ctx, work) if e.get("name") == "cuDNN handle") / 1e3
    ctx.close()
    items = sorted(shapes.items())[: 4 if quick else None]
    for fused in (False, True):
        for (c, o, k, s, p, d, g, h, w), count in items:
            ctx = paskdnn.Context("cuda", cache_dir=os.path.join(work, "c1"), loader_threads=0,
                                  solvers=["conv2d.cudnn"])
            x = torch.randn(1, h, w, c, device="cuda", dtype=torch.float16)
            wt = torch.randn(o, k, k, c // g, device="cuda", dtype=torch.float16)
            b = torch.randn(o, device="cuda", dtype=torch.float16) if fused else None
            t0 = time.perf_counter()
            err = ""
            try:
                paskdnn.conv2d(x, wt, b, s, p, d, g, layout="NHWC", weight_layout="OHWI",
                               activation="relu" if fused else "none", context=ctx)
                torch.cuda.synchronize()
            except paskdnn.Error as e:
                err = str(e)[:120]
            first = (time.perf_counter() - t0) * 1e3
            ev = trace_events(ctx, work)
            heur = sum(e["dur"] for e in ev if e.get("name") == "cudnn heuristics") / 1e3
            fin = [e for e in ev if e.get("name") == "cudnn finalize"]
            load = sum(e["dur"] for e in ev if str(e.get("name", "")).startswith("load conv2d@")) / 1e3
            rows.append(dict(layer=f"{c}->{o} {k}x{k}/{s} g{g} @{h}", count=count, fused=fused, first_call_ms=first,
                             load_ms=load, heuristics_ms=heur, finalize_ms=sum(e["dur"] for e in fin) / 1e3,
                             finalize_tries=len(fin), error=err))
            ctx.close()
    return handle_ms, rows


def parity(work, shapes, quick, reps):
    rows = []
    ctx = paskdnn.Context("cuda", cache_dir=os.path.join(work, "c2"), solvers=["conv2d.cudnn", "gemm.cudnn",
                                                                              "pool2d.cudnn"])
    configs = [("fp16", "NHWC", 1), ("fp16", "NHWC", 32), ("fp32", "NCHW", 1)]
    if quick:
        configs = configs[:1]
    items = sorted(shapes.items())[: 4 if quick else None]
    for dtype, layout, batch in configs:
        dt = {"fp16": torch.float16, "fp32": torch.float32}[dtype]
        for (c, o, k, s, p, d, g, h, w), count in items:
            x = torch.randn(batch, c, h, w, device="cuda", dtype=dt)
            wt = torch.randn(o, c // g, k, k, device="cuda", dtype=dt) / (c // g * k * k) ** 0.5
            if layout == "NHWC":
                xl, wl, wlay = x.permute(0, 2, 3, 1).contiguous(), wt.permute(0, 2, 3, 1).contiguous(), "OHWI"
                xt, wtt = x.to(memory_format=torch.channels_last), wt.to(memory_format=torch.channels_last)
            else:
                xl, wl, wlay, xt, wtt = x, wt, "OIHW", x, wt

            def ours():
                return paskdnn.conv2d(xl, wl, None, s, p, d, g, layout=layout, weight_layout=wlay, context=ctx)

            def theirs():
                return F.conv2d(xt, wtt, None, s, p, d, g)

            ours()
            solver = paskdnn.last_solver()
            go, gt = graph_time(ours, reps), graph_time(theirs, reps)
            eo, et = cuda_time(ours, reps), cuda_time(theirs, reps)
            rows.append(dict(op="conv2d", shape=f"{c}->{o} {k}x{k}/{s} g{g} @{h}", dtype=dtype, layout=layout,
                             batch=batch, count=count, solver=solver, ours_graph_ms=go, torch_graph_ms=gt,
                             ours_ms=eo, torch_ms=et))
        print(f"parity {dtype} {layout} b{batch} done", flush=True)
    for dt in (torch.float16, torch.float32):
        for m, n, k in [(1, 1000, 2048), (32, 1000, 2048), (1024, 1024, 1024), (4096, 4096, 4096)][: 2 if quick else None]:
            a = torch.randn(m, k, device="cuda", dtype=dt)
            b = torch.randn(k, n, device="cuda", dtype=dt)
            ours = lambda: paskdnn.matmul(a, b, context=ctx)  # noqa: E731
            theirs = lambda: torch.matmul(a, b)  # noqa: E731
            ours()
            rows.append(dict(op="gemm", shape=f"{m}x{n}x{k}", dtype=str(dt).replace("torch.", ""), layout="-", batch=1,
                             count=1, solver=paskdnn.last_solver(), ours_graph_ms=graph_time(ours, reps),
                             torch_graph_ms=graph_time(theirs, reps), ours_ms=cuda_time(ours, reps),
                             torch_ms=cuda_time(theirs, reps)))
        for b_ in (1, 32):
            x = torch.randn(b_, 112, 112, 64, device="cuda", dtype=dt)
            xt = x.permute(0, 3, 1, 2)
            ours = lambda: paskdnn.max_pool2d(x, 3, 2, 1, layout="NHWC", context=ctx)  # noqa: E731
            theirs = lambda: F.max_pool2d(xt, 3, 2, 1)  # noqa: E731
            ours()
            rows.append(dict(op="max_pool2d", shape="3x3/2 64ch@112", dtype=str(dt).replace("torch.", ""),
                             layout="NHWC", batch=b_, count=1, solver=paskdnn.last_solver(),
                             ours_graph_ms=graph_time(ours, reps), torch_graph_ms=graph_time(theirs, reps),
                             ours_ms=cuda_time(ours, reps), torch_ms=cuda_time(theirs, reps)))
    ctx.close()
    return rows


def render(d):
    m = d["meta"]
    L = ["# cuDNN provider: paskdnn's cuDNN solvers vs cuDNN through PyTorch\n",
         f"- card: {m['card']}; date: {m['date']}; command: `{m['command']}`",
         f"- torch {m['torch']} (cuDNN {m['cudnn']}, benchmark mode on), paskdnn {m['paskdnn']}",
         "- ratio = paskdnn / PyTorch; graph = CUDA-graph replay (kernel time only), eager = one Python call per op",
         f"- cuDNN handle creation (library initialisation), on a loader thread: {d['handle_ms']:.1f} ms\n",
         "## Steady state (aim: ratio within 1.05 in graph replay)\n"]
    rs = [r for r in d["parity"] if r["ours_graph_ms"] and r["torch_graph_ms"]]
    if rs:
        within = sum(1 for r in rs if r["ours_graph_ms"] / r["torch_graph_ms"] <= 1.05)
        L.append(f"{within} of {len(rs)} rows within 5% of PyTorch in graph replay.\n")
    groups = {}
    for r in d["parity"]:
        if r["op"] == "conv2d":
            groups.setdefault((r["dtype"], r["layout"], r["batch"]), []).append(r)
    if groups:
        L += ["| ResNet-50 convs | paskdnn graph | torch graph | ratio | paskdnn eager | torch eager | ratio |",
              "|---|---|---|---|---|---|---|"]
        for (dt, lay, b), rows in groups.items():
            so = sum(r["count"] * (r["ours_graph_ms"] or float("nan")) for r in rows)
            st = sum(r["count"] * (r["torch_graph_ms"] or float("nan")) for r in rows)
            eo = sum(r["count"] * r["ours_ms"] for r in rows)
            et = sum(r["count"] * r["torch_ms"] for r in rows)
            L.append(f"| {dt} {lay} batch {b} ({sum(r['count'] for r in rows)} convs) | {so:.3f} | {st:.3f} | "
                     f"{so / st:.3f} | {eo:.3f} | {et:.3f} | {eo / et:.3f} |")
        L.append("")
    L += ["| op | shape | dtype | layout | batch | solver | paskdnn graph ms | torch graph ms | ratio | paskdnn eager ms "
          "| torch eager ms | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["parity"]:
        go, gt = r["ours_graph_ms"], r["torch_graph_ms"]
        gr = f"{go / gt:.3f}" if go and gt else "-"
        L.append(f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['layout']} | {r['batch']} | {r['solver']} | "
                 f"{go or float('nan'):.4f} | {gt or float('nan'):.4f} | {gr} | {r['ours_ms']:.4f} | "
                 f"{r['torch_ms']:.4f} | {r['ours_ms'] / r['torch_ms']:.3f} |")
    L += ["\n## Plan build per ResNet-50 layer (fp16 NHWC, batch 1, fresh context, built on the caller)\n",
          "| layer | convs | epilogue | first call ms | plan build (load) ms | heuristics ms | finalize ms | "
          "configs tried | error |", "|---|---|---|---|---|---|---|---|---|"]
    for r in d["plan_costs"]:
        L.append(f"| {r['layer']} | {r['count']} | {'bias+relu' if r['fused'] else 'none'} | {r['first_call_ms']:.1f} | "
                 f"{r['load_ms']:.1f} | {r['heuristics_ms']:.1f} | {r['finalize_ms']:.1f} | {r['finalize_tries']} | "
                 f"{r['error']} |")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench/results/cudnn.md")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    reps = 5 if args.quick else 20
    work = tempfile.mkdtemp()
    shapes = conv_layers("resnet50")
    t0 = time.perf_counter()
    handle_ms, costs = plan_costs(work, shapes, args.quick)
    print(f"plan costs done [{time.perf_counter() - t0:.1f}s]", flush=True)
    rows = parity(work, shapes, args.quick, reps)
    meta = dict(card=torch.cuda.get_device_name(), date=datetime.date.today().isoformat(),
                command="python3 bench/cudnn_ops.py" + (" --quick" if args.quick else ""), torch=torch.__version__,
                cudnn=torch.backends.cudnn.version(), paskdnn=paskdnn.__version__)
    data = dict(meta=meta, handle_ms=handle_ms, plan_costs=costs, parity=rows)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(data, f, indent=1)
    text = render(data)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
