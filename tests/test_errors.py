"""Bad inputs raise the documented exception types and never touch out=."""

import numpy as np
import pytest

import paskdnn
import reference as ref

OVERFLOW = (ValueError, OverflowError, paskdnn.Error)

RNG = np.random.default_rng(1234)


def r32(*shape):
    return ref.rand32(RNG, shape)


def expect_error(exc, fn, *args, out=None, out_kw="out", **kwargs):
    """Calls fn expecting exc; checks out (if given) is byte-identical after."""
    snapshot = None
    if out is not None:
        base = out if out.base is None else out.base
        snapshot = (np.asarray(base).tobytes(), out.tobytes())
        kwargs[out_kw] = out
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    if out is not None:
        assert np.asarray(base).tobytes() == snapshot[0], "out= was modified on error"
        assert out.tobytes() == snapshot[1], "out= was modified on error"
    e = info.value
    if isinstance(e, paskdnn.Error):
        assert isinstance(e.status, int) and e.status != 0
        assert isinstance(e.message, str) and e.message
    return e


def test_error_hierarchy():
    assert issubclass(paskdnn.InvalidArgumentError, paskdnn.Error)
    assert issubclass(paskdnn.InvalidArgumentError, ValueError)
    assert issubclass(paskdnn.ShapeMismatchError, paskdnn.Error)
    assert issubclass(paskdnn.ShapeMismatchError, ValueError)
    assert issubclass(paskdnn.UnsupportedError, paskdnn.Error)
    assert issubclass(paskdnn.UnsupportedError, NotImplementedError)
    assert issubclass(paskdnn.Error, Exception)


# ----------------------------------------------------------------- conv2d ---
# base problem: x (2,4,6,6), w (6,4,3,3), padding 1 -> y (2,6,6,6)

def conv_base():
    return dict(x=r32(2, 4, 6, 6), w=r32(6, 4, 3, 3), b=r32(6), out=r32(2, 6, 6, 6))


def run_conv(x, w, b=None, **kw):
    kw.setdefault("padding", 1)
    return paskdnn.conv2d(x, w, b, **kw)


def test_conv_base_ok():
    d = conv_base()
    y = run_conv(d["x"], d["w"], d["b"], out=d["out"])
    assert y is d["out"]


CONV_VALUE_ERRORS = {
    "channels": lambda d: dict(w=r32(6, 3, 3, 3)),
    "groups_not_dividing_C": lambda d: dict(w=r32(6, 1, 3, 3), groups=3),
    "groups_not_dividing_O": lambda d: dict(w=r32(5, 2, 3, 3), groups=2,
                                            out=r32(2, 5, 6, 6), b=r32(5)),
    "groups_zero": lambda d: dict(groups=0),
    "groups_negative": lambda d: dict(groups=-1),
    "stride_zero": lambda d: dict(stride=0),
    "stride_negative": lambda d: dict(stride=-1),
    "stride_pair_zero": lambda d: dict(stride=(1, 0)),
    "dilation_zero": lambda d: dict(dilation=0),
    "dilation_negative": lambda d: dict(dilation=(1, -2)),
    "padding_negative": lambda d: dict(padding=-1),
    "padding_pair_negative": lambda d: dict(padding=(0, -1)),
    "padding_asym_negative": lambda d: dict(padding=((1, 1), (-1, 1))),
    "padding_same_stride2": lambda d: dict(padding="same", stride=2),
    "padding_unknown_string": lambda d: dict(padding="full"),
    "kernel_larger_than_padded": lambda d: dict(x=r32(2, 4, 2, 2), padding=0,
                                                out=r32(2, 6, 1, 1)),
    "bias_wrong_len": lambda d: dict(b=r32(5)),
    "bias_2d": lambda d: dict(b=r32(6, 1)),
    "residual_wrong_shape": lambda d: dict(residual=r32(2, 6, 6, 5)),
    "x_2d": lambda d: dict(x=r32(4, 6)),
    "x_5d": lambda d: dict(x=r32(1, 2, 4, 6, 6)),
    "w_3d": lambda d: dict(w=r32(6, 4, 3)),
    "unknown_layout": lambda d: dict(layout="NCWH"),
    "unknown_weight_layout": lambda d: dict(weight_layout="HWIO"),
    "unknown_activation": lambda d: dict(activation="tanh"),
    "beta_without_out": lambda d: dict(beta=1.0, out=None),
    "out_wrong_shape": lambda d: dict(out=r32(2, 6, 6, 5)),
    "out_nhwc_shape_for_nchw": lambda d: dict(x=r32(2, 4, 6, 5), out=r32(2, 6, 5, 6)),
    "out_missing_batch": lambda d: dict(out=r32(6, 6, 6)),
    "out_noncontiguous": lambda d: dict(out=r32(2, 6, 6, 12)[:, :, :, ::2]),
    "x_noncontiguous": lambda d: dict(x=r32(2, 6, 6, 4).transpose(0, 3, 1, 2)),
    "x_fortran": lambda d: dict(x=np.asfortranarray(r32(2, 4, 6, 6))),
    "w_noncontiguous": lambda d: dict(w=r32(6, 3, 3, 4).transpose(0, 3, 1, 2)),
    "bias_noncontiguous": lambda d: dict(b=r32(12)[::2]),
    "residual_noncontiguous": lambda d: dict(
        residual=r32(2, 6, 6, 12)[:, :, :, ::2]),
    "nhwc_channels": lambda d: dict(layout="NHWC"),  # (2,4,6,6) as NHWC: C=6
}


