"""Bad input through the C API itself (via cffi): NULL handles and pointers,
negative, zero and overflowing dims, unknown enum values. Each returns a status
with a message and leaves the output untouched; nothing crashes."""
import numpy as np
import pytest

import paskdnn
from paskdnn import _lib

ffi, lib = _lib.load()

SUCCESS, INVALID, NULLPTR, SHAPE, UNSUPPORTED, OVERFLOW = 0, 1, 2, 3, 4, 5


def desc(dims, layout=1, dtype=0):
    out = ffi.new("pask_tensor_desc_t *")
    status = lib.pask_tensor_desc_create(out, dtype, layout, len(dims), list(dims))
    assert status == SUCCESS, ffi.string(lib.pask_last_error_message())
    return ffi.gc(out[0], lib.pask_tensor_desc_destroy)


def message():
    return ffi.string(lib.pask_last_error_message()).decode()


@pytest.fixture(scope="module")
def ctx():
    return paskdnn.Context()._handle


def conv_params(stride=1, pad=1, dil=1, groups=1):
    return ffi.new("pask_conv2d_params_t *", {"stride": (stride, stride), "pad_pre": (pad, pad),
                                               "pad_post": (pad, pad), "dilation": (dil, dil), "groups": groups})


def ptr(a):
    return ffi.cast("void *", a.ctypes.data)


@pytest.mark.parametrize("dims, status", [
    ([1, 2, -3, 4], INVALID),
    ([1, 0, 3, 4], INVALID),
    ([2**62, 2**62, 1, 1], OVERFLOW),
    ([2**31, 2**31, 2**31, 1], OVERFLOW),
    ([2**61, 1, 1, 1], OVERFLOW),  # fits in elements, not in bytes
])
def test_descriptor_with_bad_dims_is_refused(dims, status):
    out = ffi.new("pask_tensor_desc_t *")
    assert lib.pask_tensor_desc_create(out, 0, 1, 4, dims) == status
    assert out[0] == ffi.NULL
    assert message()


@pytest.mark.parametrize("dtype, layout, ndim", [(7, 1, 4), (0, 9, 4), (0, 1, 0), (0, 1, 9), (0, 1, 3)])
def test_descriptor_with_bad_enums_or_rank_is_refused(dtype, layout, ndim):
    out = ffi.new("pask_tensor_desc_t *")
    assert lib.pask_tensor_desc_create(out, dtype, layout, ndim, [1] * 9) == INVALID
    assert message()


def test_null_arguments_are_reported(ctx):
    xd, wd, yd = desc([1, 2, 5, 5]), desc([3, 2, 3, 3]), desc([1, 3, 5, 5])
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    y = np.full((1, 3, 5, 5), 5.0, np.float32)
    p = conv_params()
    cases = [
        (ffi.NULL, p, xd, ptr(x), wd, ptr(w), yd, ptr(y)),
        (ctx, ffi.NULL, xd, ptr(x), wd, ptr(w), yd, ptr(y)),
        (ctx, p, ffi.NULL, ptr(x), wd, ptr(w), yd, ptr(y)),
        (ctx, p, xd, ffi.NULL, wd, ptr(w), yd, ptr(y)),
        (ctx, p, xd, ptr(x), wd, ffi.NULL, yd, ptr(y)),
        (ctx, p, xd, ptr(x), wd, ptr(w), ffi.NULL, ptr(y)),
        (ctx, p, xd, ptr(x), wd, ptr(w), yd, ffi.NULL),
    ]
    for c, pp, a, ap, b, bp, o, op in cases:
        status = lib.pask_conv2d_forward(c, pp, ffi.NULL, a, ap, b, bp, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, o, op)
        assert status == NULLPTR, message()
        assert "NULL" in message()
    assert (y == 5.0).all()
    # bias pointer without its descriptor
    b = np.ones(3, np.float32)
    assert lib.pask_conv2d_forward(ctx, p, ffi.NULL, xd, ptr(x), wd, ptr(w), ffi.NULL, ptr(b), ffi.NULL, ffi.NULL,
                                   yd, ptr(y)) == NULLPTR
    assert lib.pask_gemm(ffi.NULL, 0, 0, 0, 1, 1, 1, ffi.NULL, ptr(x), 1, ptr(x), 1, ffi.NULL, ptr(y), 1) == NULLPTR
    assert lib.pask_context_get_stats(ffi.NULL, ffi.new("pask_stats_t *")) == NULLPTR
    assert lib.pask_options_set(ffi.NULL, b"policy", b"pask") == NULLPTR
    assert (y == 5.0).all()


