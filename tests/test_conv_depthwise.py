"""The depthwise solver (conv2d.depthwise) against the float64 reference, on
every CPU kernel variant this processor runs.

The kernel works in blocks: in NCHW 64 output columns (four 16-float vectors)
at a time, then single vectors, the last one partial; in NHWC 64 channels at a
time, then single vectors, then one channel at a time (and one at a time for
every channel when the channel multiplier is above 1) at a row's ends; a row's
interior (columns whose window lies inside the input row) in tiles of 8, 4
and 1 pixels a 16-channel vector, the 3x3 window compiled apart from others. The cases here are wide
and deep enough to reach every one of those paths, with every stride, padding,
dilation, multiplier, layout and epilogue."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import paskdnn
import reference as ref
from nan_reference import cpu_isas
from test_conv2d import ACTIVATIONS, check_conv

SOLVER = "conv2d.depthwise"
ISAS = cpu_isas()


@st.composite
def depthwise_cases(draw, layout=None):
    """Cases for the depthwise solver: groups == C in [2, 80], multiplier 1-3
    (mostly 1, as in MobileNets), windows up to 5x5, planes up to 80 wide."""
    G = draw(st.integers(2, 80))
    mult = draw(st.sampled_from([1, 1, 1, 2, 3]))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
    if stride == (1, 1) and draw(st.booleans()):
        padding = "same"
        pads = ref.conv2d_padding("same", k, dil, 1)
    else:
        padding = pads
    # small planes for many channels, wide ones for few: the reference stays quick
    max_w = 80 if G <= 20 else 24
    H = draw(st.integers(max(1, eff[0] - sum(pads[0])), max(9, eff[0])))
    W = draw(st.integers(max(1, eff[1] - sum(pads[1])), max(max_w, eff[1])))
    case = dict(
        N=draw(st.integers(1, 2)), C=G, O=G * mult, G=G, k=k, H=H, W=W, stride=stride, dilation=dil,
        padding=padding, layout=layout or draw(st.sampled_from(["NCHW", "NHWC"])),
        weight_layout=draw(st.sampled_from(["OIHW", "OHWI"])), unbatched=False,
        bias=draw(st.booleans()), residual=draw(st.booleans()), activation=draw(st.sampled_from(ACTIVATIONS)),
        alpha=draw(st.sampled_from([1.0, 1.0, 0.5, -2.0])), beta=draw(st.sampled_from([0.0, 0.0, 1.0, -0.5])),
        seed=draw(st.integers(0, 2**32 - 1)))
    case["use_out"] = case["beta"] != 0.0 or draw(st.booleans())
    return case


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_depthwise_every_parameter(isa, layout, data, ctx_for):
    case = data.draw(depthwise_cases(layout))
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


# MobileNetV2's depthwise layers (C, H, stride) and a few ragged neighbours:
# columns / channels one short of and one past the kernel's 16 and 64 blocks.
MOBILENET = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (384, 14, 1),
             (576, 14, 2), (960, 7, 1), (63, 65, 1), (65, 63, 2), (17, 17, 1), (15, 15, 2)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", MOBILENET, ids=lambda s: "c%d_hw%d_s%d" % s)
def test_depthwise_mobilenet_layers(isa, layout, shape, ctx_for):
    C, HW, s = shape
    case = dict(N=1, C=C, O=C, G=C, k=(3, 3), H=HW, W=HW, stride=s, dilation=1, padding=1, layout=layout,
                weight_layout="OIHW" if layout == "NCHW" else "OHWI", unbatched=False, bias=True,
                residual=s == 1, activation="relu6", alpha=1.0, beta=0.0, use_out=False, seed=C * 1000 + HW)
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_depthwise_huge_stride_single_output(isa, layout, ctx_for):
    """A stride far beyond the plane (one output column / row): the NCHW
    scratch plane keeps one phase per column read, not one per stride step."""
    rng = np.random.default_rng(7)
    x = ref.rand32(rng, (1, 4, 5, 6))
    w = ref.rand32(rng, (4, 1, 3, 3))
    want = ref.conv2d_ref(x, w, stride=(1 << 40, 1 << 40), padding=1, groups=4)
    xin = ref.nchw_to_nhwc(x) if layout == "NHWC" else x
    got = paskdnn.conv2d(xin, w, None, (1 << 40, 1 << 40), 1, 1, 4, layout=layout, context=ctx_for(SOLVER, isa))
    got = ref.nhwc_to_nchw(got) if layout == "NHWC" else got
    assert got.shape == (1, 4, 1, 1)
    ref.assert_within_bound(got, want, ref.conv2d_bound(x, w, padding=1, groups=4), what="huge stride")


@pytest.mark.parametrize("isa", ISAS)
def test_depthwise_nchw_scratch_padding_across_calls(isa, ctx_for):
    """The NCHW scratch plane's padding is zeroed once per geometry: calls
    whose scratch planes have the same size but a different padding (input
    cells in one are padding in the other) alternate, each against the
    reference, with input values far from zero."""
    rng = np.random.default_rng(11)
    ctx = ctx_for(SOLVER, isa)
    for _ in range(3):
        for h, pad in ((8, 0), (6, 1), (7, (1, 0))):
            x = ref.rand32(rng, (1, 5, h, h), 2.0, 3.0)
            w = ref.rand32(rng, (5, 1, 3, 3))
            pads = ((pad, pad), (pad, pad)) if isinstance(pad, int) else (pad, pad)
            want = ref.conv2d_ref(x, w, padding=pads, groups=5)
            got = paskdnn.conv2d(x, w, None, 1, pads, 1, 5, context=ctx)
            ref.assert_within_bound(got, want, ref.conv2d_bound(x, w, padding=pads, groups=5),
                                    what=f"h={h} pad={pad}")


# The NHWC interior tiles (8, 4, 1 pixels) with a window other than 3x3 (the
# run-time window loop), rows of the window cut by the padding, asymmetric
# padding, stride and dilation, channels past the last whole vector, and
# every epilogue input at once.
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k,stride,dil,pads", [((5, 3), (2, 1), (1, 2), ((2, 1), (0, 3))),
                                               ((3, 3), (1, 2), (2, 1), ((3, 0), (1, 2))),
                                               ((1, 7), (1, 1), (1, 1), ((0, 0), (3, 3)))])
def test_depthwise_nhwc_interior_tiles(isa, k, stride, dil, pads, ctx_for):
    case = dict(N=2, C=40, O=40, G=40, k=k, H=23, W=37, stride=stride, dilation=dil, padding=pads, layout="NHWC",
                weight_layout="OIHW", unbatched=False, bias=True, residual=True, activation="relu6", alpha=0.5,
                beta=-0.5, use_out=True, seed=7)
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER
