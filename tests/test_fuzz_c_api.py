"""Hypothesis fuzzing of the C API through cffi.

Random descriptors (enums in and out of range, ndim 0..9, dims 0, negative and
near 2^31, 2^32, 2^62, 2^63-1), random conv2d / pool2d / gemm parameters,
NULL in every position and outputs aliasing inputs. Every call must

  * return 0 or a known status 1..9, with a non-empty message on failure,
  * never crash, and leave every buffer (outputs included) untouched on error,
  * never write outside the output tensor (guard bytes after every buffer,
    and the gaps between gemm rows when ldc > n),
  * on success on small shapes, match the float64 references in reference.py.

Memory stays bounded: real buffers are only passed when every described
tensor is small. When a descriptor describes a huge tensor the buffers are
tiny, so the case is arranged to fail validation for sure: either the
data-free twin of the call (output_dims / hint) already refuses it, or a
required data pointer is NULL. The library therefore never gets a chance to
touch a buffer smaller than its descriptor.

Default (CI) profile: 200 examples per test; --hypothesis-profile=thorough
runs 2000.
"""
import tempfile

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import paskdnn
import reference as ref
from paskdnn import _lib

ffi, lib = _lib.load()

SUCCESS, INVALID, NULLPTR, SHAPE, UNSUPPORTED, OVERFLOW, OOM = 0, 1, 2, 3, 4, 5, 6
KNOWN_ERRORS = set(range(1, 10))
ESIZE = {0: 4, 1: 2, 2: 2, 3: 8}
INT64_MAX = 2**63 - 1
EDGE = [0, -1, -7, -2**31, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32, 2**32 + 1, 2**62, 2**62 + 1,
        2**63 - 1, -2**63]
SMALL_LIMIT = 1 << 20  # bytes per tensor below which real buffers are passed
GUARD = 64             # guard bytes after every buffer
ACTS = {0: None, 1: "relu", 2: "relu6", 3: "sigmoid", 4: "silu", 5: "hardswish", 6: "hardsigmoid", 7: "gelu",
        8: "gelu_tanh"}  # pask_activation_t (9, 10: leaky_relu and clamp take parameters: test_activations.py)

EXAMPLES = max(200, settings.default.max_examples * 4)
fuzz_settings = settings(max_examples=EXAMPLES, deadline=None)

_cache = tempfile.mkdtemp(prefix="paskdnn-fuzz-")
_ctx = paskdnn.Context(cache_dir=_cache, num_threads=2)
_oracle = paskdnn.Context(cache_dir=_cache, policy="reactive", loader_threads=0)
CTX, ORACLE = _ctx._handle, _oracle._handle


def enum(v):
    """An enum argument as C sees it: cffi types these enums unsigned (all
    their values are >= 0), so a negative value is passed as its bits."""
    return v & 0xFFFFFFFF


def message():
    return ffi.string(lib.pask_last_error_message()).decode()


def check_status(status, where=""):
    assert status == SUCCESS or status in KNOWN_ERRORS, f"{where}: unknown status {status}"
    if status != SUCCESS:
        assert message(), f"{where}: failed with {status} but no message"
    else:
        assert message() == "", f"{where}: succeeded but the message is {message()!r}"


# ---------------------------------------------------------------- strategies ---

edge = st.sampled_from(EDGE)
any_i64 = st.integers(-2**63, INT64_MAX)


def mostly(draw, good, bad, p_bad=8):
    """Draws from `good` most of the time, from `bad` about 1/p_bad of it.
    Returns (value, was_bad)."""
    if draw(st.integers(0, p_bad - 1)) == 0:
        return draw(bad), True
    return draw(good), False


def prod(dims):
    out = 1
    for d in dims:
        out *= d
    return out


