"""Host overhead per call: a small fp16 NHWC conv2d + bias + ReLU and a linear
with bias, eager (paskdnn.conv2d / paskdnn.linear from Python, with and without
``out=``), prepared (the graph Runner's plan executed with bound pointers) and,
on a GPU, PyTorch eager; plus a profile of the eager path.

    python bench/host_overhead.py              # a CUDA GPU, torch tensors

Without a GPU, ``--double LIB`` measures the host side alone on the CUDA test
double (tests/doubles/cuda_cudnn_double.cpp built as LIB; kernels "run" as a
logged no-op) with paskdnn.DeviceArray inputs: the Python layer and the C call:

    c++ -std=c++17 -O2 -shared -fPIC -o /tmp/libcuda_double.so tests/doubles/cuda_cudnn_double.cpp -lpthread
    python bench/host_overhead.py --double /tmp/libcuda_double.so

``--cpu`` runs the same calls on a CPU context with numpy float32 arrays (host
time includes the small kernels themselves).
"""
import argparse
import cProfile
import os
import pstats
import tempfile
import time

import numpy as np

import paskdnn
from paskdnn import _spec
from paskdnn import functional as Fn

CONV = dict(x=(1, 8, 8, 16), w=(16, 3, 3, 16), b=(16,), y=(1, 8, 8, 16))
LINEAR = dict(x=(4, 64), w=(32, 64), b=(32,), y=(4, 32))


def prepared(op, ctx, *args, **kw):
    """The Runner's prepared call of one op (a bound plan; before the call spec,
    the ``_PrepareTarget`` form, kept so one script measures before and after)."""
    if hasattr(Fn, "_PrepareTarget"):
        return getattr(Fn, op)(*args, context=Fn._PrepareTarget(ctx), **kw)
    return Fn._prepare(op, ctx, *args, **kw)


def per_call_us_host(fn, n=3000, rounds=5):
    """Median over rounds of the mean host time per call (no device to wait for)."""
    for _ in range(300):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return sorted(times)[rounds // 2]


def rows(ctx, make, timer):
    """The measured calls on ctx with arrays from make(shape)."""
    cx, cw, cb, cy = (make(CONV[k]) for k in "xwby")
    lx, lw, lb, ly = (make(LINEAR[k]) for k in "xwby")
    ckw = dict(layout="NHWC", weight_layout="OHWI", activation="relu", context=ctx)
    calls = {
        "conv2d+bias+relu, out= given": lambda: paskdnn.conv2d(cx, cw, cb, 1, 1, out=cy, **ckw),
        "conv2d+bias+relu, new output": lambda: paskdnn.conv2d(cx, cw, cb, 1, 1, **ckw),
        "linear+bias, out= given": lambda: paskdnn.linear(lx, lw, lb, out=ly, context=ctx),
        "linear+bias, new output": lambda: paskdnn.linear(lx, lw, lb, context=ctx),
    }
    out = {name: timer(fn) for name, fn in calls.items()}
    if hasattr(_spec, "MEMO"):  # the same calls normalised in full every time (the eager memo off)
        bound, _spec.MEMO_MAX = _spec.MEMO_MAX, 0
        _spec.MEMO.clear()
        out.update({f"{name}, no memo": timer(fn) for name, fn in calls.items()})
        _spec.MEMO_MAX = bound
    pc = prepared("conv2d", ctx, cx, cw, cb, 1, 1, out=cy, layout="NHWC", weight_layout="OHWI", activation="relu")
    pl = prepared("linear", ctx, lx, lw, lb, out=ly)
    out["conv2d+bias+relu, prepared"] = timer(pc)
    out["linear+bias, prepared"] = timer(pl)
    return out


def show(title, results):
    print(title)
    for name, us in results.items():
        print(f"  {name:42s} {us:6.1f} us/call")


def on_double(lib_path):
    os.environ["PASKDNN_LIBCUDA"] = lib_path  # the double is the driver and cuDNN; no NVRTC (prebuilt cubins)
    os.environ["PASKDNN_NVRTC"] = "/nonexistent"
    ctx = paskdnn.Context("cuda", cudnn=lib_path, cache_dir=tempfile.mkdtemp(prefix="paskdnn-overhead-"),
                          solvers=["conv2d.cuda_igemm", "gemm.cuda_tc"])
    rng = np.random.default_rng(0)

    def dev(shape):
        return paskdnn.asarray(rng.standard_normal(shape).astype(np.float32), dtype="float16", context=ctx)

    show("CUDA test double (host time only), fp16, conv NHWC 1x8x8x16 3x3, linear 4x64 -> 32, DeviceArray inputs:",
         rows(ctx, dev, per_call_us_host))
    ctx.close()


def on_cpu():
    ctx = paskdnn.Context("cpu", num_threads=1)
    rng = np.random.default_rng(0)
    show("CPU context, float32 numpy, conv NHWC 1x8x8x16 3x3, linear 4x64 -> 32 (host time incl. kernels):",
         rows(ctx, lambda s: rng.standard_normal(s).astype(np.float32), per_call_us_host))
    ctx.close()


def per_call_us(fn, n=2000):
    import torch

    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def main():
    import torch

    F = torch.nn.functional

    def make(shape):
        return torch.randn(*shape, device="cuda", dtype=torch.float16)

    x, w, b = make(CONV["x"]), make(CONV["w"]), make(CONV["b"])
    xt, wt = x.permute(0, 3, 1, 2), w.permute(0, 3, 1, 2)
    lx, lw, lb = make(LINEAR["x"]), make(LINEAR["w"]), make(LINEAR["b"])
    print(f"torch eager conv+bias+relu: {per_call_us(lambda: F.relu(F.conv2d(xt, wt, b, 1, 1))):.1f} us/call")
    print(f"torch eager conv+bias: {per_call_us(lambda: F.conv2d(xt, wt, b, 1, 1)):.1f} us/call")
    print(f"torch eager linear+bias: {per_call_us(lambda: F.linear(lx, lw, lb)):.1f} us/call")
    # gemm.cudnn has no engine for some small shapes: gemm.cuda_tc stands by
    for solvers in (["conv2d.cuda_igemm", "gemm.cuda_tc"], ["conv2d.cudnn", "gemm.cudnn", "gemm.cuda_tc"]):
        ctx = paskdnn.Context("cuda", solvers=solvers)
        show(f"{', '.join(solvers)} (torch tensors, host time per call, kernel resident):",
             rows(ctx, make, per_call_us))
        if "conv2d.cudnn" in solvers:
            kw = dict(layout="NHWC", weight_layout="OHWI", activation="relu", context=ctx)
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(500):
                paskdnn.conv2d(x, w, b, 1, 1, **kw)
            torch.cuda.synchronize()
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(12)
        ctx.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--double", metavar="LIB", help="the CUDA test double's library: host time only, no GPU")
    mode.add_argument("--cpu", action="store_true", help="a CPU context with numpy arrays")
    args = ap.parse_args()
    on_double(args.double) if args.double else on_cpu() if args.cpu else main()
