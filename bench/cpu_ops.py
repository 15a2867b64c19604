#!/usr/bin/env python3
"""CPU benchmark for paskdnn: gemm vs numpy, ResNet-50 convs vs PyTorch, import time.

    python bench/cpu_ops.py [--quick] [--out bench/results/cpu.md] [--json PATH]

Sections (all measured in one process, the competitors interleaved rep by rep
so machine noise hits them alike):

1. gemm: ``paskdnn.matmul`` vs numpy's ``a @ b`` (float32), square and skinny shapes.
2. conv2d: the 53 convolutions of torchvision's ResNet-50 (v1.5) at batch 1,
   224x224, float32: paskdnn NCHW (and the solver it chose), an im2col +
   numpy-matmul baseline, ``torch.nn.functional.conv2d`` NCHW; paskdnn NHWC and
   torch channels_last. Per unique shape, times its multiplicity, and a
   sequential pass over all 53 layers.
3. ``import paskdnn`` vs ``import numpy`` in fresh subprocesses, and the first
   paskdnn op call in a fresh process (loads the C library and the kernel).

Timing: warm-up, then the median of several ``time.perf_counter`` repetitions;
times are in ms. Nothing in the OPENBLAS_* environment is set here; the values
found are recorded in the report.

``--quick`` is a smoke run (< 30 s) for CI: fewer shapes and repetitions.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---- timing -----------------------------------------------------------------


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_s() -> Optional[float]:
    """CPU seconds the whole machine has spent busy (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / _HZ  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return None


def _own_s() -> float:
    t = os.times()  # all our threads, plus waited-for children
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Measures how many cores other processes kept busy during a block (in cores)."""

    def __enter__(self):
        self.b0, self.o0, self.w0 = _busy_s(), _own_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = max(time.perf_counter() - self.w0, 1e-9)
        b1 = _busy_s()
        self.cores = None if b1 is None or self.b0 is None else \
            max(0.0, ((b1 - self.b0) - (_own_s() - self.o0)) / wall)
        # /proc/stat ticks are 10 ms: a short block can't be judged
        self.judgeable = wall >= 0.05
        return False


OTHER_LOAD_LIMIT = 0.25  # cores; a timed block with more than this from other processes is re-run
_contaminated = collections.Counter()
_wait = {"budget_s": 0.0, "waited_s": 0.0, "retries": 4}


def wait_for_quiet(max_wait_s: float, window_s: float = 1.0, verbose: bool = True) -> dict:
    """Waits (up to max_wait_s) until other processes use < OTHER_LOAD_LIMIT cores."""
    t0 = time.perf_counter()
    while True:
        with OtherLoad() as ol:
            time.sleep(window_s)
        if ol.cores is None or ol.cores < OTHER_LOAD_LIMIT or time.perf_counter() - t0 >= max_wait_s:
            return {"other_cores": ol.cores, "waited_s": time.perf_counter() - t0}
        if verbose:
            print(f"  machine busy ({ol.cores:.2f} cores used by other processes): waiting", flush=True)


def _pause_for_quiet() -> None:
    """After a contaminated block: wait (from the run's wait budget) for other load to stop."""
    left = _wait["budget_s"] - _wait["waited_s"]
    if left <= 0:
        return
    r = wait_for_quiet(min(left, 20.0), window_s=0.25, verbose=False)
    _wait["waited_s"] += r["waited_s"]


def bench(fns: Dict[str, Callable[[], object]], *, block_s: float, rounds: int, min_reps: int, max_reps: int,
          settle_s: float, tag: str = "") -> Dict[str, dict]:
    """Times each callable in blocks, interleaved: every round runs a block of each
    (order alternating forward/backward between rounds), and the result is the
    median over the samples of all rounds.

    Block-wise rather than call-by-call because on a 2-core machine the worker
    threads of one library keep spinning for tens of ms after its call (OpenBLAS,
    OpenMP) and would be timed as the next library's cost. Each block therefore
    first runs its callable for ``settle_s`` untimed, then times ``block_s`` worth
    of calls. A block during which other processes used more than
    OTHER_LOAD_LIMIT cores is re-run (up to 3 times)."""
    est = {}
    for name, f in fns.items():  # first calls, untimed
        t0 = time.perf_counter()
        f()
        est[name] = time.perf_counter() - t0
    names = list(fns)
    samples: Dict[str, List[float]] = {n: [] for n in names}
    loads: Dict[str, List[float]] = {n: [] for n in names}
    dirty: Dict[str, int] = {n: 0 for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            f = fns[name]
            retries = _wait["retries"]
            for attempt in range(retries + 1):
                t_end = time.perf_counter() + settle_s
                n = 0
                while n < 1 or time.perf_counter() < t_end:
                    t0 = time.perf_counter()
                    f()
                    est[name] = time.perf_counter() - t0
                    n += 1
                reps = int(min(max_reps, max(min_reps, math.ceil(block_s / max(est[name], 1e-7)))))
                block = []
                with OtherLoad() as ol:
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        f()
                        block.append((time.perf_counter() - t0) * 1e3)
                clean = ol.cores is None or not ol.judgeable or ol.cores < OTHER_LOAD_LIMIT
                if clean or attempt == retries:
                    dirty[name] += not clean
                    break
                _contaminated[tag or name] += 1
                _pause_for_quiet()
            samples[name].extend(block)
            if ol.cores is not None:
                loads[name].append(ol.cores)
    return {n: {"median_ms": statistics.median(s), "min_ms": min(s), "reps": len(s), "rounds": rounds,
                "other_load_cores_max": max(loads[n]) if loads[n] else None,
                "loaded_blocks_kept": dirty[n], "samples_ms": s}
            for n, s in samples.items()}


def fmt(v: Optional[float], digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 10:
        return f"{v:.2f}"
    return f"{v:.{digits}f}"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(np.asarray(y, dtype=np.float64) - ref)) / scale)


# ---- environment --------------------------------------------------------------


def cpu_info() -> dict:
    info = {"model_name": platform.processor() or "unknown", "logical_cpus": os.cpu_count(),
            "usable_cpus": THREADS}
    try:
        text = Path("/proc/cpuinfo").read_text()
        first = text.split("\n\n")[0]
        fields = {}
        for line in first.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip()] = v.strip()
        info["model_name"] = fields.get("model name", info["model_name"])
        info["vendor"] = fields.get("vendor_id")
        info["family"] = fields.get("cpu family")
        info["model"] = fields.get("model")
        flags = fields.get("flags", "").split()
        info["avx512f"] = "avx512f" in flags
        info["avx2"] = "avx2" in flags
        info["hypervisor"] = "hypervisor" in flags
    except OSError:
        pass
    if info.get("vendor") == "AuthenticAMD" and info.get("family") == "26":
        info["microarchitecture"] = "Zen 5 (family 26 = 0x1A)"
    return info


def git_rev() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def numpy_blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} ({blas.get('openblas configuration', '').strip()})"
    except Exception:
        return "unknown"


