"""Property tests of paskdnn max_pool2d / avg_pool2d / adaptive_avg_pool2d."""

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st
from hypothesis.control import currently_in_test_context, note as _note

import paskdnn
import reference as ref
from nan_reference import cpu_isas, sprinkle

POOL_SOLVERS = sorted(s["name"] for s in paskdnn.solvers("pool2d"))
GENERAL_SOLVERS = {"pool2d.direct"}


def note(msg):
    if currently_in_test_context():
        _note(msg)


def _int_or_pair(draw, v):
    if v[0] == v[1] and draw(st.booleans()):
        return v[0]
    return v


@st.composite
def pool_cases(draw, mode):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if mode == "max" else (1, 1)
    eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
    stride = None if draw(st.booleans()) else (draw(st.integers(1, 3)),
                                               draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, eff[0] // 2)), draw(st.integers(0, eff[1] // 2)))
    H = draw(st.integers(max(1, eff[0] - 2 * pad[0]), max(12, eff[0])))
    W = draw(st.integers(max(1, eff[1] - 2 * pad[1]), max(12, eff[1])))
    case = dict(
        mode=mode, N=draw(st.integers(1, 2)), C=draw(st.integers(1, 8)), H=H, W=W,
        kernel_size=_int_or_pair(draw, k),
        stride=None if stride is None else _int_or_pair(draw, stride),
        padding=_int_or_pair(draw, pad), ceil_mode=draw(st.booleans()),
        layout=draw(st.sampled_from(["NCHW", "NHWC"])),
        use_out=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )
    if mode == "max":
        case["dilation"] = _int_or_pair(draw, dil)
    else:
        case["count_include_pad"] = draw(st.booleans())
        case["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, 7]))
    return case


def check_pool(case, context=None):
    note(repr(case))
    rng = np.random.default_rng(case["seed"])
    x = ref.rand32(rng, (case["N"], case["C"], case["H"], case["W"]))
    mode = case["mode"]
    common = dict(kernel_size=case["kernel_size"], stride=case["stride"],
                  padding=case["padding"], ceil_mode=case["ceil_mode"])
    if mode == "max":
        want = ref.max_pool2d_ref(x, dilation=case["dilation"], **common)
        # a dilated window may miss the input entirely (torch gives -inf);
        # that corner is not part of paskdnn's contract
        assume(np.all(np.isfinite(want)))
    else:
        extra = dict(count_include_pad=case["count_include_pad"],
                     divisor_override=case["divisor_override"])
        want = ref.avg_pool2d_ref(x, **common, **extra)
        bound = ref.avg_pool2d_bound(x, **common, **extra)
    nhwc = case["layout"] == "NHWC"
    xin = ref.nchw_to_nhwc(x) if nhwc else x
    x_keep = xin.copy()
    kw = dict(layout=case["layout"])
    if context is not None:
        kw["context"] = context
    out = None
    if case["use_out"]:
        out = np.full(ref.nchw_to_nhwc(want).shape if nhwc else want.shape,
                      np.nan, np.float32)
        kw["out"] = out
    if mode == "max":
        y = paskdnn.max_pool2d(xin, dilation=case["dilation"], **common, **kw)
    else:
        y = paskdnn.avg_pool2d(xin, **common, **extra, **kw)
    if out is not None:
        assert y is out
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    y = ref.nhwc_to_nchw(y) if nhwc else y
    assert y.shape == want.shape, f"{y.shape} != {want.shape} for {case}"
    if mode == "max":
        # max is exact: the result is one of the float32 inputs
        np.testing.assert_array_equal(y, want.astype(np.float32), err_msg=repr(case))
    else:
        ref.assert_within_bound(y, want, bound, what=f"avg_pool2d {case}")
    np.testing.assert_array_equal(xin, x_keep)


@given(pool_cases("max"))
def test_max_pool2d(case):
    check_pool(case)
    assert paskdnn.last_solver() in POOL_SOLVERS


@given(pool_cases("avg"))
def test_avg_pool2d(case):
    check_pool(case)
    assert paskdnn.last_solver() in POOL_SOLVERS


@st.composite
def global_avg_cases(draw):
    H, W = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return dict(mode="avg", N=draw(st.integers(1, 2)), C=draw(st.integers(1, 16)),
                H=H, W=W, kernel_size=(H, W), stride=None, padding=0,
                ceil_mode=False,
                count_include_pad=draw(st.booleans()),
                divisor_override=None,
                layout=draw(st.sampled_from(["NCHW", "NHWC"])),
                use_out=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@pytest.mark.parametrize("solver", POOL_SOLVERS)
@given(data=st.data())
def test_pool2d_forced_solver(solver, data, make_context):
    ctx = make_context(solver)
    if solver == "pool2d.global_avg":
        check_pool(data.draw(global_avg_cases()), ctx)
    elif solver in GENERAL_SOLVERS:
        check_pool(data.draw(pool_cases(data.draw(st.sampled_from(["max", "avg"])))), ctx)
    else:
        try:
            check_pool(data.draw(pool_cases(data.draw(st.sampled_from(["max", "avg"])))), ctx)
        except paskdnn.UnsupportedError:
            return
    assert paskdnn.last_solver() == solver


@pytest.mark.parametrize("isa", cpu_isas())
@given(data=st.data())
def test_max_pool2d_nhwc_wide_channels(isa, data, ctx_for):
    """NHWC max pool with channel counts that reach pool2d.direct's register
    blocks (4 vectors of 16, one vector, a scalar tail), windows of up to 64
    taps (the tap-pointer path) and past it (the accumulator row), every
    window parameter, and NaN / +-inf among the inputs (NaN wins, a window
    wholly in the padding or a dilation gap is -inf)."""
    C = data.draw(st.sampled_from([16, 17, 31, 48, 64, 65, 80, 100, 128, 130]), label="C")
    big = data.draw(st.booleans(), label="window past 64 taps")
    k = (data.draw(st.integers(9, 11)), data.draw(st.integers(8, 9))) if big else \
        (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    dil = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    pad = (data.draw(st.integers(0, eff[0] // 2)), data.draw(st.integers(0, eff[1] // 2)))
    H = data.draw(st.integers(max(1, eff[0] - 2 * pad[0]), eff[0] + 6), label="H")
    W = data.draw(st.integers(max(1, eff[1] - 2 * pad[1]), eff[1] + 6), label="W")
    ceil_mode = data.draw(st.booleans(), label="ceil_mode")
    special = data.draw(st.sampled_from([None, "nan", "inf", "-inf", "mixed"]), label="special")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = ref.rand32(rng, (data.draw(st.integers(1, 2), label="N"), C, H, W))
    if special is not None:
        x = sprinkle(rng, x, special)
    want = ref.max_pool2d_ref(x, k, stride, pad, dil, ceil_mode).astype(np.float32)
    y = paskdnn.max_pool2d(ref.nchw_to_nhwc(x), k, stride, pad, dil, ceil_mode, layout="NHWC",
                           context=ctx_for("pool2d.direct", isa))
    assert paskdnn.last_solver() == "pool2d.direct"
    np.testing.assert_array_equal(ref.nhwc_to_nchw(y), want)


def test_required_pool_solvers_exist():
    assert "pool2d.direct" in POOL_SOLVERS and "pool2d.global_avg" in POOL_SOLVERS


@given(st.integers(1, 2), st.integers(1, 8), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3), st.sampled_from(["NCHW", "NHWC"]),
       st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_adaptive_avg_pool2d(N, C, oh, ow, fh, fw, layout, as_int, use_out, seed):
    if as_int:
        ow, fw = oh, fh
    H, W = oh * fh, ow * fw
    x = ref.rand32(np.random.default_rng(seed), (N, C, H, W))
    want = ref.adaptive_avg_pool2d_ref(x, (oh, ow))
    bound = ref.adaptive_avg_pool2d_ref(np.abs(x), (oh, ow))
    nhwc = layout == "NHWC"
    xin = ref.nchw_to_nhwc(x) if nhwc else x
    size = oh if as_int else (oh, ow)
    if use_out:
        out = np.full((N, oh, ow, C) if nhwc else (N, C, oh, ow), np.nan, np.float32)
        y = paskdnn.adaptive_avg_pool2d(xin, size, layout=layout, out=out)
        assert y is out
    else:
        y = paskdnn.adaptive_avg_pool2d(xin, size, layout=layout)
    y = ref.nhwc_to_nchw(y) if nhwc else y
    ref.assert_within_bound(y, want, bound)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_adaptive_global_uses_global_solver(layout, make_context):
    rng = np.random.default_rng(7)
    x = ref.rand32(rng, (2, 64, 7, 7))
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    y = paskdnn.adaptive_avg_pool2d(xin, (1, 1), layout=layout,
                                    context=make_context("pool2d.global_avg"))
    assert paskdnn.last_solver() == "pool2d.global_avg"
    y = ref.nhwc_to_nchw(y) if layout == "NHWC" else y
    ref.assert_within_bound(y, ref.adaptive_avg_pool2d_ref(x, 1),
                            ref.adaptive_avg_pool2d_ref(np.abs(x), 1))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_resnet_pools(layout, make_context):
    rng = np.random.default_rng(8)
    x = ref.rand32(rng, (2, 16, 32, 32))
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    back = (lambda y: ref.nhwc_to_nchw(y)) if layout == "NHWC" else (lambda y: y)
    for ctx in [None, make_context("pool2d.direct")]:
        y = back(paskdnn.max_pool2d(xin, 3, 2, 1, layout=layout, context=ctx))
        assert y.shape == (2, 16, 16, 16)
        np.testing.assert_array_equal(y, ref.max_pool2d_ref(x, 3, 2, 1).astype(np.float32))
        y = back(paskdnn.avg_pool2d(xin, 3, 2, 1, ceil_mode=True,
                                    count_include_pad=False, layout=layout, context=ctx))
        ref.assert_within_bound(
            y, ref.avg_pool2d_ref(x, 3, 2, 1, True, False),
            ref.avg_pool2d_bound(x, 3, 2, 1, True, False))
    g = ref.rand32(rng, (2, 64, 7, 7))
    gin = ref.nchw_to_nhwc(g) if layout == "NHWC" else g
    for ctx in [None, make_context("pool2d.global_avg"), make_context("pool2d.direct")]:
        y = back(paskdnn.avg_pool2d(gin, 7, layout=layout, context=ctx))
        assert y.shape == (2, 64, 1, 1)
        ref.assert_within_bound(y, ref.avg_pool2d_ref(g, 7), ref.avg_pool2d_bound(g, 7))


def test_ceil_mode_drops_window_in_padding():
    # H=5, k=2, s=3, p=1, ceil: a 3rd window would start at 5 (in the padding)
    x = ref.rand32(np.random.default_rng(9), (1, 1, 5, 5))
    y = paskdnn.max_pool2d(x, 2, 3, 1, ceil_mode=True)
    assert y.shape == (1, 1, 2, 2)
    y = paskdnn.avg_pool2d(x, 2, 3, 1, ceil_mode=True)
    assert y.shape == (1, 1, 2, 2)
    # without ceil_mode vs with: H=5, k=2, s=2 -> 2 vs 3
    assert paskdnn.max_pool2d(x, 2).shape == (1, 1, 2, 2)
    z = paskdnn.avg_pool2d(x, 2, ceil_mode=True)
    assert z.shape == (1, 1, 3, 3)
    # last window holds one real element; divisor clipped to H + pad = 5 -> 1
    assert z[0, 0, 2, 2] == pytest.approx(x[0, 0, 4, 4], rel=1e-6)


# ---- averages over huge windows (issue 20, weak spot) ------------------------------
# One float32 accumulator per output summed 2^26 ones to 2^24 (a mean of 0.25)
# and drifted on random data; the CPU average kernels now accumulate in
# float64. 1x1x8192x8192 float32 is 256 MiB; C = 1 makes the NCHW and NHWC
# tensors the same memory. The reference sums in float64 (numpy's pairwise sum
# with dtype=float64 casts in chunks: no float64 copy).
BIG = 8192


@pytest.mark.parametrize("data", ["ones", "random"])
def test_average_over_a_huge_window_is_accurate(data, make_context):
    rng = np.random.default_rng(2026)
    x = np.ones((1, 1, BIG, BIG), np.float32)
    if data == "random":
        rng.random(out=x.reshape(-1), dtype=np.float32)  # in [0, 1): a mean of 0.5
    want = np.sum(x, dtype=np.float64) / x.size
    x_nhwc = x.reshape(1, BIG, BIG, 1)  # the same memory
    for solver in ("pool2d.global_avg", "pool2d.direct"):
        ctx = make_context(solver)
        for layout, xl in (("NCHW", x), ("NHWC", x_nhwc)):
            if solver == "pool2d.global_avg":
                y = paskdnn.adaptive_avg_pool2d(xl, 1, layout=layout, context=ctx)
            else:
                y = paskdnn.avg_pool2d(xl, BIG, layout=layout, context=ctx)
            assert paskdnn.last_solver() == solver
            got = float(np.asarray(y).reshape(-1)[0])
            assert got == pytest.approx(want, rel=1e-5), f"{solver} {layout} {data}: {got} vs {want}"


# ---- ONNX's range: pads up to the dilated window, average pooling with dilation ----

@st.composite
def onnx_pool_cases(draw):
    mode = draw(st.sampled_from(["max", "avg"]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    eff = [dil[i] * (k[i] - 1) + 1 for i in range(2)]
    pads = tuple((draw(st.integers(0, e - 1)), draw(st.integers(0, e - 1))) for e in eff)
    hw = [draw(st.integers(max(1, eff[i] - sum(pads[i])), 10)) for i in range(2)]
    return dict(mode=mode, k=k, dil=dil, pads=pads, H=hw[0], W=hw[1],
                s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), ceil=draw(st.booleans()),
                cip=draw(st.booleans()), div=draw(st.sampled_from([None, None, None, 2])),
                layout=draw(st.sampled_from(["NCHW", "NHWC"])), seed=draw(st.integers(0, 2**31)))


@given(onnx_pool_cases())
def test_pools_take_onnx_pads_and_dilated_averages(case):
    """Pads up to one less than the dilated window (torch stops at half) and average
    pooling with dilation, against the tap-by-tap reference (reference.pool2d_onnx_ref)."""
    note(repr(case))
    rng = np.random.default_rng(case["seed"])
    x = ref.rand32(rng, (2, 3, case["H"], case["W"]))
    c = case
    want = ref.pool2d_onnx_ref(x, c["mode"], c["k"], c["s"], c["pads"], c["dil"], c["ceil"], c["cip"],
                         c["div"] if c["mode"] == "avg" else None)
    nhwc = c["layout"] == "NHWC"
    xin = ref.nchw_to_nhwc(x) if nhwc else x
    common = dict(kernel_size=c["k"], stride=c["s"], padding=c["pads"], ceil_mode=c["ceil"], layout=c["layout"])
    if c["mode"] == "max":
        y = paskdnn.max_pool2d(xin, dilation=c["dil"], **common)
    else:
        y = paskdnn.avg_pool2d(xin, dilation=c["dil"], count_include_pad=c["cip"], divisor_override=c["div"],
                               **common)
    y = ref.nhwc_to_nchw(y) if nhwc else y
    assert y.shape == want.shape
    if c["mode"] == "max":
        np.testing.assert_array_equal(y, want.astype(np.float32))
    else:
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_pool_pads_reaching_the_window_are_refused():
    x = np.ones((1, 1, 5, 5), np.float32)
    out = np.full((1, 1, 7, 7), 7, np.float32)
    with pytest.raises(paskdnn.InvalidArgumentError, match="smaller than the .dilated. kernel size 3"):
        paskdnn.max_pool2d(x, 3, 1, 3, out=out)
    with pytest.raises(paskdnn.InvalidArgumentError, match="smaller than the .dilated. kernel size 5"):
        paskdnn.avg_pool2d(x, 3, 1, ((0, 0), (5, 0)), dilation=2)
    assert (out == 7).all()
    # two less than the window: fine, and the edge windows hold one tap each
    y = paskdnn.avg_pool2d(np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5), 3, 1, 2, count_include_pad=False)
    assert y.shape == (1, 1, 7, 7) and y[0, 0, 0, 0] == 0.0 and y[0, 0, -1, -1] == 24.0
