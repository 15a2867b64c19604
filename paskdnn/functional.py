"""The functional API: torch.nn.functional's names, argument order and
semantics, on numpy float32 arrays (CPU contexts) or GPU arrays (CUDA contexts:
torch tensors, cupy arrays, paskdnn.DeviceArray or any DLPack array; float32,
float16, bfloat16).

Every op validates its Python arguments here (types, dtypes, contiguity) and
leaves shape and parameter checks to the C core, whose messages come back as
paskdnn.Error subclasses. On any error nothing is written to ``out``.
"""
from __future__ import annotations

import operator
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _arrays, _lib
from ._arrays import DevView
from ._context import Context, resolve
from ._errors import UnsupportedError

IntPair = Union[int, Tuple[int, int]]
Padding = Union[int, str, Sequence[Any]]

_LAYOUTS = {"NCHW": 1, "NHWC": 2}
_WEIGHT_LAYOUTS = {"OIHW": 1, "OHWI": 2}
_ACTIVATIONS = {None: 0, "none": 0, "relu": 1, "relu6": 2}
_FLOAT32 = 0
_ROW_MAJOR = 0

__all__ = [
    "TensorSpec",
    "conv2d",
    "linear",
    "matmul",
    "gemm",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
]


# ---- argument helpers -------------------------------------------------------


class TensorSpec:
    """The shape (and dtype) of a tensor without its data, for hints:
    ``ctx.hint("conv2d", TensorSpec((1, 64, 56, 56)), TensorSpec((64, 64, 3, 3)), padding=1)``.
    Plain tuples are accepted wherever a hint takes a tensor."""

    __slots__ = ("shape", "dtype", "dcode")

    def __init__(self, shape: Sequence[int], dtype: Any = "float32") -> None:
        self.shape = tuple(_int(d, "shape") for d in shape)
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        codes = {"float32": 0, "float16": 1, "bfloat16": 2}
        if name not in codes:
            raise TypeError(f"TensorSpec dtype must be float32, float16 or bfloat16, got {name}")
        self.dtype, self.dcode = name, codes[name]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"TensorSpec({self.shape}, {self.dtype})"


class _HintTarget:
    """Passed as ``context=`` by Context.hint: the op describes an upcoming
    Problem to this context (no data is read or written) instead of running."""

    __slots__ = ("handle", "cuda")

    def __init__(self, handle: Any, cuda: bool = False) -> None:
        self.handle = handle
        self.cuda = cuda


class _PrepareTarget:
    """Passed as ``context=`` by the graph Runner: the op validates its
    arguments and returns a :class:`_Prepared` call (descriptors and pointers
    fixed) instead of running, so a graph's steady state pays one C call per
    layer and no Python argument handling."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx


class _Prepared:
    """A validated primitive call with its arguments bound; calling it runs it.
    Its descriptors are the shared, self-freeing ones of the argument cache
    (``_EAGER``): the bound arguments keep them alive."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Any, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __call__(self) -> None:
        status = self.fn(*self.args)
        if status:
            _lib.check(status)


class _Call:
    """One op call's target: the C handle, whether it only hints (or only
    prepares), whether the device is a GPU, and the stream to launch on."""

    __slots__ = ("handle", "hint", "cuda", "stream", "ctx", "prepare")

    def __init__(self, handle: Any, hint: bool, cuda: bool, stream: Any, ctx: Any = None,
                 prepare: bool = False) -> None:
        self.handle, self.hint, self.cuda, self.stream, self.ctx = handle, hint, cuda, stream, ctx
        self.prepare = prepare

    def bind_stream(self, like: Any) -> None:
        """Makes the calling thread's ops on this context run on the stream."""
        if self.cuda and not self.hint and not self.prepare:
            ffi, lib = _lib.load()
            s = _arrays.stream_of(self.stream, like if isinstance(like, DevView) else None)
            _lib.check(lib.pask_set_stream(self.handle, ffi.cast("void *", s)))


