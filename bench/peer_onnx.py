"""Imported ONNX models on the GPU against PyTorch (device machine; issue 15's GPU aims).

For each torchvision classification CNN: the model with seeded random weights
(torch.manual_seed(0)) is exported to ONNX (opset 17, eval, constant folding,
dynamic batch), then run in fresh processes, fp16 NHWC / channels_last:

    PyTorch      one process: first inference at batch 1 from model-ready (model
                 and input on the GPU), then eager and CUDA-graph steady state at
                 batch 1 and --big-batch
    paskdnn      ``python -m paskdnn coldstart-child --model MODEL.onnx`` (policy
                 pask, an empty cache directory of its own, load_onnx counted in
                 model-ready): first inference at batch 1, steady state (the
                 Runner's eager runs and, once captured, its graph replay); a
                 second process at --big-batch for its steady state

The aims checked per model (issue 15): paskdnn's first inference at least 100x
faster than PyTorch's and within 2x of paskdnn's own steady state; paskdnn's
steady state at batch 1 and --big-batch no slower than PyTorch eager. The first
inference's output is compared with PyTorch float32 (max relative error).

    python3 bench/peer_onnx.py [--models resnet50,mobilenet_v2,...] [--repeats 1] [--out DIR]
    python3 bench/peer_onnx.py --plot RUN.json FIGURE.png      (the figure of an earlier run; no GPU)

Writes DIR/peer_onnx.json, DIR/peer_onnx.md and (with matplotlib) DIR/peer_onnx.png. Models the importer refuses
are listed with its message.
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

MODELS = ("resnet50,resnext50_32x4d,wide_resnet50_2,vgg16_bn,alexnet,mobilenet_v2,mnasnet1_0,googlenet,"
          "inception_v3,squeezenet1_1,mobilenet_v3_large,efficientnet_b0,efficientnet_v2_s,regnet_y_400mf,"
          "densenet121,shufflenet_v2_x1_0,convnext_tiny")


def _size(name: str) -> int:
    return 299 if name == "inception_v3" else 224


def _torch_model(name: str):
    import torchvision

    kw = {"aux_logits": False, "init_weights": True} if name in ("inception_v3", "googlenet") else {}
    return getattr(torchvision.models, name)(weights=None, **kw)


def torch_child(a) -> None:
    """First inference at batch 1 from model-ready, then steady eager and graph at batch 1 and a.big_batch."""
    t_spawn = float(os.environ["PASKDNN_T_SPAWN"])
    import torch

    t_import = time.time()
    model = _torch_model(a.model)
    model.load_state_dict(torch.load(a.weights))
    model = model.eval().to("cuda", torch.float16).to(memory_format=torch.channels_last)
    host = np.load(a.input)
    x = torch.from_numpy(host).to("cuda", torch.float16).to(memory_format=torch.channels_last)
    torch.cuda.synchronize()
    t_ready = time.time()
    row = {}
    with torch.no_grad():
        y = model(x)
        torch.cuda.synchronize()
        t_first = time.time()
        row.update(import_ms=(t_import - t_spawn) * 1e3, first_from_ready_ms=(t_first - t_ready) * 1e3,
                   first_from_start_ms=(t_first - t_spawn) * 1e3)
        np.save(a.save_output, y.float().cpu().numpy())
        for batch in (1, a.big_batch):
            xb = torch.from_numpy(np.random.default_rng(2).standard_normal((batch,) + host.shape[1:], np.float32))
            xb = xb.to("cuda", torch.float16).to(memory_format=torch.channels_last)
            row[f"eager_b{batch}_ms"] = _timed(lambda: model(xb), torch.cuda.synchronize, a.runs)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up on a side stream, as torch.cuda.graphs asks
                for _ in range(3):
                    model(xb)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                model(xb)
            row[f"graph_b{batch}_ms"] = _timed(g.replay, torch.cuda.synchronize, a.runs)
            del g
        ref = model.float()(x.float()).cpu().numpy()
    np.save(a.save_output + ".fp32.npy", ref)
    with open(a.json_out, "w") as f:
        json.dump(row, f)


def _timed(fn, sync, runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _run(cmd, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PASKDNN_T_SPAWN=repr(time.time()))
    env.pop("PASKDNN_HINTS", None)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _export(name: str, work: str):
    """The ONNX file, the state_dict and the batch-1 NCHW input of one model."""
    import torch

    torch.manual_seed(0)
    model = _torch_model(name).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, so folding is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    size = _size(name)
    x = torch.randn(1, 3, size, size)
    path = os.path.join(work, f"{name}.onnx")
    torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False, do_constant_folding=True,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    weights = os.path.join(work, f"{name}.pt")
    torch.save(model.state_dict(), weights)
    inp = os.path.join(work, f"{name}.x.npy")
    np.save(inp, x.numpy())
    return path, weights, inp


def measure(name: str, a, work: str) -> dict:
    import paskdnn

    onnx_path, weights, inp = _export(name, work)
    row = dict(model=name)
    try:
        paskdnn.load_onnx(onnx_path, layout="NHWC", dtype="float16", batch=1)
    except paskdnn.UnsupportedError as e:
        row["refused"] = str(e)
        return row
    runs = {"torch": [], "b1": [], "big": []}
    for rep in range(a.repeats):
        tj, to = os.path.join(work, f"{name}-t{rep}.json"), os.path.join(work, f"{name}-t{rep}.npy")
        p = _run([sys.executable, __file__, "--child", "--model", name, "--weights", weights, "--input", inp,
                  "--save-output", to, "--json-out", tj, "--runs", str(a.runs), "--big-batch", str(a.big_batch)],
                 a.timeout)
        if p.returncode:
            row["error"] = f"torch child: {p.stderr[-600:]}"
            return row
        runs["torch"].append(json.load(open(tj)))
        for key, batch in (("b1", 1), ("big", a.big_batch)):
            pj, po = os.path.join(work, f"{name}-p{key}{rep}.json"), os.path.join(work, f"{name}-p{key}{rep}.npy")
            cmd = [sys.executable, "-m", "paskdnn", "coldstart-child", "--model", onnx_path, "--device", "cuda",
                   "--policy", "pask", "--cache-dir", tempfile.mkdtemp(dir=work), "--layout", "NHWC",
                   "--dtype", "float16", "--batch", str(batch), "--steady", str(a.runs), "--json-out", pj]
            if batch == 1:
                cmd += ["--input", inp, "--save-output", po]
                out_b1 = po
            p = _run(cmd, a.timeout)
            if p.returncode:
                row["error"] = f"paskdnn batch {batch}: {p.stderr[-600:]}"
                return row
            runs[key].append(json.load(open(pj)))
    med = lambda who, k: statistics.median(r[k] for r in runs[who]) if all(r.get(k) is not None for r in runs[who]) else None
    for k in ("first_from_ready_ms", "first_from_start_ms", "eager_b1_ms", "graph_b1_ms",
              f"eager_b{a.big_batch}_ms", f"graph_b{a.big_batch}_ms"):
        row["torch_" + k] = med("torch", k)
    for k in ("first_from_ready_ms", "first_from_start_ms", "steady_ms", "steady_captured_ms"):
        row["paskdnn_" + k] = med("b1", k)
    # why the first inference took what it took: its decisions (layers not served by a resident kernel) and the
    # context's counters; why a runner did not capture
    first = runs["b1"][-1]
    row["paskdnn_first_not_resident"] = [[r["layer"], r["solver"], r["decision"]] for r in first.get("layers", [])
                                         if r["decision"] != "resident"]
    row["paskdnn_first_stats"] = first.get("stats", {})
    row["paskdnn_capture_notes"] = [runs[k][-1].get("capture_note", "") for k in ("b1", "big")]
    row["paskdnn_big_steady_ms"] = med("big", "steady_ms")
    row["paskdnn_big_steady_captured_ms"] = med("big", "steady_captured_ms")
    ref = np.load(to + ".fp32.npy").astype(np.float64)
    ours = np.load(out_b1).reshape(ref.shape).astype(np.float64)
    theirs = np.load(to).astype(np.float64)
    scale = max(np.abs(ref).max(), 1e-30)
    row["paskdnn_max_rel_err"] = float(np.abs(ours - ref).max() / scale)
    row["torch_fp16_max_rel_err"] = float(np.abs(theirs - ref).max() / scale)
    return row


def _steady(row: dict, big: bool) -> float:
    """paskdnn's steady state: the captured replay where it captured, else the eager runs."""
    pre = "paskdnn_big_" if big else "paskdnn_"
    return row.get(pre + "steady_captured_ms") or row[pre + "steady_ms"]


