"""Independent float64 NumPy references for the paskdnn test suite.

Everything here follows PyTorch semantics (torch.nn.functional.conv2d,
max_pool2d, avg_pool2d, adaptive_avg_pool2d) and is written without looking
at paskdnn's implementation. All references compute in NCHW / OIHW float64;
use the layout helpers to convert NHWC / OHWI tensors.

This module must not import paskdnn (tests/test_reference.py checks it on its
own, also when the library is not built).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pair",
    "conv2d_padding",
    "conv2d_out_hw",
    "conv2d_ref",
    "conv2d_bound",
    "gemm_ref",
    "gemm_bound",
    "linear_ref",
    "linear_bound",
    "matmul_ref",
    "matmul_bound",
    "pool_out_size",
    "pool2d_out_hw",
    "max_pool2d_ref",
    "avg_pool2d_ref",
    "adaptive_avg_pool2d_ref",
    "apply_activation",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
    "oihw_to_ohwi",
    "ohwi_to_oihw",
    "assert_within_bound",
    "RTOL",
]

# Allowed float32 error relative to the sum of |terms| of each output element.
RTOL = 1e-4
# Tiny absolute slack for elements whose terms are all (nearly) zero.
ATOL = 1e-6


# ---------------------------------------------------------------- helpers ---

def pair(v):
    """int -> (v, v); a 2-sequence -> tuple."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return (int(v[0]), int(v[1]))


def nchw_to_nhwc(x):
    x = np.asarray(x)
    if x.ndim == 3:
        return np.ascontiguousarray(x.transpose(1, 2, 0))
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nhwc_to_nchw(x):
    x = np.asarray(x)
    if x.ndim == 3:
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def oihw_to_ohwi(w):
    return np.ascontiguousarray(np.asarray(w).transpose(0, 2, 3, 1))


def ohwi_to_oihw(w):
    return np.ascontiguousarray(np.asarray(w).transpose(0, 3, 1, 2))


def apply_activation(y, activation, params=None):
    """params: leaky_relu's (negative_slope,) (default 0.01), clamp's (min, max)."""
    if activation is None:
        return y
    if activation == "leaky_relu":
        slope = 0.01 if params is None else params[0]
        return np.where(y < 0, y * slope, y)
    if activation == "clamp":
        return np.clip(y, *params)
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.clip(y, 0.0, 6.0)
    from nan_reference import act_ref  # sigmoid, silu, hardswish, hardsigmoid, gelu, gelu_tanh
    return act_ref(y, activation)


