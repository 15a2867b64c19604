"""Call specs: each op's arguments normalised once, and the C plans made from them.

``conv2d_spec``, ``gemm_spec``, ``linear_spec``, ``matmul_spec`` and the pool
specs take an op's public arguments (torch's names and order) and check them
once into a :class:`Spec`: the ``key`` of its prepared C call (every argument
that shapes the plan's descriptors, parameters and epilogue) and the arrays of
this call (``TensorSpec`` shapes in a hint). Three things consume a spec:

* :func:`run` (the eager ops in functional.py) executes the spec's plan with
  the arrays' pointers and the stream as arguments;
* :func:`hint` (``Context.hint``) hints the plan's Problem;
* :func:`prepare` (``graph.Runner``) binds the pointers once into a
  :class:`Bound` call that a run executes with one C call.

Plans are made with ``pask_plan_create_*`` and kept in ``PLANS`` (bounded,
oldest first out) under (spec key, context handle): a call seen before on a
context pays for its pointers and one ``pask_plan_execute``. A cached plan
holds the context's handle, so the C context is not freed, nor its address
reused, while a plan made for it is cached.

This module knows contexts only through what they offer (``_h()``,
``device``, ``_gpu``, ``_use_stream``): it imports nothing of paskdnn above
_lib and _arrays, so the package's modules import each other in no circle.
"""
from __future__ import annotations

import math
import operator
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _arrays, _lib
from ._arrays import DevView
from ._errors import ShapeMismatchError, UnsupportedError

C = _lib.C

# Public spellings -> the cdef's enum names (the values are read from the cdef).
LAYOUTS = {"NCHW": "PASK_LAYOUT_NCHW", "NHWC": "PASK_LAYOUT_NHWC"}
WEIGHT_LAYOUTS = {"OIHW": "PASK_LAYOUT_NCHW", "OHWI": "PASK_LAYOUT_NHWC"}
# torch.nn.functional's names; "gelu_tanh" is gelu(approximate="tanh").
ACTIVATIONS = {None: "PASK_ACTIVATION_NONE", "none": "PASK_ACTIVATION_NONE", "relu": "PASK_ACTIVATION_RELU",
               "relu6": "PASK_ACTIVATION_RELU6", "sigmoid": "PASK_ACTIVATION_SIGMOID", "silu": "PASK_ACTIVATION_SILU",
               "hardswish": "PASK_ACTIVATION_HARDSWISH", "hardsigmoid": "PASK_ACTIVATION_HARDSIGMOID",
               "gelu": "PASK_ACTIVATION_GELU", "gelu_tanh": "PASK_ACTIVATION_GELU_TANH",
               "leaky_relu": "PASK_ACTIVATION_LEAKY_RELU", "clamp": "PASK_ACTIVATION_CLAMP"}
# the activations with parameters (eltwise only): name -> how many
ACTIVATION_PARAMS = {"leaky_relu": 1, "clamp": 2}
_ACTIVATION_NAMES = ", ".join(repr(a) for a in ACTIVATIONS)
MAX, AVG = "PASK_POOL_MAX", "PASK_POOL_AVG"


def _unsupported(message: str) -> UnsupportedError:
    return UnsupportedError(message, C.PASK_ERROR_UNSUPPORTED)


# ---- argument helpers -------------------------------------------------------


class TensorSpec:
    """The shape (and dtype) of a tensor without its data, for hints:
    ``ctx.hint("conv2d", TensorSpec((1, 64, 56, 56)), TensorSpec((64, 64, 3, 3)), padding=1)``.
    Plain tuples are accepted wherever a hint takes a tensor."""

    __slots__ = ("shape", "dtype", "dcode")

    def __init__(self, shape: Sequence[int], dtype: Any = "float32") -> None:
        self.shape = tuple(_int(d, "shape") for d in shape)
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if name not in ("float32", "float16", "bfloat16"):
            raise TypeError(f"TensorSpec dtype must be float32, float16 or bfloat16, got {name}")
        self.dtype = name
        self.dcode = _arrays.dtypes().code[name]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"TensorSpec({self.shape}, {self.dtype})"


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(v).__name__}") from None


def pair(v: Any, name: str) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return _int(v[0], name), _int(v[1], name)
    i = _int(v, name)
    return i, i


def padding_pairs(padding: Any, kernel: Tuple[int, int], dilation: Tuple[int, int],
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


def pool_padding(padding: Any) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    if isinstance(padding, str):
        raise ValueError("pooling padding must be an int or pairs, not a string")
    return padding_pairs(padding, (1, 1), (1, 1), (1, 1))


def _activation(activation: Optional[str]) -> str:
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be one of {_ACTIVATION_NAMES}, not {type(activation).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {_ACTIVATION_NAMES}")
    return ACTIVATIONS[activation]


def _layout(layout: Any, table: dict, name: str) -> str:
    if not isinstance(layout, str):
        raise TypeError(f"{name} must be a string")
    if layout not in table:
        raise ValueError(f"unknown {name} {layout!r}; expected one of {sorted(table)}")
    return layout


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number")
    return float(v)


def _dcode(a: Any) -> int:
    return a.dcode if isinstance(a, (DevView, TensorSpec)) else C.PASK_DTYPE_FLOAT32


def _same_dtype(first: Any, *others: Any) -> int:
    dc = _dcode(first)
    for a in others:
        if a is not None and _dcode(a) != dc:
            codes = {_dcode(t) for t in (first,) + others if t is not None}
            names = sorted(_arrays.dtypes().name[c] for c in codes)
            raise TypeError(f"all tensors of one op must share a dtype, got {', '.join(names)}")
    return dc


def _tensor_spec(a: Any, name: str) -> Any:
    """A hint's tensor: an array, a TensorSpec or a shape tuple, as a TensorSpec."""
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


def _array(a: Any, name: str, contiguous: bool = True) -> Any:
    if isinstance(a, (TensorSpec, DevView)):
        return a
    if getattr(a, "is_cuda", False) is True and type(a).__module__.startswith("torch"):
        return _arrays.torch_view(a, name)  # the common GPU case, without a torch.device per check
    if not isinstance(a, np.ndarray) and _arrays.is_device_array(a):
        return _arrays.view(a, name)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must be float32 on the CPU, got {a.dtype} (use {name}.astype(np.float32))")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray({name}))")
    return a


def _out_array(out: Any, shape: Tuple[int, ...], like: Any = None) -> Tuple[Any, Any]:
    """(out, what its pointer is read from: its DevView on a GPU, else out), checked."""
    if not isinstance(out, np.ndarray) and (getattr(out, "is_cuda", False) is True or _arrays.is_device_array(out)):
        v = _arrays.view(out, "out")
        if tuple(v.shape) != tuple(shape):
            raise ValueError(f"out has shape {tuple(v.shape)} but the result has shape {tuple(shape)}")
        if like is not None and v.dcode != _dcode(like):
            raise TypeError(f"out is {v.dtype} but the inputs are {_arrays.dtypes().name[_dcode(like)]}")
        return out, v
    _array(out, "out")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)} but the result has shape {tuple(shape)}")
    return out, out


def _output(spec_out: Any, shape: Tuple[int, ...], like: Any, ctx: Any) -> Tuple[Any, Any]:
    """(the op's result, its pointer's source): out= checked, else a new array of like's kind."""
    if spec_out is None:
        y = _empty(like, shape, ctx)
        return y, y
    return _out_array(spec_out, shape, like)


