"""Self-checks of tests/reference.py: hand-computed cases and naive loops.

Does not import paskdnn, so it runs even when the library is not built.
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import reference as ref


# ------------------------------------------------------------ naive loops ---

def naive_conv2d(x, w, bias, stride, pads, dilation, groups):
    """Textbook 7-loop cross-correlation, NCHW/OIHW, explicit bounds checks."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (t, b), (l, r) = pads
    sh, sw = stride
    dh, dw = dilation
    OH = (H + t + b - dh * (KH - 1) - 1) // sh + 1
    OW = (W + l + r - dw * (KW - 1) - 1) // sw + 1
    Og = O // groups
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            g = o // Og
            for oh in range(OH):
                for ow in range(OW):
                    acc = 0.0 if bias is None else float(bias[o])
                    for c in range(Cg):
                        for i in range(KH):
                            ih = oh * sh - t + i * dh
                            if ih < 0 or ih >= H:
                                continue
                            for j in range(KW):
                                iw = ow * sw - l + j * dw
                                if iw < 0 or iw >= W:
                                    continue
                                acc += x[n, g * Cg + c, ih, iw] * w[o, c, i, j]
                    y[n, o, oh, ow] = acc
    return y


def naive_max_pool(x, k, s, p, d, ceil_mode):
    """Direct transcription of PyTorch's max_pool2d CPU loop."""
    N, C, H, W = x.shape
    OH = ref.pool_out_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = ref.pool_out_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.empty((N, C, OH, OW))
    for oh in range(OH):
        hstart = oh * s[0] - p[0]
        hend = min(hstart + (k[0] - 1) * d[0] + 1, H)
        while hstart < 0:
            hstart += d[0]
        for ow in range(OW):
            wstart = ow * s[1] - p[1]
            wend = min(wstart + (k[1] - 1) * d[1] + 1, W)
            while wstart < 0:
                wstart += d[1]
            m = np.full((N, C), -np.inf)
            for ih in range(hstart, hend, d[0]):
                for iw in range(wstart, wend, d[1]):
                    m = np.maximum(m, x[:, :, ih, iw])
            y[:, :, oh, ow] = m
    return y


def naive_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """Direct transcription of PyTorch's avg_pool2d CPU loop."""
    N, C, H, W = x.shape
    OH = ref.pool_out_size(H, k[0], s[0], p[0], 1, ceil_mode)
    OW = ref.pool_out_size(W, k[1], s[1], p[1], 1, ceil_mode)
    y = np.empty((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            hstart = oh * s[0] - p[0]
            wstart = ow * s[1] - p[1]
            hend = min(hstart + k[0], H + p[0])
            wend = min(wstart + k[1], W + p[1])
            pool_size = (hend - hstart) * (wend - wstart)
            hstart = max(hstart, 0)
            wstart = max(wstart, 0)
            hend = min(hend, H)
            wend = min(wend, W)
            if hstart >= hend or wstart >= wend:
                y[:, :, oh, ow] = 0
                continue
            tot = np.zeros((N, C))
            for ih in range(hstart, hend):
                for iw in range(wstart, wend):
                    tot += x[:, :, ih, iw]
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = pool_size
            else:
                div = (hend - hstart) * (wend - wstart)
            y[:, :, oh, ow] = tot / div
    return y


# ------------------------------------------------------ hand-computed cases ---

def test_conv_hand_1():
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    y = ref.conv2d_ref(x, w)
    np.testing.assert_array_equal(y, [[[[8, 12], [20, 24]]]])
    # padding 1 -> 4x4, corners are single elements
    y = ref.conv2d_ref(x, w, padding=1)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 3, 3] == 8 and y[0, 0, 0, 3] == 2
    # cross-correlation, not convolution
    w2 = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    np.testing.assert_array_equal(ref.conv2d_ref(x, w2), [[[[0, 1], [3, 4]]]])


def test_conv_hand_stride_dilation_bias():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 2, 2))
    # dilation 2: taps (0,0),(0,2),(2,0),(2,2); stride 2 -> outputs at 0, 2
    y = ref.conv2d_ref(x, w, bias=np.array([0.5]), stride=2, dilation=2)
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 0, 0] == 0 + 2 + 10 + 12 + 0.5
    assert y[0, 0, 1, 1] == 12 + 14 + 22 + 24 + 0.5


