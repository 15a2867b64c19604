"""Peer comparison on the CPU: ONNX Runtime against paskdnn, the same model with
the same weights, each run in fresh processes, interleaved, several rounds.

    python3 bench/peer_ort.py [--models resnet18,resnet50,mobilenet_v2] [--rounds 3]
                              [--threads 2] [--steady 20] [--out bench/results] [--tag cpu-2core]
                              [--baseline-kernels DIR [--baseline-without SOLVER,...]] [--cpu-time]

The model is the paskdnn zoo's (``paskdnn.models``, seeded weights, batch norm
folded); this script writes that very Graph out as ONNX (Conv with its bias,
Add for the residual, Relu / Clip(0, 6), MaxPool, GlobalAveragePool, Flatten,
Gemm) for ONNX Runtime (CPUExecutionProvider, ``--threads`` intra-op threads,
default graph optimisations). paskdnn runs the zoo graph built from the same
torchvision-style .npz with a ``Context("cpu", policy="pask",
num_threads=--threads)`` in NCHW and in NHWC, cold user cache each process.
The NCHW graph's runner computes in NHWC on the CPU (its default, converted at
set-up); the engine ``paskdnn-NCHW-kernels`` (not run by default) holds it to
the NCHW kernels (``Runner(layout="NCHW")``).

Each round runs every engine once per model, in an order rotated from round
to round. Per process it records: process start to first result (spawn to the
first output, imports and model load included), the first inference alone
(from input ready) and the steady state (median of --steady runs after it).
The table gives medians over the rounds (and each engine's range), the ratio
to ONNX Runtime, and the agreement of outputs: max |y - y_ort| / max |y_ort|
and whether the top-5 classes match.

--baseline-kernels DIR adds two engines, "base-NCHW" and "base-NHWC": paskdnn
with the CPU code objects of another build (a folder of pask_cpu_*.so, passed
as Context(kernel_dir=DIR)), to measure a kernel change side by side;
--baseline-without names solvers that build lacks (they are left out of the
baseline engines' Context(solvers=...)).

--cpu-time runs both engines on one thread and times the first and the steady
inferences with the thread's CPU time (time.thread_time: user + system, page
faults included) instead of the wall clock, so that time spent waiting for a
core on a machine shared with other work is not counted; process start to
first result stays wall-clock. The tag gains "-cputime".

Writes <out>/peer-ort-<date>-<tag>.md and .json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

# paskdnn-NCHW: an NCHW graph, the runner computing where it chooses (NHWC on the
# CPU, converted at set-up); paskdnn-NCHW-kernels: the same graph held to the NCHW
# kernels (Runner(layout="NCHW"))
ENGINES = ("ort", "paskdnn-NCHW", "paskdnn-NHWC", "paskdnn-NCHW-kernels")
DEFAULT_ENGINES = ("ort", "paskdnn-NCHW", "paskdnn-NHWC")


# ---- a paskdnn Graph as ONNX ------------------------------------------------------


def graph_to_onnx(graph: Any, batch: int = 1) -> Any:
    """An NCHW float32 paskdnn Graph as an onnx.ModelProto (opset 13).

    Covers the ops of the zoo models (conv2d with bias, residual and
    relu / relu6 epilogues, max_pool2d, adaptive_avg_pool2d to 1x1, flatten,
    linear); anything else raises ValueError naming the node."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from paskdnn import _spec

    if graph.layout != "NCHW":
        raise ValueError("graph_to_onnx exports NCHW graphs (build the model with layout='NCHW')")
    if graph.dtype != "float32":
        raise ValueError("graph_to_onnx exports float32 graphs")
    nodes: List[Any] = []
    inits: List[Any] = []

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, np.float32), name))
        return name

    def activation(node: Any, src: str, act: Any) -> str:
        if act is None:
            return src
        out = f"{node.name}.{act}"
        if act == "relu":
            nodes.append(helper.make_node("Relu", [src], [out]))
        elif act == "relu6":
            lo = const(f"{node.name}.clip_lo", np.array(0.0, np.float32))
            hi = const(f"{node.name}.clip_hi", np.array(6.0, np.float32))
            nodes.append(helper.make_node("Clip", [src, lo, hi], [out]))
        else:
            raise ValueError(f"node {node.name}: activation {act!r} is not exported")
        return out

    def finish(node: Any, src: str) -> None:  # the last op of a node writes node.output
        nodes.append(helper.make_node("Identity", [src], [node.output]))

    for node in graph.nodes:
        p = node.params
        x = node.inputs[0]
        if node.op == "conv2d":
            if p.get("weight_layout", "OIHW") != "OIHW":
                raise ValueError(f"node {node.name}: weights must be OIHW")
            w = node.weights["weight"]
            k = (int(w.shape[2]), int(w.shape[3]))
            st = _spec.pair(p.get("stride", 1), "stride")
            dl = _spec.pair(p.get("dilation", 1), "dilation")
            (pt, pb), (pl, pr) = _spec.padding_pairs(p.get("padding", 0), k, dl, st)
            ins = [x, const(f"{node.name}.weight", w)]
            if "bias" in node.weights:
                ins.append(const(f"{node.name}.bias", node.weights["bias"]))
            y = f"{node.name}.conv"
            nodes.append(helper.make_node("Conv", ins, [y], kernel_shape=list(k), strides=list(st),
                                          dilations=list(dl), pads=[pt, pl, pb, pr],
                                          group=int(p.get("groups", 1))))
            if len(node.inputs) > 1:
                nodes.append(helper.make_node("Add", [y, node.inputs[1]], [f"{node.name}.add"]))
                y = f"{node.name}.add"
            finish(node, activation(node, y, p.get("activation")))
        elif node.op == "max_pool2d":
            k = _spec.pair(p["kernel_size"], "kernel_size")
            st = k if p.get("stride") is None else _spec.pair(p["stride"], "stride")
            (pt, pb), (pl, pr) = _spec.pool_padding(p.get("padding", 0))
            if _spec.pair(p.get("dilation", 1), "dilation") != (1, 1) or p.get("ceil_mode", False):
                raise ValueError(f"node {node.name}: dilated or ceil-mode pooling is not exported")
            nodes.append(helper.make_node("MaxPool", [x], [node.output], kernel_shape=list(k), strides=list(st),
                                          pads=[pt, pl, pb, pr]))
        elif node.op == "adaptive_avg_pool2d":
            if _spec.adaptive_output_size(p.get("output_size", 1), 7, 7) != (1, 1):
                raise ValueError(f"node {node.name}: only a 1x1 adaptive average pool is exported")
            nodes.append(helper.make_node("GlobalAveragePool", [x], [node.output]))
        elif node.op == "flatten":
            nodes.append(helper.make_node("Flatten", [x], [node.output], axis=1))
        elif node.op == "linear":
            ins = [x, const(f"{node.name}.weight", node.weights["weight"])]
            if "bias" in node.weights:
                ins.append(const(f"{node.name}.bias", node.weights["bias"]))
            y = f"{node.name}.gemm"
            nodes.append(helper.make_node("Gemm", ins, [y], transB=1))
            finish(node, activation(node, y, p.get("activation")))
        else:
            raise ValueError(f"node {node.name}: op {node.op!r} is not exported")

    from paskdnn.graph import infer_shapes

    out_shape = infer_shapes(graph, batch)[graph.output_name]
    g = helper.make_graph(
        nodes, graph.name,
        [helper.make_tensor_value_info(graph.input_name, TensorProto.FLOAT, [batch] + list(graph.input_shape))],
        [helper.make_tensor_value_info(graph.output_name, TensorProto.FLOAT, list(out_shape))],
        initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="paskdnn bench")
    model.ir_version = 8  # readable by any ONNX Runtime of the last years
    onnx.checker.check_model(model)
    return model


