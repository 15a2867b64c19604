"""The main job: time-to-first-inference of a model under each policy, each in
a fresh process, with the user cache cold (empty) and warm.

    python -m paskdnn coldstart --model resnet50|FILE.onnx [--device cpu|cuda] [--repeats 3]

Each run is a child process (python -m paskdnn coldstart-child) that imports
paskdnn, creates a context, builds the model (seeded random weights), gives its
hints, and times the first inference from process start and from model-ready,
then the steady state. The parent checks the arguments, prints a table and
writes coldstart.md (the table and what a kernel load costs on the device),
coldstart.json, coldstart.png (bar chart; on a device other than CUDA, beside
the GPU result kept in bench/results/coldstart.md), timeline.png (loads per
loader thread against layers on the caller) and trace-pask-cold.json (the pask
cold run's Chrome trace, from which the timeline is drawn).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

POLICIES = ("reactive", "proactive", "reuse", "pask")


def _run_child(args: argparse.Namespace, policy: str, cache_dir: str, work: str, trace: str = "") -> Dict[str, Any]:
    out = os.path.join(work, f"r{time.time_ns()}.json")
    cmd = [sys.executable, "-m", "paskdnn", "coldstart-child", "--model", args.model, "--device", args.device,
           "--policy", policy, "--cache-dir", cache_dir, "--layout", args.layout, "--dtype", args.dtype,
           "--batch", str(args.batch), "--steady", str(args.steady), "--json-out", out]
    if trace:
        cmd += ["--trace", trace]
    if getattr(args, "bundle", ""):
        cmd += ["--bundle", os.path.abspath(args.bundle)]
    env = dict(os.environ, PASKDNN_T_SPAWN=repr(time.time()))
    env.pop("PASKDNN_HINTS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the {policy} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(out) as f:
        return json.load(f)


def is_onnx(model: str) -> bool:
    """--model names an ONNX file (else a zoo model)."""
    return model.lower().endswith(".onnx")


def _model(text: str) -> str:
    """--model: a zoo name, or an existing .onnx file (made absolute: the children run elsewhere)."""
    from .models import MODELS

    if is_onnx(text):
        if not os.path.isfile(text):
            raise argparse.ArgumentTypeError(f"{text}: no such file")
        return os.path.abspath(text)
    if text not in MODELS:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a zoo model ({', '.join(MODELS)}) nor an .onnx file")
    return text


def _device_default() -> str:
    try:
        import paskdnn

        return "cuda" if paskdnn.device_count("cuda") > 0 else "cpu"
    except Exception:
        return "cpu"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _policies(text: str) -> List[str]:
    names = [p for p in text.split(",") if p]
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown policy {bad[0] if bad else text!r}; "
                                         f"choose from {', '.join(POLICIES)} (comma-separated)")
    return list(dict.fromkeys(names))


def _device(text: str) -> str:
    if text and not re.fullmatch(r"cpu|(cuda|hip)(:\d+)?", text):  # "": the default, picked later
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda, cuda:N, hip or hip:N")
    return text


DTYPES = ("float32", "float16", "bfloat16")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The coldstart command's options (on its subparser of python -m paskdnn)."""
    from .models import MODELS

    ap.add_argument("--model", default="resnet50", type=_model, metavar="{" + ",".join(MODELS) + "} or FILE.onnx",
                    help="a zoo model (built with seeded random weights) or your own ONNX model (imported with "
                         "paskdnn.load_onnx; its import counts in model-ready; needs pip install 'paskdnn[onnx]') "
                         "(default: %(default)s)")
    ap.add_argument("--device", default="", type=_device,
                    help="cpu, cuda[:N] or hip[:N] (default: cuda when a GPU is found, else cpu)")
    ap.add_argument("--policies", default=list(POLICIES), type=_policies, metavar="P1,P2,...",
                    help=f"comma-separated policies to time, from {', '.join(POLICIES)} "
                         f"(default: {','.join(POLICIES)}); reactive is the baseline of 'vs reactive'")
    ap.add_argument("--repeats", type=_positive_int, default=3, metavar="N",
                    help="fresh processes per policy and cache state; the table shows their medians "
                         "(default: %(default)s)")
    ap.add_argument("--layout", default="NHWC", choices=("NCHW", "NHWC"),
                    help="activation layout the model runs in (default: %(default)s)")
    ap.add_argument("--dtype", default="", choices=("",) + DTYPES, metavar="{" + ",".join(DTYPES) + "}",
                    help="float32 (the CPU's only dtype, its default), float16 (the GPU default) or bfloat16 "
                         "(GPU only)")
    ap.add_argument("--batch", type=_positive_int, default=1, metavar="N",
                    help="input batch size (default: %(default)s)")
    ap.add_argument("--steady", type=_positive_int, default=20, metavar="N",
                    help="steady-state runs after the loads settle (median reported; a GPU context times six "
                         "runs of each layer after the first inference to rank its solvers, so later runs are "
                         "its steady state; on a GPU as many again once the runner replays its captured CUDA "
                         "graph, reported as 'captured') (default: %(default)s)")
    ap.add_argument("--out", default="coldstart-results", metavar="DIR",
                    help="folder for coldstart.md, coldstart.json, the figures and the trace, created when "
                         "missing (default: %(default)s)")
    ap.add_argument("--timeout", type=_positive_int, default=600, metavar="S",
                    help="seconds per child process (default: %(default)s)")
    ap.add_argument("--bundle", default="", metavar="FILE.pask",
                    help="run the model from a bundle (python -m paskdnn precompile); its model, dtype and layout "
                         "replace --model, --dtype and --layout, and --batch must be one of its batch sizes")


