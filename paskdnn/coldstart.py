"""The main job: time-to-first-inference of a model under each policy, each in
a fresh process, with the user cache cold (empty) and warm.

    python -m paskdnn coldstart --model resnet50 [--device cpu|cuda] [--repeats 3]

Each run is a child process (``python -m paskdnn coldstart-child``) that
imports paskdnn, creates a context, builds the model (seeded random weights),
gives its hints, and times the first inference from process start and from
model-ready, then the steady state. The parent prints a table, writes
coldstart.json, coldstart.png (bar chart) and timeline.png (loads per loader
thread against layers on the caller, from the pask cold run's trace).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

POLICIES = ("reactive", "proactive", "reuse", "pask")


def child(argv: List[str]) -> int:
    """One measured process; writes its result as JSON to --json-out."""
    ap = argparse.ArgumentParser(prog="python -m paskdnn coldstart-child")
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--layout", default="NHWC")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steady", type=int, default=20)
    ap.add_argument("--trace", default="")
    ap.add_argument("--weights", default=None, help="torchvision-style .npz (default: seeded random)")
    ap.add_argument("--save-output", default="", help="write the first inference's output (.npy)")
    ap.add_argument("--input", default="", help="an NCHW .npy input (default: seeded random)")
    ap.add_argument("--json-out", required=True)
    a = ap.parse_args(argv)
    t_spawn = float(os.environ.get("PASKDNN_T_SPAWN", time.time()))
    import numpy as np

    import paskdnn
    from paskdnn import graph as G
    from paskdnn import models

    t_import = time.time()
    ctx = paskdnn.Context(a.device, policy=a.policy, cache_dir=a.cache_dir)
    t_context = time.time()
    g = models.build(a.model, weights=a.weights, seed=0, layout=a.layout, dtype=a.dtype)
    runner = G.Runner(g, ctx, batch=a.batch, hints=True)
    if a.input:
        host = np.load(a.input).astype(np.float32)
        if a.layout == "NHWC":
            host = np.ascontiguousarray(host.transpose(0, 2, 3, 1))
    else:
        host = np.random.default_rng(0).standard_normal(runner.shapes[g.input_name]).astype(np.float32)
    x = runner.input(host)
    t_ready = time.time()
    y = runner.run(x)
    t_first = time.time()
    first_enqueue_ms = runner.last_enqueue_ms
    report = runner.report
    first_stats = ctx.stats()
    out = y.numpy() if hasattr(y, "numpy") and not isinstance(y, np.ndarray) else np.asarray(y)
    if a.save_output:
        np.save(a.save_output, out)
    if not np.isfinite(out).all():
        print("coldstart: the first inference produced non-finite values", file=sys.stderr)
        return 3
    if a.trace:  # the first inference only: loads against layers
        ctx.export_trace(a.trace)
    ctx.wait_loads(timeout=600)
    steady = []
    for _ in range(a.steady):
        t0 = time.perf_counter()
        runner.run(x, record=False)
        steady.append((time.perf_counter() - t0) * 1e3)
    result = dict(model=a.model, device=a.device, policy=a.policy, layout=a.layout, dtype=a.dtype, batch=a.batch,
                  import_ms=(t_import - t_spawn) * 1e3, context_ms=(t_context - t_import) * 1e3,
                  model_ready_ms=(t_ready - t_spawn) * 1e3,
                  first_from_start_ms=(t_first - t_spawn) * 1e3, first_from_ready_ms=(t_first - t_ready) * 1e3,
                  first_enqueue_ms=first_enqueue_ms,
                  steady_ms=statistics.median(steady), stats=first_stats, layers=report,
                  output_checksum=float(np.abs(out.astype(np.float64)).sum()))
    with open(a.json_out, "w") as f:
        json.dump(result, f)
    return 0


def _run_child(args: argparse.Namespace, policy: str, cache_dir: str, work: str, trace: str = "") -> Dict[str, Any]:
    out = os.path.join(work, f"r{time.time_ns()}.json")
    cmd = [sys.executable, "-m", "paskdnn", "coldstart-child", "--model", args.model, "--device", args.device,
           "--policy", policy, "--cache-dir", cache_dir, "--layout", args.layout, "--dtype", args.dtype,
           "--batch", str(args.batch), "--steady", str(args.steady), "--json-out", out]
    if trace:
        cmd += ["--trace", trace]
    env = dict(os.environ, PASKDNN_T_SPAWN=repr(time.time()))
    env.pop("PASKDNN_HINTS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the {policy} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(out) as f:
        return json.load(f)


def _device_default() -> str:
    try:
        import paskdnn

        return "cuda" if paskdnn.device_count("cuda") > 0 else "cpu"
    except Exception:
        return "cpu"


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m paskdnn coldstart", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="resnet18, resnet50, vgg16 or mobilenet_v2")
    ap.add_argument("--device", default="", help="cpu or cuda[:N] (default: cuda when a GPU is found)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layout", default="NHWC")
    ap.add_argument("--dtype", default="", help="float32 (CPU default), float16 (GPU default), bfloat16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steady", type=int, default=20,
                    help="steady-state runs after the loads settle (median reported; a GPU context times six "
                         "runs of each layer after the first inference to rank its solvers, so later runs are "
                         "its steady state)")
    ap.add_argument("--out", default="coldstart-results", help="folder for JSON and figures")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per child process")
    args = ap.parse_args(argv)
    from . import models

    if args.model not in models.MODELS:
        print(f"coldstart: unknown model {args.model!r}; choose from {', '.join(models.MODELS)}", file=sys.stderr)
        return 2
    args.device = args.device or _device_default()
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    policies = [p for p in args.policies.split(",") if p]
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        print(f"coldstart: unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="paskdnn-coldstart-")
    runs: List[Dict[str, Any]] = []
    total = len(policies) * 2 * args.repeats
    done = 0
    print(f"paskdnn coldstart: {args.model} on {args.device}, {args.dtype} {args.layout}, batch {args.batch}; "
          f"{total} fresh processes", flush=True)
    try:
        for cache in ("cold", "warm"):
            for policy in policies:
                warm_dir = os.path.join(work, f"warm-{policy}")
                if cache == "warm":  # one untimed run fills the cache
                    _run_child(args, policy, warm_dir, work)
                for rep in range(args.repeats):
                    cdir = os.path.join(work, f"cold-{policy}-{rep}") if cache == "cold" else warm_dir
                    trace = os.path.join(args.out, "trace-pask-cold.json") if (
                        cache == "cold" and policy == "pask" and rep == 0) else ""
                    r = _run_child(args, policy, cdir, work, trace)
                    r["cache"] = cache
                    runs.append(r)
                    done += 1
                    print(f"  [{done:>2}/{total}] {policy:<9} {cache} cache: first inference "
                          f"{r['first_from_ready_ms']:8.1f} ms after model-ready "
                          f"({r['first_from_start_ms']:8.1f} ms from process start), steady {r['steady_ms']:7.2f} ms",
                          flush=True)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"coldstart failed: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs, policies)
    doc = dict(model=args.model, device=args.device, dtype=args.dtype, layout=args.layout, batch=args.batch,
               repeats=args.repeats, date=time.strftime("%Y-%m-%d"), command="python -m paskdnn coldstart " +
               " ".join(argv), summary=summary, runs=runs)
    with open(os.path.join(args.out, "coldstart.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print_table(summary, args)
    figs = plot(doc, args.out)
    print(f"wrote {os.path.join(args.out, 'coldstart.json')}" + "".join(f", {p}" for p in figs))
    return 0


def summarize(runs: List[Dict[str, Any]], policies: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for cache in ("cold", "warm"):
        base = None
        for policy in policies:
            rs = [r for r in runs if r["policy"] == policy and r["cache"] == cache]
            row = dict(policy=policy, cache=cache,
                       first_from_start_ms=statistics.median(r["first_from_start_ms"] for r in rs),
                       first_from_ready_ms=statistics.median(r["first_from_ready_ms"] for r in rs),
                       steady_ms=statistics.median(r["steady_ms"] for r in rs),
                       blocking_loads=statistics.median(r["stats"]["blocking_loads"] for r in rs),
                       reuses=statistics.median(r["stats"]["reuses"] for r in rs),
                       compiles=statistics.median(r["stats"]["compiles"] for r in rs))
            if policy == "reactive":
                base = row["first_from_ready_ms"]
            row["speedup_vs_reactive"] = (base / row["first_from_ready_ms"]) if base else None
            row["first_over_steady"] = row["first_from_ready_ms"] / row["steady_ms"]
            rows.append(row)
    return rows


def print_table(rows: List[Dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{args.model}, {args.device}, {args.dtype} {args.layout}, batch {args.batch}: medians of "
          f"{args.repeats} fresh processes")
    print(f"{'policy':<10} {'cache':<5} {'first (start)':>14} {'first (ready)':>14} {'steady':>9} "
          f"{'first/steady':>12} {'vs reactive':>11} {'loads':>6} {'reuses':>6} {'compiles':>8}")
    for r in rows:
        vs = f"{r['speedup_vs_reactive']:.2f}x" if r["speedup_vs_reactive"] else "-"
        print(f"{r['policy']:<10} {r['cache']:<5} {r['first_from_start_ms']:>11.1f} ms {r['first_from_ready_ms']:>11.1f} ms "
              f"{r['steady_ms']:>6.2f} ms {r['first_over_steady']:>11.2f}x {vs:>11} {r['blocking_loads']:>6.0f} "
              f"{r['reuses']:>6.0f} {r['compiles']:>8.0f}")


def plot(doc: Dict[str, Any], out: str) -> List[str]:
    """The bar chart and the timeline; skipped (with a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("coldstart: matplotlib is not installed; no figures (pip install 'paskdnn[plots]')")
        return []
    paths = []
    rows = doc["summary"]
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.38
    for i, cache in enumerate(("cold", "warm")):
        vals = [next(r["first_from_ready_ms"] for r in rows if r["policy"] == p and r["cache"] == cache)
                for p in policies]
        bars = ax.bar([k + (i - 0.5) * width for k in range(len(policies))], vals, width, label=f"{cache} user cache")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    steady = statistics.median(r["steady_ms"] for r in rows)
    ax.axhline(steady, color="gray", linestyle="--", linewidth=1, label=f"steady state ({steady:.1f} ms)")
    ax.set_xticks(range(len(policies)), policies)
    ax.set_ylabel("first inference after model-ready (ms)")
    ax.set_title(f"{doc['model']} on {doc['device']} ({doc['dtype']} {doc['layout']}, batch {doc['batch']}): "
                 f"time to first inference")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = os.path.join(out, "coldstart.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    trace_path = os.path.join(out, "trace-pask-cold.json")
    if os.path.exists(trace_path):
        p = os.path.join(out, "timeline.png")
        timeline(trace_path, p, f"{doc['model']} on {doc['device']}, pask policy, cold cache: first inference", plt)
        paths.append(p)
    return paths


def timeline(trace_path: str, png: str, title: str, plt: Any) -> None:
    with open(trace_path) as f:
        events = json.load(f)["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    spans = [e for e in events if e.get("ph") == "X"]
    if not spans:
        return
    t0 = min(e["ts"] for e in spans)
    span = max(e["ts"] + e["dur"] for e in spans) - t0
    rows = sorted(names, key=lambda t: (names[t].startswith("loader"), names[t]))
    colors = {"resident": "tab:green", "reuse": "tab:orange", "waited": "tab:purple", "blocking_load": "tab:red"}
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.6 * len(rows)))
    for y, tid in enumerate(rows):
        for e in spans:
            if e["tid"] != tid:
                continue
            c = "tab:blue" if e.get("cat") == "load" else colors.get(e.get("args", {}).get("decision"), "tab:gray")
            # at least 0.3% of the axis, so sub-millisecond loads stay visible
            ax.barh(y, max(e["dur"], span * 0.003) / 1e3, left=(e["ts"] - t0) / 1e3, color=c, edgecolor="none")
    ax.set_yticks(range(len(rows)), [names[t] for t in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the context was created")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ["tab:blue", *colors.values()]]
    ax.legend(handles, ["kernel load", "layer: resident", "layer: reuse", "layer: waited", "layer: blocking load"],
              fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