# ---- the measured processes ------------------------------------------------------


def _clock(a: argparse.Namespace):
    return time.thread_time if a.cpu_time else time.perf_counter


def ort_child(a: argparse.Namespace) -> None:
    t_spawn = float(os.environ["PASKDNN_T_SPAWN"])
    clock = _clock(a)
    import onnxruntime as ort

    t_import = time.time()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
    x = np.load(a.input)
    name = sess.get_inputs()[0].name
    t_ready = time.time()
    c0 = clock()
    y = sess.run(None, {name: x})[0]
    first = (clock() - c0) * 1e3
    t_first = time.time()
    steady = []
    for _ in range(a.steady):
        t0 = clock()
        sess.run(None, {name: x})
        steady.append((clock() - t0) * 1e3)
    np.save(a.save_output, np.asarray(y, np.float32))
    _dump(a, t_spawn, t_import, t_ready, t_first, first, steady, version=ort.__version__)


def paskdnn_child(a: argparse.Namespace) -> None:
    t_spawn = float(os.environ["PASKDNN_T_SPAWN"])
    clock = _clock(a)
    import paskdnn
    from paskdnn import models
    from paskdnn.graph import Runner

    t_import = time.time()
    extra: Dict[str, Any] = {"kernel_dir": a.kernel_dir} if a.kernel_dir else {}
    if a.without:
        off = set(a.without.split(","))
        extra["solvers"] = [s["name"] for s in paskdnn.solvers() if s["device"] == "cpu" and s["name"] not in off]
    ctx = paskdnn.Context("cpu", policy="pask", num_threads=a.threads, cache_dir=a.cache_dir, **extra)
    g = models.build(a.model, weights=a.weights, seed=0, layout=a.layout)
    runner = Runner(g, ctx, layout=a.compute_layout or None)
    x = np.load(a.input)
    if a.layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    xin = runner.input(x)
    t_ready = time.time()
    c0 = clock()
    y = runner.run(xin)
    first = (clock() - c0) * 1e3
    t_first = time.time()
    np.save(a.save_output, np.array(y, np.float32))
    ctx.wait_loads(timeout=600)
    steady = []
    for _ in range(a.steady):
        t0 = clock()
        runner.run(xin, record=False)
        steady.append((clock() - t0) * 1e3)
    _dump(a, t_spawn, t_import, t_ready, t_first, first, steady, version=paskdnn.__version__)