def test_destroy_null_is_a_no_op():
    assert lib.pask_context_destroy(ffi.NULL) == SUCCESS
    assert lib.pask_tensor_desc_destroy(ffi.NULL) == SUCCESS
    assert lib.pask_options_destroy(ffi.NULL) == SUCCESS


def test_output_aliasing_an_input_is_refused(ctx):
    buf = np.ones(3 * 5 * 5 + 2 * 5 * 5, np.float32)
    xd, wd, yd = desc([1, 2, 5, 5]), desc([3, 2, 3, 3]), desc([1, 3, 5, 5])
    w = np.ones((3, 2, 3, 3), np.float32)
    before = buf.copy()
    status = lib.pask_conv2d_forward(ctx, conv_params(), ffi.NULL, xd, ptr(buf), wd, ptr(w), ffi.NULL, ffi.NULL,
                                     ffi.NULL, ffi.NULL, yd, ffi.cast("char *", ptr(buf)) + 4 * 10)
    assert status == INVALID and "overlaps" in message()
    assert (buf == before).all()


def test_gemm_leading_dims_and_overflowing_extents(ctx):
    a = np.ones((4, 4), np.float32)
    c = np.full((4, 4), 3.0, np.float32)
    assert lib.pask_gemm(ctx, 0, 0, 0, 4, 4, 4, ffi.NULL, ptr(a), 3, ptr(a), 4, ffi.NULL, ptr(c), 4) == INVALID
    assert "lda" in message()
    assert lib.pask_gemm(ctx, 0, 0, 0, -1, 4, 4, ffi.NULL, ptr(a), 4, ptr(a), 4, ffi.NULL, ptr(c), 4) == INVALID
    assert lib.pask_gemm(ctx, 0, 0, 0, 2**40, 4, 4, ffi.NULL, ptr(a), 2**40, ptr(a), 4, ffi.NULL, ptr(c),
                         4) == OVERFLOW
    assert lib.pask_gemm(ctx, 9, 0, 0, 4, 4, 4, ffi.NULL, ptr(a), 4, ptr(a), 4, ffi.NULL, ptr(c), 4) == INVALID
    ep = ffi.new("pask_epilogue_t *", {"alpha": 1.0, "beta": 0.0, "activation": 11})  # CLAMP (10) + 1
    assert lib.pask_gemm(ctx, 0, 0, 0, 4, 4, 4, ep, ptr(a), 4, ptr(a), 4, ffi.NULL, ptr(c), 4) == INVALID
    assert (c == 3.0).all()


def test_unsupported_dtype_is_reported_not_crashed(ctx):
    a = np.ones((4, 4), np.float16)
    c = np.zeros((4, 4), np.float16)
    status = lib.pask_gemm(ctx, 1, 0, 0, 4, 4, 4, ffi.NULL, ptr(a), 4, ptr(a), 4, ffi.NULL, ptr(c), 4)
    assert status == UNSUPPORTED and "float16" in message()
    assert (c == 0).all()


