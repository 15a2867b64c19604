"""Steady state against PyTorch (device machine; issue 17's table in one run).

Results: bench/results/steady-h200-2026-12-05-session9.* and
steady-h100-2026-12-05-session10-* (and later ones beside them).

For each zoo model and batch size, in one process per (model, batch), fp16 NHWC /
channels_last, the same seeded weights (torchvision state_dict names) for both:

    PyTorch eager          model(x) on a channels_last fp16 eval model
    PyTorch CUDA graph     the same model captured with torch.cuda.graph and replayed
    paskdnn eager          graph.Runner(capture=False), policy pask, after the loads settle
    paskdnn captured       graph.Runner (capture on), replaying its CUDA graph

Each figure is the median of --runs timed runs (ms per inference, host wall time
from the call to the stream's end) after --warmup runs; the paskdnn runners
first run until their kernels have settled (loads done, the captured runner
replaying). The output agreement of each paskdnn runner with PyTorch float32 is
printed as the max relative error.

    python bench/steady.py [--models resnet50,mobilenet_v2,vgg16,resnet18] [--batches 1,32]
                           [--runs 30] [--warmup 20] [--settle 60] [--out bench/results/steady.json]
                           [--kernels N]

--kernels N also profiles the GPU kernels (torch.profiler, CUPTI) of PyTorch's
graph replay and of paskdnn's captured runner: kernel time per inference, set
against the wall time, tells launch gaps from slow kernels; the N largest
kernels name the layers to look at.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def child(a) -> None:
    import torch
    import torchvision

    import paskdnn
    from paskdnn import graph as G
    from paskdnn import models

    sd = models.state_dict(a.model, seed=0)
    torch_model = getattr(torchvision.models, a.model)(weights=None)
    torch_model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, strict=False)
    model = torch_model.eval().to("cuda", torch.float16).to(memory_format=torch.channels_last)
    host = np.random.default_rng(0).standard_normal((a.batch, 3, 224, 224)).astype(np.float32)
    x = torch.from_numpy(host).to("cuda", torch.float16).to(memory_format=torch.channels_last)

    def timed(fn, sync):
        for _ in range(a.warmup):
            fn()
        sync()
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    row = dict(model=a.model, batch=a.batch)

    def kernels(fn, n=10):
        """GPU kernel time per inference (CUPTI through torch.profiler: every
        kernel in the process, paskdnn's and cuDNN's too) and the largest kernels."""
        from torch.profiler import ProfilerActivity, profile

        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                fn()
            torch.cuda.synchronize()
        per = []
        for k in prof.key_averages():
            us = getattr(k, "self_device_time_total", None)
            us = k.self_cuda_time_total if us is None else us
            if us > 0:
                per.append((us / 1e3 / n, k.count / n, k.key))
        per.sort(reverse=True)
        return dict(total_ms=round(sum(v[0] for v in per), 4), launches=round(sum(v[1] for v in per), 1),
                    top=[[round(ms, 4), c, name[:110]] for ms, c, name in per[:a.kernels]])
    with torch.no_grad():
        row["torch_eager_ms"] = timed(lambda: model(x), torch.cuda.synchronize)
        static_x = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm up on a side stream, as torch.cuda.graphs asks
            for _ in range(3):
                model(static_x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static_y = model(static_x)
        row["torch_graph_ms"] = timed(g.replay, torch.cuda.synchronize)
        if a.kernels:
            row["torch_graph_kernels"] = kernels(g.replay)
        ref = torch_model.float()(x.float()).cpu().numpy()
        del static_y

    ctx = paskdnn.Context("cuda", policy="pask")
    graph = models.build(a.model, weights=sd, seed=0, layout="NHWC", dtype="float16")
    nhwc = np.ascontiguousarray(host.transpose(0, 2, 3, 1))
    flat = ref.reshape(a.batch, -1)

    def agreement(y):
        out = np.asarray(y.numpy(), np.float64).reshape(a.batch, -1)
        return float(np.abs(out - flat).max() / max(np.abs(flat).max(), 1e-30))

    for name, capture in (("paskdnn_eager", False), ("paskdnn_captured", True)):
        runner = G.Runner(graph, ctx, batch=a.batch, capture=capture)
        xin = runner.input(nhwc)
        # until the loads (and the ranker's timed explorations and trials) are
        # done and the captured runner replays, for at most --settle seconds: a
        # cold cache compiles specialised kernels with NVRTC (12-33 s a variant),
        # which a cap on runs (3000 runs of 1 ms at batch 1) cut short
        t_settle, settle_runs = time.perf_counter(), 0
        last, flips, decisions = {}, {}, {}  # the captured runner's eager runs: what kept it from settling
        while time.perf_counter() - t_settle < a.settle:
            runner.run(xin, record=False)
            settle_runs += 1
            for r in runner.report:
                if r["layer"] in last and last[r["layer"]] != r["solver"]:
                    flips[r["layer"]] = flips.get(r["layer"], 0) + 1
                last[r["layer"]] = r["solver"]
                if r["decision"] != "resident":
                    key = f"{r['layer']}={r['decision']}"
                    decisions[key] = decisions.get(key, 0) + 1
            if ctx.wait_loads(0) and (not capture or runner.captured):
                break
        row[name + "_settle_runs"] = settle_runs
        if capture:  # layers whose solver changed between eager runs, and non-resident decisions, most first
            row[name + "_solver_changes"] = sorted(flips.items(), key=lambda kv: -kv[1])[:12]
            row[name + "_not_resident"] = sorted(decisions.items(), key=lambda kv: -kv[1])[:12]
        if capture and not runner.captured:
            row[name + "_note"] = runner.capture_note or "never settled: " + ", ".join(
                sorted({f"{r['layer']}={r['decision']}" for r in runner.report if r["decision"] != "resident"})[:8])
        row[name + "_ms"] = timed(lambda: runner.run(xin, record=False), lambda: None)
        if a.kernels and capture:
            row[name + "_kernels"] = kernels(lambda: runner.run(xin, record=False))
        row[name + "_max_rel_err"] = agreement(runner.run(xin))
        runner.run(xin, timed=True)  # eager, a sync per layer: which solvers serve the model
        row[name + "_solvers"] = sorted({r["solver"] for r in runner.report})
        if not capture:  # where the time goes: each layer with a sync after it (host launch included)
            row["layers"] = [[r["layer"], r["solver"], round(r["ms"], 4)] for r in runner.report]
        if capture:
            row["captures"], row["replays"] = runner.captures, runner.replays
        runner.close()
    ctx.close()
    json.dump(row, open(a.json_out, "w"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vgg16,resnet18")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--settle", type=float, default=60.0,
                    help="seconds each paskdnn runner may run before it is timed, for its loads to land "
                         "(default: %(default)s)")
    ap.add_argument("--out", default="")
    ap.add_argument("--kernels", type=int, default=0, metavar="N",
                    help="also profile the GPU kernels of PyTorch's graph replay and paskdnn's captured "
                         "runs (torch.profiler): kernel time per inference and the N largest kernels")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in a.models.split(","):
            for batch in (int(b) for b in a.batches.split(",")):
                out = os.path.join(work, f"{model}-{batch}.json")
                cmd = [sys.executable, __file__, "--child", "--model", model, "--batch", str(batch), "--runs",
                       str(a.runs), "--warmup", str(a.warmup), "--settle", str(a.settle), "--kernels",
                       str(a.kernels), "--json-out", out]
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
                if p.returncode:
                    print(f"{model} batch {batch} failed:\n{p.stderr[-3000:]}", file=sys.stderr)
                    continue
                rows.append(json.load(open(out)))
                print(json.dumps(rows[-1]), flush=True)  # each row as it comes: a cut-off run keeps what it measured
                if a.out:
                    with open(a.out, "w") as f:
                        json.dump(rows, f, indent=1)
    cols = ("torch_eager_ms", "torch_graph_ms", "paskdnn_eager_ms", "paskdnn_captured_ms")
    print("| model | batch | PyTorch eager | PyTorch CUDA graph | paskdnn eager | paskdnn captured | captured / graph |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["paskdnn_captured_ms"] / r["torch_graph_ms"]
        print(f"| {r['model']} | {r['batch']} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + f" | {ratio:.2f}x |")
    for r in rows:
        for who in ("torch_graph", "paskdnn_captured"):
            k = r.get(who + "_kernels")
            if not k:
                continue
            print(f"{r['model']} batch {r['batch']} {who}: {k['total_ms']:.3f} ms of kernels an inference, "
                  f"{k['launches']:.0f} kernels")
            for ms, count, name in k["top"]:
                print(f"  {ms:8.4f} ms  x{count:<5g} {name}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