class Buffers:
    """Byte buffers with guard bytes after each; records their bytes to
    prove they were not touched."""

    def __init__(self):
        self.bufs = {}

    def add(self, name, nbytes, rng, dtype=0, fill=None):
        raw = np.empty(nbytes + GUARD, np.uint8)
        if dtype == 0 and nbytes % 4 == 0:
            raw[:nbytes].view(np.float32)[:] = rng.uniform(-1, 1, nbytes // 4) if fill is None else fill
        elif dtype == 3 and nbytes % 8 == 0:
            raw[:nbytes].view(np.float64)[:] = rng.uniform(-1, 1, nbytes // 8)
        else:
            raw[:nbytes] = rng.integers(0, 256, nbytes, dtype=np.uint8) & 0x3F  # finite fp16/bf16 bytes
        raw[nbytes:] = 0xA5
        self.bufs[name] = (raw, nbytes, raw.copy())
        return raw

    def ptr(self, name, offset=0):
        raw = self.bufs[name][0]
        return ffi.cast("void *", raw.ctypes.data + offset)

    def f32(self, name, count=None):
        raw, nbytes, _ = self.bufs[name]
        return raw[:nbytes].view(np.float32) if count is None else raw[:count * 4].view(np.float32)

    def before_f32(self, name):
        raw, nbytes, copy = self.bufs[name]
        return copy[:nbytes].view(np.float32)

    def assert_untouched(self, names=None, what=""):
        for name, (raw, _, copy) in self.bufs.items():
            if names is None or name in names:
                assert np.array_equal(raw, copy), f"{what}: buffer {name} was modified"

    def assert_guards(self):
        for name, (raw, nbytes, _) in self.bufs.items():
            assert (raw[nbytes:] == 0xA5).all(), f"a write past the end of {name}"


def make_desc(dtype, layout, dims):
    """Creates a descriptor; returns (handle or NULL, status)."""
    out = ffi.new("pask_tensor_desc_t *")
    status = lib.pask_tensor_desc_create(out, enum(dtype), enum(layout), len(dims), list(dims))
    check_status(status, "pask_tensor_desc_create")
    if status != SUCCESS:
        return ffi.NULL, status
    return ffi.gc(out[0], lib.pask_tensor_desc_destroy), status


# ---------------------------------------------------------------- descriptors ---

@fuzz_settings
@given(dtype=st.one_of(st.integers(0, 3), st.integers(-3, 8), st.sampled_from([2**31 - 1, -2**31])),
       layout=st.one_of(st.integers(0, 2), st.integers(-3, 6)),
       ndim=st.integers(-1, 9),
       dims=st.lists(st.one_of(st.integers(1, 9), edge, any_i64), min_size=9, max_size=9),
       null_dims=st.booleans(), null_out=st.booleans())
def test_descriptor_create_is_validated_exactly(dtype, layout, ndim, dims, null_dims, null_out):
    sentinel = ffi.cast("pask_tensor_desc_t", 0x1234)
    out = ffi.new("pask_tensor_desc_t *", sentinel)
    arr = ffi.NULL if null_dims else ffi.new("int64_t[9]", dims)
    status = lib.pask_tensor_desc_create(ffi.NULL if null_out else out, enum(dtype), enum(layout), ndim, arr)
    check_status(status, "pask_tensor_desc_create")
    # the documented rules
    if null_out or null_dims:
        expect = NULLPTR
    elif dtype not in ESIZE or layout not in (0, 1, 2) or not 1 <= ndim <= 8 or (layout != 0 and ndim != 4):
        expect = INVALID
    else:
        expect = SUCCESS
        elements = 1
        for d in dims[:ndim]:
            if d < 1:
                expect = INVALID
                break
            elements *= d
            if elements > INT64_MAX:
                expect = OVERFLOW
                break
        if expect == SUCCESS and elements * ESIZE[dtype] * 8 > INT64_MAX:
            expect = OVERFLOW
    assert status == expect, (status, expect, message())
    if status != SUCCESS:
        assert out[0] == sentinel, "the output handle was written on failure"
        return
    handle = ffi.gc(out[0], lib.pask_tensor_desc_destroy)
    got_dt, got_l, got_n = ffi.new("pask_dtype_t *"), ffi.new("pask_layout_t *"), ffi.new("int *")
    got_dims = ffi.new("int64_t[8]", [-5] * 8)
    assert lib.pask_tensor_desc_get(handle, got_dt, got_l, got_n, got_dims) == SUCCESS
    assert (got_dt[0], got_l[0], got_n[0]) == (dtype, layout, ndim)
    assert list(got_dims)[:ndim] == dims[:ndim] and all(d == 0 for d in list(got_dims)[ndim:])
    # any output may be NULL
    assert lib.pask_tensor_desc_get(handle, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL) == SUCCESS
    size = ffi.new("size_t *")
    assert lib.pask_tensor_desc_get_size(handle, size) == SUCCESS
    assert size[0] == prod(dims[:ndim]) * ESIZE[dtype]
    assert lib.pask_tensor_desc_get_size(handle, ffi.NULL) == NULLPTR and message()


# ---------------------------------------------------------------- conv2d ---

def conv_out(h, k, stride, pre, post, dil):
    eff = dil * (k - 1) + 1
    padded = h + pre + post
    return None if eff > padded or stride < 1 else (padded - eff) // stride + 1


@st.composite
def conv_cases(draw):
    bad = False

    def pick(good, badv=edge, p=40):
        nonlocal bad
        v, b = mostly(draw, good, badv, p)
        bad |= b
        return v

    g = pick(st.sampled_from([1, 1, 1, 2, 3]), st.one_of(edge, st.integers(-2, 0)))
    gg = g if 1 <= g <= 3 else 1
    c = pick(st.integers(1, 3).map(lambda v: v * gg))
    o = pick(st.integers(1, 3).map(lambda v: v * gg))
    n = pick(st.integers(1, 2))
    h, w = pick(st.integers(1, 7)), pick(st.integers(1, 7))
    kh, kw = pick(st.integers(1, 3)), pick(st.integers(1, 3))
    cpg = c // gg if c >= 1 else 1
    wc = pick(st.just(cpg), st.integers(-1, 4))
    stride = [pick(st.integers(1, 3)), pick(st.integers(1, 3))]
    dil = [pick(st.integers(1, 2)), pick(st.integers(1, 2))]
    pre = [pick(st.integers(0, 2)), pick(st.integers(0, 2))]
    post = [pick(st.integers(0, 2)), pick(st.integers(0, 2))]
    layout = pick(st.sampled_from([1, 2]), st.sampled_from([0, 3, -1]))
    wlayout = pick(st.sampled_from([1, 2]), st.sampled_from([0, 3, -1]))
    ylayout = pick(st.just(layout), st.sampled_from([0, 1, 2, 5]))
    dtype = pick(st.just(0), st.sampled_from([1, 2, 3, 9, -1]))
    wdtype = pick(st.just(dtype), st.sampled_from([0, 1, 3]))
    ydtype = pick(st.just(dtype), st.sampled_from([0, 1, 3]))
    outs = None
    try:
        oh = conv_out(h, kh, stride[0], pre[0], post[0], dil[0])
        ow = conv_out(w, kw, stride[1], pre[1], post[1], dil[1])
        if oh is not None and ow is not None:
            outs = [_i64(v) for v in (n, o, oh, ow)]
    except (ZeroDivisionError, OverflowError):
        pass
    ydims = pick(st.just(outs), st.lists(st.integers(1, 6), min_size=4, max_size=4)) if outs else \
        draw(st.lists(st.integers(1, 6), min_size=4, max_size=4))
    ydims = ydims or [1, 1, 1, 1]
    has_bias = draw(st.booleans())
    bias_dims = [pick(st.just(o), st.sampled_from([_i64(o + 1), 1, 0]))] if has_bias else None
    has_res = draw(st.integers(0, 3)) == 0
    res_dims = pick(st.just(ydims), st.lists(st.integers(1, 4), min_size=4, max_size=4)) if has_res else None
    epilogue = None
    if draw(st.booleans()):
        act = pick(st.sampled_from(list(ACTS)), st.sampled_from([11, -1, 2**31 - 1]))
        epilogue = (draw(st.sampled_from([1.0, 0.5, -2.0, 0.0])), draw(st.sampled_from([0.0, 0.0, 0.5, -1.0])), act)
    null = draw(st.sampled_from([None] * 36 + ["ctx", "params", "x_desc", "x", "w_desc", "w", "y_desc", "y",
                                               "bias", "bias_desc", "residual", "residual_desc"]))
    alias = draw(st.sampled_from([None] * 25 + ["y_in_x", "y_in_w", "y_in_bias", "y_in_residual", "x_is_w"]))
    return dict(n=n, c=c, h=h, w=w, o=o, wc=wc, kh=kh, kw=kw, g=g, stride=stride, dil=dil, pre=pre, post=post,
                layout=layout, wlayout=wlayout, ylayout=ylayout, dtype=dtype, wdtype=wdtype, ydtype=ydtype,
                ydims=ydims, bias_dims=bias_dims, res_dims=res_dims, epilogue=epilogue, null=null, alias=alias,
                bad=bad, outs=outs, seed=draw(st.integers(0, 2**32 - 1)))


def _i64(v):
    return max(-2**63, min(INT64_MAX, v))


@fuzz_settings
@given(case=conv_cases())
def test_conv2d_forward_fuzz(case):
    cs = case
    rng = np.random.default_rng(cs["seed"])
    xdims = [cs["n"], cs["c"], cs["h"], cs["w"]]
    wdims = [cs["o"], cs["wc"], cs["kh"], cs["kw"]]
    xd, _ = make_desc(cs["dtype"], cs["layout"], xdims)
    wd, _ = make_desc(cs["wdtype"], cs["wlayout"], wdims)
    yd, _ = make_desc(cs["ydtype"], cs["ylayout"], cs["ydims"])
    bd = make_desc(cs["dtype"], 0, cs["bias_dims"])[0] if cs["bias_dims"] else ffi.NULL
    rd = make_desc(cs["dtype"], cs["ylayout"], cs["res_dims"])[0] if cs["res_dims"] else ffi.NULL
    params = ffi.new("pask_conv2d_params_t *", {"stride": cs["stride"], "pad_pre": cs["pre"],
                                                "pad_post": cs["post"], "dilation": cs["dil"], "groups": cs["g"]})
    ep = ffi.NULL
    if cs["epilogue"]:
        ep = ffi.new("pask_epilogue_t *", {"alpha": cs["epilogue"][0], "beta": cs["epilogue"][1],
                                           "activation": enum(cs["epilogue"][2])})

    # the data-free twins: output_dims agrees with the formula, hint agrees with output_dims
    out_dims = ffi.new("int64_t[4]", [-9] * 4)
    st_dims = lib.pask_conv2d_output_dims(params, xd, wd, out_dims)
    check_status(st_dims, "pask_conv2d_output_dims")
    if st_dims == SUCCESS:
        assert list(out_dims) == cs["outs"], (list(out_dims), cs)
    else:
        assert list(out_dims) == [-9] * 4
    st_hint = lib.pask_hint_conv2d(ORACLE, params, ep, xd, wd, bd, rd)
    check_status(st_hint, "pask_hint_conv2d")
    if st_dims != SUCCESS:
        assert st_hint != SUCCESS
    could_pass = st_hint == SUCCESS and yd != ffi.NULL and list(out_dims) == cs["ydims"] and \
        cs["ydtype"] == cs["dtype"] and cs["ylayout"] == cs["layout"]

    esize = ESIZE.get(cs["dtype"], 4)
    sizes = {"x": prod(xdims) * esize, "w": prod(wdims) * esize, "y": prod(cs["ydims"]) * esize}
    if cs["bias_dims"]:
        sizes["bias"] = prod(cs["bias_dims"]) * esize
    if cs["res_dims"]:
        sizes["residual"] = prod(cs["res_dims"]) * esize
    real = all(0 < s <= SMALL_LIMIT for s in sizes.values())
    null = cs["null"]
    if not real:
        sizes = {k: 16 for k in sizes}
        if could_pass and null not in ("ctx", "params", "x_desc", "x", "w_desc", "w", "y_desc", "y"):
            null = "x"  # a huge tensor with tiny buffers: must fail before any access

    bufs = Buffers()
    for name, nbytes in sizes.items():
        bufs.add(name, nbytes, rng, cs["dtype"])
    alias = cs["alias"] if real else None
    ptrs = {name: bufs.ptr(name) for name in sizes}
    if alias == "x_is_w" and sizes["w"] <= sizes["x"]:
        ptrs["w"] = ptrs["x"]  # two inputs may share memory
    elif alias and alias.startswith("y_in_"):
        src = alias[5:]
        if src in sizes:
            off = esize if sizes[src] > esize else 0  # y starts inside src's described bytes
            bufs.add(src, max(sizes[src], off + sizes["y"]), rng, cs["dtype"])
            ptrs[src] = bufs.ptr(src)
            ptrs["y"] = bufs.ptr(src, off)
            del bufs.bufs["y"]
        else:
            alias = None
    descs = {"x_desc": xd, "w_desc": wd, "y_desc": yd, "bias_desc": bd, "residual_desc": rd}
    if null in ("bias", "bias_desc", "residual", "residual_desc") and null.split("_")[0] not in ptrs:
        null = None  # no bias / residual in this case: nothing to leave out
    ctx = CTX
    if null == "ctx":
        ctx = ffi.NULL
    elif null == "params":
        params = ffi.NULL
    elif null in descs:
        descs[null] = ffi.NULL
    elif null in ptrs:
        ptrs[null] = ffi.NULL
    status = lib.pask_conv2d_forward(ctx, params, ep, descs["x_desc"], ptrs["x"], descs["w_desc"], ptrs["w"],
                                     descs["bias_desc"], ptrs.get("bias", ffi.NULL), descs["residual_desc"],
                                     ptrs.get("residual", ffi.NULL), descs["y_desc"], ptrs["y"])
    check_status(status, "pask_conv2d_forward")
    event(f"pask_conv2d_forward -> {status}")
    bufs.assert_guards()
    must_fail = (not could_pass or null is not None or (alias and alias.startswith("y_in_")))
    # a bias/residual pointer without its descriptor (or the reverse) is an error
    if must_fail:
        assert status != SUCCESS, f"accepted an invalid call: {cs} null={null} alias={alias}"
    if status != SUCCESS:
        bufs.assert_untouched(what=f"status {status} ({message()})")
        if alias and alias.startswith("y_in_") and could_pass and null is None:
            assert status == INVALID and "overlaps" in message()
        return
    # success: every input untouched, the output right
    bufs.assert_untouched(names={"x", "w", "bias", "residual"}, what="input")
    assert cs["dtype"] == 0  # only float32 runs on the CPU
    n, c, h, w = xdims
    o, oh, ow = cs["o"], cs["outs"][2], cs["outs"][3]
    padded = n * c * (h + cs["pre"][0] + cs["post"][0]) * (w + cs["pre"][1] + cs["post"][1])
    if padded > SMALL_LIMIT:
        event("conv2d: padding too large for the reference")
        assert np.isfinite(bufs.f32("y")).all()
        return
    x = bufs.f32("x").reshape((n, c, h, w) if cs["layout"] == 1 else (n, h, w, c))
    x = x if cs["layout"] == 1 else ref.nhwc_to_nchw(x)
    wt = (bufs.f32("x") if ptrs["w"] == ptrs["x"] else bufs.f32("w"))[:prod(wdims)]
    wt = wt.reshape(wdims if cs["wlayout"] == 1 else (o, cs["kh"], cs["kw"], cs["wc"]))
    wt = wt if cs["wlayout"] == 1 else ref.ohwi_to_oihw(wt)
    to_nchw = (lambda a: a.reshape(n, o, oh, ow)) if cs["layout"] == 1 else \
        (lambda a: ref.nhwc_to_nchw(a.reshape(n, oh, ow, o)))
    y = to_nchw(bufs.f32("y"))
    before = to_nchw(bufs.before_f32("y"))
    bias = bufs.f32("bias") if cs["bias_dims"] else None
    res = to_nchw(bufs.f32("residual")) if cs["res_dims"] else None
    alpha, beta, act = cs["epilogue"] if cs["epilogue"] else (1.0, 0.0, 0)
    kw_ = dict(bias=bias, stride=tuple(cs["stride"]), padding=((cs["pre"][0], cs["post"][0]),
                                                                (cs["pre"][1], cs["post"][1])),
               dilation=tuple(cs["dil"]), groups=cs["g"], residual=res, alpha=alpha, beta=beta, out_before=before)
    expected = ref.conv2d_ref(x, wt, activation=ACTS[act], **kw_)
    ref.assert_within_bound(y, expected, ref.conv2d_bound(x, wt, **kw_), what="conv2d")


# ---------------------------------------------------------------- gemm ---

@st.composite
def gemm_cases(draw):
    def pick(good, badv=edge, p=40):
        return mostly(draw, good, badv, p)[0]

    dtype = pick(st.just(0), st.sampled_from([1, 2, 3, 4, -1]))
    ta = pick(st.sampled_from([0, 1]), st.sampled_from([2, -1, 2**31 - 1, -2**31]))
    tb = pick(st.sampled_from([0, 1]), st.sampled_from([2, -1, 2**31 - 1, -2**31]))
    m, n, k = pick(st.integers(1, 9)), pick(st.integers(1, 9)), pick(st.integers(1, 9))
    a_cols = m if ta else k
    b_cols = k if tb else n
    lda = pick(st.integers(0, 3).map(lambda e: _i64(a_cols + e)), st.one_of(edge, st.just(_i64(a_cols - 1))))
    ldb = pick(st.integers(0, 3).map(lambda e: _i64(b_cols + e)), st.one_of(edge, st.just(_i64(b_cols - 1))))
    ldc = pick(st.integers(0, 3).map(lambda e: _i64(n + e)), st.one_of(edge, st.just(_i64(n - 1))))
    epilogue = None
    if draw(st.booleans()):
        act = pick(st.sampled_from(list(ACTS)), st.sampled_from([11, -1]))
        epilogue = (draw(st.sampled_from([1.0, 0.5, -2.0, 0.0])), draw(st.sampled_from([0.0, 0.0, 0.5, -1.0])), act)
    has_bias = draw(st.booleans())
    null = draw(st.sampled_from([None] * 12 + ["ctx", "a", "b", "c"]))
    alias = draw(st.sampled_from([None] * 16 + ["c_in_a", "c_in_b", "c_in_bias", "a_is_b"]))
    return dict(dtype=dtype, ta=ta, tb=tb, m=m, n=n, k=k, lda=lda, ldb=ldb, ldc=ldc, epilogue=epilogue,
                has_bias=has_bias, null=null, alias=alias, seed=draw(st.integers(0, 2**32 - 1)))


def extent(rows, cols, ld):
    if rows < 1 or cols < 1 or ld < cols:
        return None
    return (rows - 1) * ld + cols


@fuzz_settings
@given(case=gemm_cases())
def test_gemm_fuzz(case):
    cs = case
    rng = np.random.default_rng(cs["seed"])
    m, n, k, ta, tb = cs["m"], cs["n"], cs["k"], cs["ta"], cs["tb"]
    ep = ffi.NULL
    if cs["epilogue"]:
        ep = ffi.new("pask_epilogue_t *", {"alpha": cs["epilogue"][0], "beta": cs["epilogue"][1],
                                           "activation": enum(cs["epilogue"][2])})
    st_hint = lib.pask_hint_gemm(ORACLE, enum(cs["dtype"]), ta, tb, m, n, k, ep, cs["lda"], cs["ldb"], cs["ldc"],
                                 int(cs["has_bias"]))
    check_status(st_hint, "pask_hint_gemm")
    esize = ESIZE.get(cs["dtype"], 4)
    a_rows, a_cols = (k, m) if ta else (m, k)
    b_rows, b_cols = (n, k) if tb else (k, n)
    ext = {"a": extent(a_rows, a_cols, cs["lda"]), "b": extent(b_rows, b_cols, cs["ldb"]),
           "c": extent(m, n, cs["ldc"]), "bias": n if cs["has_bias"] else None}
    if st_hint == SUCCESS:
        assert None not in (ext["a"], ext["b"], ext["c"])
    real = all(e is None or e * esize <= SMALL_LIMIT for e in ext.values()) and \
        all(e is not None for name, e in ext.items() if name != "bias")
    null = cs["null"]
    bufs = Buffers()
    for name, e in ext.items():
        if name == "bias" and not cs["has_bias"]:
            continue
        bufs.add(name, e * esize if real else 16, rng, cs["dtype"])
    if not real and st_hint == SUCCESS and null is None:
        null = "c"  # huge extents, tiny buffers: must fail before any access
    ptrs = {name: bufs.ptr(name) for name in bufs.bufs}
    alias = cs["alias"] if real else None
    if alias == "a_is_b" and ext["b"] <= ext["a"]:
        ptrs["b"] = ptrs["a"]
    elif alias and alias.startswith("c_in_") and alias[5:] in ptrs:
        src = alias[5:]
        off = 1 if ext[src] > 1 else 0  # C starts inside src's extent
        bufs.add(src, max(ext[src], off + ext["c"]) * esize, rng, cs["dtype"])
        ptrs[src] = bufs.ptr(src)
        ptrs["c"] = bufs.ptr(src, off * esize)
        del bufs.bufs["c"]
    else:
        alias = None
    ctx = CTX
    if null == "ctx":
        ctx = ffi.NULL
    elif null:
        ptrs[null] = ffi.NULL
    status = lib.pask_gemm(ctx, enum(cs["dtype"]), ta, tb, m, n, k, ep, ptrs["a"], cs["lda"], ptrs["b"], cs["ldb"],
                           ptrs.get("bias", ffi.NULL), ptrs["c"], cs["ldc"])
    check_status(status, "pask_gemm")
    event(f"pask_gemm -> {status}")
    bufs.assert_guards()
    if st_hint != SUCCESS or null or alias and alias.startswith("c_in_"):
        assert status != SUCCESS, f"accepted an invalid call: {cs}"
    if status != SUCCESS:
        bufs.assert_untouched(what=f"status {status} ({message()})")
        if alias and alias.startswith("c_in_") and st_hint == SUCCESS and not null:
            assert status == INVALID and "overlaps" in message()
        return
    assert cs["dtype"] == 0
    bufs.assert_untouched(names={"a", "b", "bias"}, what="input")

    def matrix(flat, rows, cols, ld):
        return np.stack([flat[r * ld:r * ld + cols] for r in range(rows)])

    a = matrix(bufs.f32("a"), a_rows, a_cols, cs["lda"])
    b = matrix(bufs.f32("a") if ptrs["b"] == ptrs["a"] else bufs.f32("b"), b_rows, b_cols, cs["ldb"])
    c = matrix(bufs.f32("c"), m, n, cs["ldc"])
    before_flat = bufs.before_f32("c")
    before = matrix(before_flat, m, n, cs["ldc"])
    # the gaps between C's rows (ldc > n) are not C: untouched
    mask = np.ones(ext["c"], bool)
    for r in range(m):
        mask[r * cs["ldc"]:r * cs["ldc"] + n] = False
    assert np.array_equal(bufs.f32("c")[mask], before_flat[mask]), "gemm wrote between C's rows"
    bias = bufs.f32("bias") if cs["has_bias"] else None
    alpha, beta, act = cs["epilogue"] if cs["epilogue"] else (1.0, 0.0, 0)
    kw = dict(c=before, alpha=alpha, beta=beta, trans_a=bool(ta), trans_b=bool(tb), bias=bias)
    ref.assert_within_bound(c, ref.gemm_ref(a, b, activation=ACTS[act], **kw), ref.gemm_bound(a, b, **kw),
                            what="gemm")


# ---------------------------------------------------------------- pool2d ---

@st.composite
def pool_cases(draw):
    def pick(good, badv=edge, p=40):
        return mostly(draw, good, badv, p)[0]

    mode = pick(st.sampled_from([0, 1]), st.sampled_from([2, -1, 2**31 - 1]))
    kernel = [pick(st.integers(1, 4)), pick(st.integers(1, 4))]
    stride = [pick(st.integers(1, 3)), pick(st.integers(1, 3))]
    dil = [pick(st.just(1) if mode == 1 else st.integers(1, 2)), pick(st.just(1) if mode == 1 else st.integers(1, 2))]
    sym = draw(st.integers(0, 3)) > 0
    pre = [pick(st.integers(0, 1)), pick(st.integers(0, 1))]
    post = list(pre) if sym else [pick(st.integers(0, 1)), pick(st.integers(0, 1))]
    ceil_mode = pick(st.sampled_from([0, 1]), st.sampled_from([2, -1]))
    cip = pick(st.sampled_from([0, 1]), st.sampled_from([2, -1]))
    div = pick(st.sampled_from([0, 0, 0, 1, 3, 7]), st.sampled_from([-1, 2**62, INT64_MAX]))
    xdims = [pick(st.integers(1, 2)), pick(st.integers(1, 3)), pick(st.integers(1, 8)), pick(st.integers(1, 8))]
    layout = pick(st.sampled_from([1, 2]), st.sampled_from([0, 3]))
    dtype = pick(st.just(0), st.sampled_from([1, 2, 3, 7]))
    yfix = draw(st.integers(0, 9)) > 0
    ydims = None if yfix else draw(st.lists(st.integers(1, 5), min_size=4, max_size=4))
    ylayout = pick(st.just(layout), st.sampled_from([1, 2]))
    null = draw(st.sampled_from([None] * 18 + ["ctx", "params", "x_desc", "x", "y_desc", "y"]))
    alias = draw(st.sampled_from([None] * 12 + ["y_in_x"]))
    return dict(mode=mode, kernel=kernel, stride=stride, dil=dil, pre=pre, post=post, ceil_mode=ceil_mode, cip=cip,
                div=div, xdims=xdims, layout=layout, dtype=dtype, ydims=ydims, ylayout=ylayout, null=null,
                alias=alias, seed=draw(st.integers(0, 2**32 - 1)))


@fuzz_settings
@given(case=pool_cases())
def test_pool2d_forward_fuzz(case):
    cs = case
    rng = np.random.default_rng(cs["seed"])
    params = ffi.new("pask_pool2d_params_t *", {
        "mode": enum(cs["mode"]), "kernel": cs["kernel"], "stride": cs["stride"], "pad_pre": cs["pre"],
        "pad_post": cs["post"], "dilation": cs["dil"], "ceil_mode": cs["ceil_mode"],
        "count_include_pad": cs["cip"], "divisor_override": cs["div"]})
    xd, _ = make_desc(cs["dtype"], cs["layout"], cs["xdims"])
    out_dims = ffi.new("int64_t[4]", [-9] * 4)
    st_dims = lib.pask_pool2d_output_dims(params, xd, out_dims)
    check_status(st_dims, "pask_pool2d_output_dims")
    if st_dims != SUCCESS:
        assert list(out_dims) == [-9] * 4
    ydims = cs["ydims"] or (list(out_dims) if st_dims == SUCCESS else [1, 1, 1, 1])
    yd, _ = make_desc(cs["dtype"], cs["ylayout"], ydims)
    st_hint = lib.pask_hint_pool2d(ORACLE, params, xd)
    check_status(st_hint, "pask_hint_pool2d")
    assert (st_hint == SUCCESS) == (st_dims == SUCCESS)
    could_pass = st_dims == SUCCESS and yd != ffi.NULL and list(out_dims) == ydims and cs["ylayout"] == cs["layout"]
    esize = ESIZE.get(cs["dtype"], 4)
    sizes = {"x": prod(cs["xdims"]) * esize, "y": prod(ydims) * esize}
    real = all(0 < s <= SMALL_LIMIT for s in sizes.values())
    null = cs["null"]
    if not real:
        sizes = {k: 16 for k in sizes}
        if could_pass and null is None:
            null = "x"
    bufs = Buffers()
    for name, nbytes in sizes.items():
        bufs.add(name, nbytes, rng, cs["dtype"])
    ptrs = {name: bufs.ptr(name) for name in sizes}
    alias = cs["alias"] if real else None
    if alias:
        off = esize if sizes["x"] > esize else 0  # y starts inside x's described bytes
        bufs.add("x", max(sizes["x"], off + sizes["y"]), rng, cs["dtype"])
        ptrs["x"] = bufs.ptr("x")
        ptrs["y"] = bufs.ptr("x", off)
        del bufs.bufs["y"]
    descs = {"x_desc": xd, "y_desc": yd}
    ctx = CTX
    if null == "ctx":
        ctx = ffi.NULL
    elif null == "params":
        params = ffi.NULL
    elif null in descs:
        descs[null] = ffi.NULL
    elif null:
        ptrs[null] = ffi.NULL
    status = lib.pask_pool2d_forward(ctx, params, descs["x_desc"], ptrs["x"], descs["y_desc"], ptrs["y"])
    check_status(status, "pask_pool2d_forward")
    event(f"pask_pool2d_forward -> {status}")
    bufs.assert_guards()
    if not could_pass or null or alias:
        assert status != SUCCESS, f"accepted an invalid call: {cs} null={null}"
    if status != SUCCESS:
        bufs.assert_untouched(what=f"status {status} ({message()})")
        return
    assert cs["dtype"] == 0
    bufs.assert_untouched(names={"x"}, what="input")
    n, c, h, w = cs["xdims"]
    oh, ow = ydims[2], ydims[3]
    x = bufs.f32("x").reshape((n, c, h, w) if cs["layout"] == 1 else (n, h, w, c))
    x = x if cs["layout"] == 1 else ref.nhwc_to_nchw(x)
    y = bufs.f32("y").reshape((n, c, oh, ow) if cs["layout"] == 1 else (n, oh, ow, c))
    y = y if cs["layout"] == 1 else ref.nhwc_to_nchw(y)
    if cs["pre"] != cs["post"]:
        return  # the references take symmetric padding only; status and bounds were checked
    k, s, p = tuple(cs["kernel"]), tuple(cs["stride"]), tuple(cs["pre"])
    if cs["mode"] == 0:
        expected = ref.max_pool2d_ref(x, k, s, p, tuple(cs["dil"]), bool(cs["ceil_mode"]))
        np.testing.assert_array_equal(y, expected.astype(np.float32))
    else:
        args = (x, k, s, p, bool(cs["ceil_mode"]), bool(cs["cip"]), cs["div"] or None)
        ref.assert_within_bound(y, ref.avg_pool2d_ref(*args), ref.avg_pool2d_bound(*args), what="avg_pool2d")


# ---------------------------------------------------------------- NULL in every position ---

def _calls():
    """(name, function, [(arg, required)]) for every entry point with a pointer."""
    d, _ = make_desc(0, 1, [1, 2, 5, 5])
    wd, _ = make_desc(0, 1, [3, 2, 3, 3])
    conv = ffi.new("pask_conv2d_params_t *", {"stride": (1, 1), "pad_pre": (1, 1), "pad_post": (1, 1),
                                              "dilation": (1, 1), "groups": 1})
    pool = ffi.new("pask_pool2d_params_t *", {"mode": 0, "kernel": (2, 2), "stride": (2, 2), "dilation": (1, 1)})
    opts = ffi.new("pask_options_t *")
    assert lib.pask_options_create(opts) == SUCCESS
    opt = ffi.gc(opts[0], lib.pask_options_destroy)
    assert lib.pask_options_set(opt, b"cache_dir", _cache.encode()) == SUCCESS
    src = np.zeros(16, np.uint8)
    dst = np.zeros(16, np.uint8)
    path = (_cache + "/null-fuzz.json").encode()
    R, O = True, False  # required / optional
    return [
        ("pask_options_create", [(ffi.new("pask_options_t *"), R)], True),
        ("pask_options_set", [(opt, R), (b"trace", R), (b"1", R)], False),
        ("pask_context_get_num_threads", [(CTX, R), (ffi.new("int *"), R)], False),
        ("pask_context_get_target", [(CTX, R), (ffi.new("const char **"), R)], False),
        ("pask_tensor_desc_get", [(d, R), (ffi.new("pask_dtype_t *"), O), (ffi.new("pask_layout_t *"), O),
                                  (ffi.new("int *"), O), (ffi.new("int64_t[8]"), O)], False),
        ("pask_tensor_desc_get_size", [(d, R), (ffi.new("size_t *"), R)], False),
        ("pask_conv2d_output_dims", [(conv, R), (d, R), (wd, R), (ffi.new("int64_t[4]"), R)], False),
        ("pask_pool2d_output_dims", [(pool, R), (d, R), (ffi.new("int64_t[4]"), R)], False),
        ("pask_device_count", [(0, None), (ffi.new("int *"), R)], False),
        ("pask_memcpy", [(CTX, R), (ffi.cast("void *", dst.ctypes.data), R),
                         (ffi.cast("void *", src.ctypes.data), R), (16, None), (0, None)], False),
        ("pask_synchronize", [(CTX, R)], False),
        ("pask_prime_thread", [(CTX, R), (ffi.new("int *"), O)], False),
        ("pask_solver_count", [(ffi.new("int *"), R)], False),
        ("pask_solver_info", [(0, None), (ffi.new("int *"), O), (ffi.new("char **"), O),
                              (ffi.new("pask_op_t *"), O), (ffi.new("pask_device_type_t *"), O)], False),
        ("pask_context_get_stats", [(CTX, R), (ffi.new("pask_stats_t *"), R)], False),
        ("pask_context_get_policy", [(CTX, R), (ffi.new("char **"), R)], False),
        ("pask_context_set_resident_capacity", [(CTX, R), (256, None)], False),
        ("pask_context_wait_loads", [(CTX, R), (0, None), (ffi.new("int *"), O)], False),
        ("pask_context_export_trace", [(CTX, R), (path, R)], False),
        ("pask_context_save_record", [(CTX, R), (path, R)], False),
        ("pask_hint_conv2d", [(ORACLE, R), (conv, R), (ffi.NULL, O), (d, R), (wd, R), (ffi.NULL, O),
                              (ffi.NULL, O)], False),
        ("pask_hint_pool2d", [(ORACLE, R), (pool, R), (d, R)], False),
        ("pask_hint_clear", [(ORACLE, R)], False),
    ], (d, wd, opt, src, dst)  # kept alive: the calls hold raw pointers into them


CALLS, _KEEP = _calls()


@fuzz_settings
@given(which=st.integers(0, len(CALLS) - 1), mask=st.integers(0, 2**6 - 1))
def test_null_in_every_position(which, mask):
    name, args, frees = CALLS[which]
    call = []
    null_required = False
    for i, (value, required) in enumerate(args):
        if required is not None and mask >> i & 1:
            call.append(ffi.NULL)
            null_required |= required
        else:
            call.append(value)
    status = getattr(lib, name)(*call)
    check_status(status, name)
    if null_required:
        assert status == NULLPTR and "NULL" in message(), (name, mask, message())
    else:
        assert status == SUCCESS, (name, mask, message())
        if frees:  # pask_options_create handed out an object
            lib.pask_options_destroy(call[0][0])


@fuzz_settings
@given(capacity=st.one_of(st.integers(0, 1000), edge), timeout=st.one_of(st.integers(0, 5), edge),
       index=st.one_of(st.integers(-2, 40), edge.filter(lambda v: -2**31 <= v < 2**31)),
       stream=st.sampled_from([0, 1, 0xDEAD]), kind=st.integers(-2, 4),
       device=st.integers(-3, 5), device_index=st.sampled_from([0, 1, -1, 2**31 - 1]))
def test_scalar_arguments_out_of_range(capacity, timeout, index, stream, kind, device, device_index):
    check_status(lib.pask_context_set_resident_capacity(ORACLE, capacity), "set_resident_capacity")
    assert (message() == "") == (capacity >= 0)
    idle = ffi.new("int *", 7)
    status = lib.pask_context_wait_loads(ORACLE, min(timeout, 5), idle)
    check_status(status, "wait_loads")
    assert (status == SUCCESS) == (timeout >= 0)
    assert idle[0] in ((0, 1) if status == SUCCESS else (7,))
    count = ffi.new("int *")
    assert lib.pask_solver_count(count) == SUCCESS
    name = ffi.new("char **")
    status = lib.pask_solver_info(index, ffi.NULL, name, ffi.NULL, ffi.NULL)
    check_status(status, "solver_info")
    assert (status == SUCCESS) == (0 <= index < count[0])
    status = lib.pask_set_stream(ORACLE, ffi.cast("void *", stream))
    check_status(status, "set_stream")
    assert (status == SUCCESS) == (stream == 0)
    src, dst = np.arange(8, dtype=np.uint8), np.zeros(8, np.uint8)
    status = lib.pask_memcpy(ORACLE, ffi.cast("void *", dst.ctypes.data), ffi.cast("void *", src.ctypes.data), 8, enum(kind))
    check_status(status, "memcpy")
    assert (status == SUCCESS) == (0 <= kind <= 2)
    assert (dst == (src if status == SUCCESS else 0)).all()
    out = ffi.new("pask_context_t *", ffi.cast("pask_context_t", 0x4321))
    status = lib.pask_context_create(out, enum(device), device_index, _KEEP[2])
    check_status(status, "context_create")
    if status == SUCCESS:
        lib.pask_context_destroy(out[0])
        assert device in (0, 1) and device_index >= 0
    else:
        assert out[0] == ffi.cast("pask_context_t", 0x4321)
    assert lib.pask_context_set_resident_capacity(ORACLE, 256) == SUCCESS


# Cases the fuzz found under UBSan (signed overflow, silent in a normal build):
# a stride near INT64_MAX is valid when the output is one wide, and the pool's
# ceil-mode size and the kernels' first in-bounds column once formed
# "extent + stride - 1". Under tools/sanitize.sh these die without the fix.
@pytest.mark.parametrize("stride", [INT64_MAX, INT64_MAX - 1, 2**62])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_strides_near_int64_max(stride, layout):
    rng = np.random.default_rng(stride % 1000)
    x = rng.uniform(-1, 1, (2, 3, 5, 4)).astype(np.float32)
    xl = x if layout == "NCHW" else np.ascontiguousarray(ref.nchw_to_nhwc(x))
    back = (lambda y: y) if layout == "NCHW" else ref.nhwc_to_nchw

    def only(solver):  # each kernel in turn, not whichever the ranking picks
        return paskdnn.Context(cache_dir=_cache, num_threads=2, solvers=[solver])

    def check(y, solver, expected, bound=None):
        assert paskdnn.last_solver() == solver
        y = back(np.asarray(y))
        assert y.shape == expected.shape
        if bound is None:
            np.testing.assert_array_equal(y, expected.astype(np.float32))
        else:
            ref.assert_within_bound(y, expected, bound)

    pool = only("pool2d.direct")
    for ceil in (False, True):
        kw = dict(stride=stride, padding=1, ceil_mode=ceil, layout=layout, context=pool)
        check(paskdnn.max_pool2d(xl, 2, **kw), "pool2d.direct", ref.max_pool2d_ref(x, 2, stride, 1, 1, ceil))
        args = (x, 2, stride, 1, ceil, True, None)
        check(paskdnn.avg_pool2d(xl, 2, **kw), "pool2d.direct", ref.avg_pool2d_ref(*args), ref.avg_pool2d_bound(*args))
    pool.close()
    dense = rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)
    depthwise = rng.uniform(-1, 1, (6, 1, 3, 3)).astype(np.float32)
    for solver, groups, w in (("conv2d.direct", 1, dense), ("conv2d.im2col_gemm", 1, dense),
                              ("conv2d.depthwise", 3, depthwise)):
        ctx = only(solver)
        wl = w if layout == "NCHW" else np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        y = paskdnn.conv2d(xl, wl, None, (1, stride), 1, 1, groups, layout=layout,
                           weight_layout="OIHW" if layout == "NCHW" else "OHWI", context=ctx)
        a = (x, w, None, (1, stride), 1, 1, groups)
        check(y, solver, ref.conv2d_ref(*a), ref.conv2d_bound(*a))
        ctx.close()


@pytest.mark.parametrize("nbytes", [2**64 - 1, 2**64 - 63])
def test_malloc_of_a_size_near_size_max_fails(nbytes):
    p = ffi.new("void **")
    status = lib.pask_malloc(CTX, nbytes, p)
    if status == SUCCESS:
        lib.pask_free(CTX, p[0])
    assert status == OOM and message()


@fuzz_settings
@given(nbytes=st.one_of(st.integers(0, 4096), st.sampled_from([2**63, 2**62, 2**48, 2**64 - 64, 2**64 - 4096])))
def test_malloc_sizes(nbytes):
    p = ffi.new("void **", ffi.cast("void *", 0x77))
    status = lib.pask_malloc(CTX, nbytes, p)
    check_status(status, "pask_malloc")
    if status == SUCCESS:
        assert nbytes <= 4096
        buf = ffi.buffer(p[0], max(nbytes, 1))
        buf[:] = b"\x5a" * max(nbytes, 1)  # the whole allocation is usable
        assert lib.pask_free(CTX, p[0]) == SUCCESS
    else:
        assert status == OOM and p[0] == ffi.cast("void *", 0x77)
    assert lib.pask_free(CTX, ffi.NULL) == SUCCESS