def test_conv_hand_asymmetric_padding():
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 2, 2))
    y = ref.conv2d_ref(x, w, padding=((1, 0), (0, 2)))
    # H: 2+1-1 = 2, W: 2+2-1 = 3
    assert y.shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(y[0, 0], [[2, 1, 0], [4, 2, 0]])


def test_conv_hand_groups_and_epilogue():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 2.0),
                  np.full((2, 2), 3.0), np.full((2, 2), 4.0)])[None]
    w = np.ones((2, 2, 1, 1))  # groups=2: out0 = c0+c1, out1 = c2+c3
    y = ref.conv2d_ref(x, w, groups=2)
    np.testing.assert_array_equal(y[0, :, 0, 0], [3, 7])
    res = np.full(y.shape, -10.0)
    ob = np.full(y.shape, 1.0)
    y = ref.conv2d_ref(x, w, groups=2, alpha=2.0, beta=3.0, out_before=ob,
                       bias=np.array([0.0, 1.0]), residual=res,
                       activation="relu")
    # 2*3 + 3 + 0 - 10 = -1 -> 0 ; 2*7 + 3 + 1 - 10 = 8
    np.testing.assert_array_equal(y[0, :, 0, 0], [0, 8])
    y6 = ref.conv2d_ref(x, w, groups=2, activation="relu6")
    np.testing.assert_array_equal(y6[0, :, 0, 0], [3, 6])


def test_conv_padding_forms():
    assert ref.conv2d_padding("same", (3, 4), 1, 1) == ((1, 1), (1, 2))
    assert ref.conv2d_padding("same", (3, 3), 2, 1) == ((2, 2), (2, 2))
    assert ref.conv2d_padding("same", (2, 2), 1, 1) == ((0, 1), (0, 1))
    assert ref.conv2d_padding("valid", (3, 3), 1, 2) == ((0, 0), (0, 0))
    assert ref.conv2d_padding((1, 2), (3, 3), 1, 1) == ((1, 1), (2, 2))
    assert ref.conv2d_padding(((1, 2), (3, 4)), (3, 3), 1, 1) == ((1, 2), (3, 4))
    with pytest.raises(ValueError):
        ref.conv2d_padding("same", (3, 3), 1, 2)
    # 'same' keeps the spatial size
    for k, d in [(1, 1), (2, 1), (3, 2), (4, 3)]:
        assert ref.conv2d_out_hw((7, 6), (k, k), 1, "same", d) == (7, 6)


def test_layout_helpers_roundtrip():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    assert ref.nchw_to_nhwc(x).shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(ref.nhwc_to_nchw(ref.nchw_to_nhwc(x)), x)
    np.testing.assert_array_equal(ref.ohwi_to_oihw(ref.oihw_to_ohwi(x)), x)
    assert ref.nchw_to_nhwc(x[0]).shape == (4, 5, 3)


def test_unbatched_conv():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 5))
    w = rng.standard_normal((2, 3, 3, 3))
    np.testing.assert_allclose(ref.conv2d_ref(x, w, padding=1),
                               ref.conv2d_ref(x[None], w, padding=1)[0])


def test_gemm_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(ref.gemm_ref(a, b), [[19, 22], [43, 50]])
    np.testing.assert_array_equal(ref.gemm_ref(a, b, trans_a=True),
                                  a.T @ b)
    np.testing.assert_array_equal(ref.gemm_ref(a, b, trans_b=True),
                                  [[17, 23], [39, 53]])
    c = np.ones((2, 2))
    y = ref.gemm_ref(a, b, c, alpha=2.0, beta=-1.0, bias=np.array([0.0, -100.0]),
                     activation="relu")
    np.testing.assert_array_equal(y, [[37, 0], [85, 0]])
    np.testing.assert_array_equal(ref.linear_ref(a, b, np.array([1.0, 2.0])),
                                  [[18, 25], [40, 55]])