def environment(torch_mod) -> dict:
    env_keys = sorted(k for k in os.environ if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "KMP_",
                                                                "PASKDNN")))
    import paskdnn

    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "torch": getattr(torch_mod, "__version__", None),
        "torch_threads": torch_mod.get_num_threads() if torch_mod else None,
        "paskdnn": paskdnn.__version__,
        "paskdnn_lib_version": paskdnn.version(),
        "paskdnn_threads": paskdnn.get_default_context().num_threads,
        "paskdnn_file": paskdnn.__file__,
        "git": git_rev(),
        "env": {k: os.environ[k] for k in env_keys},
    }
    return env


# ---- 1. gemm ------------------------------------------------------------------

GEMM_FULL = [  # (M, K, N, label)
    (256, 256, 256, "256^3"),
    (512, 512, 512, "512^3"),
    (1024, 1024, 1024, "1024^3"),
    (2048, 2048, 2048, "2048^3"),
    (1, 2048, 1000, "GEMV 1x2048 . 2048x1000 (ResNet-50 fc)"),
    (16, 2048, 1000, "16x2048 . 2048x1000"),
    (64, 4096, 4096, "64x4096 . 4096x4096"),
    (4096, 64, 4096, "4096x64 . 64x4096 (small K)"),
    (3136, 256, 64, "3136x256 . 256x64 (conv-1x1-like)"),
]
GEMM_QUICK = [GEMM_FULL[0], GEMM_FULL[2], GEMM_FULL[4]]


def bench_gemm(shapes, quick: bool) -> List[dict]:
    import paskdnn

    rng = np.random.default_rng(0)
    rows = []
    for m, k, n, label in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        y = paskdnn.matmul(a, b)
        solver = paskdnn.last_solver()
        err_pk = rel_err(y, ref)
        err_np = rel_err(a @ b, ref)
        res = bench({"paskdnn": lambda: paskdnn.matmul(a, b), "numpy": lambda: a @ b}, tag="gemm",
                    **(dict(block_s=0.02, rounds=1, min_reps=2, max_reps=20, settle_s=0.01) if quick else
                       dict(block_s=0.4, rounds=3, min_reps=3, max_reps=300, settle_s=0.2)))
        flop = 2.0 * m * n * k
        t_pk = res["paskdnn"]["median_ms"]
        t_np = res["numpy"]["median_ms"]
        rows.append({
            "label": label, "m": m, "k": k, "n": n, "solver": solver,
            "paskdnn_ms": t_pk, "numpy_ms": t_np,
            "paskdnn_gflops": flop / (t_pk * 1e6), "numpy_gflops": flop / (t_np * 1e6),
            "speed_ratio": t_np / t_pk,  # >1: paskdnn faster
            "rel_err_paskdnn": err_pk, "rel_err_numpy": err_np,
            "reps": res["paskdnn"]["reps"], "raw": res,
            "loaded_blocks_kept": {k: v["loaded_blocks_kept"] for k, v in res.items() if v["loaded_blocks_kept"]},
        })
        print(f"  gemm {label:<42} pask {t_pk:9.3f} ms  numpy {t_np:9.3f} ms  "
              f"ratio {t_np / t_pk:5.2f}  [{solver}]", flush=True)
    return rows


# ---- 2. ResNet-50 convolutions --------------------------------------------------


def resnet50_convs() -> List[dict]:
    """The 53 convolutions of torchvision's resnet50 (v1.5: stride on the 3x3), in
    execution order, for a 224x224 input. Each: c, h, w, o, k, stride, pad, name."""
    layers = [dict(name="conv1", c=3, h=224, w=224, o=64, k=7, stride=2, pad=3)]
    size = 56  # after conv1 (112) and the 3x3/2 max pool
    cin = 64
    for li, (blocks, width, stride) in enumerate([(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)], start=1):
        cout = width * 4
        for bi in range(blocks):
            s = stride if bi == 0 else 1
            p = f"layer{li}.{bi}"
            layers.append(dict(name=f"{p}.conv1", c=cin, h=size, w=size, o=width, k=1, stride=1, pad=0))
            layers.append(dict(name=f"{p}.conv2", c=width, h=size, w=size, o=width, k=3, stride=s, pad=1))
            osize = (size + 2 - 3) // s + 1
            layers.append(dict(name=f"{p}.conv3", c=width, h=osize, w=osize, o=cout, k=1, stride=1, pad=0))
            if bi == 0:
                layers.append(dict(name=f"{p}.downsample", c=cin, h=size, w=size, o=cout, k=1, stride=s, pad=0))
            cin, size = cout, osize
    assert len(layers) == 53, len(layers)
    for L in layers:
        L["oh"] = (L["h"] + 2 * L["pad"] - L["k"]) // L["stride"] + 1
        L["ow"] = (L["w"] + 2 * L["pad"] - L["k"]) // L["stride"] + 1
        L["flop"] = 2.0 * L["o"] * L["c"] * L["k"] * L["k"] * L["oh"] * L["ow"]
    return layers


