"""NaN and +-Inf through every CPU solver, by name, for every CPU kernel variant.

PyTorch's rules, which paskdnn promises (docs/reliability.md):
  relu(NaN) = NaN, relu(+inf) = inf, relu(-inf) = 0,
  relu6(NaN) = NaN, relu6(+inf) = 6, relu6(-inf) = 0,
  max over a window holding a NaN is NaN; a sum holding a NaN, or +inf and -inf, is NaN.
Before the fix, activation="relu" turned NaN into 0 in every CPU solver and
"relu6" did so in the GEMM-based ones (the vector max/min returns its second
operand when either is NaN).

The references (tests/nan_reference.py) are float64, written out with elementwise products and
numpy sums (no BLAS, whose handling of NaN/Inf is not ours to rely on), so IEEE
rules decide every NaN and Inf. Inputs stay in [-1, 1]: no finite value
overflows in float32, so where the kernels' sums hold NaN/Inf is decided by
which terms are special, not by the order of summation.
"""

import zlib

import numpy as np
import pytest

import paskdnn
from nan_reference import conv_layouts, cpu_isas, check, conv_ref, gemm_ref, max_pool_ref, sprinkle

CPU_CONV = sorted(s["name"] for s in paskdnn.solvers("conv2d") if s["device"] == "cpu")
CPU_GEMM = sorted(s["name"] for s in paskdnn.solvers("gemm") if s["device"] == "cpu")
# inf - inf and NaN arithmetic in the references is the point, not a warning
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ACTIVATIONS = [None, "relu", "relu6"]
SPECIALS = ["nan", "inf", "-inf", "mixed"]


ISAS = cpu_isas()  # the CPU kernel variants this processor runs; ctx_for: conftest.py


# (n, c, h, w, o, k, stride, pad, groups). O = 40 spans a full AVX-512 micro-tile
# (32 columns) and a tail in NHWC; P = OH*OW does so in NCHW.
GENERAL = [(2, 5, 9, 9, 40, 3, 1, 1, 1), (1, 6, 8, 7, 12, 3, 2, 1, 2)]
ONE_BY_ONE = [(2, 7, 6, 9, 40, 1, 1, 0, 1)]
DEPTHWISE = [(2, 8, 9, 9, 16, 3, 1, 1, 8), (1, 40, 5, 6, 40, 3, 2, 1, 40)]


def conv_shapes(solver):
    if solver == "conv2d.gemm_1x1":
        return ONE_BY_ONE
    if solver == "conv2d.depthwise":
        return DEPTHWISE
    if solver == "conv2d.few_channels":  # groups 1, C <= 8
        return [sh for sh in GENERAL + ONE_BY_ONE + DEPTHWISE if sh[8] == 1 and sh[1] <= 8]
    return GENERAL + ONE_BY_ONE + DEPTHWISE


