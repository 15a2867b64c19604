"""The epilogue activations sigmoid, silu, hardswish, hardsigmoid, gelu,
gelu_tanh, and leaky_relu and clamp with their parameters (include/paskdnn.h)
through every CPU solver, by name, for every CPU kernel variant (ISA) this
processor runs.

References: tests/nan_reference.py's act_ref, torch.nn.functional's formulas
written out in float64 (math.erf, np.tanh); at -inf the limit -0 where the
literal product would be -inf * 0. The conv/gemm sums are float64 products
summed elementwise, so NaN/Inf placement follows IEEE rules (see
tests/test_nan_inf.py for relu/relu6).
"""

import zlib

import numpy as np
import pytest

import paskdnn
from nan_reference import conv_layouts, cpu_isas, NEW_ACTIVATIONS, act_ref, check, conv_ref, gemm_ref, sprinkle

CPU_CONV = sorted(s["name"] for s in paskdnn.solvers("conv2d") if s["device"] == "cpu")
CPU_GEMM = sorted(s["name"] for s in paskdnn.solvers("gemm") if s["device"] == "cpu")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


ISAS = cpu_isas()  # the CPU kernel variants this processor runs; ctx_for: conftest.py

# the activations with parameters, with values exact in float32
PARAMS = {"leaky_relu": (0.25,), "clamp": (-0.75, 1.5)}
ACTIVATIONS = NEW_ACTIVATIONS + list(PARAMS)


def ref(y, activation):
    """act(y) in float64; leaky_relu and clamp with PARAMS (NaN stays NaN)."""
    y = np.asarray(y, np.float64)
    if activation == "leaky_relu":
        return np.where(y < 0, y * PARAMS[activation][0], y)
    if activation == "clamp":
        return np.clip(y, *PARAMS[activation])
    return act_ref(y, activation)


def act_kw(activation):
    return dict(activation=activation, activation_params=PARAMS.get(activation))


# (n, c, h, w, o, k, stride, pad, groups); O = 40 spans a full AVX-512 micro-tile and a tail
GENERAL = [(2, 5, 9, 9, 40, 3, 1, 1, 1), (1, 6, 8, 7, 12, 3, 2, 1, 2)]
ONE_BY_ONE = [(2, 7, 6, 9, 40, 1, 1, 0, 1)]
DEPTHWISE = [(1, 40, 5, 6, 40, 3, 2, 1, 40)]


def conv_shapes(solver):
    if solver == "conv2d.gemm_1x1":
        return ONE_BY_ONE
    if solver == "conv2d.depthwise":
        return DEPTHWISE
    if solver == "conv2d.few_channels":  # groups 1, C <= 8
        return [sh for sh in GENERAL + ONE_BY_ONE + DEPTHWISE if sh[8] == 1 and sh[1] <= 8]
    return GENERAL + ONE_BY_ONE + DEPTHWISE


def test_every_activation_of_the_header_is_spelled():
    from paskdnn import _spec
    names = {v for v in _spec.ACTIVATIONS.values()}
    ffi, _ = paskdnn._lib.load()
    enum = ffi.typeof("pask_activation_t").relements
    assert names == set(enum), "paskdnn/_spec.py ACTIVATIONS must name every pask_activation_t value"
    assert [enum[f"PASK_ACTIVATION_{a.upper()}"] for a in NEW_ACTIVATIONS] == [3, 4, 5, 6, 7, 8]  # append-only


