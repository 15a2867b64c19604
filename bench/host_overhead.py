"""Host overhead per call on a GPU context (device machine): a small fp16 NHWC
convolution, eager (paskdnn.conv2d from Python), prepared (the graph Runner's
bound C call) and PyTorch eager, per solver; plus a profile of the eager path.

    python bench/host_overhead.py

Without a GPU, ``--double LIB`` measures the host side alone on the CUDA test
double (tests/doubles/cuda_cudnn_double.cpp built as LIB; kernels "run" as a
logged no-op) with paskdnn.DeviceArray inputs: the Python layer and the C call,
eager against prepared:

    c++ -std=c++17 -O2 -shared -fPIC -o /tmp/libcuda_double.so tests/doubles/cuda_cudnn_double.cpp -lpthread
    python bench/host_overhead.py --double /tmp/libcuda_double.so
"""
import argparse
import cProfile
import os
import pstats
import tempfile
import time

import numpy as np

import paskdnn
from paskdnn import functional as Fn


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


def on_double(lib_path):
    os.environ["PASKDNN_LIBCUDA"] = lib_path  # the double is the driver and cuDNN; no NVRTC (prebuilt cubins)
    os.environ["PASKDNN_NVRTC"] = "/nonexistent"
    ctx = paskdnn.Context("cuda", cudnn=lib_path, cache_dir=tempfile.mkdtemp(prefix="paskdnn-overhead-"),
                          solvers=["conv2d.cuda_igemm"])
    rng = np.random.default_rng(0)

    def dev(shape):
        return paskdnn.asarray(rng.standard_normal(shape).astype(np.float32), dtype="float16", context=ctx)

    x, w, b, y = dev((1, 8, 8, 16)), dev((16, 3, 3, 16)), dev((16,)), dev((1, 8, 8, 16))
    kw = dict(layout="NHWC", weight_layout="OHWI", activation="relu", context=ctx)
    eager_out = per_call_us_host(lambda: paskdnn.conv2d(x, w, b, 1, 1, out=y, **kw))
    eager_new = per_call_us_host(lambda: paskdnn.conv2d(x, w, b, 1, 1, **kw))
    prepared = paskdnn.conv2d(x, w, b, 1, 1, out=y, **{**kw, "context": Fn._PrepareTarget(ctx)})
    bound = per_call_us_host(prepared)
    print("CUDA test double (host time only), fp16 NHWC conv 1x8x8x16, 3x3, DeviceArray inputs:")
    print(f"  eager, out= given:   {eager_out:6.1f} us/call")
    print(f"  eager, new output:   {eager_new:6.1f} us/call")
    print(f"  prepared (one C call): {bound:4.1f} us/call")
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
    x = torch.randn(1, 8, 8, 16, device="cuda", dtype=torch.float16)
    w = torch.randn(16, 3, 3, 16, device="cuda", dtype=torch.float16)
    b = torch.randn(16, device="cuda", dtype=torch.float16)
    xt, wt = x.permute(0, 3, 1, 2), w.permute(0, 3, 1, 2)
    print(f"torch eager conv+bias+relu: {per_call_us(lambda: F.relu(F.conv2d(xt, wt, b, 1, 1))):.1f} us/call")
    print(f"torch eager conv: {per_call_us(lambda: F.conv2d(xt, wt, None, 1, 1)):.1f} us/call")
    for solver in ("conv2d.cuda_igemm", "conv2d.cudnn"):
        ctx = paskdnn.Context("cuda", solvers=[solver])
        kw = dict(layout="NHWC", weight_layout="OHWI", activation="relu", context=ctx)
        eager = per_call_us(lambda: paskdnn.conv2d(x, w, b, 1, 1, **kw))
        y = torch.empty(1, 8, 8, 16, device="cuda", dtype=torch.float16)
        prepared = paskdnn.conv2d(x, w, b, 1, 1, out=y, **{**kw, "context": Fn._PrepareTarget(ctx)})
        torch.cuda.synchronize()
        print(f"{solver}: eager {eager:.1f} us/call, prepared (one C call) {per_call_us(prepared):.1f} us/call")
        if solver == "conv2d.cudnn":
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
    ap.add_argument("--double", metavar="LIB", help="the CUDA test double's library: host time only, no GPU")
    args = ap.parse_args()
    on_double(args.double) if args.double else main()
