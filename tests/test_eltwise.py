"""Element-wise ops (add, mul, standalone activations, batch norm / scale-shift)
and cat, on the CPU, against float64 numpy references written here; bad input
gets clear errors and writes nothing."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paskdnn
from paskdnn import functional as F
from nan_reference import act_ref

ACTS = [None, "relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh"]
LAYOUTS = ["NCHW", "NHWC"]


def rand(rng, shape, lo=-4.0, hi=4.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def close(got, want, what=""):
    """float32 output of a float64 formula: one rounding of the operation plus
    the activation's float evaluation (a few ulps of the larger of the value
    and its inputs' scale)."""
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-6, atol=2e-6, err_msg=what)


def physical(shape_nchw, layout):
    n, c, h, w = shape_nchw
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


@st.composite
def eltwise_case(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 9))
    h = draw(st.integers(1, 7))
    w = draw(st.integers(1, 7))
    layout = draw(st.sampled_from(LAYOUTS))
    xs = physical((n, c, h, w), layout)

    def operand():
        kind = draw(st.sampled_from(["none", "full", "bcast"]))
        if kind == "none":
            return None
        if kind == "full":
            return xs
        keep = draw(st.lists(st.booleans(), min_size=4, max_size=4))
        shape = tuple(d if k else 1 for d, k in zip(xs, keep))
        drop = draw(st.integers(0, 3))  # numpy right-aligned: leading 1s may be left out
        while drop and shape and shape[0] == 1:
            shape, drop = shape[1:], drop - 1
        return shape

    return xs, layout, operand(), operand(), draw(st.sampled_from(ACTS)), draw(st.integers(0, 2**31 - 1))


