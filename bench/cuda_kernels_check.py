#!/usr/bin/env python3
"""Device test + timing harness for paskdnn's CUDA kernels (src/kernels/cuda).

    python3 bench/cuda_kernels_check.py [--quick] [--no-time] [--out DIR]
    python3 bench/cuda_kernels_check.py --mobilenet 32 [--depthwise-only] [--baseline-kdir DIR ...]

Compiles every kernel source with NVRTC (cuda.bindings.nvrtc) for the device's
arch and each dtype, launches through the driver API (cuda.bindings.driver) on
torch tensors with the launch geometry from pask_cuda_abi.h (compiled into a
small shared library with the host C compiler), checks against float64 PyTorch
references (outputs poisoned with NaN first, random inputs), then times the
igemm conv vs cuDNN (fp16, channels_last) on ResNet-50 shapes and gemm vs
torch.matmul. Logs go to DIR (default $OUT or bench/results). --mobilenet BATCH
only times MobileNetV2's igemm and depthwise layers (both igemm tiles), against
cuDNN through PyTorch and, with --baseline-kdir (repeatable), against other folders'
kernel sources (e.g. `git show OLD:src/kernels/cuda/...` written into DIR), each
labelled by its folder's name; --depthwise-only leaves out the igemm layers.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import math
import os
import random
import subprocess
import sys
import tempfile

# torch and cuda.bindings are imported by main(), so that the ABI mirrors below
# can be checked on a machine without them (tests/test_bench_abi.py)
torch = F = cu = nvrtc = None

HERE = os.path.dirname(os.path.abspath(__file__))
KDIR = os.path.normpath(os.path.join(HERE, "..", "src", "kernels", "cuda"))
DT = {0: "float32", 1: "float16", 2: "bfloat16"}  # torch dtype names
DTN = {0: "f32", 1: "f16", 2: "bf16"}
TOL = {0: 1.5e-3, 1: 2e-3, 2: 1e-2}
NCHW, NHWC = 0, 1

LOG = []


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    LOG.append(s)


def chk(r):
    err = r[0]
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return r[1] if len(r) == 2 else r[1:]


# ---------------------------------------------------------------- ABI structs
class ConvP(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in
                "n c h w o kh kw oh ow stride_h stride_w pad_top pad_left dil_h dil_w groups".split()] + [
        ("layout", ctypes.c_int), ("weight_layout", ctypes.c_int),
        ("x", ctypes.c_void_p), ("weight", ctypes.c_void_p), ("bias", ctypes.c_void_p),
        ("residual", ctypes.c_void_p), ("y", ctypes.c_void_p),
        ("alpha", ctypes.c_float), ("beta", ctypes.c_float), ("activation", ctypes.c_int),
        ("act_p", ctypes.c_float * 2), ("splits", ctypes.c_int), ("partial", ctypes.c_void_p), ("y_nchw", ctypes.c_int)]


class GemmP(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in "m n k lda ldb ldc".split()] + [
        ("trans_a", ctypes.c_int), ("trans_b", ctypes.c_int),
        ("a", ctypes.c_void_p), ("b", ctypes.c_void_p), ("bias", ctypes.c_void_p), ("c", ctypes.c_void_p),
        ("alpha", ctypes.c_float), ("beta", ctypes.c_float), ("activation", ctypes.c_int),
        ("act_p", ctypes.c_float * 2), ("splits", ctypes.c_int), ("partial", ctypes.c_void_p)]


class PoolP(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in
                "n c h w oh ow kh kw stride_h stride_w pad_top pad_left pad_bottom pad_right dil_h dil_w "
                "divisor_override".split()] + [
        ("mode", ctypes.c_int), ("count_include_pad", ctypes.c_int), ("layout", ctypes.c_int), ("pad_", ctypes.c_int),
        ("x", ctypes.c_void_p), ("y", ctypes.c_void_p)]


GEOM_C = r'''
#include "pask_cuda_abi.h"
#include <stddef.h>
#define W(name, T) void w_##name(T *p, int es, unsigned *g, unsigned *b, unsigned *s) { (void)es; pask_cuda_##name##_launch(p, g, b, s); }
/* the mma kernels unsplit (sms = 0): no partial sums to reduce */
#define WS(name, T) void w_##name(T *p, int es, unsigned *g, unsigned *b, unsigned *s) { pask_cuda_##name##_launch(p, es, 0, g, b, s); }
WS(conv2d_igemm, pask_cuda_conv2d_params)
W(conv2d_depthwise, pask_cuda_conv2d_params)
void w_conv2d_depthwise_vec4(pask_cuda_conv2d_params *p, int es, unsigned *g, unsigned *b, unsigned *s) {
    pask_cuda_conv2d_depthwise_vec_launch(p, es, 4, g, b, s);
}
WS(gemm, pask_cuda_gemm_params)
W(pool2d, pask_cuda_pool2d_params)
W(pool2d_global_avg, pask_cuda_pool2d_params)
size_t sz_conv(void) { return sizeof(pask_cuda_conv2d_params); }
size_t sz_gemm(void) { return sizeof(pask_cuda_gemm_params); }
size_t sz_pool(void) { return sizeof(pask_cuda_pool2d_params); }
'''


def build_geom():
    d = tempfile.mkdtemp()
    src, so = os.path.join(d, "geom.c"), os.path.join(d, "geom.so")
    open(src, "w").write(GEOM_C)
    subprocess.check_call(["cc", "-O1", "-shared", "-fPIC", "-std=c99", "-Wall", "-I", KDIR, src, "-o", so])
    lib = ctypes.CDLL(so)
    for f in ("sz_conv", "sz_gemm", "sz_pool"):
        getattr(lib, f).restype = ctypes.c_size_t
    assert lib.sz_conv() == ctypes.sizeof(ConvP), (lib.sz_conv(), ctypes.sizeof(ConvP))
    assert lib.sz_gemm() == ctypes.sizeof(GemmP)
    assert lib.sz_pool() == ctypes.sizeof(PoolP)
    return lib


GEOM = None


def geometry(kind, p, es=2):
    g = (ctypes.c_uint * 3)()
    b = (ctypes.c_uint * 3)()
    s = ctypes.c_uint()
    getattr(GEOM, "w_" + kind)(ctypes.byref(p), es, g, b, ctypes.byref(s))
    return tuple(g), tuple(b), s.value


# ---------------------------------------------------------------- NVRTC
ARCH = None
MODS = {}


def compile_src(fname, dtype, defines=(), kdir=None):
    kdir = kdir or KDIR
    key = (fname, dtype, tuple(defines), kdir)
    if key in MODS:
        return MODS[key]
    src = open(os.path.join(kdir, fname), "rb").read()
    prog = chk(nvrtc.nvrtcCreateProgram(src, fname.encode(), 0, [], []))
    opts = [b"-std=c++17", f"--gpu-architecture=sm_{ARCH}".encode(), f"-DPASK_DTYPE={dtype}".encode(),
            b"-I" + kdir.encode()] + [f"-D{d}".encode() for d in defines]
    r = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    lsz = chk(nvrtc.nvrtcGetProgramLogSize(prog))
    logb = b" " * lsz
    nvrtc.nvrtcGetProgramLog(prog, logb)
    if int(r[0]) != 0:
        raise RuntimeError(f"NVRTC failed for {key}:\n{logb.decode(errors='replace')}")
    if lsz > 2 and logb.strip(b" \x00\n"):
        log(f"nvrtc log {key}: {logb.decode(errors='replace').strip()}")
    n = chk(nvrtc.nvrtcGetCUBINSize(prog))
    cubin = b" " * n
    chk(nvrtc.nvrtcGetCUBIN(prog, cubin))
    mod = chk(cu.cuModuleLoadData(cubin))
    MODS[key] = mod
    return mod


def get_fn(fname, entry, dtype, defines=(), kdir=None):
    mod = compile_src(fname, dtype, defines, kdir)
    return chk(cu.cuModuleGetFunction(mod, entry.encode()))


SMEM_SET = set()


def launch(fn, geom, p, check=True):
    g, b, s = geom
    if s > 48 * 1024 and int(fn) not in SMEM_SET:
        chk((cu.cuFuncSetAttribute(fn, cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, s)[0], None))
        SMEM_SET.add(int(fn))
    arg = (ctypes.c_void_p * 1)(ctypes.addressof(p))
    stream = torch.cuda.current_stream().cuda_stream
    r = cu.cuLaunchKernel(fn, g[0], g[1], g[2], b[0], b[1], b[2], s, cu.CUstream(stream), ctypes.addressof(arg), 0)
    if int(r[0]) != 0:
        raise RuntimeError(f"launch failed {r}")
    if check:
        torch.cuda.synchronize()


def ptr(t):
    return 0 if t is None else t.data_ptr()


def rel_err(out, ref):
    out = out.double()
    if torch.isnan(out).any():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def act_ref(v, act):
    if act == 1:
        return v.clamp_min(0)
    if act == 2:
        return v.clamp(0, 6)
    return v


# ---------------------------------------------------------------- conv
def to_phys(t, layout):  # logical NCHW -> physical
    return t.permute(0, 2, 3, 1).contiguous() if layout == NHWC else t.contiguous()


def from_phys(t, layout):
    return t.permute(0, 3, 1, 2) if layout == NHWC else t


def run_conv(entry, fname, dtype, cfg, defines=(), ret=False, kdir=None):
    """cfg: dict n c h w o kh kw sh sw pt pl pb pr dh dw groups layout wlayout bias res alpha beta act"""
    dev = "cuda"
    dt = getattr(torch, DT[dtype])
    n, c, h, w, o, kh, kw = (cfg[k] for k in "n c h w o kh kw".split())
    G = cfg["groups"]
    oh = (h + cfg["pt"] + cfg["pb"] - cfg["dh"] * (kh - 1) - 1) // cfg["sh"] + 1
    ow = (w + cfg["pl"] + cfg["pr"] - cfg["dw"] * (kw - 1) - 1) // cfg["sw"] + 1
    x = torch.randn(n, c, h, w, device=dev).to(dt)
    wt = (torch.randn(o, c // G, kh, kw, device=dev) / math.sqrt(c // G * kh * kw)).to(dt)
    bias = torch.randn(o, device=dev).to(dt) if cfg["bias"] else None
    res = torch.randn(n, o, oh, ow, device=dev).to(dt) if cfg["res"] else None
    yb = torch.randn(n, o, oh, ow, device=dev).to(dt)
    L = cfg["layout"]
    xp, wp = to_phys(x, L), to_phys(wt, cfg["wlayout"])
    rp = to_phys(res, L) if res is not None else None
    yp = to_phys(yb, L).clone() if cfg["beta"] != 0 else torch.full_like(to_phys(yb, L), float("nan"))
    p = ConvP(n=n, c=c, h=h, w=w, o=o, kh=kh, kw=kw, oh=oh, ow=ow, stride_h=cfg["sh"], stride_w=cfg["sw"],
              pad_top=cfg["pt"], pad_left=cfg["pl"], dil_h=cfg["dh"], dil_w=cfg["dw"], groups=G, layout=L,
              weight_layout=cfg["wlayout"], x=ptr(xp), weight=ptr(wp), bias=ptr(bias), residual=ptr(rp), y=ptr(yp),
              alpha=cfg["alpha"], beta=cfg["beta"], activation=cfg["act"])
    kind = {"pask_conv2d_igemm": "conv2d_igemm", "pask_conv2d_depthwise_nhwc_vec4": "conv2d_depthwise_vec4",
            "pask_conv2d_depthwise_nhwc3_vec4": "conv2d_depthwise_vec4"}.get(entry, "conv2d_depthwise")
    fn = get_fn(fname, entry, dtype, defines, kdir)
    geom = geometry(kind, p, 4 if dtype == 0 else 2)
    launch(fn, geom, p)
    xd = F.pad(x.double(), (cfg["pl"], cfg["pr"], cfg["pt"], cfg["pb"]))
    ref = F.conv2d(xd, wt.double(), None, (cfg["sh"], cfg["sw"]), 0, (cfg["dh"], cfg["dw"]), G)
    ref = cfg["alpha"] * ref
    if cfg["beta"] != 0:
        ref = ref + cfg["beta"] * yb.double()
    if bias is not None:
        ref = ref + bias.double().view(1, -1, 1, 1)
    if res is not None:
        ref = ref + res.double()
    ref = act_ref(ref, cfg["act"])
    out = from_phys(yp, L)
    e = rel_err(out, ref)
    if ret:
        return e, (fn, geom, p, (xp, wp, yp, bias, rp, ref))
    return e, geom


def rand_conv_cfg(rng, depthwise=False, big=False):
    while True:
        G = 1 if rng.random() < 0.5 else rng.choice([2, 3, 4])
        cg = rng.choice([1, 2, 3, 4, 5, 8, 16, 24, 32, 40, 64] if not big else [32, 64, 128])
        og = rng.choice([1, 3, 8, 16, 17, 32, 64, 96] if not big else [128, 200, 256])
        if depthwise:
            cg, G = 1, rng.choice([1, 3, 8, 16, 32, 40])
            og = rng.choice([1, 1, 2, 3])
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        if rng.random() < 0.3:
            kh = kw = rng.choice([1, 3])
        d = dict(n=rng.randint(1, 3), c=cg * G, h=rng.randint(1, 20), w=rng.randint(1, 20), o=og * G, kh=kh, kw=kw,
                 sh=rng.randint(1, 3), sw=rng.randint(1, 3), pt=rng.randint(0, 3), pl=rng.randint(0, 3),
                 pb=rng.randint(0, 3), pr=rng.randint(0, 3), dh=rng.randint(1, 2), dw=rng.randint(1, 2), groups=G,
                 layout=rng.randint(0, 1), wlayout=rng.randint(0, 1), bias=rng.random() < 0.5,
                 res=rng.random() < 0.3, alpha=rng.choice([1.0, 1.0, 0.5, -1.25]), beta=rng.choice([0.0, 0.0, 0.7]),
                 act=rng.randint(0, 2))
        if big:
            d.update(n=rng.randint(2, 4), h=rng.randint(20, 40), w=rng.randint(20, 40))
        oh = (d["h"] + d["pt"] + d["pb"] - d["dh"] * (kh - 1) - 1) // d["sh"] + 1
        ow = (d["w"] + d["pl"] + d["pr"] - d["dw"] * (kw - 1) - 1) // d["sw"] + 1
        if oh >= 1 and ow >= 1:
            return d


def cfg_str(d):
    return (f"n{d['n']} c{d['c']} {d['h']}x{d['w']} o{d['o']} k{d['kh']}x{d['kw']} s{d['sh']},{d['sw']} "
            f"p{d['pt']},{d['pl']},{d['pb']},{d['pr']} d{d['dh']},{d['dw']} g{d['groups']} L{d['layout']}"
            f"W{d['wlayout']} b{int(d['bias'])} r{int(d['res'])} a{d['alpha']} be{d['beta']} act{d['act']}")


# ---------------------------------------------------------------- gemm
def run_gemm(dtype, m, n, k, ta, tb, extra_ld=(0, 0, 0), bias=False, alpha=1.0, beta=0.0, act=0, ret=False):
    dev, dt = "cuda", getattr(torch, DT[dtype])
    A = torch.randn(m, k, device=dev).to(dt)
    B = (torch.randn(k, n, device=dev) / math.sqrt(k)).to(dt)
    # physical storage with leading dims
    if ta:
        lda = m + extra_ld[0]
        As = torch.randn(k, lda, device=dev).to(dt)
        As[:, :m] = A.t()
    else:
        lda = k + extra_ld[0]
        As = torch.randn(m, lda, device=dev).to(dt)
        As[:, :k] = A
    if tb:
        ldb = k + extra_ld[1]
        Bs = torch.randn(n, ldb, device=dev).to(dt)
        Bs[:, :k] = B.t()
    else:
        ldb = n + extra_ld[1]
        Bs = torch.randn(k, ldb, device=dev).to(dt)
        Bs[:, :n] = B
    ldc = n + extra_ld[2]
    Cb = torch.randn(m, ldc, device=dev).to(dt)
    Cs = Cb.clone() if beta != 0 else torch.full_like(Cb, float("nan"))
    bs = torch.randn(n, device=dev).to(dt) if bias else None
    p = GemmP(m=m, n=n, k=k, lda=lda, ldb=ldb, ldc=ldc, trans_a=int(ta), trans_b=int(tb), a=ptr(As), b=ptr(Bs),
              bias=ptr(bs), c=ptr(Cs), alpha=alpha, beta=beta, activation=act)
    fn = get_fn("gemm.cu", "pask_gemm", dtype)
    geom = geometry("gemm", p, 4 if dtype == 0 else 2)
    launch(fn, geom, p)
    ref = alpha * (A.double() @ B.double())
    if beta != 0:
        ref = ref + beta * Cb[:, :n].double()
    if bs is not None:
        ref = ref + bs.double()
    ref = act_ref(ref, act)
    e = rel_err(Cs[:, :n], ref)
    if beta == 0 and ldc > n and not torch.isnan(Cs[:, n:]).all():
        e = float("inf")  # wrote outside the matrix
    if ret:
        return e, (fn, geom, p, (As, Bs, Cs, bs), (A, B))
    return e, geom


# ---------------------------------------------------------------- pool
def run_pool(dtype, d):
    dev, dt = "cuda", getattr(torch, DT[dtype])
    n, c, h, w = d["n"], d["c"], d["h"], d["w"]
    x = torch.randn(n, c, h, w, device=dev).to(dt)
    if d["mode"] == 0 and d.get("nan"):
        x.view(-1)[torch.randint(0, x.numel(), (max(1, x.numel() // 50),), device=dev)] = float("nan")
    xd = x.double()
    if d["mode"] == 0:
        ref = F.max_pool2d(xd, (d["kh"], d["kw"]), (d["sh"], d["sw"]), (d["ph"], d["pw"]), (d["dh"], d["dw"]),
                           ceil_mode=d["ceil"])
    else:
        ref = F.avg_pool2d(xd, (d["kh"], d["kw"]), (d["sh"], d["sw"]), (d["ph"], d["pw"]), ceil_mode=d["ceil"],
                           count_include_pad=d["cip"], divisor_override=d["div"] or None)
    oh, ow = ref.shape[2], ref.shape[3]
    L = d["layout"]
    xp = to_phys(x, L)
    yp = torch.full_like(to_phys(torch.empty(n, c, oh, ow, device=dev, dtype=dt), L), float("nan"))
    p = PoolP(n=n, c=c, h=h, w=w, oh=oh, ow=ow, kh=d["kh"], kw=d["kw"], stride_h=d["sh"], stride_w=d["sw"],
              pad_top=d["ph"], pad_left=d["pw"], pad_bottom=d["ph"], pad_right=d["pw"], dil_h=d["dh"], dil_w=d["dw"],
              divisor_override=d["div"], mode=d["mode"], count_include_pad=int(d["cip"]), layout=L, x=ptr(xp), y=ptr(yp))
    fn = get_fn("pool.cu", "pask_pool2d", dtype)
    launch(fn, geometry("pool2d", p), p)
    out = from_phys(yp, L).double()
    if d["mode"] == 0:
        nan_ok = torch.equal(torch.isnan(out), torch.isnan(ref))
        m = ~torch.isnan(ref)
        return (out[m] - ref[m]).abs().max().item() if nan_ok and m.any() else (0.0 if nan_ok else float("inf"))
    return rel_err(out, ref)


def run_gavg(dtype, n, c, h, w, L):
    dev, dt = "cuda", getattr(torch, DT[dtype])
    x = torch.randn(n, c, h, w, device=dev).to(dt)
    xp = to_phys(x, L)
    yp = torch.full((n, c), float("nan"), device=dev, dtype=dt)
    p = PoolP(n=n, c=c, h=h, w=w, oh=1, ow=1, kh=h, kw=w, stride_h=1, stride_w=1, dil_h=1, dil_w=1, layout=L,
              mode=1, x=ptr(xp), y=ptr(yp))
    fn = get_fn("pool.cu", "pask_pool2d_global_avg", dtype)
    launch(fn, geometry("pool2d_global_avg", p), p)
    return rel_err(yp, x.double().mean(dim=(2, 3)))


# ---------------------------------------------------------------- timing
def time_fn(f, reps=15, inner=10, warm=5):
    """median over reps of (events around `inner` back-to-back calls) / inner, in us"""
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(inner):
            f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / inner)
    ts.sort()
    return ts[len(ts) // 2] * 1e3  # us


RESNET = [  # name, c, hw, o, k, stride, pad
    ("conv1 7x7/2", 3, 224, 64, 7, 2, 3),
    ("l1 1x1 64-64", 64, 56, 64, 1, 1, 0),
    ("l1 3x3 64", 64, 56, 64, 3, 1, 1),
    ("l1 1x1 64-256", 64, 56, 256, 1, 1, 0),
    ("l1 1x1 256-64", 256, 56, 64, 1, 1, 0),
    ("l2 3x3/2 128", 128, 56, 128, 3, 2, 1),
    ("l2 3x3 128", 128, 28, 128, 3, 1, 1),
    ("l2 1x1 512-128", 512, 28, 128, 1, 1, 0),
    ("l3 3x3 256", 256, 14, 256, 3, 1, 1),
    ("l3 1x1 1024-256", 1024, 14, 256, 1, 1, 0),
    ("l3 1x1/2 512-1024", 512, 28, 1024, 1, 2, 0),
    ("l4 3x3 512", 512, 7, 512, 3, 1, 1),
    ("l4 1x1 512-2048", 512, 7, 2048, 1, 1, 0),
]


def bench_conv(batches, rows):
    torch.backends.cudnn.benchmark = True
    for nb in batches:
        for name, c, hw, o, k, s, pd in RESNET:
            cfg = dict(n=nb, c=c, h=hw, w=hw, o=o, kh=k, kw=k, sh=s, sw=s, pt=pd, pl=pd, pb=pd, pr=pd, dh=1, dw=1,
                       groups=1, layout=NHWC, wlayout=NHWC, bias=True, res=False, alpha=1.0, beta=0.0, act=1)
            e, (fn, geom, p, keep) = run_conv("pask_conv2d_igemm", "conv_igemm.cu", 1, cfg, ret=True)
            t_gen = time_fn(lambda: launch(fn, geom, p, check=False))
            t_fix = float("nan")
            if s == 1 and k in (1, 3):
                defs = (f"PASK_FIXED_KH={k}", f"PASK_FIXED_KW={k}", "PASK_FIXED_STRIDE=1", f"PASK_FIXED_PAD={pd}",
                        "PASK_FIXED_DIL=1")
                e2, (fn2, geom2, p2, keep2) = run_conv("pask_conv2d_igemm", "conv_igemm.cu", 1, cfg, defs, ret=True)
                e = max(e, e2)
                t_fix = time_fn(lambda: launch(fn2, geom2, p2, check=False))
            xt = torch.randn(nb, c, hw, hw, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
            wt = torch.randn(o, c, k, k, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
            bt = torch.randn(o, device="cuda", dtype=torch.float16)
            t_ref = time_fn(lambda: torch.relu_(F.conv2d(xt, wt, bt, s, pd)))
            best = min(t_gen, t_fix) if not math.isnan(t_fix) else t_gen
            rows.append((f"conv b{nb} {name}", t_gen, t_fix, t_ref, best / t_ref, e,
                         2.0 * nb * p.oh * p.ow * o * c * k * k / (best * 1e-6) / 1e12))


MOBILENET = [  # name, c, hw, o, k, stride, pad, act (0 none, 2 relu6), residual: MobileNetV2's igemm layers
    ("stem 3x3/2 3-32", 3, 224, 32, 3, 2, 1, 2, False),
    ("f1 1x1 32-16 @112", 32, 112, 16, 1, 1, 0, 0, False),
    ("f2 1x1 16-96 @112", 16, 112, 96, 1, 1, 0, 2, False),
    ("f2 1x1 96-24 @56", 96, 56, 24, 1, 1, 0, 0, False),
    ("f3 1x1 24-144 @56", 24, 56, 144, 1, 1, 0, 2, False),
    ("f3 1x1 144-24 @56 +res", 144, 56, 24, 1, 1, 0, 0, True),
    ("f5 1x1 32-192 @28", 32, 28, 192, 1, 1, 0, 2, False),
    ("f8 1x1 64-384 @14", 64, 14, 384, 1, 1, 0, 2, False),
    ("f11 1x1 96-576 @14", 96, 14, 576, 1, 1, 0, 2, False),
    ("f14 1x1 160-960 @7", 160, 7, 960, 1, 1, 0, 2, False),
    ("f18 1x1 320-1280 @7", 320, 7, 1280, 1, 1, 0, 2, False),
]

MOBILENET_DW = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (384, 14, 1), (576, 14, 2),
                (960, 7, 1)]  # C, H=W, stride


def dw_entry(kdir, defs):
    """The 3x3 batched depthwise entry of a source folder: the staged one
    (pask_conv2d_depthwise_nhwc3_vec4) where it has it, else the older folders' _vec4."""
    try:
        get_fn("conv_depthwise.cu", "pask_conv2d_depthwise_nhwc3_vec4", 1, defs, kdir)
        return "pask_conv2d_depthwise_nhwc3_vec4"
    except RuntimeError:
        return "pask_conv2d_depthwise_nhwc_vec4"