@pytest.mark.parametrize("solver", CPU_CONV)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_conv2d_activation(solver, activation, ctx_for):
    """Random inputs in [-1.5, 1.5] (pre-activations over about [-12, 12]), with a
    scaled residual and beta*out, NCHW and NHWC; then NaN/+-Inf sprinkled in."""
    for isa in ISAS:
        ctx = ctx_for(solver, isa)
        rng = np.random.default_rng(zlib.crc32(repr((isa, solver, activation)).encode()))
        for shape in conv_shapes(solver):
            n, c, h, w_, o, k, stride, pad, groups = shape
            for special in (None, "nan", "inf", "-inf", "mixed"):
                x = rng.uniform(-1.5, 1.5, (n, c, h, w_)).astype(np.float32)
                w = rng.uniform(-1, 1, (o, c // groups, k, k)).astype(np.float32)
                b = rng.uniform(-1, 1, o).astype(np.float32)
                if special:
                    x = sprinkle(rng, x, special)
                # out = act(alpha * conv + bias [+ residual + beta * out]): alpha scales the conv only
                pre = 0.5 * conv_ref(x, w, None, stride, pad, groups, None) + b.astype(np.float64)[None, :, None, None]
                for layout in conv_layouts(solver):
                    res = rng.uniform(-2, 2, pre.shape).astype(np.float32) if special is None else None
                    before = rng.uniform(-2, 2, pre.shape).astype(np.float32) if special is None else None
                    want = pre
                    if res is not None:
                        want = want + res + 0.25 * before
                    want = ref(want, activation)
                    kw = dict(act_kw(activation), context=ctx, alpha=0.5)
                    if layout == "NCHW":
                        if res is not None:
                            kw.update(residual=res, out=before.copy(), beta=0.25)
                        y = paskdnn.conv2d(x, w, b, stride, pad, 1, groups, **kw)
                    else:
                        t = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # noqa: E731
                        if res is not None:
                            kw.update(residual=t(res), out=t(before), beta=0.25)
                        y = paskdnn.conv2d(t(x), t(w), b, stride, pad, 1, groups, layout="NHWC",
                                           weight_layout="OHWI", **kw)
                        y = np.asarray(y).transpose(0, 3, 1, 2)
                    assert paskdnn.last_solver() == solver
                    check(np.asarray(y), want, rtol=1e-4, atol=1e-5)


GEMM_SHAPES = [(20, 70, 33), (37, 40, 300), (5, 70, 33), (70, 6, 17)]


@pytest.mark.parametrize("solver", CPU_GEMM)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gemm_activation(solver, activation, ctx_for):
    for isa in ISAS:
        ctx = ctx_for(solver, isa)
        rng = np.random.default_rng(zlib.crc32(repr((isa, solver, activation)).encode()))
        for m, n, k in GEMM_SHAPES:
            if solver == "gemm.small" and min(m, n) > 8:
                continue
            for special in (None, "nan", "inf", "-inf", "mixed"):
                a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
                b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
                bias = rng.uniform(-1, 1, n).astype(np.float32)
                c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
                if special:
                    a = sprinkle(rng, a, special, frac=0.01)
                scale = 3.0 / np.sqrt(k)  # pre-activations over about [-8, 8]
                want = ref(scale * gemm_ref(a, b, None, None) + 0.5 * c0 + bias, activation)
                y = paskdnn.gemm(a, b, c0.copy(), bias=bias, alpha=scale, beta=0.5, **act_kw(activation),
                                 context=ctx)
                assert paskdnn.last_solver() == solver
                check(np.asarray(y), want, rtol=1e-4, atol=1e-5)
                # linear: x @ w.T + bias, the same activation
                y = paskdnn.linear(a, np.ascontiguousarray(b.T), bias, **act_kw(activation), context=ctx)
                assert paskdnn.last_solver() == solver
                check(np.asarray(y), ref(gemm_ref(a, b, bias, None), activation), rtol=1e-4, atol=1e-5)


SPECIAL_VALUES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 3.0, -3.0, 6.0], np.float32)
EXPECT = {  # torch.nn.functional's values, +-inf at their limits
    "sigmoid": [np.nan, 1, 0, 0.5, 0.5, 1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(3.0)), 1 / (1 + np.exp(-6.0))],
    "silu": [np.nan, np.inf, 0, 0, 0, 3 / (1 + np.exp(-3.0)), -3 / (1 + np.exp(3.0)), 6 / (1 + np.exp(-6.0))],
    "hardswish": [np.nan, np.inf, 0, 0, 0, 3, 0, 6],
    "hardsigmoid": [np.nan, 1, 0, 0.5, 0.5, 1, 0, 1],
}


def _wide_values(rng):
    """float32 values over the range where every activation changes, plus the tails."""
    v = np.concatenate([rng.uniform(-12, 12, 4000), rng.uniform(-1, 1, 1000),
                        np.sign(rng.uniform(-1, 1, 1000)) * 10.0 ** rng.uniform(-8, 2.2, 1000),
                        np.linspace(-3.5, 3.5, 141), [-200.0, -90.0, 60.0, 200.0, 3e38, -3e38, 1e-40, -1e-40]])
    return np.concatenate([SPECIAL_VALUES, v.astype(np.float32), SPECIAL_VALUES])  # both halves hold them


