"""The NHWC indirect-GEMM solver (conv2d.indirect_gemm_nhwc: the micro-kernel
broadcasts straight from the input through a table of row pointers, a zero
run for taps in the padding) against the float64 reference, on every CPU
kernel variant this processor runs: every stride, padding, dilation, window,
group count, weight layout and epilogue; output channels past whole panels
(64 on AVX-512, 16 on AVX2, 8 on the generic build) and partial vectors;
pixel counts that leave tiles of fewer than 6 rows; K past one K block (1024
deep on AVX-512) and taps split across blocks; and batches."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import paskdnn
import reference as ref
from nan_reference import cpu_isas
from test_conv2d import check_conv, conv_cases
from test_conv_implicit_gemm import nhwc_case

SOLVER = "conv2d.indirect_gemm_nhwc"
ISAS = cpu_isas()


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_indirect_gemm_every_parameter(isa, data, ctx_for):
    case = data.draw(conv_cases(max_hw=14))
    case["layout"] = "NHWC"
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


@st.composite
def wide_cases(draw):
    """Output channels around the panels and vectors, input channels that
    split K blocks inside a tap, and windows with taps in the padding."""
    G = draw(st.sampled_from([1, 1, 2]))
    Cg = draw(st.sampled_from([1, 3, 8, 17, 64, 130, 600]))
    Og = draw(st.sampled_from([1, 5, 16, 17, 24, 63, 64, 65, 100, 130]))
    k = draw(st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 5)]))
    if Cg >= 130:
        k = draw(st.sampled_from([(1, 1), (3, 3)]))
    return nhwc_case(draw, G, Cg, Og, k, 6 if Cg >= 130 else 11)


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=40, deadline=None)
@given(case=wide_cases())
def test_indirect_gemm_wide_channels(isa, case, ctx_for):
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


# (N, C, H, W, O, k, stride, pad): ResNet's and MobileNetV2's layers at smaller
# sizes; 7x7 = 49 pixels (tiles of 6 and 5), K = 9 * 130 past one block
LAYERS = [(1, 64, 14, 14, 64, 3, 1, 1), (2, 32, 15, 13, 48, 3, 2, 1), (1, 64, 14, 14, 96, 1, 2, 0),
          (1, 128, 7, 7, 40, 3, 1, 1), (1, 16, 9, 9, 16, 7, 2, 3), (1, 130, 7, 7, 200, 3, 1, 1),
          (1, 96, 10, 10, 24, 1, 1, 0), (3, 24, 5, 5, 144, 1, 1, 0), (1, 3, 23, 23, 64, 7, 2, 3),
          (2, 3, 17, 17, 32, 3, 2, 1)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", LAYERS, ids=lambda s: "n%d_c%d_%dx%d_o%d_k%d_s%d_p%d" % s)
@pytest.mark.parametrize("epilogue", ["residual_relu", "beta_alpha_relu6"])
def test_indirect_gemm_model_layers(isa, shape, epilogue, ctx_for):
    N, C, H, W, O, k, s, p = shape
    ep = (dict(residual=True, activation="relu", alpha=1.0, beta=0.0, use_out=False) if epilogue == "residual_relu"
          else dict(residual=False, activation="relu6", alpha=0.5, beta=-1.0, use_out=True))
    case = dict(N=N, C=C, O=O, G=1, k=(k, k), H=H, W=W, stride=s, dilation=1, padding=p, layout="NHWC",
                weight_layout="OHWI", unbatched=False, bias=True, seed=sum(shape), **ep)
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


@st.composite
def merged_cases(draw):
    """Fewer than 16 input channels, one group, windows wider than a pixel:
    a window row's taps are one K run read from a zero-padded copy of the
    input (W undilated; a dilated W keeps the per-tap runs). Windows up to
    the stems' 7x7, and K past one block: whole window rows split into
    blocks (11 x 9 x 15) and a window row longer than a block (1 x 70 x 15)."""
    Cg = draw(st.sampled_from([1, 2, 3, 5, 8, 15]))
    Og = draw(st.sampled_from([5, 16, 32, 64, 70]))
    k = draw(st.sampled_from([(7, 7), (3, 3), (2, 5), (5, 2), (1, 3), (3, 1)]))
    case = nhwc_case(draw, 1, Cg, Og, k, 16)
    big = draw(st.sampled_from([None, None, None, (11, 9), (1, 70)]))
    if big is not None:
        d = case["dilation"]
        eff_w = d * (big[1] - 1) + 1
        case.update(C=15, k=big, H=max(case["H"], d * (big[0] - 1) + 1 - 2 * case["padding"]),
                    W=max(case["W"], eff_w - 2 * case["padding"]))
    return case


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=50, deadline=None)
@given(case=merged_cases())
def test_indirect_gemm_merged_window_rows(isa, case, ctx_for):
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


def test_indirect_gemm_declines_nchw(make_context):
    ctx = make_context(SOLVER)
    with pytest.raises(paskdnn.UnsupportedError):
        paskdnn.conv2d(np.ones((1, 4, 5, 5), np.float32), np.ones((4, 4, 3, 3), np.float32), context=ctx)


@pytest.mark.parametrize("shape", [(56, 64, 64, 3, 1), (7, 512, 512, 3, 1), (56, 64, 128, 3, 2),
                                   (14, 1024, 256, 1, 1), (56, 256, 512, 1, 2), (112, 32, 16, 1, 1),
                                   (224, 3, 64, 7, 2), (224, 3, 32, 3, 2)])
def test_indirect_gemm_is_chosen_for_resnet_layers(shape):
    """ResNet's NHWC 3x3 layers, its 1x1 layers with K >= 96 and its strided
    1x1 downsamples, MobileNetV2's 1x1 projection to 16 channels, and both
    models' stems (3 input channels: merged window rows), go to the solver
    that measured fastest on them."""
    hw, c, o, k, s = shape
    x = np.zeros((1, hw, hw, c), np.float32)
    w = np.zeros((o, k, k, c), np.float32)
    paskdnn.conv2d(x, w, None, s, k // 2, layout="NHWC", weight_layout="OHWI",
                   context=paskdnn.Context(policy="reactive", num_threads=1))
    assert paskdnn.last_solver() == SOLVER
