"""Host overhead per call on a GPU context (device machine): a small fp16 NHWC
convolution, eager (paskdnn.conv2d from Python), prepared (the graph Runner's
bound C call) and PyTorch eager, per solver; plus a profile of the eager path.

    python bench/host_overhead.py
"""
import cProfile
import pstats
import time

import torch

import paskdnn
from paskdnn import functional as Fn

F = torch.nn.functional


def per_call_us(fn, n=2000):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def main():
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
    main()