def assert_within_bound(actual, expected, bound, rtol=RTOL, atol=ATOL, what=""):
    """|actual - expected| <= rtol * bound + atol elementwise.

    bound is the sum of the absolute values of all terms contributing to each
    element (see the *_bound functions), so the test is scale-aware without a
    huge absolute tolerance.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    bound = np.asarray(bound)
    assert actual.shape == expected.shape, (
        f"{what} shape {actual.shape} != expected {expected.shape}")
    a64 = actual.astype(np.float64)
    assert np.all(np.isfinite(a64)), f"{what} non-finite values in result"
    err = np.abs(a64 - expected)
    tol = rtol * bound + atol
    bad = err > tol
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what} {int(bad.sum())}/{bad.size} elements out of tolerance; "
            f"first at {idx}: got {a64[idx]!r}, expected {expected[idx]!r}, "
            f"|err|={err[idx]:.3g} > tol={tol[idx]:.3g}; "
            f"max err/tol={float(np.max(err / tol)):.3g}")


# ----------------------------------------------------------------- conv2d ---

def conv2d_padding(padding, kernel_hw, dilation, stride):
    """Normalise a conv2d padding argument to ((top, bottom), (left, right)).

    Accepts int, (ph, pw), ((t, b), (l, r)), "valid" or "same" (PyTorch rule:
    total = dilation*(k-1), top = total // 2, bottom = total - top; only with
    stride 1).
    """
    kh, kw = kernel_hw
    dh, dw = pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if pair(stride) != (1, 1):
                raise ValueError("padding='same' requires stride 1")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
        raise ValueError(f"unknown padding {padding!r}")
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return ((p, p), (p, p))
    padding = tuple(padding)
    if len(padding) != 2:
        raise ValueError(f"bad padding {padding!r}")
    if all(isinstance(p, (int, np.integer)) for p in padding):
        return ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
    (t, b), (l, r) = padding
    return ((int(t), int(b)), (int(l), int(r)))


def conv2d_out_hw(hw, kernel_hw, stride=1, padding=0, dilation=1):
    """Output (OH, OW) of a convolution; padding in any accepted form."""
    (t, b), (l, r) = conv2d_padding(padding, kernel_hw, dilation, stride)
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    kh, kw = kernel_hw
    H, W = hw
    oh = (H + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (W + l + r - dw * (kw - 1) - 1) // sw + 1
    return oh, ow


def _conv2d_raw(x, w, stride, pads, dilation, groups):
    """Plain cross-correlation, float64 NCHW x OIHW -> NCHW."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    G = groups
    assert C == Cg * G and O % G == 0
    Og = O // G
    (t, b), (l, r) = pads
    sh, sw = stride
    dh, dw = dilation
    oh = (H + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (W + l + r - dw * (kw - 1) - 1) // sw + 1
    assert oh >= 1 and ow >= 1, "kernel larger than padded input"
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    xg = xp.reshape(N, G, Cg, H + t + b, W + l + r)
    wg = w.reshape(G, Og, Cg, kh, kw)
    y = np.zeros((N, G, Og, oh, ow), dtype=np.float64)
    for i in range(kh):
        hs = i * dh
        for j in range(kw):
            ws = j * dw
            patch = xg[:, :, :, hs:hs + (oh - 1) * sh + 1:sh,
                       ws:ws + (ow - 1) * sw + 1:sw]
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, i, j],
                           optimize=True)
    return y.reshape(N, O, oh, ow)


def conv2d_ref(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1,
               activation=None, residual=None, alpha=1.0, beta=0.0,
               out_before=None, activation_params=None):
    """float64 reference of paskdnn.conv2d in NCHW / OIHW.

    y = act(alpha * conv(x, w) + beta * out_before + bias + residual).
    x may be 3-D (unbatched, C,H,W); then residual/out_before are 3-D too and
    the result is 3-D.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    kh, kw = w.shape[2], w.shape[3]
    pads = conv2d_padding(padding, (kh, kw), dilation, stride)
    y = _conv2d_raw(x, w, pair(stride), pads, pair(dilation), int(groups))
    y = alpha * y
    if beta != 0.0:
        ob = np.asarray(out_before, dtype=np.float64)
        y = y + beta * (ob[None] if unbatched else ob)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    if residual is not None:
        res = np.asarray(residual, dtype=np.float64)
        y = y + (res[None] if unbatched else res)
    y = apply_activation(y, activation, activation_params)
    return y[0] if unbatched else y


def conv2d_bound(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1,
                 residual=None, alpha=1.0, beta=0.0, out_before=None):
    """Sum of |terms| of each conv2d output element (NCHW), for tolerances."""
    return conv2d_ref(
        np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64)),
        None if bias is None else np.abs(np.asarray(bias, np.float64)),
        stride, padding, dilation, groups, None,
        None if residual is None else np.abs(np.asarray(residual, np.float64)),
        abs(alpha), abs(beta),
        None if out_before is None else np.abs(np.asarray(out_before, np.float64)))


# ------------------------------------------------------------------- gemm ---

def gemm_ref(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False,
             bias=None, activation=None):
    """act(alpha * op(a) @ op(b) + beta * c + bias[None, :]) in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    y = alpha * (a @ b)
    if beta != 0.0:
        y = y + beta * np.asarray(c, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)[None, :]
    return apply_activation(y, activation)