def shape_key(L: dict) -> Tuple[int, ...]:
    return (L["c"], L["h"], L["w"], L["o"], L["k"], L["stride"], L["pad"])


def shape_label(key: Tuple[int, ...]) -> str:
    c, h, w, o, k, s, p = key
    return f"{k}x{k}/{s} {c}->{o} @{h}" + (f" p{p}" if p else "")


def im2col_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Baseline: im2col (numpy strided view + copy) then one float32 numpy matmul per image."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    wmat = w.reshape(o, c * kh * kw)
    if kh == 1 and kw == 1 and pad == 0:
        xs = x if stride == 1 else x[:, :, ::stride, ::stride]
        cols = np.ascontiguousarray(xs).reshape(n, c, oh * ow)
    else:
        if pad:
            xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.float32)
            xp[:, :, pad:pad + h, pad:pad + wd] = x
        else:
            xp = x
        sn, sc, sh, sw = xp.strides
        view = np.lib.stride_tricks.as_strided(
            xp, shape=(n, c, kh, kw, oh, ow), strides=(sn, sc, sh, sw, sh * stride, sw * stride), writeable=False)
        cols = view.reshape(n, c * kh * kw, oh * ow)  # copies
    y = np.empty((n, o, oh * ow), np.float32)
    for i in range(n):
        np.matmul(wmat, cols[i], out=y[i])
    return y.reshape(n, o, oh, ow)


class ConvCase:
    """Arrays and callables for one unique conv shape."""

    def __init__(self, key, rng, torch_mod):
        import paskdnn

        c, h, w, o, k, s, p = key
        self.key, self.stride, self.pad = key, s, p
        self.x = rng.standard_normal((1, c, h, w), dtype=np.float32)
        self.w = (rng.standard_normal((o, c, k, k), dtype=np.float32) / math.sqrt(c * k * k)).astype(np.float32)
        self.x_nhwc = np.ascontiguousarray(self.x.transpose(0, 2, 3, 1))
        self.w_ohwi = np.ascontiguousarray(self.w.transpose(0, 2, 3, 1))
        pk = paskdnn
        self.fns: Dict[str, Callable[[], object]] = {
            "paskdnn": lambda: pk.conv2d(self.x, self.w, stride=s, padding=p),
            "im2col_numpy": lambda: im2col_conv(self.x, self.w, s, p),
            "paskdnn_nhwc": lambda: pk.conv2d(self.x_nhwc, self.w_ohwi, stride=s, padding=p, layout="NHWC",
                                              weight_layout="OHWI"),
        }
        if torch_mod is not None:
            F = torch_mod.nn.functional
            self.xt = torch_mod.from_numpy(self.x)
            self.wt = torch_mod.from_numpy(self.w)
            self.xt_cl = self.xt.contiguous(memory_format=torch_mod.channels_last)
            self.wt_cl = self.wt.contiguous(memory_format=torch_mod.channels_last)
            self.fns["torch"] = lambda: F.conv2d(self.xt, self.wt, None, s, p)
            self.fns["torch_cl"] = lambda: F.conv2d(self.xt_cl, self.wt_cl, None, s, p)

    def check(self, torch_mod) -> dict:
        """Runs each implementation once; returns the solvers paskdnn chose and the errors
        against a float64 reference (im2col in float64)."""
        import paskdnn

        s, p = self.stride, self.pad
        ref = _im2col_f64(self.x, self.w, s, p)
        out = {}
        y = paskdnn.conv2d(self.x, self.w, stride=s, padding=p)
        out["solver_nchw"] = paskdnn.last_solver()
        out["err_paskdnn"] = rel_err(y, ref)
        y = paskdnn.conv2d(self.x_nhwc, self.w_ohwi, stride=s, padding=p, layout="NHWC", weight_layout="OHWI")
        out["solver_nhwc"] = paskdnn.last_solver()
        out["err_paskdnn_nhwc"] = rel_err(y.transpose(0, 3, 1, 2), ref)
        out["err_im2col_numpy"] = rel_err(im2col_conv(self.x, self.w, s, p), ref)
        if torch_mod is not None:
            with torch_mod.no_grad():
                out["err_torch"] = rel_err(self.fns["torch"]().numpy(), ref)
                out["err_torch_cl"] = rel_err(self.fns["torch_cl"]().numpy(), ref)
        return out


def _im2col_f64(x, w, s, p):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    oh = (h + 2 * p - kh) // s + 1
    ow = (wd + 2 * p - kw) // s + 1
    sn, sc, sh, sw = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, (n, c, kh, kw, oh, ow), (sn, sc, sh, sw, sh * s, sw * s))
    return np.einsum("ok,nkp->nop", w.reshape(o, -1).astype(np.float64),
                     view.reshape(n, c * kh * kw, oh * ow)).reshape(n, o, oh, ow)


def bench_convs(torch_mod, quick: bool) -> dict:
    import contextlib

    layers = resnet50_convs()
    counts = collections.Counter(shape_key(L) for L in layers)
    keys = list(dict.fromkeys(shape_key(L) for L in layers))  # unique, first-seen order
    rng = np.random.default_rng(1)
    cases = {key: ConvCase(key, rng, torch_mod) for key in keys}
    nograd = torch_mod.no_grad() if torch_mod is not None else contextlib.nullcontext()
    rows = []
    with nograd:
        for key in keys:
            case = cases[key]
            chk = case.check(torch_mod)
            res = bench(case.fns, tag="conv",
                        **(dict(block_s=0.01, rounds=1, min_reps=2, max_reps=10, settle_s=0.005) if quick else
                           dict(block_s=0.08, rounds=4, min_reps=3, max_reps=200, settle_s=0.12)))
            L = next(L for L in layers if shape_key(L) == key)
            row = {"shape": shape_label(key), "key": list(key), "count": counts[key], "flop": L["flop"],
                   "names": [M["name"] for M in layers if shape_key(M) == key], **chk,
                   "reps": res["paskdnn"]["reps"]}
            row["loaded_blocks_kept"] = {}
            for name, r in res.items():
                row[f"{name}_ms"] = r["median_ms"]
                row[f"{name}_min_ms"] = r["min_ms"]
                row[f"{name}_samples_ms"] = r["samples_ms"]
                if r["loaded_blocks_kept"]:
                    row["loaded_blocks_kept"][name] = r["loaded_blocks_kept"]
            rows.append(row)
            tt = row.get("torch_ms")
            print(f"  conv {row['shape']:<26} x{counts[key]:<2} pask {row['paskdnn_ms']:8.3f} ms "
                  f"[{chk['solver_nchw']}]  im2col {row['im2col_numpy_ms']:8.3f}  torch {fmt(tt):>8}  "
                  f"nhwc {row['paskdnn_nhwc_ms']:8.3f} [{chk['solver_nhwc']}]  torch_cl {fmt(row.get('torch_cl_ms')):>8}",
                  flush=True)

        methods = [m for m in ("paskdnn", "im2col_numpy", "torch", "paskdnn_nhwc", "torch_cl") if f"{m}_ms" in rows[0]]
        totals = {m: sum(r[f"{m}_ms"] * r["count"] for r in rows) for m in methods}

        # a sequential pass over the 53 layers in network order (cache effects as in a forward pass)
        seq_fns = {}
        for m in methods:
            calls = [cases[shape_key(L)].fns[m] for L in layers]
            seq_fns[m] = (lambda calls=calls: [f() for f in calls])
        seq = bench(seq_fns, tag="conv_sequential",
                    **(dict(block_s=0.0, rounds=1, min_reps=1, max_reps=1, settle_s=0.0) if quick else
                       dict(block_s=0.4, rounds=3, min_reps=3, max_reps=50, settle_s=0.2)))
    total_flop = sum(L["flop"] for L in layers)
    return {
        "layers": [{k: v for k, v in L.items()} for L in layers],
        "rows": rows, "methods": methods, "totals_ms": totals, "total_gflop": total_flop / 1e9,
        "sequential_ms": {m: seq[m]["median_ms"] for m in methods},
        "sequential_raw": seq,
    }


def bench_conv_solvers(rows: List[dict], quick: bool) -> List[dict]:
    """Diagnostic: every applicable conv solver forced through Context(solvers=[...]),
    to see whether the registry's choice was the fastest one (paskdnn only)."""
    import paskdnn

    names = [s["name"] for s in paskdnn.solvers() if s["op"] == "conv2d"]
    ctxs = {}
    for n in names:
        try:
            ctxs[n] = paskdnn.Context(solvers=[n], num_threads=THREADS)
        except Exception:
            pass
    rng = np.random.default_rng(2)
    out = []
    for row in rows:
        c, h, w, o, k, s, p = row["key"]
        x = rng.standard_normal((1, c, h, w), dtype=np.float32)
        wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
        fns = {}
        for n, ctx in ctxs.items():
            try:
                paskdnn.conv2d(x, wt, stride=s, padding=p, context=ctx)
            except Exception:
                continue  # not applicable
            fns[n] = (lambda ctx=ctx: paskdnn.conv2d(x, wt, stride=s, padding=p, context=ctx))
        res = bench(fns, tag="conv_solver_check", block_s=0.1, rounds=2, min_reps=3, max_reps=100, settle_s=0.02)
        times = {n: r["median_ms"] for n, r in res.items()}
        best = min(times, key=times.get)
        out.append({"shape": row["shape"], "chosen": row["solver_nchw"], "times_ms": times, "fastest": best})
    return out


# ---- 3. import time and first call ------------------------------------------------

_IMPORT_NUMPY = ("import time; t0 = time.perf_counter(); import numpy; "
                 "print(repr((time.perf_counter() - t0) * 1e3))")
_IMPORT_PASKDNN = ("import time; t0 = time.perf_counter(); import paskdnn; "
                   "print(repr((time.perf_counter() - t0) * 1e3))")
_IMPORT_BOTH = ("import time; t0 = time.perf_counter(); import numpy; t1 = time.perf_counter(); import paskdnn; "
                "t2 = time.perf_counter(); print([(t1 - t0) * 1e3, (t2 - t1) * 1e3])")

_FIRST_CALL = r"""
import time, json
t0 = time.perf_counter()
import numpy as np
import paskdnn
t_import = (time.perf_counter() - t0) * 1e3
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 64, 56, 56), dtype=np.float32)
w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
a = rng.standard_normal((256, 256), dtype=np.float32)
b = rng.standard_normal((256, 256), dtype=np.float32)
out = {"import_ms": t_import}
def conv(): return paskdnn.conv2d(x, w, padding=1)
def mm(): return paskdnn.matmul(a, b)
ops = {"conv": conv, "matmul": mm}
first = "%(first)s"
if %(load_first)s:
    import paskdnn._lib  # a submodule: import paskdnn imports it on first use, not at once
    t = time.perf_counter(); paskdnn._lib.load(); out["lib_load_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter(); paskdnn.get_default_context(); out["context_ms"] = (time.perf_counter() - t) * 1e3
order = [first] + [k for k in ops if k != first]
for name in order:
    t = time.perf_counter(); ops[name](); out[name + "_first_ms"] = (time.perf_counter() - t) * 1e3
    out[name + "_solver"] = paskdnn.last_solver()
    t = time.perf_counter(); ops[name](); out[name + "_second_ms"] = (time.perf_counter() - t) * 1e3
    ts = []
    for _ in range(5):
        t = time.perf_counter(); ops[name](); ts.append((time.perf_counter() - t) * 1e3)
    out[name + "_steady_ms"] = sorted(ts)[2]
print(json.dumps(out))
"""