def _empty(like: Any, shape: Sequence[int], ctx: Any) -> Any:
    if isinstance(like, DevView):
        return _arrays.empty_like_kind(like, shape, ctx)
    return np.empty(tuple(shape), np.float32)


def _check_residual(r: Any, shape: Tuple[int, ...]) -> None:
    if r is not None and tuple(r.shape) != tuple(shape):
        raise ValueError(f"residual has shape {r.shape} but the output has shape {tuple(shape)}")


def nchw_dims(shape: Sequence[int], layout: str) -> Tuple[int, int, int, int]:
    """Logical (N, C, H, W) of a 4-D shape in layout "NCHW" or "NHWC"."""
    if layout == "NCHW":
        n, c, h, w = shape
    else:
        n, h, w, c = shape
    return n, c, h, w


def physical(dims: Sequence[int], layout: str) -> Tuple[int, ...]:
    """The shape in layout of logical (N, C, H, W) dims."""
    n, c, h, w = dims
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def _batched(x: Any, name: str) -> Tuple[Any, bool]:
    if x.ndim == 3:
        if isinstance(x, TensorSpec):
            return TensorSpec((1,) + x.shape, x.dtype), True
        if isinstance(x, DevView):
            return x.reshaped((1,) + x.shape), True
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (batched) or 3-D (unbatched), got {x.ndim}-D shape {x.shape}")
    return x, False


def _matrix(a: Any, name: str) -> Tuple[Any, int]:
    """A 2-D float32 array whose rows may be strided; returns (array, leading dim)."""
    a = _array(a, name, contiguous=False)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if isinstance(a, (TensorSpec, DevView)):
        return a, max(a.shape[1], 1)
    s0, s1 = a.strides
    if a.shape[1] > 1 and s1 != 4:
        raise ValueError(f"{name} must have contiguous rows (unit column stride)")
    if a.shape[0] > 1 and (s0 % 4 or s0 < 4 * a.shape[1]):
        raise ValueError(f"{name} must have a positive row stride of whole elements (use np.ascontiguousarray)")
    ld = s0 // 4 if a.shape[0] > 1 else a.shape[1]
    return a, max(ld, 1)


# ---- specs --------------------------------------------------------------------


class Spec:
    """One op call, normalised. ``key``: the plan's key (None: nothing for the
    C library to do, e.g. a linear of zero rows); ``repeat``: how many
    primitive calls of that plan the op makes (a batched matmul's loop).
    ``bind(shape, ctx)`` returns the op's result and the (x, w, bias, residual,
    y) arrays of each execution; ``shape`` is the plan's output shape."""

    __slots__ = ("key", "repeat", "hinting", "like", "empty")

    def check(self, shape: Any) -> None:
        """Checks what depends on the plan's output shape (done before any write)."""

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:  # pragma: no cover - abstract
        raise NotImplementedError


class ConvSpec(Spec):
    __slots__ = ("x", "w", "bias", "residual", "out")

    def check(self, shape: Any) -> None:
        _check_residual(self.residual, _zero_batch(shape) if self.empty else shape)  # not in the key

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:
        if self.empty:
            shape = _zero_batch(shape)
        _check_residual(self.residual, shape)
        y, yp = _output(self.out, shape, self.x, ctx)
        return y, ([] if self.empty else [(self.x, self.w, self.bias, self.residual, yp)])


class GemmSpec(Spec):
    """gemm and linear: the output shape is known without the C library."""

    __slots__ = ("a", "b", "bias", "out", "shape", "checked")

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:
        if self.checked:  # gemm's c or linear's out, checked when normalised
            y, yp = self.out
        else:
            y, yp = _output(self.out, self.shape, self.a, ctx)
        return y, ([(self.a, self.b, self.bias, None, yp)] if self.key is not None else [])


class PoolSpec(Spec):
    __slots__ = ("x", "out")

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:
        if self.empty:
            shape = _zero_batch(shape)
        y, yp = _output(self.out, shape, self.x, ctx)
        return y, ([] if self.empty else [(self.x, None, None, None, yp)])


class EltwiseSpec(Spec):
    """y = act(x * m + a) with m, a broadcast (add, mul, activations, batch norm)."""

    __slots__ = ("x", "m", "a", "out")

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:
        if self.empty:
            shape = _zero_batch(shape)
        y, yp = _output(self.out, shape, self.x, ctx)
        return y, ([] if self.empty else [(self.x, None, None, None, yp, self.m, self.a, None)])


class PtrList:
    """The input pointers of a cat, as the C array pask_plan_args_t.xs points to."""

    __slots__ = ("arrays", "c")

    def __init__(self, arrays: Sequence[Any], gpu: bool) -> None:
        ffi = _lib.load()[0]
        self.arrays = tuple(arrays)
        self.c = ffi.new("uintptr_t[]", [_addr(a, gpu) for a in self.arrays])

    def address(self) -> int:
        return int(_lib.load()[0].cast("uintptr_t", self.c))


class CatSpec(Spec):
    __slots__ = ("xs", "out")

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:
        if self.empty:
            shape = _zero_batch(shape)
        y, yp = _output(self.out, shape, self.xs[0], ctx)
        return y, ([] if self.empty else [(None, None, None, None, yp, None, None, PtrList(self.xs, ctx._gpu))])


class MatmulSpec(Spec):
    __slots__ = ("a2", "b2", "a", "out", "batch", "shape", "final", "single", "mnk")

    def bind(self, shape: Any, ctx: Any) -> Tuple[Any, List[tuple]]:
        a, a2, b2, batch, full, final = self.a, self.a2, self.b2, self.batch, self.shape, self.final
        m, n, k = self.mnk
        y = _output(self.out, final, a, ctx)[0]
        if isinstance(a2, DevView):
            if self.key is None:
                raise _unsupported("matmul of empty GPU arrays is not supported")
            yv = _arrays.view(y, "out").reshaped(full)
            if self.single:
                return y, [(a2, b2, None, None, yv)]
            if tuple(a2.shape[:-2]) != tuple(batch) or tuple(b2.shape[:-2]) != tuple(batch):
                raise _unsupported("matmul on a GPU broadcasts a 2-D b only; expand the batch dims first")
            return y, [(a2.offset(i * m * k, (m, k)), b2.offset(i * k * n, (k, n)), None, None,
                        yv.offset(i * m * n, (m, n))) for i in range(math.prod(batch))]
        if self.key is None:
            y[...] = 0
            return y, []
        y3 = y.reshape(full)
        if self.single:
            return y, [(a2, b2, None, None, y3)]
        ab = np.broadcast_to(a2, batch + (m, k))
        bb = np.broadcast_to(b2, batch + (k, n))
        return y, [(ab[idx], bb[idx], None, None, y3[idx]) for idx in np.ndindex(*batch)]


def _new(cls: type, key: Any, hinting: bool, repeat: int = 1) -> Any:
    s = cls.__new__(cls)
    s.key, s.hinting, s.repeat, s.empty = key, hinting, repeat, False
    return s


def _batch_of_one(dims: Tuple[int, int, int, int]) -> Tuple[Tuple[int, int, int, int], bool]:
    """A zero batch, like PyTorch, gives an empty result: the plan is made (and
    so every other argument checked) for a batch of one, nothing runs."""
    return ((1,) + tuple(dims[1:]), True) if dims[0] == 0 else (tuple(dims), False)