def bench_mobilenet(batch, kdirs, rows, igemm=True):
    """The igemm kernel of each source folder (kdirs: label -> folder), both tiles
    (128x128 on 256 threads, 64x64 on 128), unsplit, against cuDNN (PyTorch
    channels_last conv2d + bias, then clamp as its eager model runs), fp16 NHWC;
    kernel time only (events around back-to-back launches)."""
    torch.backends.cudnn.benchmark = True
    for name, c, hw, o, k, s, pd, act, res in (MOBILENET if igemm else []):
        cfg = dict(n=batch, c=c, h=hw, w=hw, o=o, kh=k, kw=k, sh=s, sw=s, pt=pd, pl=pd, pb=pd, pr=pd, dh=1, dw=1,
                   groups=1, layout=NHWC, wlayout=NHWC, bias=True, res=res, alpha=1.0, beta=0.0, act=act)
        defs = (f"PASK_FIXED_KH={k}", f"PASK_FIXED_KW={k}", f"PASK_FIXED_STRIDE={s}", f"PASK_FIXED_PAD={pd}",
                "PASK_FIXED_DIL=1")
        row = [f"b{batch} {name}"]
        for label, kdir in kdirs.items():
            e, (fn, geom, p, keep) = run_conv("pask_conv2d_igemm", "conv_igemm.cu", 1, cfg, defs, ret=True, kdir=kdir)
            m = p.n * p.oh * p.ow
            for big in (True, False):
                t = 128 if big else 64
                g = ((m + t - 1) // t, (o + t - 1) // t, 1)
                blk, smem = (256 if big else 128, 1, 1), 81920 if big else 40960
                try:
                    keep[2].fill_(float("nan"))
                    launch(fn, (g, blk, smem), p)  # checked again on this tile
                    e = rel_err(from_phys(keep[2], NHWC), keep[5])
                    t_us = time_fn(lambda: launch(fn, (g, blk, smem), p, check=False))
                except RuntimeError as ex:
                    log(f"{name} {label} {t}: {ex}")
                    e = t_us = float("nan")
                chosen = "*" if geom[1][0] == blk[0] else " "
                row.append((f"{label} {t}{chosen}", t_us, e))
        xt = torch.randn(batch, c, hw, hw, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
        wt = torch.randn(o, c, k, k, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
        bt = torch.randn(o, device="cuda", dtype=torch.float16)
        rt = torch.randn(batch, o, (hw + 2 * pd - k) // s + 1, (hw + 2 * pd - k) // s + 1, device="cuda",
                         dtype=torch.float16).to(memory_format=torch.channels_last)
        if act == 2:
            ref = lambda: F.conv2d(xt, wt, bt, s, pd).clamp_(0, 6)  # noqa: E731
        elif res:
            ref = lambda: F.conv2d(xt, wt, bt, s, pd).add_(rt)  # noqa: E731
        else:
            ref = lambda: F.conv2d(xt, wt, bt, s, pd)  # noqa: E731
        row.append(("cudnn", time_fn(ref), 0.0))
        rows.append(row)
    for c, hw, s in MOBILENET_DW:  # 3x3 depthwise, bias + relu6: the batched (4 outputs a thread) NHWC entry
        cfg = dict(n=batch, c=c, h=hw, w=hw, o=c, kh=3, kw=3, sh=s, sw=s, pt=1, pl=1, pb=1, pr=1, dh=1, dw=1,
                   groups=c, layout=NHWC, wlayout=NCHW, bias=True, res=False, alpha=1.0, beta=0.0, act=2)
        defs = ("PASK_FIXED_KH=3", "PASK_FIXED_KW=3", f"PASK_FIXED_STRIDE={s}", "PASK_FIXED_PAD=1", "PASK_FIXED_DIL=1")
        row = [f"b{batch} dw3x3/{s} {c} @{hw}"]
        for label, kdir in kdirs.items():
            e, (fn, geom, p, keep) = run_conv(dw_entry(kdir, defs), "conv_depthwise.cu", 1, cfg, defs,
                                              ret=True, kdir=kdir)
            row.append((f"{label} vec4", time_fn(lambda: launch(fn, geom, p, check=False)), e))
        xt = torch.randn(batch, c, hw, hw, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
        wt = torch.randn(c, 1, 3, 3, device="cuda", dtype=torch.float16)
        bt = torch.randn(c, device="cuda", dtype=torch.float16)
        row.append(("cudnn", time_fn(lambda: F.conv2d(xt, wt, bt, s, 1, 1, c).clamp_(0, 6)), 0.0))
        rows.append(row)


def bench_gemm(rows):
    torch.backends.cuda.matmul.allow_tf32 = True
    for dtype, m, n, k in [(1, 4096, 4096, 4096), (1, 8192, 8192, 8192), (1, 1024, 1024, 1024), (1, 1, 4096, 4096),
                           (1, 128, 4096, 4096), (2, 4096, 4096, 4096), (0, 4096, 4096, 4096)]:
        e, (fn, geom, p, keep, (A, B)) = run_gemm(dtype, m, n, k, False, False, ret=True)
        t = time_fn(lambda: launch(fn, geom, p, check=False))
        t_ref = time_fn(lambda: torch.matmul(A, B))
        rows.append((f"gemm {DTN[dtype]} {m}x{n}x{k}", t, float("nan"), t_ref, t / t_ref, e,
                     2.0 * m * n * k / (t * 1e-6) / 1e12))


# ---------------------------------------------------------------- main
def main():
    global GEOM, ARCH, torch, F, cu, nvrtc
    import torch
    import torch.nn.functional as F
    from cuda.bindings import driver as cu
    from cuda.bindings import nvrtc
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-time", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(HERE, "results"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--mobilenet", type=int, metavar="BATCH", default=0,
                    help="only time MobileNetV2's igemm layers at this batch (both tiles), no other checks")
    ap.add_argument("--depthwise-only", action="store_true", help="with --mobilenet: only the depthwise layers")
    ap.add_argument("--baseline-kdir", metavar="DIR", action="append",
                    help="with --mobilenet: also time the kernel sources in DIR (e.g. an older commit's src/kernels/cuda)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.zeros(1, device="cuda")
    chk(cu.cuInit(0))
    GEOM = build_geom()
    maj, mnr = torch.cuda.get_device_capability()
    ARCH = f"{maj}{mnr}"
    name = torch.cuda.get_device_name()
    log(f"# {datetime.datetime.now(datetime.timezone.utc).isoformat()}  {name} sm_{ARCH}  torch {torch.__version__}")
    fails = []
    worst = {}
    if args.mobilenet:
        kdirs = {"this": KDIR}
        for d in args.baseline_kdir or []:  # labelled by the folder's name
            kdirs[os.path.basename(os.path.normpath(d))[:9]] = os.path.abspath(d)
        mrows = []
        bench_mobilenet(args.mobilenet, kdirs, mrows, igemm=not args.depthwise_only)
        log(f"## MobileNetV2 igemm layers on {name}, fp16 NHWC, bias (+relu6 / +residual) fused; us per launch,"
            " median of 15 x 10; * = the tile the launch helper picks; err = rel L2 vs float64")
        for r in mrows:
            log(f"{r[0]:28s} " + "  ".join(f"{lab:>9s} {t:7.1f}" + ("" if lab == "cudnn" else f" ({e:.1e})")
                                             for lab, t, e in r[1:]))
        with open(os.path.join(args.out, "cuda_kernels_mobilenet.log"), "w") as f:
            f.write("\n".join(LOG) + "\n")
        return 0

    def record(tag, dtype, e, desc):
        worst[(tag, dtype)] = max(worst.get((tag, dtype), 0.0), e)
        if not (e <= TOL[dtype]):
            fails.append(f"{tag} {DTN[dtype]} err={e:.3g} {desc}")
            log(f"FAIL {tag} {DTN[dtype]} err={e:.3g} {desc}")

    nconv = 40 if args.quick else 150
    for dtype in (0, 1, 2):
        # compile every entry for every dtype (+ fixed variants)
        for f in ("conv_igemm.cu", "conv_depthwise.cu", "gemm.cu", "pool.cu"):
            compile_src(f, dtype)
        for i in range(nconv):
            d = rand_conv_cfg(rng, big=(i % 15 == 14))
            e, geom = run_conv("pask_conv2d_igemm", "conv_igemm.cu", dtype, d)
            record("conv", dtype, e, cfg_str(d) + f" geom={geom}")
        for kk, pd in ((3, 1), (1, 0)):
            defs = (f"PASK_FIXED_KH={kk}", f"PASK_FIXED_KW={kk}", "PASK_FIXED_STRIDE=1", f"PASK_FIXED_PAD={pd}",
                    "PASK_FIXED_DIL=1")
            for i in range(10):
                d = rand_conv_cfg(rng, big=(i == 9))
                d.update(kh=kk, kw=kk, sh=1, sw=1, pt=pd, pl=pd, pb=pd, pr=pd, dh=1, dw=1)
                e, geom = run_conv("pask_conv2d_igemm", "conv_igemm.cu", dtype, d, defs)
                record("conv_fixed", dtype, e, cfg_str(d))
        for i in range(nconv // 2):
            d = rand_conv_cfg(rng, depthwise=True)
            e, geom = run_conv("pask_conv2d_depthwise", "conv_depthwise.cu", dtype, d)
            record("dwconv", dtype, e, cfg_str(d))
        gshapes = [(1, 1, 1), (1, 4096, 512), (1, 37, 100), (7, 1, 9), (33, 65, 129), (128, 128, 128),
                   (130, 250, 70), (300, 200, 1000), (1000, 1000, 64), (64, 3000, 33)]
        for (m, n, k) in gshapes + [(rng.randint(1, 400), rng.randint(1, 400), rng.randint(1, 600)) for _ in range(20)]:
            for ta in (0, 1):
                for tb in (0, 1):
                    ex = rng.choice([(0, 0, 0), (0, 0, 0), (8, 8, 8), (1, 3, 5)])
                    kw_ = dict(bias=rng.random() < 0.5, alpha=rng.choice([1.0, 0.5]), beta=rng.choice([0.0, 0.5]),
                               act=rng.randint(0, 2))
                    e, geom = run_gemm(dtype, m, n, k, ta, tb, ex, **kw_)
                    record("gemm", dtype, e, f"{m}x{n}x{k} ta{ta} tb{tb} ld+{ex} {kw_} geom={geom}")
        for i in range(60 if not args.quick else 20):
            mode = i % 2
            kh, kw = rng.randint(1, 4), rng.randint(1, 4)
            d = dict(n=rng.randint(1, 3), c=rng.randint(1, 20), h=rng.randint(1, 20), w=rng.randint(1, 20), kh=kh,
                     kw=kw, sh=rng.randint(1, 3), sw=rng.randint(1, 3), ph=rng.randint(0, kh // 2),
                     pw=rng.randint(0, kw // 2), dh=rng.randint(1, 2) if mode == 0 else 1,
                     dw=rng.randint(1, 2) if mode == 0 else 1, ceil=rng.random() < 0.5, cip=rng.random() < 0.5,
                     div=rng.choice([0, 0, 0, 5]) if mode == 1 else 0, mode=mode, layout=rng.randint(0, 1),
                     nan=rng.random() < 0.3)
            d["h"] = max(d["h"], (d["kh"] - 1) * d["dh"] + 1)
            d["w"] = max(d["w"], (d["kw"] - 1) * d["dw"] + 1)
            e = run_pool(dtype, d)
            record("pool_max" if mode == 0 else "pool_avg", dtype, e, str(d))
        for (n, c, h, w) in [(1, 1, 1, 1), (2, 3, 7, 7), (4, 2048, 7, 7), (2, 64, 56, 56), (3, 5, 13, 1)]:
            for L in (0, 1):
                e = run_gavg(dtype, n, c, h, w, L)
                record("gavg", dtype, e, f"{n},{c},{h},{w} L{L}")
    log("## max errors (rel L2; pool_max: max abs, NaN positions must match)")
    for (tag, dtype), e in sorted(worst.items()):
        log(f"  {tag:10s} {DTN[dtype]:4s} {e:.3g}  (tol {TOL[dtype]:g})")
    log(f"## correctness: {len(fails)} failures")

    rows = []
    if not args.no_time:
        bench_conv([1, 32] if not args.quick else [1], rows)
        bench_gemm(rows)
        log(f"## timing on {name}, median of 15 x (10 back-to-back calls), us; fp16 NHWC conv (bias+relu fused) vs cuDNN channels_last;"
            " 'fixed' = PASK_FIXED_* NVRTC variant; ratio = best/ref")
        log(f"{'case':30s} {'generic':>9s} {'fixed':>9s} {'torch':>9s} {'ratio':>6s} {'err':>8s} {'TFLOP/s':>7s}")
        for r in rows:
            log(f"{r[0]:30s} {r[1]:9.1f} {r[2]:9.1f} {r[3]:9.1f} {r[4]:6.2f} {r[5]:8.2g} {r[6]:7.1f}")
    with open(os.path.join(args.out, "cuda_kernels_check.log"), "w") as f:
        f.write("\n".join(LOG) + "\n")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
