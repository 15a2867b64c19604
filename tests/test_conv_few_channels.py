"""The few-input-channel solver (conv2d.few_channels: groups 1, C <= 8, the
stems of image models) against the float64 reference, on every CPU kernel
variant this processor runs: output channels 64 at a time and then 48, 32 or
16, the last vector partial (32 and 16 without AVX-512); output pixels in blocks
by the channel block's width (AVX-512: 6, 8, 12 or 16; AVX2: 3 or 6; generic: 1
or 3), then 4, 2 and 1; every stride, padding, dilation, window, layout, weight
layout and epilogue."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import paskdnn
import reference as ref
from nan_reference import cpu_isas
from test_conv2d import check_conv, conv_cases

SOLVER = "conv2d.few_channels"
ISAS = cpu_isas()


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_few_channels_every_parameter(isa, data, ctx_for):
    case = data.draw(conv_cases(kind="few_channels", max_hw=14))
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


# (C, H, W, O, k, stride, pad): ResNet's / MobileNetV2's stems at a smaller
# input, and ragged neighbours of the channel blocks
STEMS = [(3, 40, 38, 64, 7, 2, 3), (3, 33, 35, 32, 3, 2, 1), (3, 20, 21, 65, 7, 2, 3), (1, 17, 19, 17, 5, 1, 2),
         (8, 12, 13, 80, 3, 1, 1), (3, 36, 37, 16, 3, 1, 1), (2, 20, 23, 48, 3, 1, 0), (3, 30, 44, 40, 5, 2, 2)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", STEMS, ids=lambda s: "c%d_%dx%d_o%d_k%d_s%d_p%d" % s)
def test_few_channels_stems(isa, layout, shape, ctx_for):
    C, H, W, O, k, s, p = shape
    case = dict(N=1, C=C, O=O, G=1, k=(k, k), H=H, W=W, stride=s, dilation=1, padding=p, layout=layout,
                weight_layout="OIHW" if layout == "NCHW" else "OHWI", unbatched=False, bias=True,
                residual=False, activation="relu", alpha=1.0, beta=0.0, use_out=False, seed=sum(shape))
    check_conv(case, ctx_for(SOLVER, isa))
    assert paskdnn.last_solver() == SOLVER


def test_few_channels_declines_what_it_cannot_run(make_context):
    ctx = make_context(SOLVER)
    x = np.ones((1, 9, 5, 5), np.float32)
    with pytest.raises(paskdnn.UnsupportedError):
        paskdnn.conv2d(x, np.ones((4, 9, 3, 3), np.float32), context=ctx)  # 9 input channels
    with pytest.raises(paskdnn.UnsupportedError):
        paskdnn.conv2d(x[:, :4], np.ones((4, 2, 3, 3), np.float32), groups=2, context=ctx)  # grouped


def test_few_channels_is_chosen_for_the_stem_where_it_leads():
    """With AVX-512 the solver is the NCHW stem's best. Without, it runs level
    with im2col + GEMM (ResNet's 7x7 stem 2.3-3.2 ms against 2.5-3.3 on the
    2-core AVX2 VM, session 24) and the cost model gives the tie to the GEMM."""
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    paskdnn.conv2d(x, np.random.default_rng(1).standard_normal((64, 3, 7, 7)).astype(np.float32), None, 2, 3,
                   context=paskdnn.Context(policy="reactive", num_threads=1))
    if "avx512" in ISAS:
        assert paskdnn.last_solver() == SOLVER
    else:
        assert paskdnn.last_solver() != SOLVER
