"""Property tests of paskdnn.conv2d against tests/reference.py."""

import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.control import currently_in_test_context, note as _note

import paskdnn
import reference as ref

CONV_SOLVERS = sorted(s["name"] for s in paskdnn.solvers("conv2d"))

# Which problems each known solver is designed for (see the brief); any solver
# not listed here is tried on general problems and may decline them.
GENERAL_SOLVERS = {"conv2d.direct", "conv2d.im2col_gemm"}
SOLVER_KIND = {"conv2d.gemm_1x1": "1x1", "conv2d.depthwise": "depthwise", "conv2d.few_channels": "few_channels"}

ACTIVATIONS = [None, "relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh"]


def note(msg):
    if currently_in_test_context():
        _note(msg)


# --------------------------------------------------------------- problems ---

def _pad_form(draw, pads, stride_is_one):
    """Express ((t,b),(l,r)) in one of the accepted API forms."""
    (t, b), (l, r) = pads
    forms = [((t, b), (l, r))]
    if t == b and l == r:
        forms.append((t, l))
        if t == l:
            forms.append(t)
            if t == 0:
                forms.append("valid")
    return draw(st.sampled_from(forms))


def _int_or_pair(draw, v):
    if v[0] == v[1] and draw(st.booleans()):
        return v[0]
    return v


