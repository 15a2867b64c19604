"""float64 references for NaN and +-Inf, shared by tests/test_nan_inf.py (the CPU
solvers), tests/test_hip_kernels_on_cpu.py (the GPU kernel sources on the CPU)
and tests/test_cuda.py.

Written out with elementwise products and numpy sums, no BLAS (whose handling
of NaN/Inf is not ours to rely on), so IEEE rules decide every NaN and Inf:
a sum holding a NaN, or +inf and -inf, is NaN; relu/relu6 and max keep NaN
(PyTorch's rules). Callers keep finite inputs in [-1, 1] so that no finite
value overflows in float32 and the kernels' order of summation cannot move a
NaN or an Inf.
"""
import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])  # math.erf(nan) = nan, erf(+-inf) = +-1

#: the activations beyond relu / relu6 (include/paskdnn.h, torch.nn.functional's)
NEW_ACTIVATIONS = ["sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh"]


def act_ref(y, activation):
    """act(y) in float64, torch.nn.functional's formulas written out literally.
    NaN propagates; at -inf the products x * (something -> 0) take their limit
    -0 (the literal formula would give -inf * 0 = NaN), at +inf the limit."""
    # np.maximum / np.minimum propagate NaN, as PyTorch's relu / relu6 do
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.minimum(np.maximum(y, 0.0), 6.0)
    if activation is None or activation == "none":
        return y
    y = np.asarray(y, np.float64)
    relu6 = lambda v: np.minimum(np.maximum(v, 0.0), 6.0)  # noqa: E731
    with np.errstate(all="ignore"):
        if activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-y))
        if activation == "hardsigmoid":
            return relu6(y + 3.0) / 6.0
        if activation == "silu":
            out = y * (1.0 / (1.0 + np.exp(-y)))
        elif activation == "hardswish":
            out = y * relu6(y + 3.0) / 6.0
        elif activation == "gelu":
            out = 0.5 * y * (1.0 + _erf(y / math.sqrt(2.0)))
        elif activation == "gelu_tanh":
            out = 0.5 * y * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y ** 3)))
        else:
            raise ValueError(f"unknown activation {activation!r}")
    return np.where(np.isneginf(y), -0.0, out)


def sprinkle(rng, a, special, frac=0.04):
    """A copy of float32 `a` with about `frac` of its entries special (at least one)."""
    a = a.copy()
    flat = a.reshape(-1)
    k = max(1, int(frac * flat.size))
    idx = rng.choice(flat.size, size=k, replace=False)
    if special == "mixed":
        vals = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), size=k)
        vals[0] = np.nan  # a NaN always among them
    else:
        vals = np.full(k, {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[special], np.float32)
    flat[idx] = vals
    return a


def conv_ref(x, w, bias, stride, pad, groups, activation):
    """float64 NCHW/OIHW convolution, tap by tap with elementwise products."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # zeros times finite weights: 0
    y = np.zeros((n, o, oh, ow))
    for oc in range(o):
        g = oc // og
        for ci in range(cg):
            for r in range(kh):
                for s in range(kw):
                    y[:, oc] += w[oc, ci, r, s] * xp[:, g * cg + ci, r:r + stride * (oh - 1) + 1:stride,
                                                     s:s + stride * (ow - 1) + 1:stride]
    if bias is not None:
        y = y + bias.astype(np.float64)[None, :, None, None]
    return act_ref(y, activation)


def check(got, want, special=None, rtol=1e-4, atol=1e-4):
    assert got.shape == want.shape
    # NaN where the reference has NaN, Inf of the same sign where it has Inf, else close
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


def gemm_ref(a, b, bias, activation):
    """act(a @ b + bias[None, :]) in float64, products summed elementwise."""
    y = (a.astype(np.float64)[:, :, None] * b.astype(np.float64)[None, :, :]).sum(axis=1)
    if bias is not None:
        y = y + bias.astype(np.float64)[None, :]
    return act_ref(y, activation)


def max_pool_ref(x, k, stride, pad):
    """NCHW max pool in float64: NaN anywhere in the window wins (PyTorch)."""
    n, c, h, w = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    y = np.full((n, c, oh, ow), -np.inf)
    for r in range(k):
        for s in range(k):
            y = np.maximum(y, xp[:, :, r:r + stride * (oh - 1) + 1:stride, s:s + stride * (ow - 1) + 1:stride])
    return y


# CPU conv solvers that run one activation layout only (and decline the other)
NHWC_ONLY = {"conv2d.implicit_gemm_nhwc", "conv2d.indirect_gemm_nhwc"}


def conv_layouts(solver):
    """The activation layouts a CPU conv solver runs."""
    return ("NHWC",) if solver in NHWC_ONLY else ("NCHW", "NHWC")


def cpu_isas():
    """The CPU kernel variants (cpu_isa) this processor runs, best first."""
    import paskdnn

    out = []
    for isa in ("avx512", "avx2", "generic"):
        try:
            paskdnn.Context(cpu_isa=isa).close()
            out.append(isa)
        except paskdnn.Error:
            pass  # not this processor
    return out