@settings(deadline=None)
@given(eltwise_case())
def test_eltwise_matches_float64_reference(case):
    xs, layout, mshape, ashape, act, seed = case
    rng = np.random.default_rng(seed)
    x = rand(rng, xs)
    m = None if mshape is None else rand(rng, mshape, -2, 2)
    a = None if ashape is None else rand(rng, ashape)
    ctx = paskdnn.Context("cpu")
    spec = paskdnn._spec.eltwise_spec(x, m, a, activation=act, layout=layout)
    y = paskdnn._spec.run(spec, ctx)
    want = x.astype(np.float64)
    if m is not None:
        want = want * m.astype(np.float64)
    if a is not None:
        want = want + a.astype(np.float64)
    close(y, act_ref(want, act), f"{xs} {layout} m={mshape} a={ashape} {act}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_add_mul_public_ops_broadcast_like_torch(layout):
    rng = np.random.default_rng(1)
    xs = physical((2, 5, 6, 7), layout)
    x = rand(rng, xs)
    full = rand(rng, xs)
    per_channel = rand(rng, (1, 5, 1, 1) if layout == "NCHW" else (5,))
    per_image_channel = rand(rng, (2, 5, 1, 1) if layout == "NCHW" else (2, 1, 1, 5))
    scalar = rand(rng, (1,))
    for other in (full, per_channel, per_image_channel, scalar):
        close(F.add(x, other, layout=layout), x.astype(np.float64) + other)
        close(F.mul(x, other, layout=layout), x.astype(np.float64) * other)
        close(F.add(x, other, activation="relu", layout=layout), np.maximum(x.astype(np.float64) + other, 0))
        # the broadcast operand may come first, as in torch
        close(F.mul(other, x, layout=layout), x.astype(np.float64) * other)
    assert paskdnn.last_solver() == "eltwise.cpu"


@pytest.mark.parametrize("name", ["relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid"])
def test_standalone_activations(name):
    rng = np.random.default_rng(2)
    x = rand(rng, (2, 3, 5, 4), -8, 8)
    close(getattr(paskdnn, name)(x), act_ref(x.astype(np.float64), name))
    x3 = x[0]
    assert getattr(paskdnn, name)(x3).shape == x3.shape  # unbatched


@pytest.mark.parametrize("layout", LAYOUTS)
def test_leaky_relu_clamp_hardtanh(layout):
    rng = np.random.default_rng(5)
    x = rand(rng, physical((2, 3, 5, 4), layout), -8, 8)
    x[0, 0, 0, :2] = [np.nan, -np.inf]
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        for slope in (0.01, 0.3, -2.0):
            want = np.where(x64 < 0, x64 * np.float64(np.float32(slope)), x64)
            np.testing.assert_allclose(paskdnn.leaky_relu(x, slope, layout=layout), want, rtol=2e-7, atol=0)
        np.testing.assert_array_equal(paskdnn.leaky_relu(x), np.where(x < 0, x * np.float32(0.01), x))
        for lo, hi in ((-1.5, 2.25), (None, 0.5), (-0.5, None), (1.0, 1.0)):
            want = np.clip(x64, -np.inf if lo is None else lo, np.inf if hi is None else hi)
            np.testing.assert_array_equal(paskdnn.clamp(x, lo, hi, layout=layout), want.astype(np.float32))
        np.testing.assert_array_equal(paskdnn.hardtanh(x), np.clip(x, -1, 1))
        np.testing.assert_array_equal(paskdnn.hardtanh(x, -2.0, 3.0), np.clip(x, -2, 3))
    # in a fused add: act(x + b)
    b = rand(rng, x.shape)
    got = F.add(x, b, activation="clamp", activation_params=(-1.0, 1.0), layout=layout)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(got, np.clip(x64 + b, -1, 1), rtol=2e-7, atol=0)
    out = np.full_like(x, 7)
    with pytest.raises(ValueError, match="min or max"):
        paskdnn.clamp(x)
    with pytest.raises(ValueError, match="min <= max"):
        paskdnn.clamp(x, 1.0, 0.0, out=out)
    with pytest.raises(ValueError, match="min <= max"):
        paskdnn.clamp(x, np.nan, 0.0, out=out)
    assert (out == 7).all()


def test_gelu_both_forms():
    rng = np.random.default_rng(3)
    x = rand(rng, (1, 4, 6, 6), -6, 6)
    close(paskdnn.gelu(x), act_ref(x.astype(np.float64), "gelu"))
    close(paskdnn.gelu(x, approximate="tanh"), act_ref(x.astype(np.float64), "gelu_tanh"))
    with pytest.raises(ValueError, match="approximate"):
        paskdnn.gelu(x, approximate="fast")


def test_in_place_and_out():
    rng = np.random.default_rng(4)
    x = rand(rng, (2, 3, 4, 5))
    want = np.maximum(x.astype(np.float64) * 2.0, 0)
    two = np.full((1, 3, 1, 1), 2.0, np.float32)
    y = F.mul(x, two, activation="relu", out=x)
    assert y is x
    close(x, want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("act", [None, "relu", "silu"])
def test_batch_norm_matches_the_formula(layout, act):
    rng = np.random.default_rng(5)
    c = 7
    x = rand(rng, physical((3, c, 5, 6), layout))
    mean, weight, bias = rand(rng, (c,)), rand(rng, (c,)), rand(rng, (c,))
    var = rng.uniform(0.1, 3.0, c).astype(np.float32)
    eps = 1e-3
    y = paskdnn.batch_norm(x, mean, var, weight, bias, eps=eps, activation=act, layout=layout)
    shape = (1, c, 1, 1) if layout == "NCHW" else (1, 1, 1, c)
    m64 = lambda v: v.astype(np.float64).reshape(shape)  # noqa: E731
    want = (x.astype(np.float64) - m64(mean)) / np.sqrt(m64(var) + eps) * m64(weight) + m64(bias)
    close(y, act_ref(want, act))
    # weight and bias default to 1 and 0
    y2 = paskdnn.batch_norm(x, mean, var, layout=layout)
    close(y2, (x.astype(np.float64) - m64(mean)) / np.sqrt(m64(var) + 1e-5))


def test_batch_norm_refuses_training_and_bad_vectors():
    x = np.ones((1, 3, 2, 2), np.float32)
    v = np.ones(3, np.float32)
    with pytest.raises(paskdnn.UnsupportedError, match="training"):
        paskdnn.batch_norm(x, v, v, training=True)
    with pytest.raises(ValueError, match="one length"):
        paskdnn.batch_norm(x, v, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="per channel|one per channel|3 values"):
        paskdnn.batch_norm(x, np.ones(4, np.float32), np.ones(4, np.float32))


@st.composite
def cat_case(draw):
    n = draw(st.integers(1, 3))
    h = draw(st.integers(1, 6))
    w = draw(st.integers(1, 6))
    cs = draw(st.lists(st.integers(1, 9), min_size=1, max_size=30))
    return n, h, w, cs, draw(st.sampled_from(LAYOUTS)), draw(st.integers(0, 2**31 - 1))


@settings(deadline=None)
@given(cat_case())
def test_cat_matches_numpy(case):
    n, h, w, cs, layout, seed = case
    rng = np.random.default_rng(seed)
    xs = [rand(rng, physical((n, c, h, w), layout)) for c in cs]
    axis = 1 if layout == "NCHW" else 3
    y = paskdnn.cat(xs, dim=axis, layout=layout)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    assert paskdnn.last_solver() == "cat.cpu"


def test_cat_negative_dim_unbatched_and_out():
    rng = np.random.default_rng(6)
    a, b = rand(rng, (3, 4, 5)), rand(rng, (2, 4, 5))
    np.testing.assert_array_equal(paskdnn.cat([a, b], dim=-3), np.concatenate([a, b], 0))
    out = np.empty((1, 5, 4, 5), np.float32)
    y = paskdnn.cat([a[None], b[None]], out=out)
    assert y is out
    np.testing.assert_array_equal(out[0], np.concatenate([a, b], 0))


def test_cat_errors_name_the_problem_and_write_nothing():
    x = np.ones((1, 2, 4, 4), np.float32)
    out = np.full((1, 4, 4, 4), 7, np.float32)
    with pytest.raises(paskdnn.ShapeMismatchError, match="N, H, W"):
        paskdnn.cat([x, np.ones((1, 2, 4, 5), np.float32)], out=out)
    with pytest.raises(paskdnn.UnsupportedError, match="channel"):
        paskdnn.cat([x, x], dim=2)
    with pytest.raises(TypeError):
        paskdnn.cat(x)
    with pytest.raises(ValueError):
        paskdnn.cat([])
    with pytest.raises(ValueError, match="shape"):
        paskdnn.cat([x, x], out=np.empty((1, 3, 4, 4), np.float32))
    assert (out == 7).all()


def test_eltwise_errors():
    x = np.ones((2, 3, 4, 5), np.float32)
    out = np.full_like(x, 7)
    with pytest.raises(paskdnn.ShapeMismatchError, match="broadcast"):
        F.add(x, np.ones((1, 2, 1, 1), np.float32), out=out)
    with pytest.raises(paskdnn.ShapeMismatchError, match="broadcast"):
        F.mul(x, np.ones((1, 1, 3, 1), np.float32), out=out)
    with pytest.raises(ValueError, match="activation"):
        F.add(x, x, activation="tanh", out=out)
    with pytest.raises(TypeError, match="float32"):
        F.add(x, x.astype(np.float64), out=out)
    assert (out == 7).all()
    # out may be the input itself, but not partly overlap it
    buf = np.arange(x.size + 1, dtype=np.float32)
    src, dst = buf[:-1].reshape(x.shape), buf[1:].reshape(x.shape)
    with pytest.raises(paskdnn.InvalidArgumentError, match="overlaps"):
        F.relu(src, out=dst)
    np.testing.assert_array_equal(buf, np.arange(x.size + 1, dtype=np.float32))


def test_zero_batch_gives_empty_results():
    x = np.ones((0, 3, 4, 4), np.float32)
    assert F.add(x, np.ones((1, 3, 1, 1), np.float32)).shape == (0, 3, 4, 4)
    assert paskdnn.cat([x, x]).shape == (0, 6, 4, 4)


def test_hints_and_plans_serve_the_new_ops():
    ctx = paskdnn.Context("cpu", policy="pask")
    x = np.ones((1, 8, 5, 5), np.float32)
    ctx.hint("eltwise", x, None, np.ones((1, 8, 1, 1), np.float32), activation="relu")
    ctx.hint("cat", [x, x])
    ctx.wait_loads(5)
    y = F.add(x, np.ones((1, 8, 1, 1), np.float32), activation="relu", context=ctx)
    assert paskdnn.last_decision() == "resident"
    close(y, np.full((1, 8, 5, 5), 2.0))
    paskdnn.cat([x, x], context=ctx)
    assert paskdnn.last_decision() == "resident"


@pytest.mark.parametrize("layout", LAYOUTS)  # ignored for 1-D / 2-D arrays: element-wise ops do not see it
def test_one_and_two_dimensional_arrays(layout):
    rng = np.random.default_rng(11)
    x = rand(rng, (5, 7))
    x64 = x.astype(np.float64)
    for shape in [(7,), (1, 7), (5, 1), (5, 7), (1,), (1, 1)]:
        b = rand(rng, shape)
        close(F.add(x, b, layout=layout), x64 + b)
        close(F.mul(x, b, activation="silu", layout=layout), act_ref(x64 * b, "silu"))
        close(F.add(b, x, layout=layout), x64 + b)  # the broadcast operand first
    v = rand(rng, (9,))
    close(paskdnn.relu6(v, layout=layout), act_ref(v.astype(np.float64), "relu6"))
    k = rand(rng, (1,))
    close(F.mul(v, k, activation="clamp", activation_params=(-1.0, 1.0), layout=layout),
          np.clip(v.astype(np.float64) * k, -1, 1))
    assert F.add(x, x).shape == (5, 7) and paskdnn.sigmoid(v).shape == (9,)
    assert F.add(np.zeros((0, 7), np.float32), rand(rng, (7,))).shape == (0, 7)
    out = np.full_like(x, 3)
    with pytest.raises(paskdnn.ShapeMismatchError, match="broadcast"):
        F.add(x, rand(rng, (7, 1)), out=out)
    with pytest.raises(paskdnn.ShapeMismatchError, match="broadcast"):
        F.mul(x, rand(rng, (6,)), out=out)
    assert (out == 3).all()
    y = F.add(x, x, out=x)  # in place
    assert y is x
    close(x, 2 * x64)