def test_every_cpu_solver_is_covered():
    assert {"conv2d.direct", "conv2d.im2col_gemm", "conv2d.gemm_1x1", "conv2d.depthwise"} <= set(CPU_CONV)
    assert {"gemm.blocked", "gemm.small"} <= set(CPU_GEMM)
    assert ISAS  # at least generic


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("solver", CPU_CONV)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("where", ["input", "bias"])
def test_conv2d_nan_inf(isa, solver, layout, activation, where, ctx_for):
    ctx = ctx_for(solver, isa)
    if layout not in conv_layouts(solver):  # a one-layout solver declines the other
        with pytest.raises(paskdnn.UnsupportedError):
            paskdnn.conv2d(np.ones((1, 2, 3, 3), np.float32), np.ones((2, 2, 1, 1), np.float32), context=ctx)
        return
    rng = np.random.default_rng(zlib.crc32(repr((isa, solver, layout, activation, where)).encode()))
    for shape in conv_shapes(solver):
        n, c, h, w_, o, k, stride, pad, groups = shape
        for special in SPECIALS:
            x = rng.uniform(-1, 1, (n, c, h, w_)).astype(np.float32)
            w = rng.uniform(-1, 1, (o, c // groups, k, k)).astype(np.float32)
            b = rng.uniform(-1, 1, o).astype(np.float32)
            if where == "input":
                x = sprinkle(rng, x, special)
            else:
                b = sprinkle(rng, b, special, frac=0.2)
            want = conv_ref(x, w, b, stride, pad, groups, activation)
            if layout == "NCHW":
                y = paskdnn.conv2d(x, w, b, stride, pad, 1, groups, activation=activation, context=ctx)
            else:
                y = paskdnn.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                                   np.ascontiguousarray(w.transpose(0, 2, 3, 1)), b, stride, pad, 1, groups,
                                   layout="NHWC", weight_layout="OHWI", activation=activation, context=ctx)
                y = np.asarray(y).transpose(0, 3, 1, 2)
            assert paskdnn.last_solver() == solver
            if special in ("nan", "mixed"):
                assert np.isnan(want).any(), "the case must carry a NaN to the activation"
            check(np.asarray(y), want, special)


# (m, n, k): gemm.small takes min(m, n) <= 8; gemm.blocked takes all
GEMM_SHAPES = [(20, 70, 33), (37, 40, 300), (5, 70, 33), (70, 6, 17)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("solver", CPU_GEMM)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("where", ["a", "b", "bias"])
def test_gemm_nan_inf(isa, solver, activation, where, ctx_for):
    ctx = ctx_for(solver, isa)
    rng = np.random.default_rng(zlib.crc32(repr((isa, solver, activation, where)).encode()))
    for m, n, k in GEMM_SHAPES:
        if solver == "gemm.small" and min(m, n) > 8:
            continue
        for special in SPECIALS:
            a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
            bias = rng.uniform(-1, 1, n).astype(np.float32)
            if where == "a":
                a = sprinkle(rng, a, special, frac=0.01)
            elif where == "b":
                b = sprinkle(rng, b, special, frac=0.01)
            else:
                bias = sprinkle(rng, bias, special, frac=0.2)
            want = gemm_ref(a, b, bias, activation)
            y = paskdnn.gemm(a, b, bias=bias, activation=activation, context=ctx)
            assert paskdnn.last_solver() == solver
            if special in ("nan", "mixed"):
                assert np.isnan(want).any()
            check(np.asarray(y), want, special)


def test_activation_of_specials_exactly(ctx_for):
    """A 1x1 identity convolution: y = act(x) exactly, for x in {NaN, +-inf, +-0, 3, 7}."""
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 3.0, 7.0, -2.0], np.float32)
    # 2 channels, 40 pixels each (a vector body and a tail); groups = 2 so that
    # every solver, the depthwise one included, takes it and y = act(x)
    x = np.tile(vals, 10).reshape(1, 2, 5, 8)
    w = np.ones((2, 1, 1, 1), np.float32)
    expect = {
        None: vals,
        "relu": np.array([np.nan, np.inf, 0, 0, 0, 3, 7, 0], np.float32),
        "relu6": np.array([np.nan, 6, 0, 0, 0, 3, 6, 0], np.float32),
    }
    for isa in ISAS:
        for solver in CPU_CONV:
            ctx = ctx_for(solver, isa)
            for act in ACTIVATIONS:
                for groups in (1, 2):
                    if (groups == 1) == (solver == "conv2d.depthwise"):
                        continue  # depthwise needs groups == C; gemm_1x1 needs groups == 1
                    xs, ws = (x, w) if groups == 2 else (x[:, :1], w[:1])
                    if "NCHW" in conv_layouts(solver):
                        y = paskdnn.conv2d(xs, ws, None, 1, 0, 1, groups, activation=act, context=ctx)
                    else:
                        y = paskdnn.conv2d(np.ascontiguousarray(xs.transpose(0, 2, 3, 1)), ws, None, 1, 0, 1, groups,
                                           activation=act, layout="NHWC", weight_layout="OHWI", context=ctx)
                        y = np.asarray(y).transpose(0, 3, 1, 2)
                    assert paskdnn.last_solver() == solver
                    np.testing.assert_array_equal(np.asarray(y).reshape(-1, 8), np.tile(expect[act], (5 * groups, 1)),
                                                  err_msg=f"{solver} {isa} {act}")


# ---- pooling -------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("special", SPECIALS)
def test_pool_nan_inf(isa, layout, special, ctx_for):
    rng = np.random.default_rng(zlib.crc32(repr((isa, layout, special)).encode()))
    x = sprinkle(rng, rng.uniform(-1, 1, (2, 19, 9, 11)).astype(np.float32), special)
    to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "NHWC" else (lambda a: a)
    back = (lambda a: np.asarray(a).transpose(0, 3, 1, 2)) if layout == "NHWC" else np.asarray
    ctx = ctx_for("pool2d.direct", isa)
    y = back(paskdnn.max_pool2d(to(x), 3, 2, 1, layout=layout, context=ctx))
    assert paskdnn.last_solver() == "pool2d.direct"
    check(y, max_pool_ref(x, 3, 2, 1), special)
    # average over whole windows (no padding): NaN, or +inf with -inf, give NaN
    y = back(paskdnn.avg_pool2d(to(x), 3, 2, 0, layout=layout, context=ctx))
    xd = x.astype(np.float64)
    want = sum(xd[:, :, r:r + 7:2, s:s + 9:2] for r in range(3) for s in range(3)) / 9.0
    check(y, want, special)
    ctx = ctx_for("pool2d.global_avg", isa)
    y = back(paskdnn.adaptive_avg_pool2d(to(x), 1, layout=layout, context=ctx))
    assert paskdnn.last_solver() == "pool2d.global_avg"
    check(y, xd.sum(axis=(2, 3), keepdims=True) / (9 * 11), special)