def _resolve(context: Any, stream: Any = None) -> _Call:
    if isinstance(context, _HintTarget):
        return _Call(context.handle, True, context.cuda, None)
    if isinstance(context, _PrepareTarget):
        ctx = context.ctx
        return _Call(resolve(ctx), False, ctx.device.startswith(("cuda", "hip")), None, ctx, prepare=True)
    ctx = context
    handle = resolve(ctx)
    if ctx is None:
        from ._context import get_default_context

        ctx = get_default_context()
    cuda = ctx.device.startswith(("cuda", "hip"))  # any GPU context
    if stream is not None and not cuda:
        raise ValueError("stream= applies to GPU contexts only")
    return _Call(handle, False, cuda, stream, ctx)


def _dcode(a: Any) -> int:
    return a.dcode if isinstance(a, (DevView, TensorSpec)) else 0


def _same_dtype(*arrays: Any) -> int:
    codes = {_dcode(a) for a in arrays if a is not None}
    if len(codes) > 1:
        names = sorted(_arrays._NAMES[c] for c in codes)
        raise TypeError(f"all tensors of one op must share a dtype, got {', '.join(names)}")
    return codes.pop() if codes else 0


def _spec(a: Any, name: str) -> Any:
    if isinstance(a, np.ndarray):
        return TensorSpec(a.shape, a.dtype)
    if not isinstance(a, (TensorSpec, tuple, list)) and _arrays.is_device_array(a):
        v = _arrays.view(a, name)
        return TensorSpec(v.shape, v.dtype)
    if isinstance(a, TensorSpec):
        return a
    if isinstance(a, (tuple, list)):
        return TensorSpec(a)
    raise TypeError(f"{name} must be an array, a TensorSpec or a shape tuple in a hint, got {type(a).__name__}")


def _array(a: Any, name: str, contiguous: bool = True) -> np.ndarray:
    if isinstance(a, (TensorSpec, DevView)):
        return a  # type: ignore[return-value]
    if not isinstance(a, np.ndarray) and _arrays.is_device_array(a):
        return _arrays.view(a, name)  # type: ignore[return-value]
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must be float32 on the CPU, got {a.dtype} (use {name}.astype(np.float32))")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray({name}))")
    return a


def _out_array(out: Any, shape: Tuple[int, ...], like: Any = None) -> np.ndarray:
    if not isinstance(out, np.ndarray) and _arrays.is_device_array(out):
        v = _arrays.view(out, "out")
        if tuple(v.shape) != tuple(shape):
            raise ValueError(f"out has shape {tuple(v.shape)} but the result has shape {tuple(shape)}")
        if like is not None and v.dcode != _dcode(like):
            raise TypeError(f"out is {v.dtype} but the inputs are {_arrays._NAMES[_dcode(like)]}")
        return out
    _array(out, "out")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)} but the result has shape {tuple(shape)}")
    return out


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(v).__name__}") from None


def _pair(v: Any, name: str) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return _int(v[0], name), _int(v[1], name)
    i = _int(v, name)
    return i, i