def _check_accurate(got, x, activation, what):
    want = ref(x.astype(np.float64), activation)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    # within about 1e-6 relative of the float64 value; absolute 1e-13 below that
    # (float32 subnormals; and the float64 literal gelu loses its relative
    # accuracy below about -7, where 1 + erf(x/sqrt 2) cancels)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-13, equal_nan=True, err_msg=what)
    if activation in EXPECT:  # exactly, wherever the value is (NHWC reorders)
        for v, e in zip(SPECIAL_VALUES, np.float32(EXPECT[activation])):
            at = np.isnan(x) if np.isnan(v) else x == v
            assert at.any()
            np.testing.assert_array_equal(got[at], np.full(at.sum(), e), err_msg=f"{what} act({v})")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_accuracy_every_solver(activation, ctx_for):
    """y = act(x) exactly: a 1x1 convolution with unit weights (groups = 2, so
    the depthwise solver takes it too; groups = 1 for gemm_1x1) and a gemm
    with K = 1 and B = 1, over [-12, 12], magnitudes 1e-8..160, +-3e38, NaN and
    +-inf; the result within about 1e-6 relative of the float64 value."""
    x = _wide_values(np.random.default_rng(zlib.crc32(activation.encode())))
    x = np.concatenate([np.zeros((-len(x)) % 48, np.float32), x])  # the special values stay last
    for isa in ISAS:
        for solver in CPU_CONV:
            ctx = ctx_for(solver, isa)
            groups = 1 if solver in ("conv2d.gemm_1x1", "conv2d.few_channels") else 2
            xs = x.reshape(1, 2, 8, -1)[:, :groups]
            if "NCHW" in conv_layouts(solver):
                y = paskdnn.conv2d(xs, np.ones((groups, 1, 1, 1), np.float32), None, 1, 0, 1, groups,
                                   **act_kw(activation), context=ctx)
                assert paskdnn.last_solver() == solver
                _check_accurate(np.asarray(y).reshape(-1), xs.reshape(-1), activation, f"{solver} {isa}")
            if solver != "conv2d.depthwise":
                xh = np.ascontiguousarray(xs.transpose(0, 2, 3, 1))
                y = paskdnn.conv2d(xh, np.ones((groups, 1, 1, 1), np.float32), None, 1, 0, 1, groups,
                                   layout="NHWC", weight_layout="OHWI", **act_kw(activation), context=ctx)
                assert paskdnn.last_solver() == solver
                _check_accurate(np.asarray(y).reshape(-1), xh.reshape(-1), activation, f"{solver} {isa} NHWC")
        for solver in CPU_GEMM:
            ctx = ctx_for(solver, isa)
            rows = x.reshape(-1, 8) if solver == "gemm.small" else x.reshape(-1, 48)[:, :40]
            # rows x 1 times 1 x N: every column the same, through full tiles and tails
            y = paskdnn.gemm(rows.reshape(-1, 1), np.ones((1, 8 if solver == "gemm.small" else 40), np.float32),
                             **act_kw(activation), context=ctx)
            assert paskdnn.last_solver() == solver
            got = np.asarray(y)
            for j in range(got.shape[1]):
                _check_accurate(got[:, j], rows.reshape(-1), activation, f"{solver} {isa} column {j}")
            # a row of values times ones: the values along N (the vector epilogue)
            v = rows.reshape(1, -1)
            y = paskdnn.gemm(np.ones((1, 1), np.float32), v, **act_kw(activation), context=ctx)
            _check_accurate(np.asarray(y).reshape(-1), v.reshape(-1), activation, f"{solver} {isa} row")


def test_unknown_activations_are_refused():
    x = np.ones((1, 1, 2, 2), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="unknown activation 'swish'.*'gelu_tanh'"):
        paskdnn.conv2d(x, w, activation="swish")
    with pytest.raises(TypeError, match="activation must be one of"):
        paskdnn.linear(x[0, 0], np.ones((3, 2), np.float32), activation=3)
    ffi, lib = paskdnn._lib.load()
    ctx = paskdnn.Context()
    for code, params, want in ((11, (0, 0), "unknown activation"), (0xFFFFFFFF, (0, 0), "unknown activation"),
                               (9, (float("nan"), 0), "negative_slope must be finite"),
                               (10, (1.0, 0.0), "lo <= hi"), (10, (0.0, float("nan")), "lo <= hi")):
        # 0xFFFFFFFF: -1 as cffi passes this unsigned-typed enum
        ep = ffi.new("pask_epilogue_t *", {"alpha": 1.0, "beta": 0.0, "activation": code,
                                           "activation_params": params})
        plan = ffi.new("pask_plan_t *")
        status = lib.pask_plan_create_gemm(plan, ctx._handle, lib.PASK_DTYPE_FLOAT32, 0, 0, 2, 2, 2, ep, 2, 2, 2, 0)
        assert status == lib.PASK_ERROR_INVALID_ARGUMENT
        msg = ffi.string(lib.pask_last_error_message()).decode()
        assert want in msg and (want != "unknown activation" or "0..10" in msg), msg
    ctx.close()
