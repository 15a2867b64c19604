"""MobileNetV2's depthwise convolutions (3x3, bias, relu6) on the CPU, layer by
layer: paskdnn's conv2d.depthwise in NCHW and NHWC against ONNX Runtime's Conv
(group = C, followed by Clip(0, 6), which ORT fuses), all in one process,
interleaved repetition by repetition; medians in ms.

    python3 bench/depthwise.py [--threads 2] [--reps 30] [--baseline-kernels DIR] [--cpu-time]

--baseline-kernels runs paskdnn a second time with the CPU code objects of
another build (a folder of pask_cpu_*.so, Context(kernel_dir=...)), side by
side with this build's, to measure a kernel change.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List

import numpy as np

# (C, H=W, stride) of MobileNetV2's 17 depthwise layers at 224x224, with their multiplicity
LAYERS = [(32, 112, 1, 1), (96, 112, 2, 1), (144, 56, 1, 1), (144, 56, 2, 1), (192, 28, 1, 2), (192, 28, 2, 1),
          (384, 14, 1, 3), (384, 14, 1, 1), (576, 14, 1, 2), (576, 14, 2, 1), (960, 7, 1, 3)]


def ort_conv(c: int, hw: int, stride: int, w: np.ndarray, b: np.ndarray, threads: int) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[stride, stride],
                              pads=[1, 1, 1, 1], group=c),
             helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--baseline-kernels", default="", help="a folder of another build's pask_cpu_*.so")
    ap.add_argument("--cpu-time", action="store_true", help="one thread, timed by its CPU time")
    a = ap.parse_args()
    if a.cpu_time:
        a.threads = 1
    clock = time.thread_time if a.cpu_time else time.perf_counter
    import paskdnn

    ctxs = {"new": paskdnn.Context(num_threads=a.threads, solvers=["conv2d.depthwise"])}
    if a.baseline_kernels:
        ctxs["base"] = paskdnn.Context(num_threads=a.threads, solvers=["conv2d.depthwise"],
                                       kernel_dir=a.baseline_kernels)
    rng = np.random.default_rng(0)
    cols = ["ort"] + [f"{k} {lay}" for k in ctxs for lay in ("NCHW", "NHWC")]
    print(f"threads {a.threads}, {a.reps} interleaved reps, median ms of "
          f"{'CPU time' if a.cpu_time else 'wall time'}; ratio = paskdnn / ORT\n")
    print("| C | HxW | stride | count | " + " | ".join(cols) + " | " +
          " | ".join(f"{c} / ort" for c in cols[1:]) + " |")
    print("|" + "---|" * (4 + 2 * len(cols) - 1))
    totals: Dict[str, float] = {c: 0.0 for c in cols}
    for c, hw, s, count in LAYERS:
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        w = (rng.standard_normal((c, 1, 3, 3)) / 3).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        wh = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        oh = (hw + 2 - 3) // s + 1
        fns: Dict[str, Callable[[], Any]] = {"ort": (lambda f: lambda: f(x))(ort_conv(c, hw, s, w, b, a.threads))}
        outs: Dict[str, np.ndarray] = {}
        for k, ctx in ctxs.items():
            yn = np.empty((1, c, oh, oh), np.float32)
            yh = np.empty((1, oh, oh, c), np.float32)
            fns[f"{k} NCHW"] = (lambda ctx, yn: lambda: paskdnn.conv2d(x, w, b, s, 1, 1, c, activation="relu6",
                                                                      out=yn, context=ctx))(ctx, yn)
            fns[f"{k} NHWC"] = (lambda ctx, yh: lambda: paskdnn.conv2d(xh, wh, b, s, 1, 1, c, activation="relu6",
                                                                      layout="NHWC", weight_layout="OHWI", out=yh,
                                                                      context=ctx))(ctx, yh)
        times: Dict[str, List[float]] = {k: [] for k in fns}
        for k, f in fns.items():  # warm-up (loads the kernels) and the outputs to compare
            y = f()
            outs[k] = np.asarray(y) if "NHWC" not in k else np.asarray(y).transpose(0, 3, 1, 2)
        for _ in range(a.reps):
            for k, f in fns.items():
                t0 = clock()
                f()
                times[k].append((clock() - t0) * 1e3)
        for k in cols[1:]:
            err = np.abs(outs[k] - outs["ort"]).max() / np.abs(outs["ort"]).max()
            if err > 1e-5:
                raise SystemExit(f"{k} disagrees with ORT at C={c} {hw}x{hw} s{s}: max rel err {err:.2e}")
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in cols:
            totals[k] += count * med[k]
        print(f"| {c} | {hw}x{hw} | {s} | {count} | " + " | ".join(f"{med[k]:.3f}" for k in cols) + " | " +
              " | ".join(f"{med[k] / med['ort']:.2f}" for k in cols[1:]) + " |", flush=True)
    print("| all 17 layers | | | | " + " | ".join(f"{totals[k]:.2f}" for k in cols) + " | " +
          " | ".join(f"{totals[k] / totals['ort']:.2f}" for k in cols[1:]) + " |")


if __name__ == "__main__":
    main()