def check_arguments(args: argparse.Namespace, ap: argparse.ArgumentParser) -> None:
    """Fills the device and dtype defaults and refuses, through ap.error (exit 2), what the
    children could not run: a GPU device without a GPU, a dtype the device does not have."""
    if args.device:
        kind, _, index = args.device.partition(":")
        if kind != "cpu":
            try:
                import paskdnn

                count = paskdnn.device_count(kind)
            except Exception as e:  # the library itself did not load: say so in one line
                ap.error(f"--device {args.device}: could not ask for {kind} devices ({type(e).__name__}: {e})")
            if count == 0:  # not a usage mistake: one line, no usage, exit 2 like the usage errors
                ap.exit(2, f"{ap.prog}: error: --device {args.device}: no {'CUDA' if kind == 'cuda' else 'HIP'} "
                           f"GPU found on this machine (leave --device out, or pass --device cpu, to run on the "
                           f"CPU)\n")
            if index and int(index) >= count:
                ap.error(f"--device {args.device}: this machine has {count} {kind} device(s), "
                         f"numbered 0 to {count - 1}")
    else:
        args.device = _device_default()
    if not args.dtype:
        args.dtype = "float16" if args.device.startswith("cuda") else "float32"
    if args.device == "cpu" and args.dtype != "float32":
        ap.error(f"--dtype {args.dtype} --device cpu: the CPU backend is float32-only; "
                 f"pass --dtype float32 (the CPU default) or run on a GPU (--device cuda)")


def _bundle_arguments(args: argparse.Namespace, ap: argparse.ArgumentParser) -> None:
    """--bundle: the model, dtype and layout come from the bundle (checked here, once)."""
    from .bundle import Bundle, BundleError

    try:
        b = Bundle.open(args.bundle)
    except BundleError as e:
        ap.exit(2, f"{ap.prog}: error: --bundle {e}\n")
    m = b.index.get("model", {})
    b.close()
    batches = [int(x) for x in m.get("batches", [1])]
    if args.batch not in batches:
        ap.error(f"--batch {args.batch}: the bundle {args.bundle} was made for batch sizes "
                 f"{', '.join(map(str, batches))}")
    if args.dtype and args.dtype != m.get("dtype"):
        ap.error(f"--dtype {args.dtype}: the bundle {args.bundle} is {m.get('dtype')}")
    args.model, args.dtype, args.layout = str(m.get("name")), str(m.get("dtype")), str(m.get("layout"))