@pytest.mark.parametrize("name", sorted(CONV_VALUE_ERRORS))
def test_conv2d_value_errors(name):
    d = conv_base()
    mod = CONV_VALUE_ERRORS[name](d)
    x, w, b = mod.pop("x", d["x"]), mod.pop("w", d["w"]), mod.pop("b", d["b"])
    out = mod.pop("out", d["out"])
    expect_error(ValueError, run_conv, x, w, b, out=out, **mod)


CONV_TYPE_ERRORS = {
    "x_float64": lambda d: dict(x=d["x"].astype(np.float64)),
    "x_float16": lambda d: dict(x=d["x"].astype(np.float16)),
    "x_int32": lambda d: dict(x=d["x"].astype(np.int32)),
    "x_list": lambda d: dict(x=d["x"].tolist()),
    "w_float64": lambda d: dict(w=d["w"].astype(np.float64)),
    "bias_float64": lambda d: dict(b=d["b"].astype(np.float64)),
    "bias_list": lambda d: dict(b=d["b"].tolist()),
    "residual_float64": lambda d: dict(residual=np.zeros((2, 6, 6, 6))),
    "out_float64": lambda d: dict(out=np.zeros((2, 6, 6, 6))),
    "out_int32": lambda d: dict(out=np.zeros((2, 6, 6, 6), np.int32)),
    "stride_float": lambda d: dict(stride=1.5),
    "context_str": lambda d: dict(context="cpu"),
}


@pytest.mark.parametrize("name", sorted(CONV_TYPE_ERRORS))
def test_conv2d_type_errors(name):
    d = conv_base()
    mod = CONV_TYPE_ERRORS[name](d)
    x, w, b = mod.pop("x", d["x"]), mod.pop("w", d["w"]), mod.pop("b", d["b"])
    out = mod.pop("out", d["out"])
    expect_error(TypeError, run_conv, x, w, b, out=out, **mod)


@pytest.mark.parametrize("kw", [
    dict(padding=2**62),
    dict(padding=((2**40, 2**40), (2**40, 2**40))),
    dict(padding=0, dilation=2**62),
    dict(padding="same", dilation=2**62),
    dict(stride=2**64, padding=1),
    dict(padding=2**64),
], ids=["pad_2^62", "pad_2^40_each", "dilation_2^62", "same_dilation_2^62",
        "stride_2^64", "pad_2^64"])
def test_conv2d_overflow(kw):
    x, w = r32(1, 1, 1, 1), r32(1, 1, 3, 3)
    out = r32(1, 1, 1, 1)
    expect_error(OVERFLOW, paskdnn.conv2d, x, w, out=out, **kw)