def aims(row: dict, big_batch: int) -> dict:
    """Issue 15's four aims for one measured row (True where met)."""
    first = row["paskdnn_first_from_ready_ms"]
    return {
        "first >= 100x faster than torch": row["torch_first_from_ready_ms"] / first >= 100,
        "first <= 2x own steady": first <= 2 * _steady(row, False),
        "b1 steady <= torch eager": _steady(row, False) <= row["torch_eager_b1_ms"],
        f"b{big_batch} steady <= torch eager": _steady(row, True) <= row[f"torch_eager_b{big_batch}_ms"],
    }


def markdown(rows: list, big_batch: int, head: str) -> str:
    f = lambda v: "-" if v is None else f"{v:.2f}"
    lines = [head, "",
             f"| model | torch first (ms) | paskdnn first (ms) | torch/paskdnn first | paskdnn steady b1 eager / captured "
             f"| first/steady | torch eager b1 | torch graph b1 | paskdnn b{big_batch} eager / captured "
             f"| torch eager b{big_batch} | torch graph b{big_batch} | max rel err (paskdnn, torch fp16) | aims met |",
             "|---|" + "---|" * 12]
    for r in rows:
        if "refused" in r or "error" in r:
            lines.append(f"| {r['model']} | " + " | ".join(["-"] * 11) + f" | {'refused' if 'refused' in r else 'failed'}: "
                         f"{(r.get('refused') or r.get('error')).splitlines()[-1][:100]} |")
            continue
        met = aims(r, big_batch)
        first = r["paskdnn_first_from_ready_ms"]
        lines.append(
            f"| {r['model']} | {f(r['torch_first_from_ready_ms'])} | {f(first)} | "
            f"{r['torch_first_from_ready_ms'] / first:.0f}x | {f(r['paskdnn_steady_ms'])} / "
            f"{f(r['paskdnn_steady_captured_ms'])} | {first / _steady(r, False):.2f} | {f(r['torch_eager_b1_ms'])} | "
            f"{f(r['torch_graph_b1_ms'])} | {f(r['paskdnn_big_steady_ms'])} / {f(r['paskdnn_big_steady_captured_ms'])} | "
            f"{f(r[f'torch_eager_b{big_batch}_ms'])} | {f(r[f'torch_graph_b{big_batch}_ms'])} | "
            f"{r['paskdnn_max_rel_err']:.1e}, {r['torch_fp16_max_rel_err']:.1e} | {sum(met.values())}/4"
            + ("" if all(met.values()) else " (not: " + "; ".join(k for k, v in met.items() if not v) + ")") + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list, png: str, title: str) -> None:
    """First inference (log scale) and batch-1 steady state of each measured model, PyTorch beside paskdnn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "paskdnn_first_from_ready_ms" in r]
    names = [r["model"] for r in rows]
    xs = np.arange(len(rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.6))
    a1.bar(xs - 0.2, [r["torch_first_from_ready_ms"] for r in rows], 0.4, label="PyTorch")
    a1.bar(xs + 0.2, [r["paskdnn_first_from_ready_ms"] for r in rows], 0.4, label="paskdnn (pask, empty cache)")
    a1.set_yscale("log")
    a1.set_ylabel("ms, from model-ready")
    a1.set_title("first inference, batch 1")
    a2.bar(xs - 0.3, [r["torch_eager_b1_ms"] for r in rows], 0.2, label="PyTorch eager")
    a2.bar(xs - 0.1, [r["torch_graph_b1_ms"] for r in rows], 0.2, label="PyTorch CUDA graph")
    a2.bar(xs + 0.1, [r["paskdnn_steady_ms"] for r in rows], 0.2, label="paskdnn eager")
    a2.bar(xs + 0.3, [r["paskdnn_steady_captured_ms"] or np.nan for r in rows], 0.2, label="paskdnn captured")
    a2.set_ylabel("ms per inference")
    a2.set_title("steady state, batch 1")
    for ax in (a1, a2):
        ax.set_xticks(xs, names, rotation=60, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per steady-state figure (median)")
    ap.add_argument("--big-batch", type=int, default=32)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per child process")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--plot", nargs=2, metavar=("JSON", "PNG"), help="only draw the figure of an earlier run's JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--save-output", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        torch_child(a)
        return 0
    if a.plot:
        plot(json.load(open(a.plot[0])), a.plot[1], os.path.basename(a.plot[0]))
        return 0
    import torch

    work = tempfile.mkdtemp()
    rows = []
    for name in a.models.split(","):
        t0 = time.time()
        rows.append(measure(name, a, work))
        print(json.dumps({k: v for k, v in rows[-1].items() if isinstance(v, (int, float)) or k == "model"}),
              f"({time.time() - t0:.0f} s)", flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "peer_onnx.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    head = (f"# Imported ONNX models against PyTorch, fp16 NHWC\n\n{torch.cuda.get_device_name()}, "
            f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, `python3 bench/peer_onnx.py "
            f"--repeats {a.repeats} --runs {a.runs} --big-batch {a.big_batch}`. Times in ms, medians; first = first "
            "inference from model-ready at batch 1 in a fresh process (paskdnn: policy pask, empty cache); "
            "steady: paskdnn's captured replay where it captured, else its eager runs.")
    with open(os.path.join(a.out, "peer_onnx.md"), "w") as fh:
        fh.write(markdown(rows, a.big_batch, head))
    print(markdown(rows, a.big_batch, head))
    try:
        plot(rows, os.path.join(a.out, "peer_onnx.png"), f"{torch.cuda.get_device_name()}, fp16 NHWC")
    except ImportError:  # no matplotlib: the table and the JSON are the result
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
