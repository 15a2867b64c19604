"""paskdnn's GPU kernel sources, run on the CPU through their HIP path.

No AMD GPU is at hand, so tests/doubles/gpu_on_cpu.hpp turns each GPU thread
into a std::thread (barriers for __syncthreads and 32-lane shuffles) and the
kernel sources are compiled as C++ with PASK_HIP = 1, as hiprtc would see them:
the FMA warp tile, the synchronous 16-byte copies, the _Float16 / bfloat16
conversions and the 64x64 tile the HIP solvers launch. Results are compared
with the float64 references of tests/reference.py. This checks the arithmetic
of the HIP branch, not AMD's compiler or hardware (docs/amd.md)."""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reference import (assert_within_bound, avg_pool2d_ref, conv2d_bound, conv2d_ref, gemm_bound, gemm_ref,
                       max_pool2d_ref, nchw_to_nhwc, nhwc_to_nchw, oihw_to_ohwi)

ROOT = Path(__file__).resolve().parent.parent
CXX = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
if CXX is None:
    pytest.skip("no C++ compiler", allow_module_level=True)

DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
# error allowed relative to the sum of |terms| per output element: float32
# accumulation; one rounding of the output to float16 / bfloat16
RTOL = {"float32": 2e-5, "float16": 1e-3, "bfloat16": 8e-3}
OBJECTS = {"conv_igemm": ("conv_igemm.cu", "-DPASK_EMU_CONV"),
           "conv_depthwise": ("conv_depthwise.cu", "-DPASK_EMU_CONV -DPASK_EMU_DEPTHWISE"),
           "gemm": ("gemm.cu", "-DPASK_EMU_GEMM"),
           "pool": ("pool.cu", "-DPASK_EMU_POOL"),
           "eltwise": ("eltwise.cu", "-DPASK_EMU_ELTWISE")}
rng = np.random.default_rng(20261128)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """kernels(object, dtype) -> the ctypes library of that kernel on the CPU."""
    out = tmp_path_factory.mktemp("hip-kernels-on-cpu")
    built = {}

    def get(obj, dtype):
        key = (obj, dtype)
        if key not in built:
            source, flags = OBJECTS[obj]
            lib = out / f"{obj}.{dtype}.so"
            # PASKDNN_EMU_CXXFLAGS: extra flags, e.g. tools/sanitize.sh's "-fsanitize=address,undefined"
            subprocess.run([CXX, "-std=c++20", "-O1", "-shared", "-fPIC", "-fvisibility=hidden",
                            *os.environ.get("PASKDNN_EMU_CXXFLAGS", "").split(),
                            "-Wno-unknown-pragmas", f"-I{ROOT / 'src/kernels/cuda'}", f"-I{ROOT / 'tests/doubles'}",
                            f"-DPASK_DTYPE={DTYPES[dtype]}", f'-DPASK_EMU_SOURCE="{source}"', *flags.split(),
                            "-o", str(lib), str(ROOT / "tests/doubles/hip_kernels_on_cpu.cpp"), "-lpthread"],
                           check=True)
            built[key] = ctypes.CDLL(str(lib))
        return built[key]

    return get


def device(a, dtype):
    """(bytes the kernel reads, float32 values they hold)."""
    a = np.ascontiguousarray(a, np.float32)
    if dtype == "float32":
        return a, a
    if dtype == "float16":
        h = a.astype(np.float16)
        return h, h.astype(np.float32)
    u = a.view(np.uint32)
    b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    return b, (b.astype(np.uint32) << 16).view(np.float32)


def host(raw, dtype):
    if dtype == "float32":
        return raw.astype(np.float64)
    if dtype == "float16":
        return raw.astype(np.float64)
    return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def empty(shape, dtype):
    return np.zeros(shape, {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}[dtype])


def ptr(a):
    return None if a is None else ctypes.c_void_p(a.ctypes.data)


def i64(*values):
    return (ctypes.c_int64 * len(values))(*values)


ACT = {None: 0, "relu": 1, "relu6": 2, "sigmoid": 3, "silu": 4, "hardswish": 5, "hardsigmoid": 6, "gelu": 7,
       "gelu_tanh": 8, "leaky_relu": 9, "clamp": 10}  # pask_activation_t