def test_conv2d_unsupported_forced_solver(make_context):
    d = conv_base()
    for solver in ["conv2d.gemm_1x1", "conv2d.depthwise", "gemm.small", "pool2d.direct"]:
        expect_error(paskdnn.UnsupportedError, run_conv, d["x"], d["w"], d["b"],
                     out=d["out"], context=make_context(solver))


def test_last_solver_survives_failed_call(make_context):
    d = conv_base()
    run_conv(d["x"], d["w"], d["b"], context=make_context("conv2d.direct"))
    assert paskdnn.last_solver() == "conv2d.direct"
    expect_error(ValueError, run_conv, d["x"], d["w"], d["b"], stride=0,
                 context=make_context("conv2d.direct"))
    assert paskdnn.last_solver() == "conv2d.direct"
    # and the library still works after errors
    y = run_conv(d["x"], d["w"], d["b"])
    ref.assert_within_bound(y, ref.conv2d_ref(d["x"], d["w"], d["b"], padding=1),
                            ref.conv2d_bound(d["x"], d["w"], d["b"], padding=1))


# ------------------------------------------------------------------- gemm ---

GEMM_ERRORS = {
    "inner_mismatch": (ValueError, lambda: dict(a=r32(3, 4), b=r32(5, 2))),
    "inner_mismatch_trans": (ValueError, lambda: dict(a=r32(3, 4), b=r32(4, 2),
                                                      trans_a=True)),
    "c_wrong_shape": (ValueError, lambda: dict(c=r32(3, 3))),
    "bias_wrong_len": (ValueError, lambda: dict(bias=r32(3))),
    "a_1d": (ValueError, lambda: dict(a=r32(4))),
    "a_3d": (ValueError, lambda: dict(a=r32(1, 3, 4))),
    "unknown_activation": (ValueError, lambda: dict(activation="tanh")),
    "beta_without_c": (ValueError, lambda: dict(beta=0.5, c=None)),
    "a_noncontiguous": (ValueError, lambda: dict(a=r32(4, 3).T)),
    "c_noncontiguous": (ValueError, lambda: dict(c=r32(3, 4)[:, ::2])),
    "a_float64": (TypeError, lambda: dict(a=np.zeros((3, 4)))),
    "b_int64": (TypeError, lambda: dict(b=np.zeros((4, 2), np.int64))),
    "c_float64": (TypeError, lambda: dict(c=np.zeros((3, 2)))),
    "a_list": (TypeError, lambda: dict(a=[[0.0] * 4] * 3)),
}


@pytest.mark.parametrize("name", sorted(GEMM_ERRORS))
def test_gemm_errors(name):
    exc, mod = GEMM_ERRORS[name]
    args = dict(a=r32(3, 4), b=r32(4, 2), c=r32(3, 2))
    args.update(mod())
    a, b, c = args.pop("a"), args.pop("b"), args.pop("c")
    if c is None:
        expect_error(exc, paskdnn.gemm, a, b, **args)
    else:
        expect_error(exc, paskdnn.gemm, a, b, out=c, out_kw="c", **args)


@pytest.mark.parametrize("name,exc,x,w,b,out", [
    ("in_mismatch", ValueError, (2, 5), (3, 4), (3,), (2, 3)),
    ("bias_wrong", ValueError, (2, 4), (3, 4), (2,), (2, 3)),
    ("weight_1d", ValueError, (2, 4), (4,), None, (2, 3)),
    ("out_wrong_shape", ValueError, (2, 4), (3, 4), (3,), (3, 2)),
    ("out_missing_lead", ValueError, (5, 2, 4), (3, 4), (3,), (2, 3)),
])
def test_linear_errors(name, exc, x, w, b, out):
    expect_error(exc, paskdnn.linear, r32(*x), r32(*w),
                 None if b is None else r32(*b), out=r32(*out))


