"""Weights to the GPU, three ways, for a zoo model's weights in a final dtype:
paskdnn's path today (one DeviceArray and one synchronous pask_memcpy per
tensor from pageable memory, as graph.Runner's set-up does), and torch's
per-tensor copy against one pinned staging buffer filled on the host and sent
with one asynchronous copy (the pinned allocation counted). Decides whether a
pinned staging buffer would shorten a replica's start (issue 16).

    python3 bench/upload_staging.py [--model resnet50] [--dtype float16] [--repeats 5]
"""
import argparse
import time

import numpy as np

import paskdnn
from paskdnn import models


def ms(t0: float) -> float:
    return 1e3 * (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import torch

    weights = [np.ascontiguousarray(w, dtype=args.dtype) for w in models.state_dict(args.model).values()]
    total = sum(w.nbytes for w in weights)
    print(f"{args.model} {args.dtype}: {len(weights)} tensors, {total / 2**20:.1f} MiB")
    ctx = paskdnn.Context("cuda")
    torch.zeros(1, device="cuda")
    rows = {"paskdnn DeviceArray per tensor (sync)": [], "torch per tensor (sync, pageable)": [],
            "torch pinned staging + 1 async copy (alloc counted)": [], "  of which the pinned allocation": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        kept = [paskdnn.asarray(w, context=ctx) for w in weights]
        rows["paskdnn DeviceArray per tensor (sync)"].append(ms(t0))
        del kept
        t0 = time.perf_counter()
        kept = [torch.from_numpy(w).to("cuda") for w in weights]
        torch.cuda.synchronize()
        rows["torch per tensor (sync, pageable)"].append(ms(t0))
        del kept
        t0 = time.perf_counter()
        staging = torch.empty(total, dtype=torch.uint8, pin_memory=True)
        t1 = time.perf_counter()
        view = staging.numpy()
        off = 0
        for w in weights:
            view[off:off + w.nbytes] = w.view(np.uint8).reshape(-1)
            off += w.nbytes
        dev = staging.to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        rows["torch pinned staging + 1 async copy (alloc counted)"].append(ms(t0))
        rows["  of which the pinned allocation"].append(1e3 * (t1 - t0))
        del staging, dev
    print(f"ms, median of {args.repeats} (first):")
    for name, v in rows.items():
        print(f"  {name:55s} {np.median(v):8.2f}  ({v[0]:.2f})")


if __name__ == "__main__":
    main()
