"""The NHWC implicit-GEMM solver (conv2d.implicit_gemm_nhwc: the GEMM packs
its A blocks straight from the input, no im2col buffer) against the float64
reference, on every CPU kernel variant this processor runs: every stride,
padding, dilation, window, group count, weight layout and epilogue; channel
counts that are and are not multiples of the packer's 8-channel runs; output
pixel counts past whole micro-panels and K past one K block; and batches."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import paskdnn
import reference as ref
from nan_reference import cpu_isas
from test_conv2d import check_conv, conv_cases

SOLVER = "conv2d.implicit_gemm_nhwc"
ISAS = cpu_isas()


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_implicit_gemm_every_parameter(isa, data, ctx_for):
    case = data.draw(conv_cases(max_hw=14))
    case["layout"] = "NHWC"
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


def nhwc_case(draw, G, Cg, Og, k, hw):
    """An NHWC conv case of G groups of Cg -> Og channels and window k on inputs up
    to hw x hw: stride, dilation, padding, weight layout and the whole epilogue drawn."""
    s = draw(st.integers(1, 2))
    d = draw(st.integers(1, 2))
    p = draw(st.integers(0, 2))
    eff = max(d * (k[0] - 1) + 1, d * (k[1] - 1) + 1)
    H = draw(st.integers(max(1, eff - 2 * p), hw))
    W = draw(st.integers(max(1, eff - 2 * p), hw))
    act = draw(st.sampled_from([None, "relu", "relu6", "leaky_relu", "clamp", "silu"]))
    return dict(N=draw(st.integers(1, 3)), C=G * Cg, O=G * Og, G=G, k=k, H=H, W=W, stride=s, dilation=d,
                padding=p, layout="NHWC", weight_layout=draw(st.sampled_from(["OHWI", "OIHW"])),
                unbatched=False, bias=draw(st.booleans()), residual=draw(st.booleans()), activation=act,
                activation_params={"leaky_relu": (0.1,), "clamp": (-0.5, 0.75)}.get(act),
                alpha=draw(st.sampled_from([1.0, 0.5])),
                beta=draw(st.sampled_from([0.0, 1.0])), use_out=False, seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def wide_cases(draw):
    """Channel counts near the 8-channel runs and K past one 256-deep block."""
    G = draw(st.sampled_from([1, 1, 2]))
    Cg = draw(st.sampled_from([7, 8, 9, 16, 24, 40]))
    Og = draw(st.integers(1, 70))
    k = draw(st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 5)]))
    return nhwc_case(draw, G, Cg, Og, k, 12)


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=40, deadline=None)
@given(case=wide_cases())
def test_implicit_gemm_wide_channels(isa, case, ctx_for):
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


# (N, C, H, W, O, k, stride, pad): ResNet's layers at smaller sizes
RESNET = [(1, 64, 14, 14, 64, 3, 1, 1), (2, 32, 15, 13, 48, 3, 2, 1), (1, 64, 14, 14, 96, 1, 2, 0),
          (1, 128, 7, 7, 40, 3, 1, 1), (1, 16, 9, 9, 16, 7, 2, 3)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", RESNET, ids=lambda s: "n%d_c%d_%dx%d_o%d_k%d_s%d_p%d" % s)
def test_implicit_gemm_resnet_layers(isa, shape, ctx_for):
    N, C, H, W, O, k, s, p = shape
    case = dict(N=N, C=C, O=O, G=1, k=(k, k), H=H, W=W, stride=s, dilation=1, padding=p, layout="NHWC",
                weight_layout="OHWI", unbatched=False, bias=True, residual=True, activation="relu", alpha=1.0,
                beta=0.0, use_out=False, seed=sum(shape))
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


def test_implicit_gemm_declines_nchw(make_context):
    ctx = make_context(SOLVER)
    with pytest.raises(paskdnn.UnsupportedError):
        paskdnn.conv2d(np.ones((1, 4, 5, 5), np.float32), np.ones((4, 4, 3, 3), np.float32), context=ctx)


def test_implicit_gemm_runs_nhwc_3x3_when_chosen():
    """conv2d.indirect_gemm_nhwc ranks first on this layer now; this solver
    still runs it when it is the one allowed."""
    x = np.zeros((1, 56, 56, 64), np.float32)
    w = np.zeros((64, 3, 3, 64), np.float32)
    paskdnn.conv2d(x, w, None, 1, 1, layout="NHWC", weight_layout="OHWI",
                   context=paskdnn.Context(policy="reactive", num_threads=1, solvers=[SOLVER]))
    assert paskdnn.last_solver() == SOLVER