def test_linear_type_errors():
    expect_error(TypeError, paskdnn.linear, np.zeros((2, 4)), r32(3, 4), out=r32(2, 3))
    expect_error(TypeError, paskdnn.linear, r32(2, 4), r32(3, 4),
                 out=np.zeros((2, 3)))
    expect_error(ValueError, paskdnn.linear, r32(2, 4), r32(3, 4), activation="swish",
                 out=r32(2, 3))


@pytest.mark.parametrize("sa,sb,so", [
    ((3, 4), (5, 2), (3, 2)),
    ((2, 3, 4), (5, 4, 2), (2, 3, 2)),
    ((4,), (5,), None),
    ((3, 4), (4, 2), (2, 3)),   # wrong out shape
    ((3, 4), (4,), (3, 1)),     # matrix @ vector gives (3,)
])
def test_matmul_value_errors(sa, sb, so):
    expect_error(ValueError, paskdnn.matmul, r32(*sa), r32(*sb),
                 out=None if so is None else r32(*so))


def test_matmul_type_and_rank_errors():
    expect_error(TypeError, paskdnn.matmul, np.zeros((3, 4)), r32(4, 2), out=r32(3, 2))
    expect_error(TypeError, paskdnn.matmul, r32(3, 4), r32(4, 2), out=np.zeros((3, 2)))
    expect_error(ValueError, paskdnn.matmul, np.array(2.0, np.float32),
                 r32(4, 2))
    expect_error(ValueError, paskdnn.matmul, r32(4, 3).T, r32(4, 2), out=r32(3, 2))


# ------------------------------------------------------------------- pool ---

def pool_base():
    return r32(2, 3, 6, 6)


POOL_ERRORS = {
    # name: (exception, function, kwargs, out shape)
    "max_kernel_zero": (ValueError, "max", dict(kernel_size=0), (2, 3, 6, 6)),
    "max_kernel_negative": (ValueError, "max", dict(kernel_size=(2, -1)), (2, 3, 3, 3)),
    "max_stride_zero": (ValueError, "max", dict(kernel_size=2, stride=0), (2, 3, 3, 3)),
    "max_dilation_zero": (ValueError, "max", dict(kernel_size=2, dilation=0), (2, 3, 3, 3)),
    "max_pad_too_large": (ValueError, "max", dict(kernel_size=3, padding=2), (2, 3, 4, 4)),
    "max_pad_too_large_dilated": (ValueError, "max",
                                  dict(kernel_size=2, dilation=3, padding=3), (2, 3, 3, 3)),
    "max_pad_negative": (ValueError, "max", dict(kernel_size=2, padding=-1), (2, 3, 3, 3)),
    "max_kernel_too_big": (ValueError, "max", dict(kernel_size=7), (2, 3, 1, 1)),
    "max_unknown_layout": (ValueError, "max", dict(kernel_size=2, layout="CHWN"), (2, 3, 3, 3)),
    "max_out_wrong_shape": (ValueError, "max", dict(kernel_size=2), (2, 3, 3, 2)),
    "max_out_float64": (TypeError, "max", dict(kernel_size=2), "f64"),
    "max_return_indices": (paskdnn.UnsupportedError, "max",
                           dict(kernel_size=2, return_indices=True), (2, 3, 3, 3)),
    "avg_kernel_zero": (ValueError, "avg", dict(kernel_size=0), (2, 3, 6, 6)),
    "avg_stride_negative": (ValueError, "avg", dict(kernel_size=2, stride=-2), (2, 3, 3, 3)),
    "avg_pad_too_large": (ValueError, "avg", dict(kernel_size=2, padding=2), (2, 3, 5, 5)),
    "avg_pad_negative": (ValueError, "avg", dict(kernel_size=3, padding=(0, -1)), (2, 3, 2, 2)),
    "avg_kernel_too_big": (ValueError, "avg", dict(kernel_size=(2, 9), padding=(0, 1)),
                           (2, 3, 3, 1)),
    "avg_out_wrong_shape": (ValueError, "avg", dict(kernel_size=3), (2, 3, 2, 3)),
    "avg_out_noncontig": (ValueError, "avg", dict(kernel_size=3), "noncontig"),
    "adaptive_not_dividing": (paskdnn.UnsupportedError, "adaptive",
                              dict(output_size=4), (2, 3, 4, 4)),
    "adaptive_not_dividing_w": (paskdnn.UnsupportedError, "adaptive",
                                dict(output_size=(3, 5)), (2, 3, 3, 5)),
}

