"""Empty and mixed inputs, as a new user meets them (issue 18): a zero batch
gives an empty result in every op, like PyTorch, after every other argument
is checked; shape mismatches are ShapeMismatchError everywhere; NHWC data
passed with the default layout is told so; linear takes 2-D inputs with
strided rows, as the docs say."""
import numpy as np
import pytest

import paskdnn
import reference as ref

rng = np.random.default_rng(1818)


def r32(*shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_zero_batch_conv2d_gives_the_empty_output_pytorch_gives(layout):
    x = np.empty((0, 3, 9, 7) if layout == "NCHW" else (0, 9, 7, 3), np.float32)
    w = r32(5, 3, 3, 3)
    y = paskdnn.conv2d(x, w, r32(5), stride=2, padding=1, layout=layout, activation="relu")
    # PyTorch: (0, 5, 5, 4) for this input, stride 2, padding 1
    assert y.shape == ((0, 5, 5, 4) if layout == "NCHW" else (0, 5, 4, 5)) and y.dtype == np.float32
    r = np.empty(y.shape, np.float32)
    out = np.empty(y.shape, np.float32)
    assert paskdnn.conv2d(x, w, stride=2, padding=1, layout=layout, residual=r, out=out) is out


def test_zero_batch_still_checks_every_other_argument():
    x = np.empty((0, 3, 9, 7), np.float32)
    with pytest.raises(paskdnn.ShapeMismatchError, match="channels"):
        paskdnn.conv2d(x, r32(5, 4, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        paskdnn.conv2d(x, r32(5, 3, 3, 3), stride=0)
    with pytest.raises(ValueError):
        paskdnn.max_pool2d(x, 20)  # a window larger than the input, batch or not
    with pytest.raises(ValueError, match="residual"):
        paskdnn.conv2d(x, r32(5, 3, 3, 3), residual=np.empty((0, 5, 3, 3), np.float32))


@pytest.mark.parametrize("op", ["max", "avg", "adaptive"])
def test_zero_batch_pooling_gives_an_empty_output(op):
    x = np.empty((0, 4, 8, 6), np.float32)
    if op == "max":
        y = paskdnn.max_pool2d(x, 3, stride=2, padding=1)
        assert y.shape == (0, 4, 4, 3)
    elif op == "avg":
        y = paskdnn.avg_pool2d(x, 2)
        assert y.shape == (0, 4, 4, 3)
    else:
        y = paskdnn.adaptive_avg_pool2d(x, 1)
        assert y.shape == (0, 4, 1, 1)


def test_zero_rows_linear_and_matmul_stay_empty():
    assert paskdnn.linear(np.empty((0, 5), np.float32), r32(2, 5), r32(2)).shape == (0, 2)
    assert paskdnn.matmul(np.empty((0, 5), np.float32), r32(5, 3)).shape == (0, 3)


def test_zero_batch_hint_and_call_leave_the_context_consistent():
    ctx = paskdnn.Context()
    x = np.empty((0, 3, 8, 8), np.float32)
    w = r32(4, 3, 3, 3)
    ctx.hint("conv2d", x, w, padding=1)  # nothing to hint: no primitive call will come
    assert ctx.stats()["hints"] == 0
    assert paskdnn.conv2d(x, w, padding=1, context=ctx).shape == (0, 4, 8, 8)
    assert ctx.stats()["calls"] == 0
    ctx.close()


def test_shape_mismatches_are_shape_mismatch_errors_in_every_op():
    with pytest.raises(paskdnn.ShapeMismatchError, match="features"):
        paskdnn.linear(r32(2, 4), r32(3, 5))
    with pytest.raises(paskdnn.ShapeMismatchError, match="inner dimensions"):
        paskdnn.gemm(r32(2, 4), r32(5, 3))
    with pytest.raises(paskdnn.ShapeMismatchError, match="columns"):
        paskdnn.matmul(r32(2, 4), r32(5, 3))
    with pytest.raises(paskdnn.ShapeMismatchError):
        paskdnn.conv2d(r32(1, 4, 6, 6), r32(2, 3, 3, 3))
    assert issubclass(paskdnn.ShapeMismatchError, ValueError)  # code catching ValueError keeps working


def test_channels_last_data_with_the_default_layout_is_told_to_pass_layout():
    x = r32(1, 8, 8, 3)  # NHWC
    with pytest.raises(paskdnn.ShapeMismatchError, match='pass layout="NHWC"'):
        paskdnn.conv2d(x, r32(4, 3, 3, 3))
    xc = r32(1, 3, 8, 8)  # NCHW passed as NHWC
    with pytest.raises(paskdnn.ShapeMismatchError, match='pass layout="NCHW"'):
        paskdnn.conv2d(xc, r32(4, 3, 3, 3), layout="NHWC")


def test_linear_takes_a_2d_input_with_strided_rows():
    wide = r32(6, 20)
    x = wide[:, 2:10]  # rows 20 floats apart, 8 features
    w, b = r32(5, 8), r32(5)
    y = paskdnn.linear(x, w, b, activation="relu")
    want = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + b, 0)
    ref.assert_within_bound(y, want, 1e-5 * (1 + np.abs(want)))
    with pytest.raises(ValueError, match="2-D input only"):
        paskdnn.linear(r32(3, 4, 20)[:, :, :8], w)