def _run_py(code: str, cwd: str, env: Optional[dict] = None, *, retries: int = 3, tag: str = "import") -> str:
    """Runs ``python -c code`` and returns its last stdout line. Re-runs a sample during
    which other processes used more than OTHER_LOAD_LIMIT cores, or one over 2 s (an
    editable install rebuilding inside the import)."""
    for attempt in range(retries + 1):
        with OtherLoad() as ol:
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=600)
            wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"subprocess failed ({p.returncode}): {p.stderr[-1500:]}")
        busy = ol.cores is not None and ol.judgeable and ol.cores >= OTHER_LOAD_LIMIT
        if attempt < retries and (busy or wall > 2.0):
            _contaminated[tag] += 1
            _pause_for_quiet()
            continue
        lines = p.stdout.strip().splitlines()
        return lines[-1] if lines else ""
    raise AssertionError("unreachable")


def _editable_build_path() -> Optional[str]:
    for finder in sys.meta_path:
        bp = getattr(finder, "_build_path", None)
        if bp and "paskdnn" in type(finder).__module__ + str(getattr(finder, "_name", "")):
            return bp
    return None


def bench_import(quick: bool) -> dict:
    runs = 5 if quick else 9
    med = statistics.median
    tmp = tempfile.mkdtemp(prefix="paskdnn-bench-")
    # warm-up: fills the OS file cache and lets an editable install finish a pending rebuild
    t = time.perf_counter()
    _run_py("import paskdnn; paskdnn.conv2d", tmp, retries=0)
    res: dict = {"runs": runs, "warmup_s": time.perf_counter() - t, "numpy_only_ms": [], "paskdnn_only_ms": [],
                 "both_numpy_ms": [], "both_paskdnn_after_numpy_ms": []}
    for _ in range(runs):  # interleaved
        res["numpy_only_ms"].append(float(_run_py(_IMPORT_NUMPY, tmp)))
        res["paskdnn_only_ms"].append(float(_run_py(_IMPORT_PASKDNN, tmp)))
        tn, tp = json.loads(_run_py(_IMPORT_BOTH, tmp))
        res["both_numpy_ms"].append(tn)
        res["both_paskdnn_after_numpy_ms"].append(tp)
    res["numpy_median_ms"] = med(res["numpy_only_ms"])
    res["paskdnn_median_ms"] = med(res["paskdnn_only_ms"])
    res["beyond_numpy_separate_ms"] = res["paskdnn_median_ms"] - res["numpy_median_ms"]
    res["beyond_numpy_same_process_ms"] = med(res["both_paskdnn_after_numpy_ms"])

    # Editable installs: meson-python's import hook runs `ninja` (a no-op when nothing
    # changed) on import. Also measure without that hook, importing the source tree as
    # a wheel install would (the package code is the same; only the hook is skipped).
    build_path = _editable_build_path()
    res["editable_build_path"] = build_path
    if build_path:
        env = dict(os.environ)
        env["MESONPY_EDITABLE_SKIP"] = build_path
        vals = [json.loads(_run_py(_IMPORT_BOTH, str(REPO), env))[1] for _ in range(runs)]
        res["no_editable_hook_after_numpy_ms"] = vals
        res["no_editable_hook_beyond_numpy_ms"] = med(vals)

    # where the import time goes: -X importtime, modules imported after numpy
    try:
        p = subprocess.run([sys.executable, "-X", "importtime", "-c", "import numpy; import paskdnn"], cwd=tmp,
                           capture_output=True, text=True, timeout=600)
        rows, after_numpy = [], False
        for line in p.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cum_us, name = (f.strip() for f in line[len("import time:"):].split("|"))
            if after_numpy:
                rows.append((int(self_us) / 1e3, int(cum_us) / 1e3, name.strip()))
            elif name == "numpy":  # numpy's own top-level line ends its subtree
                after_numpy = True
        rows.sort(key=lambda r: -r[0])
        res["importtime_after_numpy_top"] = [{"module": n, "self_ms": a, "cumulative_ms": c} for a, c, n in rows[:8]]
    except Exception as e:
        res["importtime_after_numpy_top"] = [{"module": f"failed: {e}", "self_ms": 0.0, "cumulative_ms": 0.0}]

    # first op in a fresh process
    first = {}
    nfc = 3 if quick else 7
    for label, op, load_first in (("conv_first", "conv", False), ("matmul_first", "matmul", False),
                                  ("load_then_conv", "conv", True)):
        samples = [json.loads(_run_py(_FIRST_CALL % {"first": op, "load_first": load_first}, tmp, tag="first_call"))
                   for _ in range(nfc)]
        agg = {k: (v if isinstance(v, str) else med(s[k] for s in samples)) for k, v in samples[0].items()}
        first[label] = {"median": agg, "samples": samples}
    res["first_call"] = first
    return res


# ---- report -------------------------------------------------------------------


def write_report(path: Path, env: dict, gemm: List[dict], conv: dict, solver_diag: Optional[List[dict]],
                 imp: dict, quick: bool, elapsed_s: float) -> str:
    L: List[str] = []
    cpu = env["cpu"]
    L.append("# paskdnn CPU benchmark" + (" (--quick smoke run)" if quick else ""))
    L.append("")
    L.append(f"- Date: {env['date']}")
    L.append(f"- Command: `{env['command']}` (cwd `{env['cwd']}`), {elapsed_s:.0f} s")
    L.append(f"- CPU: {cpu.get('model_name')} ({cpu.get('microarchitecture', 'family ' + str(cpu.get('family')))}, "
             f"model {cpu.get('model')}), {cpu.get('usable_cpus')} usable cores, AVX-512F: {cpu.get('avx512f')}, "
             f"VM: {cpu.get('hypervisor')}")
    L.append(f"- Python {env['python']} on {env['platform']}")
    L.append(f"- numpy {env['numpy']}, BLAS: {env['numpy_blas']}")
    L.append(f"- torch {env['torch'] or 'not installed'}" +
             (f", `torch.set_num_threads({env['torch_threads']})`" if env['torch'] else ""))
    L.append(f"- paskdnn {env['paskdnn']} (library {env['paskdnn_lib_version']}), git `{env['git']}`, "
             f"default context threads: {env['paskdnn_threads']}")
    envs = ", ".join(f"`{k}={v}`" for k, v in env["env"].items()) or "none set"
    L.append(f"- Thread/BLAS environment (left as found): {envs}")
    L.append("- Method: all competitors in one process, interleaved in blocks: each round runs a block of each "
             "(order reversed every other round); a block first runs its op untimed for a settle time (so "
             "OpenBLAS/OpenMP worker threads still spinning from the previous library's call are not billed to "
             "this one; on 2 cores that costs 5-50x), then times back-to-back calls with `time.perf_counter`. "
             "Reported: median over all rounds' calls, in ms. Blocks during which other processes kept more than "
             f"{OTHER_LOAD_LIMIT} cores busy are re-run.")
    cb = env.get("contaminated_blocks_rerun") or {}
    L.append(f"- Machine load: other processes used {fmt(env.get('other_load_at_start_cores'))} cores at the start "
             f"(waited {env.get('waited_for_quiet_s', 0):.0f} s for quiet); blocks re-run for outside load: "
             + (", ".join(f"{k} {v}" for k, v in sorted(cb.items())) or "none")
             + f" (after waiting {env.get('waited_for_quiet_during_run_s', 0):.0f} s in all for quiet). "
             "Rows marked † kept a block measured under outside load (retries exhausted).")
    L.append("")

    # aims
    g1024 = next((g for g in gemm if (g["m"], g["k"], g["n"]) == (1024, 1024, 1024)), None)
    tot = conv["totals_ms"]
    conv_ratio = ratio(tot.get("paskdnn"), tot.get("torch"))
    imp_beyond = imp.get("beyond_numpy_same_process_ms")
    L.append("## Against the aims")
    L.append("")
    L.append("| aim | target | measured | verdict |")
    L.append("|---|---|---|---|")
    if g1024:
        ok = g1024["speed_ratio"] >= 0.8
        L.append(f"| gemm 1024³ vs numpy `a @ b` | ≥ 0.8x numpy's speed | {g1024['speed_ratio']:.2f}x "
                 f"({g1024['paskdnn_gflops']:.0f} vs {g1024['numpy_gflops']:.0f} GFLOP/s) | "
                 f"{'**met**' if ok else '**missed**'} |")
    if conv_ratio is not None:
        ok = conv_ratio <= 2.0
        L.append(f"| ResNet-50, 53 convs, batch 1, NCHW | ≤ 2x PyTorch CPU time | {conv_ratio:.2f}x "
                 f"({tot['paskdnn']:.1f} vs {tot['torch']:.1f} ms) | {'**met**' if ok else '**missed**'} |")
    else:
        L.append("| ResNet-50, 53 convs, batch 1 | ≤ 2x PyTorch CPU time | torch not installed | not measured |")
    if imp_beyond is not None:
        ok = imp_beyond < 50
        L.append(f"| `import paskdnn` beyond numpy | < 50 ms | {imp_beyond:.1f} ms | "
                 f"{'**met**' if ok else '**missed**'} |")
    else:
        L.append("| `import paskdnn` beyond numpy | < 50 ms | failed (see section 3) | not measured |")
    L.append("")
    notes = []
    if conv_ratio is not None:
        seq = conv["sequential_ms"]
        notes.append(f"Sequential 53-layer pass (network order): paskdnn {seq['paskdnn']:.1f} ms vs torch "
                     f"{seq['torch']:.1f} ms = {seq['paskdnn'] / seq['torch']:.2f}x. NHWC: paskdnn "
                     f"{tot['paskdnn_nhwc']:.1f} ms vs torch channels_last {tot['torch_cl']:.1f} ms = "
                     f"{tot['paskdnn_nhwc'] / tot['torch_cl']:.2f}x.")
    if "no_editable_hook_beyond_numpy_ms" in imp:
        notes.append(f"The import figure is for this editable install, whose meson-python hook runs a no-op "
                     f"`ninja` check on import; without that hook (source tree, as a wheel imports) it is "
                     f"{imp['no_editable_hook_beyond_numpy_ms']:.1f} ms.")
    if "OPENBLAS_CORETYPE" in env["env"]:
        notes.append(f"`OPENBLAS_CORETYPE={env['env']['OPENBLAS_CORETYPE']}` is set in this environment, so "
                     f"numpy's OpenBLAS runs its {env['env']['OPENBLAS_CORETYPE']} kernels, not AVX-512 ones; "
                     f"numpy is measured as CI runs it.")
    for n in notes:
        L.append(f"- {n}")
    L.append("")

    # gemm
    L.append("## 1. GEMM: `paskdnn.matmul` vs numpy `a @ b` (float32)")
    L.append("")
    L.append("ratio = numpy time / paskdnn time (> 1: paskdnn faster). err = max|y - ref| / max|ref| vs float64.")
    L.append("")
    L.append("| shape (MxK . KxN) | solver | paskdnn ms | numpy ms | paskdnn GFLOP/s | numpy GFLOP/s | ratio | err pask / numpy | reps |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for g in gemm:
        dag = " †" + ",".join(g["loaded_blocks_kept"]) if g.get("loaded_blocks_kept") else ""
        L.append(f"| {g['label']}{dag} | {g['solver']} | {fmt(g['paskdnn_ms'])} | {fmt(g['numpy_ms'])} | "
                 f"{g['paskdnn_gflops']:.1f} | {g['numpy_gflops']:.1f} | {g['speed_ratio']:.2f} | "
                 f"{g['rel_err_paskdnn']:.1e} / {g['rel_err_numpy']:.1e} | {g['reps']} |")
    L.append("")

    # conv
    L.append("## 2. ResNet-50 convolutions, batch 1, 224x224, float32")
    L.append("")
    L.append(f"{len(conv['layers'])} convs ({len(conv['rows'])} unique shapes, {conv['total_gflop']:.2f} GFLOP). "
             "`im2col+numpy` is the bench's own baseline (strided view + copy, one numpy float32 matmul). "
             "NHWC columns: paskdnn `layout=\"NHWC\", weight_layout=\"OHWI\"` vs torch channels_last "
             "(input and weight). Times are per call (median); totals weight each shape by its count.")
    L.append("")
    has_t = "torch" in conv["methods"]
    hdr = "| shape (k/stride cin->cout @in) | n | paskdnn solver | paskdnn | im2col+numpy |"
    sep = "|---|---:|---|---:|---:|"
    if has_t:
        hdr += " torch | pask/torch |"
        sep += "---:|---:|"
    hdr += " NHWC solver | paskdnn NHWC |"
    sep += "---|---:|"
    if has_t:
        hdr += " torch CL | pask/torch NHWC |"
        sep += "---:|---:|"
    L.append(hdr)
    L.append(sep)
    for r in conv["rows"]:
        dag = " †" + ",".join(r["loaded_blocks_kept"]) if r.get("loaded_blocks_kept") else ""
        line = (f"| {r['shape']}{dag} | {r['count']} | {r['solver_nchw']} | {fmt(r['paskdnn_ms'])} | "
                f"{fmt(r['im2col_numpy_ms'])} |")
        if has_t:
            line += f" {fmt(r['torch_ms'])} | {r['paskdnn_ms'] / r['torch_ms']:.2f} |"
        line += f" {r['solver_nhwc']} | {fmt(r['paskdnn_nhwc_ms'])} |"
        if has_t:
            line += f" {fmt(r['torch_cl_ms'])} | {r['paskdnn_nhwc_ms'] / r['torch_cl_ms']:.2f} |"
        L.append(line)
    L.append("")
    L.append("Totals over all 53 convs (ms):")
    L.append("")
    L.append("| | " + " | ".join(conv["methods"]) + " |")
    L.append("|---|" + "---:|" * len(conv["methods"]))
    L.append("| sum of per-shape medians x count | " + " | ".join(fmt(tot[m]) for m in conv["methods"]) + " |")
    L.append("| sequential pass, network order | " +
             " | ".join(fmt(conv["sequential_ms"][m]) for m in conv["methods"]) + " |")
    L.append("| GFLOP/s (sum) | " + " | ".join(f"{conv['total_gflop'] / tot[m] * 1e3:.0f}" for m in conv["methods"]) + " |")
    L.append("")
    rl = [("paskdnn / im2col+numpy", "paskdnn", "im2col_numpy")]
    if has_t:
        rl += [("paskdnn / torch (NCHW)", "paskdnn", "torch"), ("paskdnn NHWC / torch channels_last", "paskdnn_nhwc", "torch_cl"),
               ("im2col+numpy / torch", "im2col_numpy", "torch")]
    rl += [("paskdnn NHWC / paskdnn NCHW", "paskdnn_nhwc", "paskdnn")]
    L.append("Ratios of totals (time / time, < 1: the first is faster): " + "; ".join(
        f"{lbl} = {tot[a] / tot[b]:.2f}x (sequential {conv['sequential_ms'][a] / conv['sequential_ms'][b]:.2f}x)"
        for lbl, a, b in rl) + ".")
    L.append("")
    errs = [k for k in ("err_paskdnn", "err_paskdnn_nhwc", "err_im2col_numpy", "err_torch", "err_torch_cl")
            if k in conv["rows"][0]]
    L.append("Worst relative error over the shapes vs a float64 reference: " + ", ".join(
        f"{k[4:]} {max(r[k] for r in conv['rows']):.1e}" for k in errs) + ".")
    L.append("")

    if solver_diag:
        L.append("### Solver check (paskdnn NCHW, each applicable solver forced via "
                 f"`Context(solvers=[name], num_threads={THREADS})`; ms per call)")
        L.append("")
        names = sorted({n for d in solver_diag for n in d["times_ms"]})
        L.append("| shape | chosen | " + " | ".join(names) + " | fastest |")
        L.append("|---|---|" + "---:|" * len(names) + "---|")
        for d in solver_diag:
            mark = "" if d["fastest"] == d["chosen"] else " ⚠"
            L.append(f"| {d['shape']} | {d['chosen']} | " +
                     " | ".join(fmt(d["times_ms"].get(n)) for n in names) + f" | {d['fastest']}{mark} |")
        L.append("")

    # import
    L.append("## 3. Import time and first call (fresh subprocesses)")
    L.append("")
    if "error" in imp:
        L.append(f"Failed: `{imp['error'][:500]}`")
        L.append("")
        text = "\n".join(L)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return text
    L.append(f"Medians of {imp['runs']} runs each (time.perf_counter around the import in `python -c`).")
    L.append("")
    L.append("| measurement | ms |")
    L.append("|---|---:|")
    L.append(f"| `import numpy` alone | {imp['numpy_median_ms']:.1f} |")
    L.append(f"| `import paskdnn` alone (imports numpy) | {imp['paskdnn_median_ms']:.1f} |")
    L.append(f"| difference of the two | {imp['beyond_numpy_separate_ms']:.1f} |")
    L.append(f"| **`import paskdnn` right after `import numpy`, same process (beyond numpy)** | "
             f"**{imp['beyond_numpy_same_process_ms']:.1f}** |")
    if "no_editable_hook_beyond_numpy_ms" in imp:
        L.append(f"| same, editable meson-python hook bypassed (`MESONPY_EDITABLE_SKIP`, source tree) | "
                 f"{imp['no_editable_hook_beyond_numpy_ms']:.1f} |")
    L.append("")
    top = imp.get("importtime_after_numpy_top") or []
    if top:
        L.append("`python -X importtime -c \"import numpy; import paskdnn\"`, largest self times after numpy "
                 "(one run; includes the editable hook's work inside `paskdnn`): " +
                 ", ".join(f"`{t['module']}` {t['self_ms']:.1f} ms" for t in top[:6]) + ".")
        L.append("")
    fc = imp["first_call"]
    L.append("First paskdnn op in a fresh process (after the imports; conv = 1x64x56x56 * 64x64x3x3 pad 1, "
             "matmul = 256³). The first call includes creating the default context, loading libpaskdnn "
             "via cffi, and fetching the kernel.")
    L.append("")
    L.append("| process | first op | first call | 2nd call | steady | other op first call | other op steady |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for label, first, other in (("conv_first", "conv", "matmul"), ("matmul_first", "matmul", "conv")):
        m = fc[label]["median"]
        L.append(f"| {label} | {first} [{m[first + '_solver']}] | {m[first + '_first_ms']:.2f} | "
                 f"{m[first + '_second_ms']:.3f} | {m[first + '_steady_ms']:.3f} | {m[other + '_first_ms']:.2f} | "
                 f"{m[other + '_steady_ms']:.3f} |")
    m = fc["load_then_conv"]["median"]
    L.append("")
    L.append(f"Split (process that loads first): `paskdnn._lib.load()` (cffi cdef + dlopen) {m['lib_load_ms']:.2f} ms, "
             f"default context creation {m['context_ms']:.2f} ms, then first conv {m['conv_first_ms']:.2f} ms "
             f"(steady {m['conv_steady_ms']:.3f} ms).")
    L.append("")
    text = "\n".join(L)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer shapes and repetitions (< 30 s)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu.md"), help="markdown report path")
    ap.add_argument("--json", default=None, help="raw numbers (default: --out with .json)")
    ap.add_argument("--wait-idle", type=float, default=120.0,
                    help="full runs: wait up to this many seconds for other processes to go quiet first")
    ap.add_argument("--wait-budget", type=float, default=300.0,
                    help="full runs: total seconds to spend waiting out outside load before re-running a block")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it imports")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    import paskdnn

    torch_mod = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(THREADS)
            torch_mod = torch
        except ImportError:
            print("torch not importable: skipping the PyTorch columns", file=sys.stderr)

    env = environment(torch_mod)
    print(f"paskdnn CPU bench: {env['cpu']['model_name']}, {THREADS} threads, numpy {env['numpy']}, "
          f"torch {env['torch']}", flush=True)

    quiet = wait_for_quiet(0 if args.quick else args.wait_idle, window_s=0.2 if args.quick else 1.0)
    _wait["budget_s"] = 0.0 if args.quick else args.wait_budget
    _wait["retries"] = 1 if args.quick else 5
    env["other_load_at_start_cores"] = quiet["other_cores"]
    env["waited_for_quiet_s"] = quiet["waited_s"]

    print("[1/3] import time and first call (fresh processes)", flush=True)
    try:
        imp = bench_import(args.quick)
    except Exception as e:  # e.g. the editable install fails to rebuild in a fresh process
        print(f"import benchmark failed: {e}", file=sys.stderr)
        imp = {"error": str(e)}
    print("[2/3] gemm", flush=True)
    gemm = bench_gemm(GEMM_QUICK if args.quick else GEMM_FULL, args.quick)
    print("[3/3] ResNet-50 convs", flush=True)
    conv = bench_convs(torch_mod, args.quick)
    solver_diag = None if args.quick else bench_conv_solvers(conv["rows"], args.quick)
    if "error" in imp and not args.quick:  # the tree may have been mid-rebuild: one more try at the end
        print("[1/3 again] import time and first call", flush=True)
        try:
            imp = bench_import(args.quick)
        except Exception as e:
            print(f"import benchmark failed again: {e}", file=sys.stderr)
    env["contaminated_blocks_rerun"] = dict(_contaminated)
    env["waited_for_quiet_during_run_s"] = _wait["waited_s"]
    env["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    elapsed = time.perf_counter() - t_start
    out = Path(args.out)
    text = write_report(out, env, gemm, conv, solver_diag, imp, args.quick, elapsed)
    jpath = Path(args.json) if args.json else out.with_suffix(".json")
    jpath.write_text(json.dumps({"environment": env, "quick": args.quick, "elapsed_s": elapsed, "gemm": gemm,
                                 "conv": conv, "conv_solver_check": solver_diag, "import": imp}, indent=1))
    print()
    print(text.split("## 1.")[0])
    print(f"wrote {out} and {jpath} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