def _dump(a: argparse.Namespace, t_spawn: float, t_import: float, t_ready: float, t_first: float, first: float,
          steady: List[float], version: str) -> None:
    with open(a.json_out, "w") as f:
        json.dump(dict(import_ms=(t_import - t_spawn) * 1e3, ready_ms=(t_ready - t_spawn) * 1e3,
                       start_to_first_ms=(t_first - t_spawn) * 1e3, first_ms=first,
                       steady_ms=statistics.median(steady), steady_all_ms=steady, version=version), f)


def _spawn(cmd: List[str]) -> None:
    env = dict(os.environ, PASKDNN_T_SPAWN=repr(time.time()))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")


# ---- the driver -------------------------------------------------------------------


def _agreement(y: np.ndarray, ref: np.ndarray) -> Dict[str, Any]:
    y = y.reshape(ref.shape).astype(np.float64)
    ref = ref.astype(np.float64)
    top = lambda v: [sorted(np.argsort(-r)[:5].tolist()) for r in v.reshape(v.shape[0], -1)]  # noqa: E731
    return dict(max_rel_err=float(np.abs(y - ref).max() / np.abs(ref).max()), top5_same=top(y) == top(ref))


def _fmt_range(v: List[float]) -> str:
    return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("ort", "paskdnn"), help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--layout", help=argparse.SUPPRESS)
    ap.add_argument("--compute-layout", default="", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    ap.add_argument("--kernel-dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--without", default="", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--save-output", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2", help="zoo models (default: %(default)s)")
    ap.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                    help=f"some of {','.join(ENGINES)} (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per engine and model (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default: %(default)s)")
    ap.add_argument("--steady", type=int, default=20, help="timed runs after the first (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--tag", default="cpu-2core", help="the results' file name suffix (default: %(default)s)")
    ap.add_argument("--baseline-kernels", default="", help="also run paskdnn with this folder's CPU kernels")
    ap.add_argument("--baseline-without", default="", help="solvers (comma-separated) the baseline build lacks")
    ap.add_argument("--cpu-time", action="store_true", help="one thread each, first and steady timed by CPU time")
    a = ap.parse_args()
    if a.child == "ort":
        ort_child(a)
        return 0
    if a.child == "paskdnn":
        paskdnn_child(a)
        return 0
    if a.cpu_time and not a.child:
        a.threads = 1
        a.tag += "-cputime"
    if a.rounds < 1 or a.threads < 1 or a.steady < 1:
        ap.error("--rounds, --threads and --steady must be positive")
    engines = [e for e in a.engines.split(",") if e]
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e!r}; expected some of {','.join(ENGINES)}")
    if a.baseline_kernels:
        if not os.path.isdir(a.baseline_kernels):
            ap.error(f"--baseline-kernels: no folder {a.baseline_kernels!r}")
        engines += ["base-NCHW", "base-NHWC"]
    if "ort" not in engines:
        ap.error("the comparison needs the ort engine")

    import onnx

    from paskdnn import models

    load_before = os.getloadavg()
    work = tempfile.mkdtemp(prefix="peer_ort-")
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    xpath = os.path.join(work, "x.npy")
    np.save(xpath, x)
    rows, raw = [], {}
    for name in a.models.split(","):
        wpath = os.path.join(work, f"{name}.npz")
        models.save_npz(models.state_dict(name, seed=0), wpath)
        opath = os.path.join(work, f"{name}.onnx")
        onnx.save(graph_to_onnx(models.build(name, weights=wpath, layout="NCHW")), opath)
        res: Dict[str, List[Dict[str, Any]]] = {e: [] for e in engines}
        outs: Dict[str, np.ndarray] = {}
        for rnd in range(a.rounds):
            order = engines[rnd % len(engines):] + engines[:rnd % len(engines)]
            for e in order:
                tag = f"{name}-{e}-{rnd}"
                jpath, ypath = os.path.join(work, tag + ".json"), os.path.join(work, tag + ".npy")
                cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(a.threads), "--steady",
                       str(a.steady), "--input", xpath, "--save-output", ypath, "--json-out", jpath]
                if a.cpu_time:
                    cmd.append("--cpu-time")
                if e == "ort":
                    cmd += ["--child", "ort", "--onnx", opath]
                else:
                    cmd += ["--child", "paskdnn", "--model", name, "--layout", e.split("-")[1], "--weights", wpath,
                            "--cache-dir", os.path.join(work, "cache-" + tag)]
                    if e.endswith("-kernels"):
                        cmd += ["--compute-layout", e.split("-")[1]]
                    if e.startswith("base-"):
                        cmd += ["--kernel-dir", os.path.abspath(a.baseline_kernels), "--without", a.baseline_without]
                _spawn(cmd)
                res[e].append(json.load(open(jpath)))
                outs[e] = np.load(ypath)
                print(f"{tag}: steady {res[e][-1]['steady_ms']:.1f} ms, first {res[e][-1]['first_ms']:.1f} ms, "
                      f"start to first {res[e][-1]['start_to_first_ms']:.0f} ms", file=sys.stderr, flush=True)
        raw[name] = res
        row: Dict[str, Any] = dict(model=name)
        for e in engines:
            for k in ("steady_ms", "first_ms", "start_to_first_ms", "import_ms"):
                row[f"{e}.{k}"] = statistics.median(r[k] for r in res[e])
                row[f"{e}.{k}.all"] = [r[k] for r in res[e]]
            if e != "ort":
                for k in ("steady_ms", "first_ms", "start_to_first_ms"):
                    row[f"{e}.{k}.ratio_to_ort"] = row[f"{e}.{k}"] / row[f"ort.{k}"]
                row[f"{e}.first_over_own_steady"] = row[f"{e}.first_ms"] / row[f"{e}.steady_ms"]
                row.update({f"{e}.{k}": v for k, v in _agreement(outs[e], outs["ort"]).items()})
        row["ort.version"] = res["ort"][0]["version"]
        rows.append(row)

    load_after = os.getloadavg()
    install = _paskdnn_install()
    date = datetime.date.today().isoformat()
    cpu = _cpu_name()
    cmdline = "python3 bench/peer_ort.py " + " ".join(sys.argv[1:])
    lines = [f"# paskdnn against ONNX Runtime on the CPU ({date}, {a.tag})", "",
             f"{cpu}, {os.cpu_count()} cores; ONNX Runtime {rows[0]['ort.version']} and paskdnn "
             f"{res[engines[-1]][0]['version'] if engines[-1] != 'ort' else ''} (policy pask), {a.threads} threads each; float32, "
             f"batch 1, 224x224; {a.rounds} interleaved rounds of fresh processes, medians (range); steady = median "
             f"of {a.steady} runs after the first; first and steady in "
             f"{'CPU time of the one thread (time.thread_time)' if a.cpu_time else 'wall time'}. Load average (1, 5, 15 min) before "
             f"{', '.join(f'{v:.1f}' for v in load_before)}, after {', '.join(f'{v:.1f}' for v in load_after)} "
             f"(other processes share the cores: compare within a row group, not across runs). "
             f"paskdnn: {install}. Command: `{cmdline}`", "",
             "| model | engine | steady ms | ratio | first ms | ratio | first / own steady | start to first ms "
             "| ratio | max rel err vs ORT | top-5 same |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for e in engines:
            s, f, t = (row[f"{e}.{k}.all"] for k in ("steady_ms", "first_ms", "start_to_first_ms"))
            if e == "ort":
                lines.append(f"| {row['model']} | ONNX Runtime | {_fmt_range(s)} | 1 | {_fmt_range(f)} | 1 | "
                             f"{row['ort.first_ms'] / row['ort.steady_ms']:.2f} | {_fmt_range(t)} | 1 | | |")
            else:
                lay = e.split("-")[1]
                who = (f"paskdnn {lay} (NCHW kernels)" if e.endswith("-kernels") else
                       f"paskdnn {lay} (computed in NHWC)" if e == "paskdnn-NCHW" else
                       f"paskdnn {lay}" if e.startswith("paskdnn") else f"baseline kernels {lay}")
                lines.append(f"| {row['model']} | {who} | {_fmt_range(s)} | "
                             f"{row[e + '.steady_ms.ratio_to_ort']:.2f} | {_fmt_range(f)} | "
                             f"{row[e + '.first_ms.ratio_to_ort']:.2f} | {row[e + '.first_over_own_steady']:.2f} | "
                             f"{_fmt_range(t)} | {row[e + '.start_to_first_ms.ratio_to_ort']:.2f} | "
                             f"{row[e + '.max_rel_err']:.1e} | {'yes' if row[e + '.top5_same'] else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, f"peer-ort-{date}-{a.tag}")
    with open(base + ".md", "w") as f:
        f.write(text)
    with open(base + ".json", "w") as f:
        json.dump(dict(date=date, cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), command=cmdline,
                       loadavg_before=load_before, loadavg_after=load_after, paskdnn_install=install,
                       rows=rows, raw=raw), f, indent=1)
    return 0


def _paskdnn_install() -> str:
    """How the paskdnn the children import is installed: an editable install's
    import hook runs a ninja no-op check of the build tree at `import paskdnn`
    (about 80 ms a process on the 2-core Xeon, measured), which a wheel install
    does not; with PYTHONDONTWRITEBYTECODE the source tree's modules compile
    at every import. Both count in process start to first result."""
    from importlib import metadata

    try:
        direct = metadata.distribution("paskdnn").read_text("direct_url.json") or "{}"
        editable = json.loads(direct).get("dir_info", {}).get("editable", False)
    except metadata.PackageNotFoundError:
        editable = False
    kind = "editable install (meson-python rebuild check at import)" if editable else "installed wheel"
    if editable and os.environ.get("PYTHONDONTWRITEBYTECODE"):  # a wheel's install compiled its bytecode
        kind += ", PYTHONDONTWRITEBYTECODE set"
    import importlib.util

    spec = importlib.util.find_spec("paskdnn")  # PYTHONPATH may put a tree ahead of the installed one
    where = os.path.dirname(spec.origin) if spec and spec.origin else ""
    if where and "site-packages" not in where and not editable:
        kind = f"the Python tree {where}"
    if os.environ.get("PASKDNN_LIBRARY"):
        kind += f", library {os.environ['PASKDNN_LIBRARY']}"
    return kind


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