POOL_FN = {"max": lambda: paskdnn.max_pool2d, "avg": lambda: paskdnn.avg_pool2d,
           "adaptive": lambda: paskdnn.adaptive_avg_pool2d}


@pytest.mark.parametrize("name", sorted(POOL_ERRORS))
def test_pool_errors(name):
    exc, fn, kw, oshape = POOL_ERRORS[name]
    if oshape == "f64":
        out = np.zeros((2, 3, 3, 3))
    elif oshape == "noncontig":
        out = r32(2, 3, 2, 4)[:, :, :, ::2]
    else:
        out = r32(*oshape)
    x = pool_base()
    expect_error(exc, POOL_FN[fn](), x, out=out, **kw)


@pytest.mark.parametrize("fn,kw", [("max", dict(kernel_size=2)),
                                   ("avg", dict(kernel_size=2)),
                                   ("adaptive", dict(output_size=1))])
def test_pool_input_errors(fn, kw):
    f = POOL_FN[fn]()
    out = r32(2, 3, 3, 3) if fn != "adaptive" else r32(2, 3, 1, 1)
    expect_error(TypeError, f, pool_base().astype(np.float64), out=out, **kw)
    expect_error(TypeError, f, pool_base().astype(np.int32), out=out, **kw)
    expect_error(TypeError, f, pool_base().tolist(), out=out, **kw)
    expect_error(ValueError, f, r32(2, 6, 6, 3).transpose(0, 3, 1, 2), out=out, **kw)
    expect_error(ValueError, f, r32(6, 6), out=out, **kw)
    expect_error(ValueError, f, r32(1, 2, 3, 6, 6), out=out, **kw)


def test_pool_unsupported_forced_solver(make_context):
    x = pool_base()
    g = make_context("pool2d.global_avg")
    expect_error(paskdnn.UnsupportedError, paskdnn.max_pool2d, x, 6,
                 out=r32(2, 3, 1, 1), context=g)
    expect_error(paskdnn.UnsupportedError, paskdnn.avg_pool2d, x, 3,
                 out=r32(2, 3, 2, 2), context=g)
    expect_error(paskdnn.UnsupportedError, paskdnn.avg_pool2d, x, 2,
                 out=r32(2, 3, 3, 3), context=make_context("conv2d.direct"))


# --------------------------------------------------------------- contexts ---

@pytest.mark.parametrize("kw", [
    dict(policy="bogus"),
    dict(num_threads=0),
    dict(num_threads=-2),
    dict(solvers=["no.such.solver"]),
    dict(device="tpu"),
], ids=["policy", "threads0", "threads-2", "solver", "device"])
def test_context_bad_values(kw, kernel_cache_dir):
    exc = (ValueError, paskdnn.Error) if "device" in kw else ValueError
    with pytest.raises(exc):
        paskdnn.Context(cache_dir=kernel_cache_dir, **kw)


def test_context_bad_types(kernel_cache_dir):
    with pytest.raises(TypeError):
        paskdnn.Context(num_threads="2", cache_dir=kernel_cache_dir)


@pytest.mark.parametrize("policy", [None, "pask", "reactive", "proactive", "reuse"])
def test_context_policies(policy, kernel_cache_dir):
    """Every documented policy works; the default is 'pask'."""
    kw = {} if policy is None else dict(policy=policy)
    ctx = paskdnn.Context(cache_dir=kernel_cache_dir, num_threads=1, **kw)
    assert ctx.policy == (policy or "pask")
    x, w = r32(1, 2, 5, 5), r32(3, 2, 3, 3)
    y = paskdnn.conv2d(x, w, padding=1, context=ctx)
    ref.assert_within_bound(y, ref.conv2d_ref(x, w, padding=1),
                            ref.conv2d_bound(x, w, padding=1))