def gemm_bound(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False,
               trans_b=False, bias=None):
    ab = lambda v: None if v is None else np.abs(np.asarray(v, np.float64))  # noqa: E731
    return gemm_ref(ab(a), ab(b), ab(c), abs(alpha), abs(beta), trans_a,
                    trans_b, ab(bias), None)


def linear_ref(x, w, bias=None, activation=None):
    """y = act(x @ w.T + bias); x (..., in), w (out, in)."""
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return apply_activation(y, activation)


def linear_bound(x, w, bias=None):
    return linear_ref(np.abs(np.asarray(x, np.float64)),
                      np.abs(np.asarray(w, np.float64)),
                      None if bias is None else np.abs(np.asarray(bias, np.float64)))


def matmul_ref(a, b):
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))


def matmul_bound(a, b):
    return matmul_ref(np.abs(np.asarray(a, np.float64)),
                      np.abs(np.asarray(b, np.float64)))


# ------------------------------------------------------------------- pool ---

def pool_out_size(n, k, s, p, d=1, ceil_mode=False):
    """PyTorch pooling_output_shape (symmetric padding p)."""
    eff = d * (k - 1) + 1
    num = n + 2 * p - eff + ((s - 1) if ceil_mode else 0)
    out = num // s + 1  # floor division (num >= 0 for valid problems)
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def pool2d_out_hw(hw, kernel_size, stride=None, padding=0, dilation=1,
                  ceil_mode=False):
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    return (pool_out_size(hw[0], kh, sh, ph, dh, ceil_mode),
            pool_out_size(hw[1], kw, sw, pw, dw, ceil_mode))


def max_pool2d_ref(x, kernel_size, stride=None, padding=0, dilation=1,
                   ceil_mode=False):
    """PyTorch max_pool2d on NCHW (or unbatched CHW), float64; padding = -inf."""
    x = np.asarray(x, np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    N, C, H, W = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    oh, ow = pool2d_out_hw((H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw),
                           ceil_mode)
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    bot = max(need_h - H - ph, 0)
    rgt = max(need_w - W - pw, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, bot), (pw, rgt)),
                constant_values=-np.inf)
    y = np.full((N, C, oh, ow), -np.inf)
    for i in range(kh):
        for j in range(kw):
            hs, ws = i * dh, j * dw
            y = np.maximum(y, xp[:, :, hs:hs + (oh - 1) * sh + 1:sh,
                                 ws:ws + (ow - 1) * sw + 1:sw])
    return y[0] if unbatched else y


def _avg_axis(n, k, s, p, out, count_include_pad):
    """Per-output-index (start, end) of the real-input window and divisor
    along one axis, exactly as PyTorch's avg_pool2d kernel."""
    starts, ends, sizes = [], [], []
    for o in range(out):
        st = o * s - p
        en = min(st + k, n + p)
        size = en - st
        st = max(st, 0)
        en = min(en, n)
        if not count_include_pad:
            size = en - st
        starts.append(st)
        ends.append(en)
        sizes.append(size)
    return starts, ends, np.array(sizes, dtype=np.float64)


