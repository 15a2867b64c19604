"""Where a fresh process's first inference goes, read from the context's trace.

Runs ``python -m paskdnn coldstart-child`` once (policy pask, an empty cache
folder, the first inference traced) and reads its trace: the first inference's
time from model-ready, the host time inside calls, the host time per solver,
the slowest calls with what the loader threads were doing meanwhile (loads,
cuDNN plan builds), and every failed load with its message. With --after-loads
it also builds the same runner in this process, waits for every load, and traces
one more first run: a call still slow then is slow on its own (a library's lazy
set-up), not for want of a kernel.

    python3 bench/first_trace.py --model resnet50 --device cuda [--dtype float16] [--layout NHWC]
    python3 bench/first_trace.py --model model.onnx --device cuda --after-loads [--json-out FILE]
    python3 bench/first_trace.py --model torchvision:mnasnet1_0 --device cuda --after-loads   (needs torch)

Session 16 (H200) used it to find mnasnet's 16 ms first inference in three cuDNN
calls (the driver's lazy loading of their kernels) and the classifier gemm queued
behind every plan build (bench/results/first-inference-diag-h200-2026-12-06-session16.txt).
"""
import argparse
import collections
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List

from paskdnn import coldstart


def _events(path: str) -> List[Dict[str, Any]]:
    with open(path) as f:
        doc = json.load(f)
    return doc["traceEvents"] if isinstance(doc, dict) else doc


def summarize(events: List[Dict[str, Any]], top: int, last_thread: bool = False) -> Dict[str, Any]:
    """The first inference's calls in a trace: totals, per solver, the slowest
    (each with the loader-side events that overlapped it), and the failed loads.
    last_thread: only the calls of the thread that made the last call."""
    calls = sorted((e for e in events if e.get("cat") == "call"), key=lambda e: e["ts"])
    if last_thread and calls:
        calls = [e for e in calls if e["tid"] == calls[-1]["tid"]]
    side = [e for e in events if e.get("ph") == "X" and e.get("cat") not in ("call", None)]
    # plans' first runs held back while calls ran (option loader_yield_ms): waits, not work
    yields = [e for e in side if e["name"] == "cudnn yield"]
    side = [e for e in side if e["name"] != "cudnn yield"]
    by_solver: Dict[str, float] = collections.defaultdict(float)
    for e in calls:
        by_solver[e["args"]["solver"]] += e["dur"] / 1e3
    slowest = []
    for e in sorted(calls, key=lambda e: -e["dur"])[:top]:
        t0, t1 = e["ts"], e["ts"] + e["dur"]
        slowest.append(dict(ms=e["dur"] / 1e3, solver=e["args"]["solver"], decision=e["args"]["decision"],
                            problem=e["args"]["problem"],
                            meanwhile=[dict(cat=o["cat"], name=o["name"], ms=o["dur"] / 1e3)
                                       for o in side if o["ts"] < t1 and o["ts"] + o["dur"] > t0]))
    failed = [dict(name=o["name"], error=o.get("args", {}).get("error", ""))
              for o in side if o.get("cat") == "load" and o["name"].startswith("load failed")]
    # each cuDNN plan's first run on its loader thread (inside its load, same thread)
    loads = [o for o in side if o.get("cat") == "load" and o["name"].startswith("load ")]
    first_runs = []
    for o in side:
        if o["name"] != "cudnn first run":
            continue
        owner = next((L for L in loads if L["tid"] == o["tid"] and L["ts"] <= o["ts"] and
                      o["ts"] + o["dur"] <= L["ts"] + L["dur"]), None)
        first_runs.append(dict(ms=o["dur"] / 1e3, engine=o.get("args", {}).get("engine"),
                               kernel=owner["args"].get("kernel", owner["name"]) if owner else ""))
    first_runs.sort(key=lambda r: -r["ms"])
    span = (calls[-1]["ts"] + calls[-1]["dur"] - calls[0]["ts"]) / 1e3 if calls else 0.0
    return dict(calls=len(calls), span_ms=span, in_calls_ms=sum(e["dur"] for e in calls) / 1e3,
                by_solver=dict(sorted(by_solver.items(), key=lambda kv: -kv[1])),
                decisions=dict(collections.Counter(e["args"]["decision"] for e in calls)),
                slowest=slowest, failed_loads=failed, loader_first_runs=first_runs,
                first_runs_held_back=dict(n=len(yields), ms=sum(e["dur"] for e in yields) / 1e3),
                loads=sum(1 for o in side if o.get("cat") == "load"))