def _padding(padding: Padding, kernel: Tuple[int, int], dilation: Tuple[int, int],
             stride: Tuple[int, int]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((top, bottom), (left, right)) from torch's forms or explicit pairs."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out[0], out[1]
        raise ValueError(f"padding must be 'same', 'valid', an int or pairs, got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int, (ph, pw) or ((top, bottom), (left, right)), got {padding!r}")
        sides = []
        for p in padding:
            if isinstance(p, (tuple, list)):
                if len(p) != 2:
                    raise ValueError(f"padding pairs must be (before, after), got {p!r}")
                sides.append((_int(p[0], "padding"), _int(p[1], "padding")))
            else:
                i = _int(p, "padding")
                sides.append((i, i))
        return sides[0], sides[1]
    i = _int(padding, "padding")
    return (i, i), (i, i)


def _activation(activation: Optional[str]) -> int:
    if activation is not None and not isinstance(activation, str):
        raise TypeError("activation must be None, 'relu' or 'relu6'")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected None, 'relu' or 'relu6'")
    return _ACTIVATIONS[activation]


def _layout(layout: str, table: dict, name: str) -> int:
    if not isinstance(layout, str):
        raise TypeError(f"{name} must be a string")
    if layout not in table:
        raise ValueError(f"unknown {name} {layout!r}; expected one of {sorted(table)}")
    return table[layout]


def _empty(like: Any, shape: Sequence[int], call: _Call) -> Any:
    if isinstance(like, DevView):
        return _arrays.empty_like_kind(like, shape, call.ctx)
    return np.empty(tuple(shape), np.float32)


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number")
    return float(v)


class _Descs:
    """Creates tensor descriptors and frees them on exit (hints: used once)."""

    def __init__(self) -> None:
        self.ffi, self.lib = _lib.load()
        self._made: list = []

    def __enter__(self) -> "_Descs":
        return self

    def make(self, layout: int, dims: Sequence[int], dcode: int = _FLOAT32) -> Any:
        out = self.ffi.new("pask_tensor_desc_t *")
        _lib.check(self.lib.pask_tensor_desc_create(out, dcode, layout, len(dims), list(dims)))
        self._made.append(out[0])
        return out[0]

    def __exit__(self, *exc: Any) -> None:
        for d in self._made:
            self.lib.pask_tensor_desc_destroy(d)


class _KeptDescs(_Descs):
    """Descriptors that outlive the call: freed when the last reference to them
    goes (the argument cache below, and prepared calls, hold them)."""

    def make(self, layout: int, dims: Sequence[int], dcode: int = _FLOAT32) -> Any:
        out = self.ffi.new("pask_tensor_desc_t *")
        _lib.check(self.lib.pask_tensor_desc_create(out, dcode, layout, len(dims), list(dims)))
        return self.ffi.gc(out[0], self.lib.pask_tensor_desc_destroy)

    def __exit__(self, *exc: Any) -> None:
        pass


# Calls (eager and prepared) with arguments seen before reuse their descriptors
# and parameter structs (the C library validated them the first time): an eager
# call then pays for its arrays' pointers, the stream and one C call. Keyed by
# every normalised argument that shapes a descriptor; bounded, oldest dropped
# first (entries in use elsewhere stay alive until released).
_EAGER: dict = {}
_EAGER_MAX = 512


def _remember(key: tuple, plan: tuple) -> None:
    # Insert, then trim to the bound: whatever ran between another call's check
    # and its insert (a thread, or a finaliser that the oldest plan's release set
    # off), the last trim of a call leaves at most _EAGER_MAX entries.
    _EAGER[key] = plan
    while len(_EAGER) > _EAGER_MAX:
        try:
            del _EAGER[next(iter(_EAGER))]
        except (StopIteration, KeyError, RuntimeError):  # another thread trimmed it first
            break


def _check_residual(r: Any, shape: Tuple[int, ...]) -> None:
    if r is not None and tuple(r.shape) != tuple(shape):
        raise ValueError(f"residual has shape {r.shape} but the output has shape {tuple(shape)}")


def _ptr(ffi: Any, a: Any, call: Optional[_Call] = None) -> Any:
    if a is None:
        return ffi.NULL
    if isinstance(a, np.ndarray):
        if call is not None and call.cuda:
            raise TypeError("a CUDA context takes GPU arrays (torch, cupy, DLPack or paskdnn.asarray(x)), not numpy")
        return ffi.cast("void *", a.__array_interface__["data"][0])
    v = a if isinstance(a, DevView) else _arrays.view(a, "array")
    if call is not None and not call.cuda:
        raise TypeError("a CPU context takes numpy arrays; this array lives on a GPU")
    return ffi.cast("void *", v.ptr)


def _nchw_dims(x: np.ndarray, layout: int) -> Tuple[int, int, int, int]:
    if layout == 1:
        n, c, h, w = x.shape
    else:
        n, h, w, c = x.shape
    return n, c, h, w


def _physical(dims: Sequence[int], layout: int) -> Tuple[int, ...]:
    n, c, h, w = dims
    return (n, c, h, w) if layout == 1 else (n, h, w, c)


def _batched(x: np.ndarray, name: str) -> Tuple[np.ndarray, bool]:
    if x.ndim == 3:
        if isinstance(x, TensorSpec):
            return TensorSpec((1,) + x.shape, x.dtype), True  # type: ignore[return-value]
        if isinstance(x, DevView):
            return x.reshaped((1,) + x.shape), True  # type: ignore[return-value]
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (batched) or 3-D (unbatched), got {x.ndim}-D shape {x.shape}")
    return x, False


# ---- conv2d -----------------------------------------------------------------


def conv2d(
    input: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    layout: str = "NCHW",
    weight_layout: str = "OIHW",
    activation: Optional[str] = None,
    residual: Optional[np.ndarray] = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """2-D convolution (cross-correlation), like ``torch.nn.functional.conv2d``,
    with a fused epilogue: ``out = act(alpha*conv + beta*out + bias + residual)``.

    Args:
        input: (N, C, H, W) for ``layout="NCHW"`` or (N, H, W, C) for ``"NHWC"``;
            3-D unbatched input gives unbatched output.
        weight: (O, C/groups, kH, kW) for ``weight_layout="OIHW"`` or
            (O, kH, kW, C/groups) for ``"OHWI"``.
        bias: (O,) or None.
        stride, dilation: int or (h, w).
        padding: int, (ph, pw), ((top, bottom), (left, right)), ``"valid"`` or
            ``"same"`` (stride 1 only; an odd total puts the extra row/column
            at the bottom/right, as PyTorch does).
        groups: input and output channels are split into this many groups.
        activation: None, ``"relu"`` or ``"relu6"``.
        residual: an array of the output's shape added before the activation.
        alpha, beta: scale the convolution and the prior content of ``out``
            (``beta != 0`` needs ``out``).
        out: where to write the result (float32, C-contiguous, right shape).
        context: a :class:`paskdnn.Context` (default: the process-wide one).
        stream: GPU contexts: the stream to run on (an int handle or a stream
            object); default: the input framework's current stream.

    Returns:
        The output array, (N, O, OH, OW) or (N, OH, OW, O) (``out`` if given),
        of the input's kind on a GPU (torch in, torch out).
    """
    call = _resolve(context, stream)
    handle = call.handle
    hinting = call.hint
    if hinting:
        input, weight = _spec(input, "input"), _spec(weight, "weight")
        bias = None if bias is None or bias is False else (TensorSpec((weight.shape[0],), weight.dtype)
                                                           if bias is True else _spec(bias, "bias"))
        residual = None if residual is None else _spec(residual, "residual")
    lay = _layout(layout, _LAYOUTS, "layout")
    wlay = _layout(weight_layout, _WEIGHT_LAYOUTS, "weight_layout")
    x = _array(input, "input")
    w = _array(weight, "weight")
    x4, unbatched = _batched(x, "input")
    if w.ndim != 4:
        raise ValueError(f"weight must be 4-D, got shape {w.shape}")
    if wlay == 1:
        o, ig, kh, kw = w.shape
    else:
        o, kh, kw, ig = w.shape
    st = _pair(stride, "stride")
    dil = _pair(dilation, "dilation")
    (pt, pb), (pl, pr) = _padding(padding, (kh, kw), dil, st)
    g = _int(groups, "groups")
    act = _activation(activation)
    a = _float(alpha, "alpha")
    b = _float(beta, "beta")
    if b != 0.0 and out is None and not hinting:
        raise ValueError("beta != 0 reads the prior output: pass out=")
    if bias is not None:
        bias = _array(bias, "bias")
        if bias.ndim != 1:
            raise ValueError(f"bias must be 1-D, got shape {bias.shape}")
    r = None if residual is None else _array(residual, "residual")
    dc = _same_dtype(x, w, bias, r)
    ffi, lib = _lib.load()
    key = plan = None
    if not hinting:
        key = ("conv2d", lay, wlay, tuple(x.shape), (o, ig, kh, kw), st, dil, pt, pb, pl, pr, g, act, a, b,
               None if bias is None else tuple(bias.shape), r is not None, dc)
        plan = _EAGER.get(key)
    if plan is None:
        with (_Descs() if hinting else _KeptDescs()) as d:
            xd = d.make(lay, _nchw_dims(x4, lay), dc)
            wd = d.make(wlay, (o, ig, kh, kw), dc)
            params = ffi.new("pask_conv2d_params_t *", {
                "stride": st, "pad_pre": (pt, pl), "pad_post": (pb, pr), "dilation": dil, "groups": g})
            dims = ffi.new("int64_t[4]")
            _lib.check(lib.pask_conv2d_output_dims(params, xd, wd, dims))
            ydims = tuple(int(v) for v in dims)
            shape = _physical(ydims, lay)
            user_shape = shape[1:] if unbatched else shape
            bd = d.make(_ROW_MAJOR, (bias.shape[0],), dc) if bias is not None else ffi.NULL
            _check_residual(r, user_shape)
            rd = d.make(lay, ydims, dc) if r is not None else ffi.NULL
            ep = ffi.new("pask_epilogue_t *", {"alpha": a, "beta": b, "activation": act})
            if hinting:
                _lib.check(lib.pask_hint_conv2d(handle, params, ep, xd, wd, bd, rd))
                return None  # type: ignore[return-value]
            plan = (xd, wd, bd, rd, d.make(lay, ydims, dc), params, ep, user_shape)
            _remember(key, plan)
    xd, wd, bd, rd, yd, params, ep, user_shape = plan
    _check_residual(r, user_shape)  # not in the key
    y = _empty(x, user_shape, call) if out is None else _out_array(out, user_shape, x)
    ptrs = [_ptr(ffi, t, call) for t in (x, w, bias, r, y)]  # r: residual, viewed once above
    args = (handle, params, ep, xd, ptrs[0], wd, ptrs[1], bd, ptrs[2], rd, ptrs[3], yd, ptrs[4])
    if call.prepare:
        return _Prepared(lib.pask_conv2d_forward, args)  # type: ignore[return-value]
    call.bind_stream(x)
    _lib.check(lib.pask_conv2d_forward(*args))
    return y


# ---- gemm, linear, matmul -----------------------------------------------------


def _matrix(a: Any, name: str) -> Tuple[np.ndarray, int]:
    """A 2-D float32 array whose rows may be strided; returns (array, leading dim)."""
    a = _array(a, name, contiguous=False)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if isinstance(a, (TensorSpec, DevView)):
        return a, max(a.shape[1], 1)  # type: ignore[return-value]
    s0, s1 = a.strides
    if a.shape[1] > 1 and s1 != 4:
        raise ValueError(f"{name} must have contiguous rows (unit column stride)")
    if a.shape[0] > 1 and (s0 % 4 or s0 < 4 * a.shape[1]):
        raise ValueError(f"{name} must have a positive row stride of whole elements (use np.ascontiguousarray)")
    ld = s0 // 4 if a.shape[0] > 1 else a.shape[1]
    return a, max(ld, 1)


def _gemm_call(call: _Call, trans_a: bool, trans_b: bool, m: int, n: int, k: int, a: Any, lda: int,
               b: Any, ldb: int, bias: Any, c: Any, ldc: int, alpha: float, beta: float, act: int,
               dc: int = _FLOAT32) -> Optional[_Prepared]:
    ffi, lib = _lib.load()
    key = ("epilogue", alpha, beta, act)  # the struct is shared (see _EAGER)
    ep = _EAGER.get(key)
    if ep is None:
        ep = ffi.new("pask_epilogue_t *", {"alpha": alpha, "beta": beta, "activation": act})
        _remember(key, ep)
    if call.hint:
        _lib.check(lib.pask_hint_gemm(call.handle, dc, int(trans_a), int(trans_b), m, n, k, ep, lda, ldb,
                                      ldc, int(bias is not None)))
        return
    ptrs = [_ptr(ffi, t, call) for t in (a, b, bias, c)]
    args = (call.handle, dc, int(trans_a), int(trans_b), m, n, k, ep, ptrs[0], lda, ptrs[1], ldb, ptrs[2], ptrs[3], ldc)
    if call.prepare:
        return _Prepared(lib.pask_gemm, args)
    call.bind_stream(a)
    _lib.check(lib.pask_gemm(*args))


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: Optional[np.ndarray] = None,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    trans_a: bool = False,
    trans_b: bool = False,
    bias: Optional[np.ndarray] = None,
    activation: Optional[str] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """``C = act(alpha * op(a) @ op(b) + beta * C + bias)``, BLAS-style.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` is true. Matrices may have
    strided rows (e.g. column slices); the row stride becomes the leading
    dimension. ``bias`` has length N and is added to every row. With ``c`` the
    result is written into it and returned; ``beta != 0`` needs ``c``.
    """
    call = _resolve(context, stream)
    hinting = call.hint
    if hinting:
        a, b = _spec(a, "a"), _spec(b, "b")
        c = None if c is None else _spec(c, "c")
    c_user = c
    if c is not None and not isinstance(c, np.ndarray):
        c = _array(c, "c")
    a, lda = _matrix(a, "a")
    b, ldb = _matrix(b, "b")
    m, ka = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if ka != kb:
        raise ValueError(f"inner dimensions differ: op(a) is {m}x{ka}, op(b) is {kb}x{n}")
    al, be = _float(alpha, "alpha"), _float(beta, "beta")
    act = _activation(activation)
    if hinting and bias is not None:
        bias = TensorSpec((n,), a.dtype) if bias is True else _spec(bias, "bias")
    if bias is not None:
        bias = _array(bias, "bias")
        if bias.shape != (n,):
            raise ValueError(f"bias must have shape ({n},), got {bias.shape}")
    dc = _same_dtype(a, b, bias, c)
    if hinting:
        ldc = n if c is None else _matrix(c, "c")[1]
        _gemm_call(call, bool(trans_a), bool(trans_b), m, n, ka, None, lda, None, ldb, bias, None, ldc, al, be, act,
                   dc)
        return None  # type: ignore[return-value]
    if c is None:
        if be != 0.0:
            raise ValueError("beta != 0 reads c: pass c=")
        c = c_user = _empty(a, (m, n), call)
        ldc = n
    else:
        c, ldc = _matrix(c, "c")
        if isinstance(c, np.ndarray) and not c.flags.writeable:
            raise ValueError("c is read-only")
        if tuple(c.shape) != (m, n):
            raise ValueError(f"c must have shape ({m}, {n}), got {tuple(c.shape)}")
    _gemm_call(call, bool(trans_a), bool(trans_b), m, n, ka, a, lda, b, ldb, bias, c_user, ldc, al, be, act, dc)
    return c_user


def linear(
    input: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    activation: Optional[str] = None,
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """``y = act(input @ weight.T + bias)`` like ``torch.nn.functional.linear``:
    input (..., in_features), weight (out_features, in_features), bias (out_features,)."""
    call = _resolve(context, stream)
    hinting = call.hint
    if hinting:
        input, weight = _spec(input, "input"), _spec(weight, "weight")
        if bias is not None:
            bias = TensorSpec((weight.shape[0],), weight.dtype) if bias is True else _spec(bias, "bias")
    x = _array(input, "input")
    w = _array(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {w.shape}")
    if x.ndim < 1:
        raise ValueError("input must have at least 1 dimension")
    nout, nin = w.shape
    if x.shape[-1] != nin:
        raise ValueError(f"input has {x.shape[-1]} features but weight expects {nin}")
    act = _activation(activation)
    if bias is not None:
        bias = _array(bias, "bias")
        if bias.shape != (nout,):
            raise ValueError(f"bias must have shape ({nout},), got {bias.shape}")
    shape = tuple(x.shape[:-1]) + (nout,)
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    dc = _same_dtype(x, w, bias)
    if hinting:
        if rows:
            _gemm_call(call, False, True, rows, nout, nin, None, nin, None, nin, bias, None, nout, 1.0, 0.0, act, dc)
        return None  # type: ignore[return-value]
    y = _empty(x, shape, call) if out is None else _out_array(out, shape, x)
    if rows == 0:
        return y
    prepared = _gemm_call(call, False, True, rows, nout, nin, x, nin, w, nin, bias, y, nout, 1.0, 0.0, act, dc)
    return prepared if call.prepare else y  # type: ignore[return-value]


def matmul(a: np.ndarray, b: np.ndarray, *, out: Optional[np.ndarray] = None,
           context: Optional[Context] = None, stream: Any = None) -> np.ndarray:
    """``numpy.matmul`` semantics: 1-D operands are promoted and the added axis
    removed, N-D operands are stacks of matrices broadcast over leading axes."""
    call = _resolve(context, stream)
    hinting = call.hint
    if hinting:
        a, b = _spec(a, "a"), _spec(b, "b")
    a = _array(a, "a")
    b = _array(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul does not take scalars")
    dc = _same_dtype(a, b)
    if hinting:
        a2 = TensorSpec((1,) + a.shape, a.dtype) if a.ndim == 1 else a
        b2 = TensorSpec(b.shape + (1,), b.dtype) if b.ndim == 1 else b
    elif isinstance(a, DevView) or isinstance(b, DevView):
        a2 = a.reshaped((1,) + a.shape) if a.ndim == 1 else a
        b2 = b.reshaped(b.shape + (1,)) if b.ndim == 1 else b
    else:
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    kb, n = b2.shape[-2:]
    if k != kb:
        raise ValueError(f"matmul: a has {k} columns but b has {kb} rows")
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {a.shape[:-2]} and {b.shape[:-2]} do not broadcast") from None
    shape = batch + (m, n)
    final = shape
    if a.ndim == 1:
        final = final[:-2] + final[-1:]
    if b.ndim == 1:
        final = final[:-1]
    single = b2.ndim == 2 and a2.ndim >= 2 and tuple(a2.shape[:-2]) == tuple(batch)
    if hinting:
        if not (0 in shape or k == 0):
            if single:
                rows = int(np.prod(batch, dtype=np.int64)) * m
                _gemm_call(call, False, False, rows, n, k, None, k, None, n, None, None, n, 1.0, 0.0, 0, dc)
            else:
                for _ in np.ndindex(*batch):
                    _gemm_call(call, False, False, m, n, k, None, k, None, n, None, None, n, 1.0, 0.0, 0, dc)
        return None  # type: ignore[return-value]
    y = _empty(a, final, call) if out is None else _out_array(out, final, a)
    if isinstance(a2, DevView):
        if 0 in shape or k == 0:
            raise UnsupportedError("matmul of empty GPU arrays is not supported", 4)
        yv = _arrays.view(y, "out").reshaped(shape)
        if single:
            rows = int(np.prod(batch, dtype=np.int64)) * m
            _gemm_call(call, False, False, rows, n, k, a2, k, b2, n, None, yv, n, 1.0, 0.0, 0, dc)
            return y
        if tuple(a2.shape[:-2]) != tuple(batch) or tuple(b2.shape[:-2]) != tuple(batch):
            raise UnsupportedError("matmul on a GPU broadcasts a 2-D b only; expand the batch dims first", 4)
        for i in range(int(np.prod(batch, dtype=np.int64))):
            _gemm_call(call, False, False, m, n, k, a2.offset(i * m * k, (m, k)), k, b2.offset(i * k * n, (k, n)), n,
                       None, yv.offset(i * m * n, (m, n)), n, 1.0, 0.0, 0, dc)
        return y
    if 0 in shape or k == 0:
        y[...] = 0
        return y
    y3 = y.reshape(shape)
    if single:
        # one GEMM over all stacked rows
        rows = int(np.prod(batch, dtype=np.int64)) * m
        _gemm_call(call, False, False, rows, n, k, a2, k, b2, n, None, y3, n, 1.0, 0.0, 0)
        return y
    ab = np.broadcast_to(a2, batch + (m, k))
    bb = np.broadcast_to(b2, batch + (k, n))
    for idx in np.ndindex(*batch):
        _gemm_call(call, False, False, m, n, k, ab[idx], k, bb[idx], n, None, y3[idx], n, 1.0, 0.0, 0)
    return y


# ---- pooling ----------------------------------------------------------------


def _pool(call: _Call, x: Any, lay: int, mode: int, kernel: Tuple[int, int], stride: Tuple[int, int],
          pads: Tuple[Tuple[int, int], Tuple[int, int]], dilation: Tuple[int, int], ceil_mode: bool,
          count_include_pad: bool, divisor: int, out: Optional[np.ndarray]) -> np.ndarray:
    x4, unbatched = _batched(x, "input")
    ffi, lib = _lib.load()
    (pt, pb), (pl, pr) = pads
    dc = _dcode(x)
    key = plan = None
    if not call.hint:
        key = ("pool2d", lay, tuple(x.shape), mode, kernel, stride, pt, pb, pl, pr, dilation, bool(ceil_mode),
               bool(count_include_pad), divisor, dc)
        plan = _EAGER.get(key)
    if plan is None:
        with (_Descs() if call.hint else _KeptDescs()) as d:
            xd = d.make(lay, _nchw_dims(x4, lay), dc)
            params = ffi.new("pask_pool2d_params_t *", {
                "mode": mode, "kernel": kernel, "stride": stride, "pad_pre": (pt, pl), "pad_post": (pb, pr),
                "dilation": dilation, "ceil_mode": int(bool(ceil_mode)),
                "count_include_pad": int(bool(count_include_pad)), "divisor_override": divisor})
            dims = ffi.new("int64_t[4]")
            _lib.check(lib.pask_pool2d_output_dims(params, xd, dims))
            if call.hint:
                _lib.check(lib.pask_hint_pool2d(call.handle, params, xd))
                return None  # type: ignore[return-value]
            ydims = tuple(int(v) for v in dims)
            shape = _physical(ydims, lay)
            user_shape = shape[1:] if unbatched else shape
            plan = (xd, d.make(lay, ydims, dc), params, user_shape)
            _remember(key, plan)
    xd, yd, params, user_shape = plan
    y = _empty(x, user_shape, call) if out is None else _out_array(out, user_shape, x)
    args = (call.handle, params, xd, _ptr(ffi, x, call), yd, _ptr(ffi, y, call))
    if call.prepare:
        return _Prepared(lib.pask_pool2d_forward, args)  # type: ignore[return-value]
    call.bind_stream(x)
    _lib.check(lib.pask_pool2d_forward(*args))
    return y


def _pool_padding(padding: Any) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    if isinstance(padding, str):
        raise ValueError("pooling padding must be an int or pairs, not a string")
    return _padding(padding, (1, 1), (1, 1), (1, 1))


def max_pool2d(
    input: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Any = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """Max pooling like ``torch.nn.functional.max_pool2d`` (stride defaults to
    kernel_size; padding counts as -inf and is at most half the dilated kernel).
    ``return_indices=True`` is not supported."""
    call = _resolve(context, stream)
    if call.hint:
        input = _spec(input, "input")
    if return_indices:
        raise UnsupportedError("max_pool2d(return_indices=True) is not supported by paskdnn", 4)
    lay = _layout(layout, _LAYOUTS, "layout")
    x = _array(input, "input")
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return _pool(call, x, lay, 0, k, s, _pool_padding(padding), _pair(dilation, "dilation"), ceil_mode, False, 0,
                 out)


def avg_pool2d(
    input: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    *,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """Average pooling like ``torch.nn.functional.avg_pool2d``."""
    call = _resolve(context, stream)
    if call.hint:
        input = _spec(input, "input")
    lay = _layout(layout, _LAYOUTS, "layout")
    x = _array(input, "input")
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    div = 0
    if divisor_override is not None:
        div = _int(divisor_override, "divisor_override")
        if div <= 0:
            raise ValueError(f"divisor_override must be a positive int, got {div}")
    return _pool(call, x, lay, 1, k, s, _pool_padding(padding), (1, 1), ceil_mode, count_include_pad, div, out)


def adaptive_avg_pool2d(
    input: np.ndarray,
    output_size: Union[int, Tuple[Optional[int], Optional[int]]],
    *,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """Adaptive average pooling for output (1, 1) (global average pooling) and
    for output sizes that divide the input evenly (``None`` keeps a size)."""
    call = _resolve(context, stream)
    if call.hint:
        input = _spec(input, "input")
    lay = _layout(layout, _LAYOUTS, "layout")
    x = _array(input, "input")
    x4, _ = _batched(x, "input")
    _, _, h, w = _nchw_dims(x4, lay)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair, got {output_size!r}")
        oh = h if output_size[0] is None else _int(output_size[0], "output_size")
        ow = w if output_size[1] is None else _int(output_size[1], "output_size")
    else:
        oh = ow = _int(output_size, "output_size")
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be positive, got {(oh, ow)}")
    if h % oh or w % ow:
        raise UnsupportedError(
            f"adaptive_avg_pool2d from {h}x{w} to {oh}x{ow}: only sizes that divide the input are supported", 4)
    k = (h // oh, w // ow)
    return _pool(call, x, lay, 1, k, k, ((0, 0), (0, 0)), (1, 1), False, True, 0, out)
