"""One measured process of the main job (python -m paskdnn coldstart-child; see
paskdnn.coldstart): imports paskdnn, makes the context (or loads a bundle),
builds the model, times the first inference from process start and from
model-ready, then the steady state, and writes its result as JSON. Its own
imports are few: what comes before the context (or a bundle's load) counts in
process start to first result, and a bundle's load starts the device context
before numpy, the graph module and the parent's helpers are imported."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, List, Optional


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
    ap.add_argument("--bundle", default="", help="run the model from this bundle (python -m paskdnn precompile)")
    ap.add_argument("--json-out", required=True)
    a = ap.parse_args(argv)
    t_spawn = float(os.environ.get("PASKDNN_T_SPAWN", time.time()))
    import paskdnn

    if a.bundle:  # the context comes up on a thread of its own while numpy is imported and the bundle checked
        t_import = time.time()  # paskdnn alone: numpy is imported inside load, beside the context
        runner = paskdnn.load(a.bundle, device=a.device, policy=a.policy, cache_dir=a.cache_dir, batch=a.batch)
        ctx, g = runner.ctx, runner.graph
        t_context = time.time()  # context and bundle together (overlapped)
    import numpy as np

    from paskdnn import graph as G
    from paskdnn import models

    from .coldstart import is_onnx

    if not a.bundle:
        t_import = time.time()
        ctx = paskdnn.Context(a.device, policy=a.policy, cache_dir=a.cache_dir)
        t_context = time.time()
        if is_onnx(a.model):  # the import (parse, shape inference, folding) counts in model-ready
            g = paskdnn.load_onnx(a.model, layout=a.layout, dtype=a.dtype, batch=a.batch)
        else:
            g = models.build(a.model, weights=a.weights, seed=0, layout=a.layout, dtype=a.dtype)
        runner = G.Runner(g, ctx, batch=a.batch, hints=True)
    if a.input:
        host = np.load(a.input).astype(np.float32)
        if a.layout == "NHWC" and host.ndim == 4:
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
    steady = _median_run_ms(runner, x, a.steady)
    steady_captured = _captured_steady(runner, x, a.steady)
    result = dict(model=a.model, device=a.device, policy=a.policy, layout=a.layout, dtype=a.dtype, batch=a.batch,
                  import_ms=(t_import - t_spawn) * 1e3, context_ms=(t_context - t_import) * 1e3,
                  model_ready_ms=(t_ready - t_spawn) * 1e3,
                  first_from_start_ms=(t_first - t_spawn) * 1e3, first_from_ready_ms=(t_first - t_ready) * 1e3,
                  first_enqueue_ms=first_enqueue_ms,
                  steady_ms=steady, steady_captured_ms=steady_captured,
                  captures=getattr(runner, "captures", 0), capture_note=getattr(runner, "capture_note", ""),
                  stats=first_stats, layers=report,
                  output_checksum=float(np.abs(out.astype(np.float64)).sum()))
    with open(a.json_out, "w") as f:
        json.dump(result, f)
    return 0


def _median_run_ms(runner: Any, x: Any, runs: int) -> float:
    """Median ms of runs runs of the runner on x (no per-layer report)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(x, record=False)
        times.append((time.perf_counter() - t0) * 1e3)
    import statistics

    return statistics.median(times)


def _captured_steady(runner: Any, x: Any, runs: int, settle_limit: int = 300) -> Optional[float]:
    """Median ms of runs replays of the runner's captured graph (it captures once
    its kernels have stayed settled; up to settle_limit runs are given for that);
    None where the runner does not capture (CPU and HIP contexts, capture off)
    or did not capture within the limit."""
    if not getattr(runner, "capture", False):
        return None
    for _ in range(settle_limit):
        if runner.captured:
            break
        runner.run(x, record=False)
    return _median_run_ms(runner, x, runs) if runner.captured else None