CONV_CASES = [
    # n, c, h, w, o, k, stride, ((top, bottom), (left, right)), dilation, groups
    (1, 8, 9, 9, 16, 3, 1, ((1, 1), (1, 1)), 1, 1),
    (2, 5, 11, 7, 12, 3, 2, ((1, 0), (2, 1)), 1, 1),
    (1, 16, 8, 8, 24, 1, 1, ((0, 0), (0, 0)), 1, 1),
    (1, 12, 10, 10, 12, 3, 1, ((2, 2), (2, 2)), 2, 1),
    (1, 16, 9, 9, 24, 3, 1, ((1, 1), (1, 1)), 1, 4),
    (2, 64, 12, 12, 80, 3, 1, ((1, 1), (1, 1)), 1, 1),
]
LAYOUTS = [("NCHW", "OIHW"), ("NHWC", "OHWI"), ("NHWC", "OIHW")]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layouts", LAYOUTS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("case", CONV_CASES)
def test_igemm_conv_hip_path_matches_the_reference(kernels, dtype, layouts, case):
    check_igemm_conv(kernels, dtype, layouts, case, splits=1)


# split-K: the slices' partial sums (float32, one buffer per slice) and the reduce
# kernel's epilogue; 7 slices of a 3-tile K leave some slices without a tile.
SPLIT_CASES = [((2, 64, 12, 12, 80, 3, 1, ((1, 1), (1, 1)), 1, 1), 3),
               ((1, 16, 9, 9, 24, 3, 1, ((1, 1), (1, 1)), 1, 4), 2),
               ((2, 5, 11, 7, 12, 3, 2, ((1, 0), (2, 1)), 1, 1), 2),
               ((1, 96, 6, 6, 20, 1, 1, ((0, 0), (0, 0)), 1, 1), 7)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layouts", LAYOUTS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("case, splits", SPLIT_CASES)
def test_igemm_conv_split_k_matches_the_reference(kernels, dtype, layouts, case, splits):
    check_igemm_conv(kernels, dtype, layouts, case, splits=splits)


# Both tiles (the 128x128 one on 256 threads is what CUDA launches of large grids
# take; AMD's 64 KB of LDS rules it out) and the NHWC epilogue through shared
# memory (beta 0, channels per group whole 16-byte vectors): groups, a ragged
# last row tile; with beta, the fragments' own stores.
TILE_CASES = [(3, 32, 9, 11, 48, 3, 1, ((1, 1), (1, 1)), 1, 2),
              (2, 16, 12, 12, 96, 1, 1, ((0, 0), (0, 0)), 1, 1),
              (1, 12, 10, 10, 12, 3, 1, ((2, 2), (2, 2)), 2, 1)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layouts", LAYOUTS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("case", TILE_CASES)
@pytest.mark.parametrize("tile128", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.25])
def test_igemm_conv_both_tiles_with_and_without_beta(kernels, dtype, layouts, case, tile128, beta):
    check_igemm_conv(kernels, dtype, layouts, case, splits=1, tile128=tile128, beta=beta)


def check_igemm_conv(kernels, dtype, layouts, case, splits, tile128=False, beta=0.25):
    n, c, h, w, o, k, s, ((pt, pb), (pl, pr)), dil, g = case
    layout, wlayout = layouts
    oh, ow = (h + pt + pb - dil * (k - 1) - 1) // s + 1, (w + pl + pr - dil * (k - 1) - 1) // s + 1
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    w_raw, wt = device(rng.uniform(-1, 1, (o, c // g, k, k)), dtype)
    b_raw, b = device(rng.uniform(-1, 1, o), dtype)
    r_raw, r = device(rng.uniform(-1, 1, (n, o, oh, ow)), dtype)
    y0_raw, y0 = device(rng.uniform(-1, 1, (n, o, oh, ow)), dtype)
    alpha = 0.5
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    win = np.ascontiguousarray(oihw_to_ohwi(w_raw)) if wlayout == "OHWI" else w_raw
    rin = np.ascontiguousarray(nchw_to_nhwc(r_raw)) if nhwc else r_raw
    y = np.ascontiguousarray(nchw_to_nhwc(y0_raw)) if nhwc else y0_raw.copy()
    d = i64(n, c, h, w, o, k, k, oh, ow, s, s, pt, pl, dil, dil, g, int(nhwc), int(wlayout == "OHWI"), ACT["relu6"])
    lib = kernels("conv_igemm", dtype)
    args = (d, ctypes.c_float(alpha), ctypes.c_float(beta), ptr(xin), ptr(win), ptr(b_raw), ptr(rin), ptr(y))
    if tile128:
        lib.emu_conv2d_tile128(*args)
    else:
        lib.emu_conv2d(*args, splits)
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    kw = dict(stride=s, padding=((pt, pb), (pl, pr)), dilation=dil, groups=g)
    ref = conv2d_ref(x, wt, b, activation="relu6", residual=r, alpha=alpha, beta=beta, out_before=y0, **kw)
    bound = conv2d_bound(x, wt, b, residual=r, alpha=alpha, beta=beta, out_before=y0, **kw)
    assert_within_bound(got, ref, bound, rtol=RTOL[dtype], what=f"igemm {dtype} {layouts} {case} splits={splits}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise_conv_hip_path_matches_the_reference(kernels, dtype, layout, mult):
    n, c, h, w, k, s = 2, 8, 9, 10, 3, 2
    o = c * mult
    oh, ow = (h + 2 - k) // s + 1, (w + 2 - k) // s + 1
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    w_raw, wt = device(rng.uniform(-1, 1, (o, 1, k, k)), dtype)
    b_raw, b = device(rng.uniform(-1, 1, o), dtype)
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    win = np.ascontiguousarray(oihw_to_ohwi(w_raw)) if nhwc else w_raw
    y = empty((n, oh, ow, o) if nhwc else (n, o, oh, ow), dtype)
    d = i64(n, c, h, w, o, k, k, oh, ow, s, s, 1, 1, 1, 1, c, int(nhwc), int(nhwc), ACT["relu"])
    kernels("conv_depthwise", dtype).emu_conv2d(d, ctypes.c_float(1.0), ctypes.c_float(0.0), ptr(xin), ptr(win),
                                                ptr(b_raw), None, ptr(y), 0)
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    kw = dict(stride=s, padding=1, groups=c)
    assert_within_bound(got, conv2d_ref(x, wt, b, activation="relu", **kw), conv2d_bound(x, wt, b, **kw),
                        rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("n, c, h, w, o, k, s, pad, groups", [(2, 16, 9, 10, 24, 3, 1, 1, 1),
                                                               (1, 16, 11, 7, 20, 3, 2, 1, 2),
                                                               (1, 8, 6, 33, 40, 1, 1, 0, 1)])
def test_nchw_input_transposed_then_vector_loads(kernels, dtype, splits, n, c, h, w, o, k, s, pad, groups):
    """NCHW input and OIHW weight transposed by pask_transpose (33 columns: a partial
    32-wide tile), then the vector-load kernel writing y and reading the residual NCHW."""
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    w_raw, wt = device(rng.uniform(-1, 1, (o, c // groups, k, k)), dtype)
    b_raw, b = device(rng.uniform(-1, 1, o), dtype)
    r_raw, r = device(rng.uniform(-1, 1, (n, o, oh, ow)), dtype)
    y0_raw, y0 = device(rng.uniform(-1, 1, (n, o, oh, ow)), dtype)
    y = y0_raw.copy()
    d = i64(n, c, h, w, o, k, k, oh, ow, s, s, pad, pad, 1, 1, groups, 0, 0, ACT["relu"])
    kernels("conv_igemm", dtype).emu_conv2d_nchw_transposed(d, ctypes.c_float(0.5), ctypes.c_float(0.25), ptr(x_raw),
                                                            ptr(w_raw), ptr(b_raw), ptr(r_raw), ptr(y), splits)
    kw = dict(stride=s, padding=pad, groups=groups, residual=r, alpha=0.5, beta=0.25, out_before=y0)
    assert_within_bound(host(y, dtype), conv2d_ref(x, wt, b, activation="relu", **kw), conv2d_bound(x, wt, b, **kw),
                        rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("pixels", [1, 4])
@pytest.mark.parametrize("k, s, pad, dil, c, h, w", [(3, 1, 1, 1, 16, 9, 10), (3, 2, 1, 1, 24, 11, 9),
                                                      (5, 2, 2, 1, 8, 12, 13), (3, 1, 2, 2, 16, 7, 11),
                                                      (1, 1, 0, 1, 8, 5, 6), (3, 2, 1, 1, 8, 17, 30)])
@pytest.mark.parametrize("w_offset", [0, 1])
def test_vectorised_nhwc_depthwise_matches_the_reference(kernels, dtype, pixels, k, s, pad, dil, c, h, w, w_offset):
    """The vectorised NHWC entries: vectors of channels, `pixels` outputs per thread
    (rows whose width is not a multiple of it included), the 3x3 window at stride 1
    and 2 with each input column read once (weights 16-byte aligned), the unrolled
    3x3 window (weights one element off alignment: w_offset 1) and the generic one,
    bias + residual + beta*y + relu6 in the epilogue."""
    n = 2
    oh, ow = (h + 2 * pad - dil * (k - 1) - 1) // s + 1, (w + 2 * pad - dil * (k - 1) - 1) // s + 1
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    w_raw, wt = device(rng.uniform(-1, 1, (c, 1, k, k)), dtype)
    b_raw, b = device(rng.uniform(-1, 1, c), dtype)
    r_raw, r = device(rng.uniform(-1, 1, (n, c, oh, ow)), dtype)
    y0_raw, y0 = device(rng.uniform(-1, 1, (n, c, oh, ow)), dtype)
    y = np.ascontiguousarray(nchw_to_nhwc(y0_raw))
    d = i64(n, c, h, w, c, k, k, oh, ow, s, s, pad, pad, dil, dil, c, 1, 1, ACT["relu6"])
    alpha, beta = 0.75, 0.5
    xin, win, rin = (np.ascontiguousarray(a) for a in (nchw_to_nhwc(x_raw), oihw_to_ohwi(w_raw), nchw_to_nhwc(r_raw)))
    wbuf = np.empty(win.size + 64, win.dtype)  # 64-byte aligned start (numpy), then w_offset elements in
    start = (-wbuf.ctypes.data % 64) // win.itemsize + w_offset
    wbuf[start:start + win.size] = win.ravel()
    win = wbuf[start:start + win.size]
    assert (win.ctypes.data % 16 == 0) == (w_offset == 0)
    kernels("conv_depthwise", dtype).emu_conv2d(d, ctypes.c_float(alpha), ctypes.c_float(beta), ptr(xin), ptr(win),
                                                ptr(b_raw), ptr(rin), ptr(y), pixels)
    got = host(nhwc_to_nchw(y), dtype)
    kw = dict(stride=s, padding=pad, dilation=dil, groups=c, residual=r, alpha=alpha, beta=beta, out_before=y0)
    assert_within_bound(got, conv2d_ref(x, wt, b, activation="relu6", **kw), conv2d_bound(x, wt, b, **kw),
                        rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("m, n, k", [(7, 9, 13), (64, 64, 64), (130, 70, 257), (1, 100, 40)])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_hip_path_matches_the_reference(kernels, dtype, m, n, k, trans):
    check_gemm(kernels, dtype, m, n, k, trans, splits=1)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("m, n, k, splits", [(1, 100, 200, 3), (70, 65, 257, 4), (5, 9, 40, 6)])
@pytest.mark.parametrize("trans", [(False, False), (True, True)])
def test_gemm_split_k_matches_the_reference(kernels, dtype, m, n, k, splits, trans):
    check_gemm(kernels, dtype, m, n, k, trans, splits=splits)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("m", [1, 3, 8])
@pytest.mark.parametrize("n, k, splits", [(24, 64, 1), (40, 256, 5), (8, 512, 3), (72, 96, 2)])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True)])
def test_few_rows_gemm_entries_match_the_reference(kernels, dtype, m, n, k, splits, trans):
    """pask_gemm_small_m (B[k x n]) and _bt (B[n x k]), split K included (slices of
    unequal length: 5 slices of 256 rows or 8 vectors)."""
    check_gemm(kernels, dtype, m, n, k, trans, splits, entry="emu_gemm_small_m")


def check_gemm(kernels, dtype, m, n, k, trans, splits, entry="emu_gemm"):
    ta, tb = trans
    a_raw, a = device(rng.uniform(-1, 1, (k, m) if ta else (m, k)), dtype)
    b_raw, b = device(rng.uniform(-1, 1, (n, k) if tb else (k, n)), dtype)
    bias_raw, bias = device(rng.uniform(-1, 1, n), dtype)
    c_raw, c0 = device(rng.uniform(-1, 1, (m, n)), dtype)
    c_out = c_raw.copy()
    d = i64(m, n, k, m if ta else k, k if tb else n, n, int(ta), int(tb), ACT["relu"])
    getattr(kernels("gemm", dtype), entry)(d, ctypes.c_float(0.5), ctypes.c_float(0.25), ptr(a_raw), ptr(b_raw),
                                           ptr(bias_raw), ptr(c_out), splits)
    ref = gemm_ref(a, b, c0, 0.5, 0.25, ta, tb, bias, "relu")
    bound = gemm_bound(a, b, c0, 0.5, 0.25, ta, tb, bias)
    assert_within_bound(host(c_out, dtype), ref, bound, rtol=RTOL[dtype], what=f"gemm {dtype} {m}x{n}x{k} {trans} splits={splits}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["max", "avg", "avg_exclude_pad"])
def test_pool_hip_path_matches_the_reference(kernels, dtype, layout, mode):
    n, c, h, w, k, s, p = 2, 5, 11, 9, 3, 2, 1
    dil = 2 if mode == "max" else 1
    oh, ow = (h + 2 * p - dil * (k - 1) - 1) // s + 1, (w + 2 * p - dil * (k - 1) - 1) // s + 1
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    y = empty((n, oh, ow, c) if nhwc else (n, c, oh, ow), dtype)
    d = i64(n, c, h, w, oh, ow, k, k, s, s, p, p, p, p, dil, dil, 0, int(mode != "max"), int(mode == "avg"),
            int(nhwc))
    kernels("pool", dtype).emu_pool2d(d, 0, ptr(xin), ptr(y))
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    if mode == "max":
        ref = max_pool2d_ref(x, k, s, p, dil)
    else:
        ref = avg_pool2d_ref(x, k, s, p, count_include_pad=mode == "avg")
    assert_within_bound(got, ref, np.abs(ref) + 1, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["max", "avg", "avg_exclude_pad"])
def test_pool_hip_path_takes_onnx_pads_and_dilated_averages(kernels, dtype, layout, mode):
    # pads up to one less than the dilated window (5), asymmetric; average pooling dilated
    from reference import pool2d_onnx_ref
    n, c, h, w, k, s, dil = 2, 3, 7, 6, 3, 2, 2
    (pt, pb), (pl, pr) = (4, 2), (1, 4)
    oh, ow = (h + pt + pb - dil * (k - 1) - 1) // s + 1, (w + pl + pr - dil * (k - 1) - 1) // s + 1
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    y = empty((n, oh, ow, c) if nhwc else (n, c, oh, ow), dtype)
    d = i64(n, c, h, w, oh, ow, k, k, s, s, pt, pl, pb, pr, dil, dil, 0, int(mode != "max"), int(mode == "avg"),
            int(nhwc))
    kernels("pool", dtype).emu_pool2d(d, 0, ptr(xin), ptr(y))
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    ref = pool2d_onnx_ref(x, "max" if mode == "max" else "avg", (k, k), (s, s), ((pt, pb), (pl, pr)), (dil, dil),
                          False, mode == "avg")
    assert np.isfinite(ref).all()
    assert_within_bound(got, ref, np.abs(ref) + 1, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_global_average_pool_hip_path_uses_32_lane_shuffles_correctly(kernels, dtype, layout):
    n, c, h, w = 2, 6, 7, 9
    x_raw, x = device(rng.uniform(-1, 1, (n, c, h, w)), dtype)
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    y = empty((n, 1, 1, c) if nhwc else (n, c, 1, 1), dtype)
    d = i64(n, c, h, w, 1, 1, h, w, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, int(nhwc))
    kernels("pool", dtype).emu_pool2d(d, 1, ptr(xin), ptr(y))
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    ref = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    assert_within_bound(got, ref, np.abs(x).astype(np.float64).mean(axis=(2, 3), keepdims=True) + 1e-3,
                        rtol=RTOL[dtype] * 4, atol=0)


# ---- NaN and +-Inf (issue 20 B6) ---------------------------------------------------
# pask_act, the epilogue of every kernel here, once read "v > 0 ? v : 0": relu
# turned NaN into 0 on the GPU as on the CPU. PyTorch's rule: NaN propagates
# through relu and relu6, relu6(+inf) = 6, -inf -> 0; max pooling keeps NaN.
# References: tests/nan_reference.py (float64, no BLAS, IEEE rules).
NAN_CONV = [  # (object, entry arg `splits`, layout, (n, c, h, w, o, k, stride, pad, groups))
    ("conv_igemm", 1, "NHWC", (2, 16, 9, 9, 24, 3, 1, 1, 1)),
    ("conv_igemm", 3, "NCHW", (1, 16, 9, 9, 40, 3, 1, 1, 2)),
    ("conv_depthwise", 0, "NCHW", (2, 8, 9, 10, 16, 3, 2, 1, 8)),
    ("conv_depthwise", 4, "NHWC", (2, 16, 9, 10, 16, 3, 1, 1, 16)),
]


def _tol(dtype):
    return dict(rtol=2 * RTOL[dtype], atol=20 * RTOL[dtype])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("where", ["input", "bias"])
@pytest.mark.parametrize("obj, splits, layout, shape", NAN_CONV, ids=lambda v: str(v))
def test_conv_kernels_propagate_nan_and_inf(kernels, dtype, activation, where, obj, splits, layout, shape):
    from nan_reference import check, conv_ref, sprinkle
    n, c, h, w, o, k, s, pad, g = shape
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    x32 = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    b32 = rng.uniform(-1, 1, o).astype(np.float32)
    if where == "input":
        x32 = sprinkle(rng, x32, "mixed")
    else:
        b32 = sprinkle(rng, b32, "mixed", frac=0.25)
    x_raw, x = device(x32, dtype)
    w_raw, wt = device(rng.uniform(-1, 1, (o, c // g, k, k)), dtype)
    b_raw, b = device(b32, dtype)
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    win = np.ascontiguousarray(oihw_to_ohwi(w_raw)) if nhwc else w_raw
    y = empty((n, oh, ow, o) if nhwc else (n, o, oh, ow), dtype)
    d = i64(n, c, h, w, o, k, k, oh, ow, s, s, pad, pad, 1, 1, g, int(nhwc), int(nhwc), ACT[activation])
    kernels(obj, dtype).emu_conv2d(d, ctypes.c_float(1.0), ctypes.c_float(0.0), ptr(xin), ptr(win), ptr(b_raw),
                                   None, ptr(y), splits)
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    want = conv_ref(x, wt, b, s, pad, g, activation)
    assert np.isnan(want).any()
    check(got, want, **_tol(dtype))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("entry, m, n, k, splits", [("emu_gemm", 20, 70, 33, 1), ("emu_gemm", 37, 40, 96, 3),
                                                    ("emu_gemm_small_m", 3, 40, 64, 1),
                                                    ("emu_gemm_small_m", 5, 24, 96, 2)])
def test_gemm_kernels_propagate_nan_and_inf(kernels, dtype, activation, entry, m, n, k, splits):
    from nan_reference import check, gemm_ref, sprinkle
    a32 = sprinkle(rng, rng.uniform(-1, 1, (m, k)).astype(np.float32), "mixed", frac=0.01)
    b32 = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    bias32 = sprinkle(rng, rng.uniform(-1, 1, n).astype(np.float32), "mixed", frac=0.1)
    a_raw, a = device(a32, dtype)
    b_raw, b = device(b32, dtype)
    bias_raw, bias = device(bias32, dtype)
    c_out = empty((m, n), dtype)
    d = i64(m, n, k, k, n, n, 0, 0, ACT[activation])
    getattr(kernels("gemm", dtype), entry)(d, ctypes.c_float(1.0), ctypes.c_float(0.0), ptr(a_raw), ptr(b_raw),
                                           ptr(bias_raw), ptr(c_out), splits)
    want = gemm_ref(a, b, bias, activation)
    assert np.isnan(want).any()
    check(host(c_out, dtype), want, **_tol(dtype))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_pool_kernels_propagate_nan_and_inf(kernels, dtype, layout):
    from nan_reference import check, max_pool_ref, sprinkle
    n, c, h, w, k, s, p = 2, 5, 11, 9, 3, 2, 1
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    x_raw, x = device(sprinkle(rng, rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32), "mixed"), dtype)
    nhwc = layout == "NHWC"
    xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
    y = empty((n, oh, ow, c) if nhwc else (n, c, oh, ow), dtype)
    d = i64(n, c, h, w, oh, ow, k, k, s, s, p, p, p, p, 1, 1, 0, 0, 0, int(nhwc))
    kernels("pool", dtype).emu_pool2d(d, 0, ptr(xin), ptr(y))
    check(host(nhwc_to_nchw(y) if nhwc else y, dtype), max_pool_ref(x, k, s, p), **_tol(dtype))
    g = empty((n, 1, 1, c) if nhwc else (n, c, 1, 1), dtype)
    d = i64(n, c, h, w, 1, 1, h, w, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, int(nhwc))
    kernels("pool", dtype).emu_pool2d(d, 1, ptr(xin), ptr(g))
    check(host(nhwc_to_nchw(g) if nhwc else g, dtype), x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
          **_tol(dtype))


@pytest.mark.parametrize("data", ["ones", "random"])
def test_pool_averages_over_a_huge_window_are_accurate(kernels, data):
    """Issue 20 weak spot: a float accumulator per thread summed 2^26 ones to 2^24 (a
    mean of 0.25) in the generic kernel's average and drifted on random data; pool.cu
    now sums in double per thread. 1x1x8192x8192 float32 (256 MiB; C = 1, so NCHW and
    NHWC are the same memory), against numpy's float64 sum, to 1e-5 relative."""
    big = 8192
    x = np.ones((1, 1, big, big), np.float32)
    if data == "random":
        np.random.default_rng(2026).random(out=x.reshape(-1), dtype=np.float32)
    want = np.sum(x, dtype=np.float64) / x.size
    lib = kernels("pool", "float32")
    for nhwc in (0, 1):
        y = np.zeros(1, np.float32)
        # the generic kernel: avg, one window over everything, count_include_pad
        lib.emu_pool2d(i64(1, 1, big, big, 1, 1, big, big, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, nhwc), 0, ptr(x), ptr(y))
        assert float(y[0]) == pytest.approx(want, rel=1e-5), ("pask_pool2d", nhwc, float(y[0]), want)
        y[0] = 0
        lib.emu_pool2d(i64(1, 1, big, big, 1, 1, big, big, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, nhwc), 1, ptr(x), ptr(y))
        assert float(y[0]) == pytest.approx(want, rel=1e-5), ("pask_pool2d_global_avg", nhwc, float(y[0]), want)


# ---- sigmoid, silu, hardswish, hardsigmoid, gelu, gelu_tanh --------------------------
# pask_act's other branches, through every kernel entry that applies an epilogue:
# the igemm conv (direct and split-K reduce), the depthwise conv (generic and
# vectorised NHWC), gemm (direct, split-K) and the few-rows gemm. Inputs carry
# NaN and +-inf; the reference is nan_reference.act_ref (float64, the formulas
# of torch.nn.functional written out, limits at -inf).
NEW_ACTS = ["sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh"]
# leaky_relu and clamp with parameters exact in every dtype (act_p of the params structs)
PARAM_ACTS = {"leaky_relu": (0.25, 0.0), "clamp": (-0.75, 1.5)}


def _param_ref(y, activation):
    p0, p1 = PARAM_ACTS[activation]
    return np.where(y < 0, y * p0, y) if activation == "leaky_relu" else np.clip(y, p0, p1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("activation", NEW_ACTS + list(PARAM_ACTS))
def test_new_activations_through_every_kernel_entry(kernels, dtype, activation):
    from nan_reference import check, conv_ref, gemm_ref, sprinkle
    tol = dict(rtol=2 * RTOL[dtype], atol=20 * RTOL[dtype])
    params = PARAM_ACTS.get(activation, (0.0, 0.0))
    for obj in ("conv_igemm", "conv_depthwise", "gemm"):
        kernels(obj, dtype).emu_set_act_params(ctypes.c_float(params[0]), ctypes.c_float(params[1]))
    if activation in PARAM_ACTS:
        conv_ref_ = lambda *a: _param_ref(conv_ref(*a[:-1], None), activation)  # noqa: E731
        gemm_ref_ = lambda a, b, bias, act: _param_ref(gemm_ref(a, b, bias, None), activation)  # noqa: E731
    else:
        conv_ref_, gemm_ref_ = conv_ref, gemm_ref
    for obj, splits, layout, (n, c, h, w, o, k, s, pad, g) in NAN_CONV:
        oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        x_raw, x = device(sprinkle(rng, rng.uniform(-1.5, 1.5, (n, c, h, w)).astype(np.float32), "mixed", 0.01), dtype)
        w_raw, wt = device(rng.uniform(-1, 1, (o, c // g, k, k)), dtype)
        b_raw, b = device(rng.uniform(-2, 2, o), dtype)
        nhwc = layout == "NHWC"
        xin = np.ascontiguousarray(nchw_to_nhwc(x_raw)) if nhwc else x_raw
        win = np.ascontiguousarray(oihw_to_ohwi(w_raw)) if nhwc else w_raw
        y = empty((n, oh, ow, o) if nhwc else (n, o, oh, ow), dtype)
        d = i64(n, c, h, w, o, k, k, oh, ow, s, s, pad, pad, 1, 1, g, int(nhwc), int(nhwc), ACT[activation])
        kernels(obj, dtype).emu_conv2d(d, ctypes.c_float(1.0), ctypes.c_float(0.0), ptr(xin), ptr(win), ptr(b_raw),
                                       None, ptr(y), splits)
        got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
        want = conv_ref_(x, wt, b, s, pad, g, activation)
        assert np.isnan(want).any() and np.isfinite(want).any()
        check(got, want, **tol)
    for entry, m, n, k, splits in [("emu_gemm", 20, 70, 33, 1), ("emu_gemm", 37, 40, 96, 3),
                                   ("emu_gemm_small_m", 3, 40, 64, 1), ("emu_gemm_small_m", 5, 24, 96, 2)]:
        a_raw, a = device(sprinkle(rng, rng.uniform(-1, 1, (m, k)).astype(np.float32), "mixed", 0.01), dtype)
        b_raw, b = device(rng.uniform(-1, 1, (k, n)) * (4.0 / np.sqrt(k)), dtype)
        bias_raw, bias = device(rng.uniform(-2, 2, n), dtype)
        c_out = empty((m, n), dtype)
        d = i64(m, n, k, k, n, n, 0, 0, ACT[activation])
        getattr(kernels("gemm", dtype), entry)(d, ctypes.c_float(1.0), ctypes.c_float(0.0), ptr(a_raw), ptr(b_raw),
                                               ptr(bias_raw), ptr(c_out), splits)
        want = gemm_ref_(a, b, bias, activation)
        assert np.isnan(want).any()
        check(host(c_out, dtype), want, **tol)
    for obj in ("conv_igemm", "conv_depthwise", "gemm"):
        kernels(obj, dtype).emu_set_act_params(ctypes.c_float(0.0), ctypes.c_float(0.0))


# float32 pask_act (expf, erfcf in float) against float64: relative error at most
# RELERR, absolute 1e-12 below (subnormals; the float64 literal gelu's own
# cancellation below about -7); gelu's error grows as the tail is reached,
# erfc's argument x/sqrt(2) being rounded to float first.
RELERR = {"sigmoid": 1e-6, "silu": 1e-6, "hardswish": 1e-6, "hardsigmoid": 1e-6, "gelu": 1e-5, "gelu_tanh": 2e-6}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("activation", NEW_ACTS)
def test_new_activations_float32_accuracy(kernels, activation):
    """gemm with K = 1 and B = 1: C = act(a), so pask_act alone is measured."""
    from nan_reference import act_ref
    vals = np.concatenate([rng.uniform(-12, 12, 700), np.linspace(-3.5, 3.5, 141),
                           np.sign(rng.uniform(-1, 1, 300)) * 10.0 ** rng.uniform(-8, 2.2, 300),
                           [np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38, -3e38, -200.0, 200.0]]).astype(np.float32)
    m, n = len(vals), 8
    c_out = empty((m, n), "float32")
    d = i64(m, n, 1, 1, n, n, 0, 0, ACT[activation])
    kernels("gemm", "float32").emu_gemm(d, ctypes.c_float(1.0), ctypes.c_float(0.0), ptr(vals.reshape(m, 1)),
                                        ptr(np.ones((1, n), np.float32)), None, ptr(c_out), 1)
    want = np.repeat(act_ref(vals.astype(np.float64), activation)[:, None], n, axis=1)
    np.testing.assert_array_equal(np.isnan(c_out), np.isnan(want))
    np.testing.assert_allclose(c_out, want, rtol=RELERR[activation], atol=1e-12, equal_nan=True)


def _bstrides(dims, nhwc):
    """Element strides in logical (n, c, h, w) order of an operand of logical dims, 0 where it broadcasts."""
    n, c, h, w = dims
    s = [c * h * w, h * w, w, 1] if not nhwc else [h * w * c, 1, w * c, c]
    return [0 if d == 1 else st for d, st in zip(dims, s)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("act", [None, "relu6", "silu", "gelu", "leaky_relu", "clamp"])
@pytest.mark.parametrize("mdims,adims", [(None, None), ((2, 5, 6, 7), None), (None, (1, 5, 1, 1)),
                                         ((2, 5, 1, 1), (1, 1, 6, 7)), ((1, 1, 1, 1), (2, 5, 6, 7))])
def test_eltwise_gpu_source_matches_the_reference(kernels, dtype, layout, act, mdims, adims):
    from nan_reference import act_ref
    nhwc = layout == "NHWC"
    dims = (2, 5, 6, 7)
    phys = lambda a: np.ascontiguousarray(nchw_to_nhwc(a)) if nhwc else a  # noqa: E731
    x_raw, x = device(rng.uniform(-3, 3, dims), dtype)
    m_raw, m = (None, None) if mdims is None else device(rng.uniform(-2, 2, mdims), dtype)
    a_raw, a = (None, None) if adims is None else device(rng.uniform(-2, 2, adims), dtype)
    y = empty(nchw_to_nhwc(np.empty(dims)).shape if nhwc else dims, dtype)
    d = i64(*dims, int(nhwc), ACT[act], *(_bstrides(mdims, nhwc) if mdims else [0] * 4),
            *(_bstrides(adims, nhwc) if adims else [0] * 4))
    xin, min_, ain = phys(x_raw), None if m is None else phys(m_raw), None if a is None else phys(a_raw)  # kept alive
    params = {"leaky_relu": (0.2, 0.0), "clamp": (-1.5, 0.75)}.get(act, (0.0, 0.0))
    p = np.array(params, np.float32)
    kernels("eltwise", dtype).emu_eltwise(d, ptr(p), ptr(xin), ptr(min_), ptr(ain), ptr(y))
    want = x.astype(np.float64)
    if m is not None:
        want = want * m
    if a is not None:
        want = want + a
    if act == "leaky_relu":
        ref = np.where(want < 0, want * np.float64(p[0]), want)
    elif act == "clamp":
        ref = np.clip(want, np.float64(p[0]), np.float64(p[1]))
    else:
        ref = act_ref(want, act)
    got = host(nhwc_to_nchw(y) if nhwc else y, dtype)
    assert_within_bound(got, ref, np.abs(want) + 1, rtol=RTOL[dtype], atol=0, what=f"eltwise {dtype} {layout} {act}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("count", [1, 3, 30])  # 30: two launches of PASK_CUDA_CAT_GROUP = 24
def test_cat_gpu_source_copies_exactly(kernels, dtype, layout, count):
    nhwc = layout == "NHWC"
    n, h, w = 2, 3, 5
    cs = [int(c) for c in rng.integers(1, 6, count)]
    raws = [device(rng.uniform(-1, 1, (n, c, h, w)), dtype)[0] for c in cs]
    phys = [np.ascontiguousarray(nchw_to_nhwc(r)) if nhwc else r for r in raws]
    y = empty((n, h, w, sum(cs)) if nhwc else (n, sum(cs), h, w), dtype)
    ptrs = (ctypes.c_void_p * count)(*[p.ctypes.data for p in phys])
    kernels("eltwise", dtype).emu_cat(i64(n, h, w, int(nhwc), count), i64(*cs), ptrs, ptr(y))
    np.testing.assert_array_equal(y, np.concatenate(phys, axis=3 if nhwc else 1))