def _zero_batch(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    return (0,) + tuple(shape[1:])


def _shape_mismatch(message: str) -> ShapeMismatchError:
    return ShapeMismatchError(message, C.PASK_ERROR_SHAPE_MISMATCH)


def _gemm_key(dc: int, ta: bool, tb: bool, m: int, n: int, k: int, alpha: float, beta: float, act: str,
              lda: int, ldb: int, ldc: int, has_bias: bool, aps: Tuple[float, float] = (0.0, 0.0)) -> tuple:
    return ("gemm", dc, bool(ta), bool(tb), m, n, k, alpha, beta, act, lda, ldb, ldc, bool(has_bias), aps)


def _check_channels(xshape: Sequence[int], lay: str, ig: int, g: int, wshape: Sequence[int]) -> None:
    """NHWC data passed with the default layout (or the reverse): when the
    input's channels disagree with the weight's and the other layout would
    fit, the C library's message plus which layout to pass. Other mismatches
    are the C library's to report."""
    want = ig * g
    c = xshape[1] if lay == "NCHW" else xshape[3]
    other = xshape[3] if lay == "NCHW" else xshape[1]
    if c == want or other != want:
        return
    swap, kind, axis = ("NHWC", "channels-last", "last") if lay == "NCHW" else ("NCHW", "channels-first", "second")
    dims = lambda t: "[" + ",".join(str(int(v)) for v in t) + "]"  # noqa: E731 - as the C library prints them
    raise _shape_mismatch(f"weight {dims(wshape)} expects {ig} input channels per group, but x "
                          f"{dims(nchw_dims(xshape, lay))} with "
                          f"groups={g} has {c} (its {axis} axis has {want}: if it is {kind}, pass layout=\"{swap}\")")


def conv2d_spec(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                groups: Any = 1, *, layout: str = "NCHW", weight_layout: str = "OIHW", activation: Optional[str] = None,
                activation_params: Any = None, residual: Any = None, alpha: float = 1.0, beta: float = 0.0,
                out: Any = None, hinting: bool = False) -> ConvSpec:
    if hinting:
        input, weight = _tensor_spec(input, "input"), _tensor_spec(weight, "weight")
        bias = None if bias is None or bias is False else (TensorSpec((weight.shape[0],), weight.dtype)
                                                           if bias is True else _tensor_spec(bias, "bias"))
        residual = None if residual is None else _tensor_spec(residual, "residual")
    lay = _layout(layout, LAYOUTS, "layout")
    wlay = _layout(weight_layout, WEIGHT_LAYOUTS, "weight_layout")
    x = _array(input, "input")
    w = _array(weight, "weight")
    x4, unbatched = _batched(x, "input")
    if w.ndim != 4:
        raise ValueError(f"weight must be 4-D, got shape {w.shape}")
    if wlay == "OIHW":
        o, ig, kh, kw = w.shape
    else:
        o, kh, kw, ig = w.shape
    st = pair(stride, "stride")
    dil = pair(dilation, "dilation")
    pads = padding_pairs(padding, (kh, kw), dil, st)
    g = _int(groups, "groups")
    act = _activation(activation)
    aps = _activation_params(activation, activation_params)
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
    _check_channels(x4.shape, lay, ig, g, (o, ig, kh, kw))  # logical dims in the message, as C prints them
    dims, empty = _batch_of_one(nchw_dims(x4.shape, lay))
    spec = _new(ConvSpec, ("conv2d", lay, wlay, dims, unbatched, (o, ig, kh, kw), st, dil, pads,
                           g, act, a, b, None if bias is None else bias.shape[0], r is not None, aps, dc), hinting)
    spec.x, spec.w, spec.bias, spec.residual, spec.out, spec.like = x, w, bias, r, out, x
    spec.empty = empty
    return spec


def gemm_spec(a: Any, b: Any, c: Any = None, *, alpha: float = 1.0, beta: float = 0.0, trans_a: bool = False,
              trans_b: bool = False, bias: Any = None, activation: Optional[str] = None,
              activation_params: Any = None, hinting: bool = False) -> GemmSpec:
    if hinting:
        a, b = _tensor_spec(a, "a"), _tensor_spec(b, "b")
        c = None if c is None else _tensor_spec(c, "c")
    c_user = c
    if c is not None and not isinstance(c, np.ndarray):
        c = _array(c, "c")
    a, lda = _matrix(a, "a")
    b, ldb = _matrix(b, "b")
    m, ka = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if ka != kb:
        raise _shape_mismatch(f"inner dimensions differ: op(a) is {m}x{ka}, op(b) is {kb}x{n}")
    al, be = _float(alpha, "alpha"), _float(beta, "beta")
    act = _activation(activation)
    aps = _activation_params(activation, activation_params)
    if hinting and bias is not None:
        bias = TensorSpec((n,), a.dtype) if bias is True else _tensor_spec(bias, "bias")
    if bias is not None:
        bias = _array(bias, "bias")
        if bias.shape != (n,):
            raise ValueError(f"bias must have shape ({n},), got {bias.shape}")
    dc = _same_dtype(a, b, bias, c)
    checked = False
    if hinting:
        ldc = n if c is None else _matrix(c, "c")[1]
    elif c is None:
        if be != 0.0:
            raise ValueError("beta != 0 reads c: pass c=")
        ldc = n
    else:
        c, ldc = _matrix(c, "c")
        if isinstance(c, np.ndarray) and not c.flags.writeable:
            raise ValueError("c is read-only")
        if tuple(c.shape) != (m, n):
            raise ValueError(f"c must have shape ({m}, {n}), got {tuple(c.shape)}")
        checked = True
    spec = _new(GemmSpec, _gemm_key(dc, trans_a, trans_b, m, n, ka, al, be, act, lda, ldb, ldc, bias is not None,
                                    aps), hinting)
    spec.a, spec.b, spec.bias, spec.shape, spec.checked = a, b, bias, (m, n), checked
    spec.out = (c_user, c) if checked else c_user
    spec.like = a
    return spec


def linear_spec(input: Any, weight: Any, bias: Any = None, *, activation: Optional[str] = None,
                activation_params: Any = None, out: Any = None, hinting: bool = False) -> GemmSpec:
    if hinting:
        input, weight = _tensor_spec(input, "input"), _tensor_spec(weight, "weight")
        if bias is not None:
            bias = TensorSpec((weight.shape[0],), weight.dtype) if bias is True else _tensor_spec(bias, "bias")
    lda = None
    if isinstance(input, np.ndarray) and input.ndim == 2 and not input.flags.c_contiguous:
        x, lda = _matrix(input, "input")  # rows may be strided, as gemm's a
    elif isinstance(input, np.ndarray) and not input.flags.c_contiguous:
        raise ValueError("input must be C-contiguous (strided rows are accepted for a 2-D input only; use "
                         "np.ascontiguousarray(input))")
    else:
        x = _array(input, "input")
    w = _array(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {w.shape}")
    if x.ndim < 1:
        raise ValueError("input must have at least 1 dimension")
    nout, nin = w.shape
    if x.shape[-1] != nin:
        raise _shape_mismatch(f"input has {x.shape[-1]} features but weight expects {nin}")
    act = _activation(activation)
    aps = _activation_params(activation, activation_params)
    if bias is not None:
        bias = _array(bias, "bias")
        if bias.shape != (nout,):
            raise ValueError(f"bias must have shape ({nout},), got {bias.shape}")
    shape = tuple(x.shape[:-1]) + (nout,)
    rows = math.prod(x.shape[:-1])  # numpy's prod costs about 3 us a call here
    dc = _same_dtype(x, w, bias)
    checked = False
    if out is not None and not hinting:
        out, checked = _out_array(out, shape, x), True
    key = _gemm_key(dc, False, True, rows, nout, nin, 1.0, 0.0, act, lda or nin, nin, nout,
                    bias is not None, aps) if rows else None
    spec = _new(GemmSpec, key, hinting)
    spec.a, spec.b, spec.bias, spec.out, spec.shape, spec.checked = x, w, bias, out, shape, checked
    spec.like = x
    return spec


def matmul_spec(a: Any, b: Any, *, out: Any = None, hinting: bool = False) -> MatmulSpec:
    if hinting:
        a, b = _tensor_spec(a, "a"), _tensor_spec(b, "b")
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
        raise _shape_mismatch(f"matmul: a has {k} columns but b has {kb} rows")
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
    key = None
    repeat = 1
    if not (0 in shape or k == 0):
        if single:
            rows = math.prod(batch) * m
            key = _gemm_key(dc, False, False, rows, n, k, 1.0, 0.0, ACTIVATIONS[None], k, n, n, False)
        else:
            key = _gemm_key(dc, False, False, m, n, k, 1.0, 0.0, ACTIVATIONS[None], k, n, n, False)
            repeat = math.prod(batch)
    spec = _new(MatmulSpec, key, hinting, repeat)
    spec.a, spec.a2, spec.b2, spec.out, spec.batch, spec.shape, spec.final = a, a2, b2, out, batch, shape, final
    spec.single, spec.mnk, spec.like = single, (m, n, k), a
    return spec


def _pool_spec(input: Any, layout: str, mode: str, kernel: Tuple[int, int], stride: Tuple[int, int], pads: Any,
               dilation: Tuple[int, int], ceil_mode: bool, count_include_pad: bool, divisor: int, out: Any,
               hinting: bool) -> PoolSpec:
    x = input
    x4, unbatched = _batched(x, "input")
    dims, empty = _batch_of_one(nchw_dims(x4.shape, layout))
    spec = _new(PoolSpec, ("pool2d", layout, dims, unbatched, mode, kernel, stride, pads,
                           dilation, bool(ceil_mode), bool(count_include_pad), divisor, _dcode(x)), hinting)
    spec.x, spec.out, spec.like, spec.empty = x, out, x, empty
    return spec


def max_pool2d_spec(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                    ceil_mode: bool = False, return_indices: bool = False, *, layout: str = "NCHW", out: Any = None,
                    hinting: bool = False) -> PoolSpec:
    if hinting:
        input = _tensor_spec(input, "input")
    if return_indices:
        raise _unsupported("max_pool2d(return_indices=True) is not supported by paskdnn")
    lay = _layout(layout, LAYOUTS, "layout")
    x = _array(input, "input")
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    return _pool_spec(x, lay, MAX, k, s, pool_padding(padding), pair(dilation, "dilation"), ceil_mode, False, 0, out,
                      hinting)


def avg_pool2d_spec(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                    count_include_pad: bool = True, divisor_override: Optional[int] = None, *, dilation: Any = 1,
                    layout: str = "NCHW", out: Any = None, hinting: bool = False) -> PoolSpec:
    if hinting:
        input = _tensor_spec(input, "input")
    lay = _layout(layout, LAYOUTS, "layout")
    x = _array(input, "input")
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    div = 0
    if divisor_override is not None:
        div = _int(divisor_override, "divisor_override")
        if div <= 0:
            raise ValueError(f"divisor_override must be a positive int, got {div}")
    return _pool_spec(x, lay, AVG, k, s, pool_padding(padding), pair(dilation, "dilation"), ceil_mode,
                      count_include_pad, div, out, hinting)


def adaptive_output_size(output_size: Any, h: int, w: int) -> Tuple[int, int]:
    """(OH, OW) of adaptive_avg_pool2d's output_size for an h x w input."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair, got {output_size!r}")
        oh = h if output_size[0] is None else _int(output_size[0], "output_size")
        ow = w if output_size[1] is None else _int(output_size[1], "output_size")
    else:
        oh = ow = _int(output_size, "output_size")
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be positive, got {(oh, ow)}")
    return oh, ow


def adaptive_avg_pool2d_spec(input: Any, output_size: Any, *, layout: str = "NCHW", out: Any = None,
                             hinting: bool = False) -> PoolSpec:
    if hinting:
        input = _tensor_spec(input, "input")
    lay = _layout(layout, LAYOUTS, "layout")
    x = _array(input, "input")
    x4, _ = _batched(x, "input")
    _, _, h, w = nchw_dims(x4.shape, lay)
    oh, ow = adaptive_output_size(output_size, h, w)
    if h % oh or w % ow:
        raise _unsupported(
            f"adaptive_avg_pool2d from {h}x{w} to {oh}x{ow}: only sizes that divide the input are supported")
    k = (h // oh, w // ow)
    return _pool_spec(x, lay, AVG, k, k, ((0, 0), (0, 0)), (1, 1), False, True, 0, out, hinting)


def _broadcast_operand(b: Any, name: str, xshape: Tuple[int, ...], lay: str,
                       bshape: Optional[Tuple[int, ...]] = None) -> Tuple[int, int, int, int]:
    """Logical (N, C, H, W) dims of an eltwise operand that broadcasts to x's
    physical shape xshape numpy-style (right-aligned, each dim 1 or x's);
    bshape: the operand's shape when not b's own (a view of it)."""
    bshape = tuple(b.shape) if bshape is None else bshape
    if len(bshape) > 4:
        raise ValueError(f"{name} has {len(bshape)} dims; it must broadcast to the input's shape {xshape}")
    full = (1,) * (4 - len(bshape)) + bshape
    for d, xd in zip(full, xshape):
        if d != 1 and d != xd:
            raise _shape_mismatch(f"{name} of shape {bshape} does not broadcast to the input's shape {xshape}")
    return nchw_dims(full, lay)


def _activation_params(activation: Optional[str], params: Any) -> Tuple[float, float]:
    want = ACTIVATION_PARAMS.get(activation or "", 0)
    ps = tuple(_float(v, "activation_params") for v in (params or ()))
    if len(ps) != want:
        raise ValueError(f"activation {activation!r} takes {want} parameter(s) (activation_params), got {len(ps)}")
    if activation == "leaky_relu" and not np.isfinite(ps[0]):
        raise ValueError(f"leaky_relu's negative_slope must be finite, got {ps[0]}")
    if activation == "clamp" and not (ps[0] <= ps[1]):
        raise ValueError(f"clamp needs min <= max (not NaN), got {ps[0]}, {ps[1]}")
    return (ps + (0.0, 0.0))[:2]  # type: ignore[return-value]


def eltwise_spec(input: Any, mul: Any = None, add: Any = None, *, activation: Optional[str] = None,
                 activation_params: Any = None, layout: str = "NCHW", out: Any = None,
                 hinting: bool = False) -> EltwiseSpec:
    """y = activation(input * mul + add), mul and add optional and broadcast
    to input (numpy rules, in input's layout); y has input's shape.
    activation_params: leaky_relu's (negative_slope,), clamp's (min, max)."""
    if hinting:
        input = _tensor_spec(input, "input")
        mul = None if mul is None else _tensor_spec(mul, "mul")
        add = None if add is None else _tensor_spec(add, "add")
    lay = _layout(layout, LAYOUTS, "layout")
    x = _array(input, "input")
    m = None if mul is None else _array(mul, "mul")
    a = None if add is None else _array(add, "add")
    dc = _same_dtype(x, m, a)
    if x.ndim in (1, 2):
        # (F,) or (N, F), e.g. a linear layer's output: element-wise ops do not see
        # the layout, so run it as NCHW (N, F, 1, 1), the same memory; operands
        # broadcast right-aligned to x's shape as numpy's, then take the same view
        lay = "NCHW"
        rank = x.ndim
        xshape = (1,) * (2 - x.ndim) + tuple(x.shape)
        for name, b in (("mul", m), ("add", a)):
            if b is not None and b.ndim > 2:
                raise _shape_mismatch(f"{name} of shape {tuple(b.shape)} does not broadcast to the input's shape "
                                      f"{tuple(x.shape)}")
        mdims = None if m is None else _broadcast_operand(m, "mul", xshape + (1, 1), lay, tuple(m.shape) + (1, 1))
        adims = None if a is None else _broadcast_operand(a, "add", xshape + (1, 1), lay, tuple(a.shape) + (1, 1))
        xshape = xshape + (1, 1)
    else:
        x4, unbatched = _batched(x, "input")
        rank = 3 if unbatched else 4
        xshape = tuple(x4.shape) if not unbatched else (1,) + tuple(x.shape)
        mdims = None if m is None else _broadcast_operand(m, "mul", xshape, lay)
        adims = None if a is None else _broadcast_operand(a, "add", xshape, lay)
    act = _activation(activation)
    aps = _activation_params(activation, activation_params)
    dims, empty = _batch_of_one(nchw_dims(xshape, lay))
    if empty:  # operands with the zero batch broadcast like one image
        mdims = None if mdims is None else (1,) + tuple(mdims[1:])
        adims = None if adims is None else (1,) + tuple(adims[1:])
    spec = _new(EltwiseSpec, ("eltwise", lay, dims, rank, mdims, adims, act, aps, dc), hinting)
    spec.x, spec.m, spec.a, spec.out, spec.like, spec.empty = x, m, a, out, x, empty
    return spec


def _channel_axis(dim: Any, ndim: int, lay: str) -> None:
    d = _int(dim, "dim")
    axis = d + ndim if d < 0 else d
    want = (0 if lay == "NCHW" else 2) + ndim - 3  # the channel axis of a 3-D or 4-D array
    if axis != want:
        raise _unsupported(f"cat joins channels only: dim={d} is not the channel axis {want} of {ndim}-D "
                           f"{lay} arrays")


def cat_spec(tensors: Sequence[Any], dim: Any = 1, *, layout: str = "NCHW", out: Any = None,
             hinting: bool = False) -> CatSpec:
    """Concatenation along the channel axis (dim 1 of NCHW arrays, 3 of NHWC ones)."""
    if isinstance(tensors, (np.ndarray, TensorSpec)) or not isinstance(tensors, (list, tuple)):
        raise TypeError("cat takes a list or tuple of arrays")
    if not tensors:
        raise ValueError("cat needs at least one array")
    lay = _layout(layout, LAYOUTS, "layout")
    xs = [_tensor_spec(t, f"tensors[{i}]") if hinting else _array(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    dc = _same_dtype(*xs)
    _channel_axis(dim, xs[0].ndim, lay)
    all_dims, unb = [], None
    for i, t in enumerate(xs):
        t4, unbatched = _batched(t, f"tensors[{i}]")
        if unb is None:
            unb = unbatched
        elif unb != unbatched:
            raise ValueError("cat's arrays must all be batched (4-D) or all unbatched (3-D)")
        all_dims.append(nchw_dims(t4.shape, lay))
    n0, _, h0, w0 = all_dims[0]
    for i, (n, c, h, w) in enumerate(all_dims):
        if (n, h, w) != (n0, h0, w0):
            raise _shape_mismatch(f"tensors[{i}] has N, H, W = {(n, h, w)} but tensors[0] has {(n0, h0, w0)}: "
                                  "cat joins channels, the other dims must agree")
    empty = n0 == 0
    key_dims = tuple(((1,) + tuple(d[1:])) if empty else tuple(d) for d in all_dims)
    spec = _new(CatSpec, ("cat", lay, key_dims, bool(unb), dc), hinting)
    spec.xs, spec.out, spec.like, spec.empty = xs, out, xs[0], empty
    return spec


def add_spec(input: Any, other: Any, *, activation: Optional[str] = None, layout: str = "NCHW", out: Any = None,
             hinting: bool = False) -> EltwiseSpec:
    return eltwise_spec(input, None, other, activation=activation, layout=layout, out=out, hinting=hinting)


def mul_spec(input: Any, other: Any, *, activation: Optional[str] = None, layout: str = "NCHW", out: Any = None,
             hinting: bool = False) -> EltwiseSpec:
    return eltwise_spec(input, other, None, activation=activation, layout=layout, out=out, hinting=hinting)


#: op name -> its spec function (the ops Context.hint and graph.Runner take).
SPECS = {
    "conv2d": conv2d_spec,
    "linear": linear_spec,
    "matmul": matmul_spec,
    "gemm": gemm_spec,
    "max_pool2d": max_pool2d_spec,
    "avg_pool2d": avg_pool2d_spec,
    "adaptive_avg_pool2d": adaptive_avg_pool2d_spec,
    "eltwise": eltwise_spec,
    "add": add_spec,
    "mul": mul_spec,
    "cat": cat_spec,
}


# ---- C descriptors, output sizes and plans ------------------------------------------


class _Descs:
    """Tensor descriptors made for one plan, freed on exit (plans keep none)."""

    def __init__(self) -> None:
        self.ffi, self.lib = _lib.load()
        self._made: list = []

    def __enter__(self) -> "_Descs":
        return self

    def make(self, layout: str, dims: Sequence[int], dcode: int) -> Any:
        out = self.ffi.new("pask_tensor_desc_t *")
        _lib.check(self.lib.pask_tensor_desc_create(out, dcode, getattr(C, layout), len(dims), list(dims)))
        self._made.append(out[0])
        return out[0]

    def __exit__(self, *exc: Any) -> None:
        for d in self._made:
            self.lib.pask_tensor_desc_destroy(d)


def _conv_params(ffi: Any, st: Any, dil: Any, pads: Any, g: int) -> Any:
    (pt, pb), (pl, pr) = pads
    return ffi.new("pask_conv2d_params_t *", {"stride": st, "pad_pre": (pt, pl), "pad_post": (pb, pr),
                                              "dilation": dil, "groups": g})


def _pool_params(ffi: Any, mode: str, kernel: Any, stride: Any, pads: Any, dil: Any, ceil: bool, cip: bool,
                 div: int) -> Any:
    (pt, pb), (pl, pr) = pads
    return ffi.new("pask_pool2d_params_t *", {
        "mode": getattr(C, mode), "kernel": kernel, "stride": stride, "pad_pre": (pt, pl), "pad_post": (pb, pr),
        "dilation": dil, "ceil_mode": int(ceil), "count_include_pad": int(cip), "divisor_override": div})


def conv2d_output_dims(xdims: Sequence[int], wdims: Sequence[int], stride: Any, dilation: Any, pads: Any,
                       groups: int, layout: str = "NCHW", weight_layout: str = "OIHW",
                       dcode: Optional[int] = None) -> Tuple[int, int, int, int]:
    """The C library's logical (N, O, OH, OW) of a convolution (pask_conv2d_output_dims);
    xdims (N, C, H, W) and wdims (O, C/groups, KH, KW) are logical too."""
    ffi, lib = _lib.load()
    dc = C.PASK_DTYPE_FLOAT32 if dcode is None else dcode
    with _Descs() as d:
        xd = d.make(LAYOUTS[layout], xdims, dc)
        wd = d.make(WEIGHT_LAYOUTS[weight_layout], wdims, dc)
        params = _conv_params(ffi, stride, dilation, pads, groups)
        dims = ffi.new("int64_t[4]")
        _lib.check(lib.pask_conv2d_output_dims(params, xd, wd, dims))
        return tuple(int(v) for v in dims)  # type: ignore[return-value]


def pool2d_output_dims(xdims: Sequence[int], mode: str, kernel: Any, stride: Any, pads: Any, dilation: Any,
                       ceil_mode: bool, count_include_pad: bool = True, divisor: int = 0, layout: str = "NCHW",
                       dcode: Optional[int] = None) -> Tuple[int, int, int, int]:
    """The C library's logical (N, C, OH, OW) of a pooling (pask_pool2d_output_dims);
    mode MAX or AVG; xdims (N, C, H, W)."""
    ffi, lib = _lib.load()
    dc = C.PASK_DTYPE_FLOAT32 if dcode is None else dcode
    with _Descs() as d:
        xd = d.make(LAYOUTS[layout], xdims, dc)
        params = _pool_params(ffi, mode, kernel, stride, pads, dilation, ceil_mode, count_include_pad, divisor)
        dims = ffi.new("int64_t[4]")
        _lib.check(lib.pask_pool2d_output_dims(params, xd, dims))
        return tuple(int(v) for v in dims)  # type: ignore[return-value]


def cat_output_dims(all_dims: Sequence[Sequence[int]], layout: str = "NCHW",
                    dcode: Optional[int] = None) -> Tuple[int, int, int, int]:
    """The C library's logical (N, sum C, H, W) of a channel concatenation
    (pask_cat_output_dims); each of all_dims is an input's (N, C, H, W)."""
    ffi, lib = _lib.load()
    dc = C.PASK_DTYPE_FLOAT32 if dcode is None else dcode
    with _Descs() as d:
        descs = ffi.new("const_pask_tensor_desc_t[]", [d.make(LAYOUTS[layout], x, dc) for x in all_dims])
        dims = ffi.new("int64_t[4]")
        _lib.check(lib.pask_cat_output_dims(len(all_dims), descs, dims))
        return tuple(int(v) for v in dims)  # type: ignore[return-value]


def _user_shape(ydims: Sequence[int], layout: str, unbatched: bool) -> Tuple[int, ...]:
    shape = physical(ydims, layout)
    return shape[1:] if unbatched else shape


def _create_plan(key: tuple, handle: Any) -> Tuple[Any, Any]:
    """(pask_plan_t, output shape) of a spec key on a context handle; the caller owns the plan."""
    ffi, lib = _lib.load()
    plan = ffi.new("pask_plan_t *")
    op = key[0]
    if op == "gemm":
        _, dc, ta, tb, m, n, k, alpha, beta, act, lda, ldb, ldc, has_bias, aps = key
        ep = ffi.new("pask_epilogue_t *", {"alpha": alpha, "beta": beta, "activation": getattr(C, act),
                                           "activation_params": aps})
        _lib.check(lib.pask_plan_create_gemm(plan, handle, dc, int(ta), int(tb), m, n, k, ep, lda, ldb, ldc,
                                             int(has_bias)))
        return plan[0], (m, n)
    with _Descs() as d:
        if op == "eltwise":
            _, lay, xdims, rank, mdims, adims, act, aps, dc = key
            xd = d.make(LAYOUTS[lay], xdims, dc)
            md = ffi.NULL if mdims is None else d.make(LAYOUTS[lay], mdims, dc)
            ad = ffi.NULL if adims is None else d.make(LAYOUTS[lay], adims, dc)
            ydims = tuple(xdims)
            ep = ffi.new("pask_eltwise_params_t *", {"activation": getattr(C, act), "params": aps})
            _lib.check(lib.pask_plan_create_eltwise(plan, handle, ep, xd, md, ad, d.make(LAYOUTS[lay], ydims, dc)))
            if rank <= 2:  # (N, F, 1, 1) -> (N, F) or (F,)
                return plan[0], tuple(ydims[2 - rank:2])
            return plan[0], _user_shape(ydims, lay, rank == 3)
        if op == "cat":
            _, lay, all_dims, unbatched, dc = key
            ydims = cat_output_dims(all_dims, lay, dc)
            descs = ffi.new("const_pask_tensor_desc_t[]", [d.make(LAYOUTS[lay], x, dc) for x in all_dims])
            _lib.check(lib.pask_plan_create_cat(plan, handle, len(all_dims), descs, d.make(LAYOUTS[lay], ydims, dc)))
            return plan[0], _user_shape(ydims, lay, unbatched)
        if op == "conv2d":
            _, lay, wlay, xdims, unbatched, wdims, st, dil, pads, g, act, alpha, beta, nbias, has_r, aps, dc = key
            xd = d.make(LAYOUTS[lay], xdims, dc)
            wd = d.make(WEIGHT_LAYOUTS[wlay], wdims, dc)
            params = _conv_params(ffi, st, dil, pads, g)
            dims = ffi.new("int64_t[4]")
            _lib.check(lib.pask_conv2d_output_dims(params, xd, wd, dims))
            ydims = tuple(int(v) for v in dims)
            bd = d.make("PASK_LAYOUT_ROW_MAJOR", (nbias,), dc) if nbias is not None else ffi.NULL
            rd = d.make(LAYOUTS[lay], ydims, dc) if has_r else ffi.NULL
            ep = ffi.new("pask_epilogue_t *", {"alpha": alpha, "beta": beta, "activation": getattr(C, act),
                                               "activation_params": aps})
            yd = d.make(LAYOUTS[lay], ydims, dc)
            _lib.check(lib.pask_plan_create_conv2d(plan, handle, params, ep, xd, wd, bd, rd, yd))
        else:
            _, lay, xdims, unbatched, mode, kernel, stride, pads, dil, ceil, cip, div, dc = key
            xd = d.make(LAYOUTS[lay], xdims, dc)
            params = _pool_params(ffi, mode, kernel, stride, pads, dil, ceil, cip, div)
            dims = ffi.new("int64_t[4]")
            _lib.check(lib.pask_pool2d_output_dims(params, xd, dims))
            ydims = tuple(int(v) for v in dims)
            _lib.check(lib.pask_plan_create_pool2d(plan, handle, params, xd, d.make(LAYOUTS[lay], ydims, dc)))
    return plan[0], _user_shape(ydims, lay, unbatched)


# Plans of calls seen before, under (spec key, context handle); bounded, oldest
# dropped first (a plan still in use elsewhere, e.g. by a Runner, lives on).
# Each entry is (plan, output shape); the plan's finaliser holds the handle.
PLANS: dict = {}
PLANS_MAX = 512


def _remember(key: tuple, entry: tuple) -> None:
    PLANS[key] = entry
    _trim(PLANS, PLANS_MAX)


def _trim(cache: dict, bound: int) -> None:
    # Insert, then trim to the bound: whatever ran between another call's check
    # and its insert (a thread, or a finaliser that the oldest plan's release set
    # off), the last trim of a call leaves at most `bound` entries.
    while len(cache) > bound:
        try:
            del cache[next(iter(cache))]
        except (StopIteration, KeyError, RuntimeError):  # another thread trimmed it first
            break


def plan_for(key: tuple, handle: Any) -> Tuple[Any, Any]:
    """(plan, output shape) of a spec key on a context, made on first use."""
    full = (key, handle)
    entry = PLANS.get(full)
    if entry is None:
        ffi, lib = _lib.load()
        raw, shape = _create_plan(key, handle)

        # The finaliser holds the handle: the C context outlives its plans, and
        # its address is not reused while a key names it.
        def destroy(p: Any, h: Any = handle, destroy_c: Any = lib.pask_plan_destroy) -> None:
            destroy_c(p)

        entry = (ffi.gc(raw, destroy), shape)
        _remember(full, entry)
    return entry


def forget(handle: Any) -> None:
    """Drops the cached plans (and eager memo entries) of a context (closed, or collected)."""
    for full in [k for k in list(PLANS) if k[1] is handle or k[1] == handle]:
        PLANS.pop(full, None)
    for mk in [k for k in list(MEMO) if k[0] is handle or k[0] == handle]:
        MEMO.pop(mk, None)


# ---- running, hinting, preparing -----------------------------------------------------


ARGS_FIELDS = ["x", "w", "bias", "residual", "y", "m", "a", "xs"]


class _Abi:
    """What an execution passes to pask_plan_execute, made once: the args
    struct is filled as eight addresses (pask_plan_args_t is eight pointers,
    ARGS_FIELDS)."""

    def __init__(self) -> None:
        ffi, lib = _lib.load()
        fields = [name for name, _ in ffi.typeof("pask_plan_args_t").fields]
        if fields != ARGS_FIELDS or ffi.sizeof("pask_plan_args_t") != len(ARGS_FIELDS) * ffi.sizeof("uintptr_t"):
            raise ImportError("paskdnn: pask_plan_args_t is not the eight pointers this binding fills")
        self.ffi, self.null, self.execute = ffi, ffi.NULL, lib.pask_plan_execute
        self.words, self.args = ffi.typeof(f"uintptr_t[{len(ARGS_FIELDS)}]"), ffi.typeof("pask_plan_args_t *")
        self.from_buffer, self.cast = ffi.from_buffer, ffi.cast


_ABI: Optional[_Abi] = None


def _abi() -> _Abi:
    global _ABI
    if _ABI is None:
        _ABI = _Abi()
    return _ABI


def _addr(a: Any, gpu: bool) -> int:
    """The address of an op's array (0 for None), of the context's kind."""
    if a is None:
        return 0
    if type(a) is PtrList:
        return a.address()
    if type(a) is DevView:
        if not gpu:
            raise TypeError("a CPU context takes numpy arrays; this array lives on a GPU")
        return a.ptr
    if isinstance(a, np.ndarray):
        if gpu:
            raise TypeError("a CUDA context takes GPU arrays (torch, cupy, DLPack or paskdnn.asarray(x)), not numpy")
        if a.flags.c_contiguous:  # cffi's buffer view: a fraction of __array_interface__'s cost
            abi = _ABI or _abi()
            return int(abi.cast("uintptr_t", abi.from_buffer(a)))
        return a.__array_interface__["data"][0]  # strided rows (a gemm's lda)
    v = _arrays.view(a, "array")
    if not gpu:
        raise TypeError("a CPU context takes numpy arrays; this array lives on a GPU")
    return v.ptr


def _words(abi: _Abi, arrays: tuple, gpu: bool) -> Any:
    """The addresses of one execution (ARGS_FIELDS; a shorter tuple leaves the rest NULL)."""
    return abi.ffi.new(abi.words, [_addr(a, gpu) for a in arrays])


def run(spec: Spec, ctx: Any, stream: Any = None) -> Any:
    """Runs a spec on ctx: its plan (cached) executed with the arrays' pointers
    and the stream as arguments. Returns the op's result."""
    return _run(spec, ctx, stream)[0]


def _run(spec: Spec, ctx: Any, stream: Any) -> Tuple[Any, Any, List[tuple]]:
    """run's work: (the op's result, its plan, the arrays of each execution)."""
    handle = ctx._h()
    gpu = ctx._gpu
    if stream is not None and not gpu:
        raise ValueError("stream= applies to GPU contexts only")
    if spec.key is None:
        plan, shape = None, None
    else:
        plan, shape = plan_for(spec.key, handle)
    result, executions = spec.bind(shape, ctx)
    if executions:
        abi = _ABI or _abi()
        like = spec.like
        s = ctx._use_stream(_arrays.stream_of(stream, like if type(like) is DevView else None)) if gpu else abi.null
        cast, execute, args = abi.ffi.cast, abi.execute, abi.args
        for arrays in executions:
            words = _words(abi, arrays, gpu)  # kept alive through the call
            status = execute(plan, cast(args, words), s)
            if status:
                _lib.check(status)
    return result, plan, executions


# ---- the eager memo ---------------------------------------------------------------
#
# An eager call repeats the arguments of one seen before more often than not (a
# model's layers, called again per inference). Its normalisation then gives the
# same plan, output shape and checks: what differs is the arrays' addresses.
# ``eager`` keys a call by everything its normalisation reads except the
# addresses (the context, the op's scalar arguments, each array's Kind.meta)
# and, for a key seen before, executes the remembered plan with the arrays'
# addresses, without making a Spec. A call the memo cannot key, or one whose
# arrays are not usable as they are (e.g. not C-contiguous), takes the full path,
# which raises what it would have raised.

MEMO: dict = {}
MEMO_MAX = PLANS_MAX


def exact(*values: Any) -> bool:
    """Whether these arguments key a memo entry as exactly as their
    normalisation reads them: ints, strings, None, floats and flat tuples of
    them, no bools (True == 1 and 1.0 == 1 in a dict, not in a normalisation:
    ``stride=1.0`` is a TypeError)."""
    for v in values:
        t = type(v)
        if t is int or t is str or v is None:
            continue
        if t is tuple:
            for e in v:
                if type(e) is not int:
                    return False
            continue
        return False
    return True


def floats(*values: Any) -> bool:
    """Whether these arguments are plain numbers (floats or ints, no bools)."""
    for v in values:
        t = type(v)
        if t is not float and t is not int:
            return False
    return True


def flat_floats(values: Any) -> bool:
    """Whether an optional tuple argument (activation_params) keys a memo entry exactly."""
    return values is None or (type(values) is tuple and floats(*values))


def eager(ctx: Any, stream: Any, arrays: tuple, out: Any, params: Optional[tuple], make: Any) -> Any:
    """Runs one eager call through the memo: ``arrays`` are its (x, w, bias,
    residual) arrays (None where absent), ``out`` its out= array, ``params``
    its other arguments (None: the memo cannot key them) and ``make()`` its
    full normalisation (a Spec, made on a miss)."""
    if params is None:
        return run(make(), ctx, stream)
    kinds = _arrays.KINDS
    x, w, b, r = arrays
    kx, kw = kinds.get(type(x)), kinds.get(type(w))
    kb = None if b is None else kinds.get(type(b))
    kr = None if r is None else kinds.get(type(r))
    ko = None if out is None else kinds.get(type(out))
    if (kx is None or kw is None or (kb is None and b is not None) or (kr is None and r is not None)
            or (ko is None and out is not None) or (type(out) is np.ndarray and not out.flags.writeable)):
        return run(make(), ctx, stream)
    ks = (kx, kw, kb, kr, ko)
    key = (ctx._handle, params, kx.meta(x), kw.meta(w), None if b is None else kb.meta(b),
           None if r is None else kr.meta(r), None if out is None else ko.meta(out))
    entry = MEMO.get(key)
    if entry is not None:
        plan, shape = entry
        px, pw = kx.address(x), kw.address(w)
        pb = 0 if b is None else kb.address(b)
        pr = 0 if r is None else kr.address(r)
        if out is None:
            y = kx.empty(x, shape, ctx)
            py = kx.address(y)
        else:
            y = out
            py = ko.address(out)
        if px is not None and pw is not None and pb is not None and pr is not None and py is not None:
            abi = _ABI or _abi()
            if ctx._gpu:
                s = ctx._use_stream(kx.stream(x) if stream is None else _arrays.stream_of(stream, None))
            elif stream is not None:
                raise ValueError("stream= applies to GPU contexts only")
            else:
                s = abi.null
            words = abi.ffi.new(abi.words, (px, pw, pb, pr, py))  # kept alive through the call
            status = abi.execute(plan, abi.cast(abi.args, words), s)
            if status:
                _lib.check(status)
            return y
        # an array not usable as it is (not C-contiguous): the full path says why
    result, plan, executions = _run(make(), ctx, stream)
    if len(executions) == 1 and len(executions[0]) == 5:
        _learn(key, plan, result, out, arrays, ks, executions[0], ctx._gpu)
    return result


def _learn(key: tuple, plan: Any, result: Any, out: Any, arrays: tuple, ks: tuple, execution: tuple,
           gpu: bool) -> None:
    """Remembers a call that ran, if the addresses the memo would pass are the
    ones its full normalisation passed, (x, w, bias, residual, y) in order,
    and a new output of x's Kind is what it returned."""
    if out is None and _arrays.KINDS.get(type(result)) is not ks[0]:
        return
    y = out if out is not None else result
    addrs = [0 if a is None else k.address(a) for a, k in zip(arrays, ks)] + [ks[0 if out is None else 4].address(y)]
    if addrs != [_addr(a, gpu) for a in execution]:
        return
    MEMO[key] = (plan, None if out is not None else tuple(result.shape))
    _trim(MEMO, MEMO_MAX)


def hint(spec: Spec, ctx: Any) -> None:
    """Hints a spec's Problem to ctx (once per primitive call the op would make)."""
    if spec.key is None or spec.empty:
        return
    ffi, lib = _lib.load()
    plan, shape = plan_for(spec.key, ctx._h())
    spec.check(shape)
    for _ in range(spec.repeat):
        _lib.check(lib.pask_plan_hint(plan))


class Bound:
    """A plan with its pointers bound (a graph layer): calling it executes the
    plan on the calling thread's stream, one C call. It keeps its arrays and
    plan (and through the plan its context's handle) alive."""

    __slots__ = ("plan", "args", "keep", "result", "_execute", "_null")

    def __init__(self, plan: Any, arrays: tuple, gpu: bool, result: Any) -> None:
        abi = _abi()
        words = _words(abi, arrays, gpu)
        self.plan, self.keep, self.result = plan, (arrays, words), result
        self.args = abi.ffi.cast(abi.args, words)  # words are kept alive by keep
        self._execute, self._null = abi.execute, abi.null

    def __call__(self) -> None:
        status = self._execute(self.plan, self.args, self._null)
        if status:
            _lib.check(status)


class BoundSequence:
    """Bound calls run in order by one C call (pask_plan_execute_sequence): a
    graph's layers without a Python round trip per layer. Each call is
    dispatched as pask_plan_execute would (hints, policy, loads). It keeps its
    Bounds (their plans and arrays) alive."""

    __slots__ = ("calls", "_plans", "_args", "_solvers", "_decisions", "_done", "_n", "_execute", "_null")

    def __init__(self, calls: Sequence[Bound]) -> None:
        ffi, lib = _lib.load()
        self.calls = list(calls)
        n = self._n = len(self.calls)
        self._plans = ffi.new("const_pask_plan_t[]", [c.plan for c in self.calls] or 1)
        self._args = ffi.new("pask_plan_args_t *[]", [c.args for c in self.calls] or 1)
        self._solvers = ffi.new("const char *[]", max(n, 1))
        self._decisions = ffi.new("const char *[]", max(n, 1))
        self._done = ffi.new("int64_t *")
        self._execute, self._null = lib.pask_plan_execute_sequence, ffi.NULL

    def __len__(self) -> int:
        return self._n

    def run(self, choices: bool = False) -> Optional[List[Tuple[Any, Any]]]:
        """Runs the calls. choices: also return each call's (solver, decision)
        as raw C strings (static; decode with ffi.string). A failure raises the
        paskdnn.Error of the failing call; ``failed_at`` then says which."""
        n = self._n
        if choices:
            status = self._execute(self._plans, self._args, n, self._null, self._solvers, self._decisions, self._done)
        else:
            status = self._execute(self._plans, self._args, n, self._null, self._null, self._null, self._done)
        if status:
            _lib.check(status)
        if choices:
            s, d = self._solvers, self._decisions
            return [(s[i], d[i]) for i in range(n)]
        return None

    @property
    def failed_at(self) -> int:
        """The index of the call the last run stopped at (len(self) when all ran)."""
        return int(self._done[0])


def prepare(spec: Spec, ctx: Any, constant_weights: bool = False) -> Optional[Bound]:
    """The spec's plan on ctx with its pointers bound, checked now (None when the
    op has nothing to execute, e.g. a linear of zero rows).

    constant_weights (conv2d): the caller promises never to change the weight
    array's contents while the Bound lives; the plan (one of its own, not the
    cache's that eager calls share) may then keep the weights packed
    (pask_plan_set_constant_weights)."""
    handle = ctx._h()
    if spec.key is None or spec.empty:
        return None
    constant = constant_weights and spec.key[0] == "conv2d"
    if constant:
        ffi, lib = _lib.load()
        raw, shape = _create_plan(spec.key, handle)

        def destroy(p: Any, h: Any = handle, destroy_c: Any = lib.pask_plan_destroy) -> None:
            destroy_c(p)

        plan = ffi.gc(raw, destroy)
    else:
        plan, shape = plan_for(spec.key, handle)
    result, executions = spec.bind(shape, ctx)
    if len(executions) != 1:
        raise _unsupported("only ops of one primitive call can be prepared")
    bound = Bound(plan, executions[0], ctx._gpu, result)
    if constant:
        _lib.check(lib.pask_plan_set_constant_weights(plan, bound.args.w))
    return bound