def test_conv_params_overflow_and_bad_values(ctx):
    xd, wd = desc([1, 2, 5, 5]), desc([3, 2, 3, 3])
    dims = ffi.new("int64_t[4]")
    for params, status in [(conv_params(pad=2**62), OVERFLOW), (conv_params(dil=2**62), OVERFLOW),
                           (conv_params(stride=0), INVALID), (conv_params(pad=-1), INVALID),
                           (conv_params(groups=0), INVALID), (conv_params(groups=2), SHAPE),
                           (conv_params(pad=0, dil=3), SHAPE)]:
        assert lib.pask_conv2d_output_dims(params, xd, wd, dims) == status, message()
        assert message()


def test_status_strings_and_version():
    for code in range(10):
        assert ffi.string(lib.pask_status_string(code)).startswith(b"PASK_")
    assert ffi.string(lib.pask_status_string(99)) == b"PASK_ERROR_UNKNOWN_STATUS"
    assert ffi.string(lib.pask_version_string()).decode() == paskdnn.__version__


def test_unknown_options_and_devices_are_refused():
    opts = ffi.new("pask_options_t *")
    assert lib.pask_options_create(opts) == SUCCESS
    out = ffi.new("pask_context_t *")
    lib.pask_options_set(opts[0], b"no_such_option", b"1")
    assert lib.pask_context_create(out, 0, 0, opts[0]) == INVALID and "no_such_option" in message()
    lib.pask_options_destroy(opts[0])
    assert lib.pask_context_create(out, 0, 3, ffi.NULL) == INVALID
    count = ffi.new("int *")
    assert lib.pask_device_count(1, count) == SUCCESS
    if count[0] == 0:  # no GPU here: a CUDA context is refused with the reason
        assert lib.pask_context_create(out, 1, 0, ffi.NULL) == 7  # PASK_ERROR_BACKEND_UNAVAILABLE
        assert "CUDA" in message() or "cuda" in message()
    assert lib.pask_context_create(out, 1, 1000, ffi.NULL) in (INVALID, 7)
    assert lib.pask_device_count(2, count) == SUCCESS
    if count[0] == 0:  # no AMD GPU here: a HIP context is refused with the reason
        assert lib.pask_context_create(out, 2, 0, ffi.NULL) == 7  # PASK_ERROR_BACKEND_UNAVAILABLE
        assert "HIP" in message()


@pytest.mark.parametrize("key, bad", [("explore", b"2"), ("cudnn", b"yes"), ("cudnn", b"-1"),
                                      ("loader_yield_ms", b"-1"), ("loader_yield_ms", b"10001")])
def test_gpu_provider_options_are_validated(key, bad):
    opts = ffi.new("pask_options_t *")
    assert lib.pask_options_create(opts) == SUCCESS
    out = ffi.new("pask_context_t *")
    lib.pask_options_set(opts[0], key.encode(), bad)
    assert lib.pask_context_create(out, 0, 0, opts[0]) == INVALID and key in message()
    lib.pask_options_destroy(opts[0])


def test_loader_yield_ms_defaults_from_the_environment_where_the_option_is_not_given(monkeypatch):
    monkeypatch.setenv("PASKDNN_LOADER_YIELD_MS", "soon")
    with pytest.raises(paskdnn.InvalidArgumentError, match=r"\$PASKDNN_LOADER_YIELD_MS.*'soon'"):
        paskdnn.Context("cpu")
    paskdnn.Context("cpu", loader_yield_ms=0).close()  # the option wins: the variable is not read
    monkeypatch.setenv("PASKDNN_LOADER_YIELD_MS", "20")
    paskdnn.Context("cpu").close()
    with pytest.raises(TypeError):
        paskdnn.Context("cpu", loader_yield_ms=1.5)


def test_gpu_provider_options_are_accepted_on_a_cpu_context():
    ctx = paskdnn.Context("cpu", explore=True, cudnn=False)
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = paskdnn.conv2d(x, w, padding=1, context=ctx)
    assert y.shape == (1, 3, 5, 5)
    ctx.close()
    with pytest.raises(TypeError):
        paskdnn.Context("cpu", cudnn=3)