@st.composite
def conv_cases(draw, kind="general", epilogue=True, max_hw=11):
    if kind == "1x1":
        G, Cg, Og = 1, draw(st.integers(1, 16)), draw(st.integers(1, 16))
        k = (1, 1)
        stride = dil = (1, 1)
        pads = ((0, 0), (0, 0))
    else:
        if kind == "few_channels":
            # groups 1, C <= 8; O past the kernel's 64-channel blocks and vector tails
            G, Cg, Og = 1, draw(st.integers(1, 8)), draw(st.integers(1, 80))
            k = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
        elif kind == "depthwise":
            # groups == C > 1 (C == groups == 1 is a plain conv, which the
            # depthwise solver is allowed to decline)
            G = draw(st.integers(2, 8))
            Cg, Og = 1, draw(st.integers(1, 2))
            k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        else:
            G = draw(st.integers(1, 3))
            Cg, Og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3)))
                     for _ in range(2))
    C, O = G * Cg, G * Og
    eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
    use_same = kind != "1x1" and stride == (1, 1) and draw(st.booleans())
    if use_same:
        padding = "same"
        pads = ref.conv2d_padding("same", k, dil, 1)
    else:
        padding = _pad_form(draw, pads, stride == (1, 1))
    H = draw(st.integers(max(1, eff[0] - sum(pads[0])), max(max_hw, eff[0])))
    W = draw(st.integers(max(1, eff[1] - sum(pads[1])), max(max_hw, eff[1])))
    case = dict(
        N=draw(st.integers(1, 2)), C=C, O=O, G=G, k=k, H=H, W=W,
        stride=_int_or_pair(draw, stride), dilation=_int_or_pair(draw, dil),
        padding=padding,
        layout=draw(st.sampled_from(["NCHW", "NHWC"])),
        weight_layout=draw(st.sampled_from(["OIHW", "OHWI"])),
        unbatched=draw(st.booleans()) and draw(st.booleans()),
        bias=False, residual=False, activation=None, alpha=1.0, beta=0.0,
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    if case["unbatched"]:
        case["N"] = 1
    if epilogue:
        case.update(
            bias=draw(st.booleans()),
            residual=draw(st.booleans()),
            activation=draw(st.sampled_from(ACTIVATIONS)),
            alpha=draw(st.sampled_from([1.0, 1.0, 0.5, -2.0, 3.0])),
            beta=draw(st.sampled_from([0.0, 0.0, 1.0, -0.5])),
        )
    case["use_out"] = case["beta"] != 0.0 or draw(st.booleans())
    return case


def make_inputs(case):
    """Random float32 tensors of a case, in the API's layouts, plus NCHW
    float64 copies for the reference."""
    rng = np.random.default_rng(case["seed"])
    N, C, O, G = case["N"], case["C"], case["O"], case["G"]
    kh, kw = case["k"]
    x = ref.rand32(rng, (N, C, case["H"], case["W"]))
    w = ref.rand32(rng, (O, C // G, kh, kw))
    b = ref.rand32(rng, (O,)) if case["bias"] else None
    oh, ow = ref.conv2d_out_hw((case["H"], case["W"]), (kh, kw), case["stride"],
                               case["padding"], case["dilation"])
    res = ref.rand32(rng, (N, O, oh, ow)) if case["residual"] else None
    prefill = ref.rand32(rng, (N, O, oh, ow))
    api = {}
    nhwc = case["layout"] == "NHWC"
    conv = ref.nchw_to_nhwc if nhwc else np.ascontiguousarray
    ub = (lambda a: np.ascontiguousarray(a[0])) if case["unbatched"] else (lambda a: a)
    api["x"] = ub(conv(x))
    api["w"] = ref.oihw_to_ohwi(w) if case["weight_layout"] == "OHWI" else w
    api["b"] = b
    api["res"] = None if res is None else ub(conv(res))
    api["prefill"] = ub(conv(prefill))
    nchw = dict(x=x, w=w, b=b, res=res, prefill=prefill)
    return api, nchw


def to_nchw(y, case):
    y = np.asarray(y)
    if case["unbatched"]:
        y = y[None]
    return ref.nhwc_to_nchw(y) if case["layout"] == "NHWC" else y


def call_conv(case, api, context=None, use_out=None):
    """Runs paskdnn.conv2d for a case; returns the NCHW result."""
    beta = case["beta"]
    if use_out is None:
        use_out = case.get("use_out", False) or beta != 0.0
    out = api["prefill"].copy() if use_out else None
    kwargs = dict(layout=case["layout"], weight_layout=case["weight_layout"],
                  activation=case["activation"], alpha=case["alpha"])
    if case.get("activation_params") is not None:
        kwargs["activation_params"] = case["activation_params"]
    if api["res"] is not None:
        kwargs["residual"] = api["res"]
    if beta != 0.0:
        kwargs["beta"] = beta
    if out is not None:
        kwargs["out"] = out
    if context is not None:
        kwargs["context"] = context
    y = paskdnn.conv2d(api["x"], api["w"], api["b"], case["stride"],
                       case["padding"], case["dilation"], case["G"], **kwargs)
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.float32
    if out is not None:
        assert y is out, "conv2d(out=) must return out itself"
    return to_nchw(y, case)


def check_conv(case, context=None, use_out=None):
    note(repr(case))
    api, d = make_inputs(case)
    before = {k: (None if v is None else v.copy()) for k, v in api.items()}
    got = call_conv(case, api, context, use_out)
    beta = case["beta"]
    args = dict(bias=d["b"], stride=case["stride"], padding=case["padding"],
                dilation=case["dilation"], groups=case["G"], residual=d["res"],
                alpha=case["alpha"], beta=beta,
                out_before=d["prefill"] if beta != 0.0 else None)
    want = ref.conv2d_ref(d["x"], d["w"], activation=case["activation"],
                          activation_params=case.get("activation_params"), **args)
    bound = ref.conv2d_bound(d["x"], d["w"], **args)
    ref.assert_within_bound(got, want, bound, what=f"conv2d {case}")
    for k, v in before.items():  # inputs are read only
        if v is not None and k != "prefill":
            np.testing.assert_array_equal(api[k], v, err_msg=f"{k} modified")
    return got


# ------------------------------------------------------------------ tests ---

@given(conv_cases())
def test_conv2d_default_solver(case):
    check_conv(case)
    assert paskdnn.last_solver() in CONV_SOLVERS


@given(conv_cases(epilogue=False))
def test_conv2d_plain(case):
    check_conv(case)


@pytest.mark.parametrize("solver", CONV_SOLVERS)
@given(data=st.data())
def test_conv2d_forced_solver(solver, data, make_context):
    kind = SOLVER_KIND.get(solver, "general")
    case = data.draw(conv_cases(kind=kind))
    ctx = make_context(solver)
    if kind == "general" and solver not in GENERAL_SOLVERS:
        try:
            check_conv(case, ctx)
        except paskdnn.UnsupportedError:
            return  # an unknown specialised solver may decline
    else:
        check_conv(case, ctx)
    assert paskdnn.last_solver() == solver


def test_required_conv_solvers_exist():
    for name in ["conv2d.direct", "conv2d.im2col_gemm", "conv2d.gemm_1x1",
                 "conv2d.depthwise"]:
        assert name in CONV_SOLVERS


@given(conv_cases(), st.sampled_from([0.0, np.nan, 1e30]))
def test_conv2d_out_beta0_ignores_prefill(case, fill):
    """With beta == 0, out's previous contents (even NaN) are never read."""
    case = dict(case, beta=0.0)
    api, d = make_inputs(case)
    api["prefill"] = np.full_like(api["prefill"], fill)
    got = call_conv(case, api, use_out=True)
    want = ref.conv2d_ref(d["x"], d["w"], d["b"], case["stride"], case["padding"],
                          case["dilation"], case["G"], case["activation"],
                          d["res"], case["alpha"])
    bound = ref.conv2d_bound(d["x"], d["w"], d["b"], case["stride"],
                             case["padding"], case["dilation"], case["G"],
                             d["res"], case["alpha"])
    ref.assert_within_bound(got, want, bound)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv2d_out_accumulate(layout):
    """beta=1, alpha=1 accumulates into out in place: out += conv."""
    rng = np.random.default_rng(5)
    x = ref.rand32(rng, (2, 4, 6, 6))
    w = ref.rand32(rng, (3, 4, 3, 3))
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    y1 = paskdnn.conv2d(xin, w, padding=1, layout=layout)
    out = np.zeros_like(y1)
    r = paskdnn.conv2d(xin, w, padding=1, layout=layout, out=out, beta=1.0)
    assert r is out
    r = paskdnn.conv2d(xin, w, padding=1, layout=layout, out=out, beta=1.0)
    want = 2 * ref.conv2d_ref(x, w, padding=1)
    if layout == "NHWC":
        want = ref.nchw_to_nhwc(want)
    bound = 2 * ref.conv2d_bound(x, w, padding=1)
    if layout == "NHWC":
        bound = ref.nchw_to_nhwc(bound)
    ref.assert_within_bound(out, want, bound)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("k,dil", [(1, 1), (2, 1), (3, 1), (3, 2), (4, 3), (5, 1)])
def test_conv2d_same_keeps_size(layout, k, dil):
    rng = np.random.default_rng(k * 10 + dil)
    x = ref.rand32(rng, (1, 3, 7, 6))
    w = ref.rand32(rng, (2, 3, k, k))
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    y = paskdnn.conv2d(xin, w, padding="same", dilation=dil, layout=layout)
    y = ref.nhwc_to_nchw(y) if layout == "NHWC" else y
    assert y.shape == (1, 2, 7, 6)
    ref.assert_within_bound(y, ref.conv2d_ref(x, w, padding="same", dilation=dil),
                            ref.conv2d_bound(x, w, padding="same", dilation=dil))


def test_conv2d_same_asymmetric_even_kernel():
    """'same' with an even kernel pads bottom/right more (torch rule)."""
    rng = np.random.default_rng(11)
    x = ref.rand32(rng, (1, 2, 5, 5))
    w = ref.rand32(rng, (3, 2, 2, 4))
    y = paskdnn.conv2d(x, w, padding="same")
    y2 = paskdnn.conv2d(x, w, padding=((0, 1), (1, 2)))
    want = ref.conv2d_ref(x, w, padding=((0, 1), (1, 2)))
    bound = ref.conv2d_bound(x, w, padding=((0, 1), (1, 2)))
    ref.assert_within_bound(y, want, bound)
    ref.assert_within_bound(y2, want, bound)


def test_conv2d_valid_equals_zero_padding():
    rng = np.random.default_rng(12)
    x = ref.rand32(rng, (2, 3, 8, 9))
    w = ref.rand32(rng, (4, 3, 3, 2))
    y = paskdnn.conv2d(x, w, padding="valid", stride=(2, 1))
    assert y.shape == (2, 4, 3, 8)
    ref.assert_within_bound(y, ref.conv2d_ref(x, w, stride=(2, 1)),
                            ref.conv2d_bound(x, w, stride=(2, 1)))


def test_conv2d_argument_forms_agree():
    rng = np.random.default_rng(13)
    x = ref.rand32(rng, (1, 4, 9, 9))
    w = ref.rand32(rng, (4, 2, 3, 3))
    base = paskdnn.conv2d(x, w, None, 2, 1, 2, 2)
    forms = [
        dict(stride=(2, 2), padding=(1, 1), dilation=(2, 2), groups=2),
        dict(stride=2, padding=((1, 1), (1, 1)), dilation=2, groups=2),
    ]
    for f in forms:
        y = paskdnn.conv2d(x, w, **f)
        np.testing.assert_allclose(y, base, rtol=1e-6, atol=1e-6)
    ref.assert_within_bound(base, ref.conv2d_ref(x, w, None, 2, 1, 2, 2),
                            ref.conv2d_bound(x, w, None, 2, 1, 2, 2))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv2d_unbatched(layout):
    rng = np.random.default_rng(14)
    x = ref.rand32(rng, (3, 6, 5))
    w = ref.rand32(rng, (4, 3, 3, 3))
    b = ref.rand32(rng, (4,))
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    y = paskdnn.conv2d(xin, w, b, padding=1, layout=layout)
    assert y.ndim == 3
    y = ref.nhwc_to_nchw(y) if layout == "NHWC" else y
    ref.assert_within_bound(y, ref.conv2d_ref(x, w, b, padding=1),
                            ref.conv2d_bound(x, w, b, padding=1))
    out = np.empty((4, 6, 5) if layout == "NCHW" else (6, 5, 4), np.float32)
    assert paskdnn.conv2d(xin, w, b, padding=1, layout=layout, out=out) is out


def test_conv2d_contiguous_view_with_offset_ok():
    """A C-contiguous slice (non-zero offset into a bigger buffer) is fine."""
    rng = np.random.default_rng(15)
    big = ref.rand32(rng, (3, 2, 5, 5))
    x = big[1:]
    assert x.flags.c_contiguous
    w = ref.rand32(rng, (2, 2, 3, 3))
    ref.assert_within_bound(paskdnn.conv2d(x, w), ref.conv2d_ref(x, w),
                            ref.conv2d_bound(x, w))


# ResNet-like fixed shapes: (N, C, H, W, O, k, stride, pad, groups)
RESNET_SHAPES = [
    (1, 3, 32, 32, 16, 7, 2, 3, 1),    # stem
    (2, 16, 14, 14, 16, 3, 1, 1, 1),   # basic block 3x3
    (1, 32, 14, 14, 64, 1, 2, 0, 1),   # 1x1 stride-2 downsample
    (1, 64, 7, 7, 64, 1, 1, 0, 1),     # bottleneck 1x1
    (1, 32, 15, 15, 32, 3, 2, 1, 32),  # depthwise stride 2 (MobileNet)
    (1, 32, 8, 8, 64, 3, 1, 1, 4),     # grouped (ResNeXt)
    (1, 256, 7, 7, 64, 3, 1, 1, 1),    # deep reduction, K = 2304
]


def _applicable(solver, layout, N, C, H, W, O, k, s, p, g):
    if solver in ("conv2d.implicit_gemm_nhwc", "conv2d.indirect_gemm_nhwc"):
        return layout == "NHWC"
    if solver == "conv2d.gemm_1x1":
        return k == 1 and s == 1 and p == 0 and g == 1
    if solver == "conv2d.depthwise":
        return g == C and g > 1 and O % C == 0
    if solver == "conv2d.few_channels":
        return g == 1 and C <= 8
    return solver in GENERAL_SOLVERS or solver is None


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", RESNET_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conv2d_resnet_shapes(shape, layout, make_context):
    N, C, H, W, O, k, s, p, g = shape
    rng = np.random.default_rng(sum(shape))
    x = ref.rand32(rng, (N, C, H, W))
    w = ref.rand32(rng, (O, C // g, k, k))
    b = ref.rand32(rng, (O,))
    want = ref.conv2d_ref(x, w, b, s, p, 1, g, "relu")
    bound = ref.conv2d_bound(x, w, b, s, p, 1, g)
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    wl = "OHWI" if layout == "NHWC" else "OIHW"
    win = ref.oihw_to_ohwi(w) if layout == "NHWC" else w
    for solver in [None] + CONV_SOLVERS:
        if not _applicable(solver, layout, *shape):
            continue
        ctx = None if solver is None else make_context(solver)
        y = paskdnn.conv2d(xin, win, b, s, p, 1, g, layout=layout,
                           weight_layout=wl, activation="relu", context=ctx)
        y = ref.nhwc_to_nchw(y) if layout == "NHWC" else y
        ref.assert_within_bound(y, want, bound, what=f"solver={solver}")
        if solver is not None:
            assert paskdnn.last_solver() == solver


def test_conv2d_num_threads_agree(make_context):
    rng = np.random.default_rng(16)
    x = ref.rand32(rng, (2, 16, 12, 12))
    w = ref.rand32(rng, (24, 16, 3, 3))
    y1 = paskdnn.conv2d(x, w, padding=1, context=make_context(num_threads=1))
    y2 = paskdnn.conv2d(x, w, padding=1, context=make_context(num_threads=2))
    bound = ref.conv2d_bound(x, w, padding=1)
    want = ref.conv2d_ref(x, w, padding=1)
    ref.assert_within_bound(y1, want, bound)
    ref.assert_within_bound(y2, want, bound)


def test_conv2d_threads_share_context(make_context):
    """A context may be used by several threads at once; last_solver() is
    per thread."""
    ctx = make_context()
    rng = np.random.default_rng(17)
    probs = []
    for i in range(6):
        C = 2 + i
        x = ref.rand32(rng, (2, C, 9, 9))
        w = ref.rand32(rng, (3, C, 3, 3))
        probs.append((x, w, ref.conv2d_ref(x, w, padding=1),
                      ref.conv2d_bound(x, w, padding=1)))
    errors = []

    def work(i):
        try:
            for _ in range(5):
                x, w, want, bound = probs[i]
                y = paskdnn.conv2d(x, w, padding=1, context=ctx)
                ref.assert_within_bound(y, want, bound)
                assert paskdnn.last_solver() in CONV_SOLVERS
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(probs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_last_solver_is_per_thread(make_context):
    rng = np.random.default_rng(18)
    x = ref.rand32(rng, (1, 4, 6, 6))
    w1 = ref.rand32(rng, (4, 4, 1, 1))
    paskdnn.conv2d(x, w1, context=make_context("conv2d.gemm_1x1"))
    assert paskdnn.last_solver() == "conv2d.gemm_1x1"
    seen = []

    def other():
        paskdnn.conv2d(x, ref.rand32(rng, (4, 1, 3, 3)), groups=4,
                       context=make_context("conv2d.depthwise"))
        seen.append(paskdnn.last_solver())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == ["conv2d.depthwise"]
    assert paskdnn.last_solver() == "conv2d.gemm_1x1"


def test_solvers_listing():
    allsol = paskdnn.solvers()
    assert isinstance(allsol, list) and allsol
    ids, names = set(), set()
    for s in allsol:
        assert {"id", "name", "op", "device"} <= set(s)
        assert isinstance(s["id"], int) and isinstance(s["name"], str)
        assert s["op"] in ("conv2d", "gemm", "pool2d", "eltwise", "cat")
        assert s["name"].startswith(s["op"] + ".")
        ids.add(s["id"])
        names.add(s["name"])
    assert len(ids) == len(allsol) and len(names) == len(allsol)
    cpu = [s for s in allsol if s["device"] == "cpu"]
    assert cpu
    for op in ("conv2d", "gemm", "pool2d", "eltwise", "cat"):
        sub = paskdnn.solvers(op)
        assert sub and all(s["op"] == op for s in sub)
        assert sorted(s["name"] for s in sub) == sorted(
            s["name"] for s in allsol if s["op"] == op)


# ------------------------------------------------- eager calls seen before ---

def test_repeated_eager_calls_reuse_descriptors_and_still_validate_each_call():
    """An eager call with arguments seen before takes its descriptors from a cache
    (paskdnn.functional._EAGER, C plans under (spec key, context handle)): its results follow each call's epilogue values and
    arrays, and what is not in the cache key (residual shape, out) is checked every time."""
    from paskdnn import functional as Fn

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    r = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    for alpha, act in [(1.0, None), (0.5, "relu"), (1.0, None), (0.5, "relu")]:
        y = paskdnn.conv2d(x, w, b, padding=1, alpha=alpha, activation=act, residual=r)
        expect = ref.conv2d_ref(x, w, b, padding=1, alpha=alpha, activation=act, residual=r)
        np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)
        x = x + 0.25  # new data under the same key
    handle = paskdnn.get_default_context()._h()
    keys = [k for k, h in Fn._EAGER if h == handle and k[0] == "conv2d" and k[3] == (2, 5, 9, 8)
            and k[5] == (6, 5, 3, 3) and k[14]]
    assert len(keys) == 2  # (alpha, act) pairs, each made once
    with pytest.raises(ValueError, match="residual has shape"):
        paskdnn.conv2d(x, w, b, padding=1, alpha=0.5, activation="relu", residual=np.ascontiguousarray(r[:, :, :8]))
    with pytest.raises(ValueError, match="out has shape"):
        paskdnn.conv2d(x, w, b, padding=1, alpha=0.5, activation="relu", residual=r, out=np.empty((2, 6, 9, 9),
                                                                                               np.float32))


def test_eager_descriptor_cache_is_bounded():
    from paskdnn import functional as Fn

    x = np.ones((1, 1, 1, 1), np.float32)
    for c in range(1, Fn._EAGER_MAX + 40):
        y = paskdnn.max_pool2d(np.ones((1, 1, 1, c), np.float32), 1)
        assert y.shape == (1, 1, 1, c)
    assert len(Fn._EAGER) <= Fn._EAGER_MAX
    np.testing.assert_array_equal(paskdnn.max_pool2d(x, 1), x)