def avg_pool2d_ref(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                   count_include_pad=True, divisor_override=None):
    """PyTorch avg_pool2d on NCHW (or unbatched CHW), float64."""
    x = np.asarray(x, np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    N, C, H, W = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    oh, ow = pool2d_out_hw((H, W), (kh, kw), (sh, sw), (ph, pw), 1, ceil_mode)
    hs, he, hsz = _avg_axis(H, kh, sh, ph, oh, count_include_pad)
    ws, we, wsz = _avg_axis(W, kw, sw, pw, ow, count_include_pad)
    # window sums via a 2-D inclusive prefix sum: O(1) per output element
    cs = np.zeros((N, C, H + 1, W + 1))
    cs[:, :, 1:, 1:] = x.cumsum(2).cumsum(3)
    hs, he, ws, we = (np.array(v) for v in (hs, he, ws, we))
    s = (cs[:, :, he[:, None], we[None, :]] - cs[:, :, hs[:, None], we[None, :]]
         - cs[:, :, he[:, None], ws[None, :]] + cs[:, :, hs[:, None], ws[None, :]])
    if divisor_override:
        div = float(divisor_override)
    else:
        div = hsz[:, None] * wsz[None, :]
    y = s / div
    return y[0] if unbatched else y


def avg_pool2d_bound(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    """Sum of |terms| for each avg-pool output (i.e. avg of |x|)."""
    return avg_pool2d_ref(np.abs(np.asarray(x, np.float64)), kernel_size,
                          stride, padding, ceil_mode, count_include_pad,
                          divisor_override)


def adaptive_avg_pool2d_ref(x, output_size):
    """PyTorch adaptive_avg_pool2d (any output size), float64."""
    x = np.asarray(x, np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    N, C, H, W = x.shape
    oh, ow = pair(output_size)
    y = np.empty((N, C, oh, ow))
    for i in range(oh):
        h0 = (i * H) // oh
        h1 = -((-(i + 1) * H) // oh)  # ceil
        for j in range(ow):
            w0 = (j * W) // ow
            w1 = -((-(j + 1) * W) // ow)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y[0] if unbatched else y


def max_pool_padding_ok(kernel, padding, dilation=1):
    """PyTorch's rule: pad <= effective_kernel // 2 (per axis)."""
    return padding <= ((kernel - 1) * dilation + 1) // 2


def ceil_div(a, b):
    return -((-a) // b)



# ------------------------------------------------------- test-data helpers ---

def rand32(rng, shape, lo=-1.0, hi=1.0):
    """C-contiguous float32 array with values uniform in [lo, hi)."""
    return np.ascontiguousarray(rng.uniform(lo, hi, shape).astype(np.float32))


def pool2d_onnx_ref(x, mode, k, s, pads, dil, ceil_mode, count_include_pad, divisor=None):
    """Pooling written out tap by tap from ONNX's MaxPool/AveragePool definition,
    float64, NCHW: tap r of output o sits at o*s - pad_pre + r*dil; max over the
    taps inside the input (-inf when none); average = their sum over the taps
    inside the input, or with count_include_pad inside [-pad_pre, in + pad_post)
    (the ceil-mode overhang not counted), or over divisor."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    outs = []
    for i, n in enumerate((H, W)):
        eff = dil[i] * (k[i] - 1) + 1
        span = n + pads[i][0] + pads[i][1] - eff
        o = (-(-span // s[i]) if ceil_mode else span // s[i]) + 1
        if ceil_mode and (o - 1) * s[i] >= n + pads[i][0]:
            o -= 1
        outs.append(o)
    y = np.empty((N, C, outs[0], outs[1]))
    for oh in range(outs[0]):
        for ow in range(outs[1]):
            vals, padded = [], 0
            for r in range(k[0]):
                ih = oh * s[0] - pads[0][0] + r * dil[0]
                for q in range(k[1]):
                    iw = ow * s[1] - pads[1][0] + q * dil[1]
                    if ih < H + pads[0][1] and iw < W + pads[1][1]:
                        padded += 1
                    if 0 <= ih < H and 0 <= iw < W:
                        vals.append(x[:, :, ih, iw])
            if mode == "max":
                y[:, :, oh, ow] = np.max(vals, axis=0) if vals else -np.inf
            else:
                total = np.sum(vals, axis=0) if vals else np.zeros((N, C))
                d = divisor or (padded if count_include_pad else len(vals))
                with np.errstate(invalid="ignore", divide="ignore"):
                    y[:, :, oh, ow] = total / np.float64(d)
    return y