def main(argv: List[str]) -> int:
    """python -m paskdnn coldstart ARGS, called with ARGS."""
    ap = argparse.ArgumentParser(prog="python -m paskdnn coldstart", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run(ap.parse_args(argv), ap, ["coldstart", *argv])


def run(args: argparse.Namespace, ap: argparse.ArgumentParser, argv: List[str]) -> int:
    """Runs the main job with parsed arguments; argv (from "coldstart" on) is recorded as its command."""
    if getattr(args, "bundle", ""):
        _bundle_arguments(args, ap)
    check_arguments(args, ap)
    if is_onnx(args.model) and not getattr(args, "bundle", ""):  # an operator paskdnn cannot run is refused here
        try:
            import paskdnn

            paskdnn.load_onnx(args.model, layout=args.layout, dtype=args.dtype, batch=args.batch)
        except (paskdnn.UnsupportedError, ValueError, ImportError) as e:
            ap.error(f"--model {args.model}: {e}")
    policies = args.policies
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        ap.error(f"--out {args.out}: cannot create the folder ({e.strerror})")
    work = tempfile.mkdtemp(prefix="paskdnn-coldstart-")
    runs: List[Dict[str, Any]] = []
    total = len(policies) * 2 * args.repeats
    done = 0
    print(f"paskdnn coldstart: {args.model} on {args.device}, {args.dtype} {args.layout}, batch {args.batch}; "
          f"{total} fresh processes", flush=True)
    trace_path = os.path.join(args.out, "trace-pask-cold.json")
    try:
        for cache in ("cold", "warm"):
            for policy in policies:
                warm_dir = os.path.join(work, f"warm-{policy}")
                if cache == "warm":  # one untimed run fills the cache
                    _run_child(args, policy, warm_dir, work)
                for rep in range(args.repeats):
                    cdir = os.path.join(work, f"cold-{policy}-{rep}") if cache == "cold" else warm_dir
                    trace = trace_path if (cache == "cold" and policy == "pask" and rep == 0) else ""
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
    loads = load_costs(runs)
    reference = gpu_reference(args.model) if not args.device.startswith("cuda") else None
    doc = dict(model=args.model, device=args.device, dtype=args.dtype, layout=args.layout, batch=args.batch,
               repeats=args.repeats, date=time.strftime("%Y-%m-%d"),
               command="python -m paskdnn " + " ".join(argv), summary=summary, load_costs=loads,
               gpu_reference=reference, runs=runs)
    json_path = os.path.join(args.out, "coldstart.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    text = report(doc)
    print("\n" + text)
    md_path = os.path.join(args.out, "coldstart.md")
    with open(md_path, "w") as f:
        f.write(markdown(doc))
    figs = plot(doc, args.out)
    written = [md_path, json_path, *figs] + ([trace_path] if "pask" in policies else [])
    print("wrote " + ", ".join(written))
    return 0


def load_costs(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What a kernel load costs on this device, from the processes of this run: the mean
    load (and compile) time per kernel, and how long the caller waited for loads in the
    first inference of each policy with a cold cache."""
    def med(values):
        values = list(values)
        return statistics.median(values) if values else None

    with_loads = [r for r in runs if r["stats"]["loads"] > 0]
    with_compiles = [r for r in runs if r["stats"]["compiles"] > 0]
    waited = {}
    for policy in dict.fromkeys(r["policy"] for r in runs):
        rs = [r for r in runs if r["policy"] == policy and r["cache"] == "cold"]
        waited[policy] = dict(blocking_wait_ms=med(r["stats"]["blocking_wait_ms"] for r in rs),
                              first_from_ready_ms=med(r["first_from_ready_ms"] for r in rs))
    return dict(ms_per_load=med(r["stats"]["load_ms"] / r["stats"]["loads"] for r in with_loads),
                loads_per_process=med(r["stats"]["loads"] for r in runs),
                ms_per_compile=med(r["stats"]["compile_ms"] / r["stats"]["compiles"] for r in with_compiles),
                cold_first_inference=waited)


def gpu_reference(model: str) -> Optional[Dict[str, Any]]:
    """The GPU result kept in bench/results/coldstart.md for this model (a copy ships with the package)."""
    with open(Path(__file__).with_name("coldstart_reference.json")) as f:
        ref = json.load(f)
    rows = ref["models"].get(model)
    if not rows:
        return None
    return dict({k: v for k, v in ref.items() if k not in ("models", "about")},
                command=ref["command"].format(model=model), model=model, summary=rows)


def load_note(doc: Dict[str, Any]) -> str:
    """What a load costs here and what that leaves the policies to win, in words (from the measurements)."""
    lc = doc["load_costs"]
    if lc["ms_per_load"] is None:
        return f"No kernel was loaded in this run's processes on {doc['device']}: the policies had nothing to hide."
    s = (f"A kernel load on {doc['device']} costs {lc['ms_per_load']:.2f} ms here (measured in this run: "
         f"{lc['loads_per_process']:.0f} loads per process")
    if lc["ms_per_compile"] is not None:
        s += f"; a compile costs {lc['ms_per_compile']:.1f} ms"
    s += ")."
    base = lc["cold_first_inference"].get("reactive")
    if base and base["first_from_ready_ms"]:
        share = base["blocking_wait_ms"] / base["first_from_ready_ms"]
        s += (f" Reactive's cold first inference waited {base['blocking_wait_ms']:.1f} ms for loads out of "
              f"{base['first_from_ready_ms']:.1f} ms ({100 * share:.0f}%): that wait is all that loading ahead "
              f"(proactive, pask) and reuse can remove.")
        if share < 0.1:
            s += (" Loads are cheap on this device, so the policies differ here by little more than run-to-run "
                  "noise; the method pays where loads are expensive (GPU code objects, run-time compilation).")
    return s


def _reference_line(ref: Dict[str, Any]) -> str:
    return (f"For comparison, the GPU result kept in {ref['source']}: {ref['card']}, {ref['date']}, {ref['dtype']} "
            f"{ref['layout']}, batch {ref['batch']}, medians of {ref['repeats']} fresh processes, "
            f"{ref['provider']}; command: {ref['command']}")


def _heading(doc: Dict[str, Any]) -> str:
    return (f"{doc['model']}, {doc['device']}, {doc['dtype']} {doc['layout']}, batch {doc['batch']}: medians of "
            f"{doc['repeats']} fresh processes")


def report(doc: Dict[str, Any]) -> str:
    """The text the CLI prints after the runs: the table, the load costs and, off the GPU, the GPU result."""
    lines = [_heading(doc), *table_lines(doc["summary"]), "", textwrap.fill(load_note(doc), 100)]
    ref = doc.get("gpu_reference")
    if ref:
        lines += ["", textwrap.fill(_reference_line(ref), 100), *table_lines(ref["summary"])]
    return "\n".join(lines)


def markdown(doc: Dict[str, Any]) -> str:
    """coldstart.md: what the CLI printed, with the run's date and command."""
    text = (f"# Cold start: {doc['model']} on {doc['device']}\n\n"
            f"{doc['date']}; command: `{doc['command']}`. \"first (ready)\" is the first inference measured from "
            f"model-ready (context created, graph built, weights in place, hints given); \"first (start)\" from "
            f"process start. Each run a fresh process; \"cold\" = empty user cache folder, \"warm\" = the folder "
            f"filled by one untimed run of the same policy.\n\n{_heading(doc)}:\n\n```\n"
            + "\n".join(table_lines(doc["summary"])) + f"\n```\n\n{load_note(doc)}\n")
    ref = doc.get("gpu_reference")
    if ref:
        text += f"\n{_reference_line(ref)}:\n\n```\n" + "\n".join(table_lines(ref["summary"])) + "\n```\n"
    return text


def table_lines(rows: List[Dict[str, Any]]) -> List[str]:
    """The summary table; the captured steady state's two columns where a run
    replayed a captured graph (GPU runners)."""
    captured = any(r.get("steady_captured_ms") for r in rows)
    extra = f" {'captured':>9} {'first/captured':>14}" if captured else ""
    out = [f"{'policy':<10} {'cache':<5} {'first (start)':>14} {'first (ready)':>14} {'steady':>9} "
           f"{'first/steady':>12}{extra} {'vs reactive':>11} {'blocking loads':>14} {'reuses':>6} {'compiles':>8}"]
    for r in rows:
        vs = f"{r['speedup_vs_reactive']:.2f}x" if r["speedup_vs_reactive"] else "-"
        cap = ""
        if captured:
            c = r.get("steady_captured_ms")
            cap = (f" {c:>6.2f} ms {r['first_from_ready_ms'] / c:>13.2f}x" if c else f" {'-':>9} {'-':>14}")
        out.append(f"{r['policy']:<10} {r['cache']:<5} {r['first_from_start_ms']:>11.1f} ms "
                   f"{r['first_from_ready_ms']:>11.1f} ms {r['steady_ms']:>6.2f} ms {r['first_over_steady']:>11.2f}x"
                   f"{cap} {vs:>11} {r['blocking_loads']:>14.0f} {r['reuses']:>6.0f} {r['compiles']:>8.0f}")
    return out


def _median_present(values: Any) -> Optional[float]:
    """The median of the values that are not None; None when none is."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: List[Dict[str, Any]], policies: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for cache in ("cold", "warm"):
        base = None
        reactive = [r["first_from_ready_ms"] for r in runs if r["policy"] == "reactive" and r["cache"] == cache]
        if reactive:
            base = statistics.median(reactive)
        for policy in policies:
            rs = [r for r in runs if r["policy"] == policy and r["cache"] == cache]
            row = dict(policy=policy, cache=cache,
                       first_from_start_ms=statistics.median(r["first_from_start_ms"] for r in rs),
                       first_from_ready_ms=statistics.median(r["first_from_ready_ms"] for r in rs),
                       steady_ms=statistics.median(r["steady_ms"] for r in rs),
                       steady_captured_ms=_median_present(r.get("steady_captured_ms") for r in rs),
                       blocking_loads=statistics.median(r["stats"]["blocking_loads"] for r in rs),
                       reuses=statistics.median(r["stats"]["reuses"] for r in rs),
                       compiles=statistics.median(r["stats"]["compiles"] for r in rs))
            row["speedup_vs_reactive"] = (base / row["first_from_ready_ms"]) if base else None
            row["first_over_steady"] = row["first_from_ready_ms"] / row["steady_ms"]
            rows.append(row)
    return rows


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
    ref = doc.get("gpu_reference")
    if ref:
        fig, (ax, ax_ref) = plt.subplots(1, 2, figsize=(13, 5.2))
    else:
        fig, ax = plt.subplots(figsize=(8, 4.6))
    _bars(ax, doc["summary"], f"{doc['device']}, {doc['dtype']} {doc['layout']}, batch {doc['batch']} "
          f"(this run, {doc['date']})")
    if ref:
        _bars(ax_ref, ref["summary"], f"{ref['card']}, {ref['dtype']} {ref['layout']}, batch {ref['batch']} "
              f"({ref['date']}, kept in bench/results/)", log=True)
        ax_ref.text(0.0, -0.2, "command: " + ref["command"] + "\n(vs reactive, cold cache: " + ", ".join(
            f"{r['policy']} {r['speedup_vs_reactive']:.0f}x" for r in ref["summary"]
            if r["cache"] == "cold" and r["policy"] != "reactive") + ")",
            transform=ax_ref.transAxes, fontsize=7, va="top")
    fig.suptitle(f"{doc['model']}: time to first inference after model-ready, per policy", fontsize=11)
    fig.text(0.01, 0.01, textwrap.fill(load_note(doc), 220 if ref else 120), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.08 if ref else 0.12, 1, 1))
    p = os.path.join(out, "coldstart.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    trace_path = os.path.join(out, "trace-pask-cold.json")
    if any(r["policy"] == "pask" for r in doc["summary"]) and os.path.exists(trace_path):
        p = os.path.join(out, "timeline.png")
        timeline(trace_path, p, f"{doc['model']} on {doc['device']}, pask policy, cold cache: first inference", plt)
        paths.append(p)
    return paths


def _bars(ax: Any, rows: List[Dict[str, Any]], title: str, log: bool = False) -> None:
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    width = 0.38
    for i, cache in enumerate(("cold", "warm")):
        vals = [next(r["first_from_ready_ms"] for r in rows if r["policy"] == p and r["cache"] == cache)
                for p in policies]
        bars = ax.bar([k + (i - 0.5) * width for k in range(len(policies))], vals, width, label=f"{cache} user cache")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    steady = statistics.median(r["steady_ms"] for r in rows)
    ax.axhline(steady, color="gray", linestyle="--", linewidth=1, label=f"steady state ({steady:.1f} ms)")
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(policies)), policies)
    ax.set_ylabel("first inference after model-ready (ms)" + (", log scale" if log else ""))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)


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