def test_pool_out_size_hand():
    # torch: H=5,k=2,s=2 -> floor 2, ceil 3
    assert ref.pool_out_size(5, 2, 2, 0) == 2
    assert ref.pool_out_size(5, 2, 2, 0, ceil_mode=True) == 3
    # ceil window that would start in the padding is dropped:
    # H=4, k=2, s=2, p=1: (4+2-2+1)//2+1 = 3, (3-1)*2=4 >= 4+1? no -> 3
    assert ref.pool_out_size(4, 2, 2, 1, ceil_mode=True) == 3
    # H=3, k=3, s=2, p=1: floor (3+2-3)//2+1 = 2; ceil (3)//2+1 = 2
    assert ref.pool_out_size(3, 3, 2, 1, ceil_mode=True) == 2
    # H=6, k=3, s=3, p=1 ceil: (6+2-3+2)//3+1 = 3; (3-1)*3=6 >= 7? no -> 3
    assert ref.pool_out_size(6, 3, 3, 1, ceil_mode=True) == 3
    # H=5, k=2, s=3, p=1 ceil: (5+2-2+2)//3+1=3; (2)*3=6 >= 6 -> dropped -> 2
    assert ref.pool_out_size(5, 2, 3, 1, ceil_mode=True) == 2
    # dilation: H=7, k=3, d=2 -> eff 5 -> 3
    assert ref.pool_out_size(7, 3, 1, 0, 2) == 3


def test_max_pool_hand():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(ref.max_pool2d_ref(x, 2), [[[[5, 7], [13, 15]]]])
    y = ref.max_pool2d_ref(-x, 2, stride=2, padding=1)
    # padding is -inf, never picked
    np.testing.assert_array_equal(y[0, 0], [[0, -1, -3], [-4, -5, -7], [-12, -13, -15]])
    y = ref.max_pool2d_ref(x, 2, stride=1, dilation=2)
    np.testing.assert_array_equal(y[0, 0], [[10, 11], [14, 15]])


def test_avg_pool_hand():
    x = np.ones((1, 1, 3, 3))
    y = ref.avg_pool2d_ref(x, 2, stride=1, padding=1, count_include_pad=True)
    # corner window (-1..0) x (-1..0): 1 real element / 4
    assert y[0, 0, 0, 0] == 0.25 and y[0, 0, 1, 1] == 1.0
    y = ref.avg_pool2d_ref(x, 2, stride=1, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(y, np.ones_like(y))
    y = ref.avg_pool2d_ref(x, 2, stride=1, padding=1, divisor_override=3)
    assert y[0, 0, 0, 0] == pytest.approx(1 / 3) and y[0, 0, 1, 1] == pytest.approx(4 / 3)
    # ceil_mode: H=W=3, k=2, s=2 -> 2 outputs; last window covers one real
    # row and one column past the input, not in the padded range (pad 0), so
    # the divisor is clipped to H + pad = 3 -> 1x1 element
    y = ref.avg_pool2d_ref(np.arange(9.0).reshape(1, 1, 3, 3), 2, ceil_mode=True)
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 1, 1] == 8.0
    assert y[0, 0, 0, 1] == (2 + 5) / 2


def test_adaptive_avg_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(ref.adaptive_avg_pool2d_ref(x, 1), [[[[7.5]]]])
    np.testing.assert_allclose(ref.adaptive_avg_pool2d_ref(x, 2),
                               ref.avg_pool2d_ref(x, 2))
    # non-dividing size: torch windows [0,2),[1,3) on H=3 -> 2
    x3 = np.arange(9.0).reshape(1, 1, 3, 3)
    y = ref.adaptive_avg_pool2d_ref(x3, 2)
    assert y[0, 0, 0, 0] == np.mean([0, 1, 3, 4])
    assert y[0, 0, 1, 1] == np.mean([4, 5, 7, 8])


def test_assert_within_bound():
    ref.assert_within_bound(np.float32([1.0]), np.array([1.00001]), np.array([1.0]))
    with pytest.raises(AssertionError):
        ref.assert_within_bound(np.float32([1.0]), np.array([1.01]), np.array([1.0]))
    with pytest.raises(AssertionError):
        ref.assert_within_bound(np.float32([np.nan]), np.array([1.0]), np.array([1.0]))


# ------------------------------------------------ property: ref vs naive ---