def report(s: Dict[str, Any]) -> str:
    lines = [f"{s['calls']} calls over {s['span_ms']:.2f} ms, {s['in_calls_ms']:.2f} ms of it inside calls; "
             f"decisions {s['decisions']}; {s['loads']} loads traced, {len(s['failed_loads'])} failed",
             "host ms per solver: " + ", ".join(f"{k} {v:.2f}" for k, v in s["by_solver"].items()),
             "slowest calls:"]
    for c in s["slowest"]:
        lines.append(f"  {c['ms']:7.2f} ms  {c['solver']:26s} {c['decision']:13s} {c['problem'][:100]}")
        for o in c["meanwhile"][:4]:
            lines.append(f"             meanwhile {o['cat']:6s} {o['ms']:7.2f} ms  {o['name'][:80]}")
    held = s.get("first_runs_held_back", {})
    if held.get("n"):
        lines.append(f"plans' first runs held back for a gap in the calls: {held['n']}, {held['ms']:.2f} ms in all")
    runs = s.get("loader_first_runs", [])
    if runs:
        lines.append(f"cuDNN plans' first runs on the loader threads: {len(runs)}, "
                     f"{sum(r['ms'] for r in runs):.2f} ms in all; the longest:")
        for r in runs[:6]:
            lines.append(f"  {r['ms']:7.2f} ms  engine {r['engine']}  {r['kernel'][:150]}")
    for f in s["failed_loads"][:10]:
        lines.append(f"failed: {f['name'][:90]}: {f['error'][:300]}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50",
                    help="a zoo model, an .onnx file, or torchvision:NAME (exported as bench/peer_onnx.py does)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="", help="default: float16 on a GPU, float32 on the CPU")
    ap.add_argument("--layout", default="NHWC")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--top", type=int, default=8, help="how many of the slowest calls to show")
    ap.add_argument("--after-loads", action="store_true", help="also a traced first run once every load is done")
    ap.add_argument("--probe-thread", action="store_true",
                    help="with --after-loads: run once on another thread before the traced run on this one")
    ap.add_argument("--json-out", default="")
    a = ap.parse_args()
    dtype = a.dtype or ("float32" if a.device == "cpu" else "float16")
    work = tempfile.mkdtemp(prefix="paskdnn-first-trace-")
    if a.model.startswith("torchvision:"):  # exported as bench/peer_onnx.py does (needs torch)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import peer_onnx

        model = peer_onnx._export(a.model.split(":", 1)[1], work)[0]
    else:
        model = os.path.abspath(a.model) if a.model.lower().endswith(".onnx") else a.model
    trace = os.path.join(work, "trace.json")
    # one process as the main job runs it (python -m paskdnn coldstart-child), its first inference traced
    run = argparse.Namespace(model=model, device=a.device, layout=a.layout, dtype=dtype, batch=a.batch, steady=5,
                             timeout=600)
    try:
        child = coldstart._run_child(run, "pask", os.path.join(work, "cache"), work, trace)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    doc: Dict[str, Any] = dict(model=a.model, device=a.device, dtype=dtype, layout=a.layout, batch=a.batch,
                               first_from_ready_ms=child["first_from_ready_ms"], steady_ms=child["steady_ms"],
                               cold=summarize(_events(trace), a.top))
    print(f"{a.model} on {a.device}, {dtype} {a.layout}, batch {a.batch}: first inference "
          f"{child['first_from_ready_ms']:.2f} ms from model-ready (steady {child['steady_ms']:.2f} ms)")
    print(report(doc["cold"]))
    if a.after_loads:
        doc["after_loads"] = after_loads(a, model, dtype, work)
        probe = doc["after_loads"].get("probe_thread_first_run_ms")
        print(f"\nthe same runner once every load is done, its first run ({doc['after_loads']['first_run_ms']:.2f} ms"
              + (f"; after a first run on another thread, {probe:.2f} ms" if probe is not None else "") + "):")
        print(report(doc["after_loads"]))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


def after_loads(a: argparse.Namespace, model: str, dtype: str, work: str) -> Dict[str, Any]:
    """A runner built in this process, its loads waited for, then one traced first run."""
    import numpy as np

    import paskdnn
    from paskdnn import graph as G
    from paskdnn import models

    ctx = paskdnn.Context(a.device, policy="pask", trace=True, cache_dir=os.path.join(work, "cache-after"))
    if model.lower().endswith(".onnx"):
        g = paskdnn.load_onnx(model, layout=a.layout, dtype=dtype, batch=a.batch)
    else:
        g = models.build(model, seed=0, layout=a.layout, dtype=dtype)
    runner = G.Runner(g, ctx, batch=a.batch, hints=True)
    x = runner.input(np.random.default_rng(0).standard_normal(runner.shapes[g.input_name]).astype(np.float32))
    ctx.wait_loads(timeout=600)
    probe_ms = None
    if a.probe_thread:  # one run on another thread first: is what stays slow per thread, or per process?
        import threading

        box = {}

        def probe():
            t = time.perf_counter()
            runner.run(x)
            ctx.synchronize()
            box["ms"] = (time.perf_counter() - t) * 1e3

        th = threading.Thread(target=probe)
        th.start()
        th.join()
        probe_ms = box.get("ms")
    t0 = time.perf_counter()
    runner.run(x)
    ctx.synchronize()
    ms = (time.perf_counter() - t0) * 1e3
    path = os.path.join(work, "after.json")
    ctx.export_trace(path)
    ctx.close()
    s = summarize(_events(path), a.top, last_thread=a.probe_thread)
    s["first_run_ms"] = ms
    if probe_ms is not None:
        s["probe_thread_first_run_ms"] = probe_ms
    return s


if __name__ == "__main__":
    sys.exit(main())