@st.composite
def conv_problems(draw):
    G = draw(st.integers(1, 3))
    Cg = draw(st.integers(1, 3))
    Og = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    H = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - sum(pads[0])), 11))
    W = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - sum(pads[1])), 11))
    N = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    return N, G, Cg, Og, (kh, kw), stride, dil, pads, (H, W), seed


@given(conv_problems(), st.booleans())
def test_conv_ref_matches_naive(p, with_bias):
    N, G, Cg, Og, (kh, kw), stride, dil, pads, (H, W), seed = p
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (N, G * Cg, H, W))
    w = rng.uniform(-1, 1, (G * Og, Cg, kh, kw))
    b = rng.uniform(-1, 1, G * Og) if with_bias else None
    got = ref.conv2d_ref(x, w, b, stride, pads, dil, G)
    want = naive_conv2d(x, w, b, stride, pads, dil, G)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got.shape[2:] == ref.conv2d_out_hw((H, W), (kh, kw), stride, pads, dil)
    # bound dominates |result|
    bound = ref.conv2d_bound(x, w, b, stride, pads, dil, G)
    assert np.all(np.abs(got) <= bound + 1e-12)


@st.composite
def pool_problems(draw, max_pool):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if max_pool else (1, 1)
    eff = (dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1)
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    p = (draw(st.integers(0, eff[0] // 2)), draw(st.integers(0, eff[1] // 2)))
    H = draw(st.integers(max(1, eff[0] - 2 * p[0]), 12))
    W = draw(st.integers(max(1, eff[1] - 2 * p[1]), 12))
    ceil_mode = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return (kh, kw), s, p, dil, (H, W), ceil_mode, seed


@given(pool_problems(True))
def test_max_pool_ref_matches_naive(p):
    k, s, pad, d, (H, W), ceil_mode, seed = p
    x = np.random.default_rng(seed).uniform(-1, 1, (2, 3, H, W))
    got = ref.max_pool2d_ref(x, k, s, pad, d, ceil_mode)
    want = naive_max_pool(x, k, s, pad, d, ceil_mode)
    np.testing.assert_array_equal(got, want)


@given(pool_problems(False), st.booleans(), st.sampled_from([None, 1, 3, 7]))
def test_avg_pool_ref_matches_naive(p, cip, div):
    k, s, pad, _, (H, W), ceil_mode, seed = p
    x = np.random.default_rng(seed).uniform(-1, 1, (2, 3, H, W))
    got = ref.avg_pool2d_ref(x, k, s, pad, ceil_mode, cip, div)
    want = naive_avg_pool(x, k, s, pad, ceil_mode, cip, div)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # within the padding rule, every window holds a real element
    assert got.shape[2:] == ref.pool2d_out_hw((H, W), k, s, pad, 1, ceil_mode)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2**32 - 1))
def test_adaptive_ref_matches_avg_when_dividing(oh, ow, fh, fw, seed):
    H, W = oh * fh, ow * fw
    x = np.random.default_rng(seed).uniform(-1, 1, (1, 2, H, W))
    np.testing.assert_allclose(ref.adaptive_avg_pool2d_ref(x, (oh, ow)),
                               ref.avg_pool2d_ref(x, (fh, fw)), atol=1e-12)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.booleans(),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_gemm_ref_matches_loops(m, n, k, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (k, m) if ta else (m, k))
    b = rng.uniform(-1, 1, (n, k) if tb else (k, n))
    c = rng.uniform(-1, 1, (m, n))
    bias = rng.uniform(-1, 1, n)
    got = ref.gemm_ref(a, b, c, 0.5, 2.0, ta, tb, bias, "relu6")
    want = np.empty((m, n))
    for i in range(m):
        for j in range(n):
            acc = sum((a[kk, i] if ta else a[i, kk]) * (b[j, kk] if tb else b[kk, j])
                      for kk in range(k))
            want[i, j] = min(max(0.5 * acc + 2.0 * c[i, j] + bias[j], 0.0), 6.0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_reference_does_not_import_paskdnn():
    import re
    src = open(ref.__file__).read()
    assert not re.search(r"^\s*(import|from)\s+paskdnn", src, re.M)
    assert math.isfinite(1.0)
