"""The functional API: torch.nn.functional's names, argument order and
semantics, on numpy float32 arrays (CPU contexts) or GPU arrays (CUDA contexts:
torch tensors, cupy arrays, paskdnn.DeviceArray or any DLPack array; float32,
float16, bfloat16).

Every op normalises its arguments once into a call spec (paskdnn/_spec.py:
types, dtypes, contiguity, the key of its prepared C call) and runs it: the
spec's C plan (made with ``pask_plan_create_*`` the first time these arguments
are seen on the context, then cached) is executed with the arrays' pointers
and the stream. Shape and parameter checks are the C core's, whose messages
come back as paskdnn.Error subclasses. On any error nothing is written to ``out``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _spec
from ._context import Context, get_default_context
from ._spec import PLANS as _EAGER  # noqa: F401  (the plan cache, by its old name)
from ._spec import PLANS_MAX as _EAGER_MAX  # noqa: F401
from ._spec import TensorSpec
from ._spec import exact as _exact
from ._spec import floats as _floats

IntPair = Union[int, Tuple[int, int]]
Padding = Union[int, str, Sequence[Any]]

__all__ = [
    "TensorSpec",
    "conv2d",
    "linear",
    "matmul",
    "gemm",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "add",
    "mul",
    "relu",
    "relu6",
    "sigmoid",
    "silu",
    "hardswish",
    "hardsigmoid",
    "gelu",
    "leaky_relu",
    "clamp",
    "hardtanh",
    "batch_norm",
    "scale_shift",
    "cat",
]


def _context(context: Optional[Context], stream: Any = None) -> Context:
    """The op's context (default: the process-wide one), open; stream= only on a GPU."""
    ctx = get_default_context() if context is None else context
    if not isinstance(ctx, Context):
        raise TypeError(f"context must be a paskdnn.Context, got {type(ctx).__name__}")
    ctx._h()  # a closed context raises ValueError
    if stream is not None and not ctx._gpu:
        raise ValueError("stream= applies to GPU contexts only")
    return ctx


def _prepare(op: str, context: Context, *args: Any, **kwargs: Any) -> Any:
    """The prepared call (a plan with its pointers bound, see _spec.Bound) of
    ``op(*args, **kwargs)`` on a context, as graph.Runner makes its layers."""
    ctx = _context(context)
    return _spec.prepare(_spec.SPECS[op](*args, **kwargs), ctx)


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
    activation_params: Optional[Tuple[float, ...]] = None,
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
        activation: None, ``"relu"``, ``"relu6"``, ``"sigmoid"``, ``"silu"``,
            ``"hardswish"``, ``"hardsigmoid"``, ``"gelu"``, ``"gelu_tanh"``,
            ``"leaky_relu"`` or ``"clamp"`` (torch.nn.functional's, gelu_tanh
            being gelu(approximate="tanh"), clamp torch.clamp's).
        activation_params: leaky_relu's ``(negative_slope,)``; clamp's
            ``(min, max)`` (``-inf``/``inf`` for no bound on a side).
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
    ctx = _context(context, stream)
    params = (("conv2d", stride, padding, dilation, groups, layout, weight_layout, activation, alpha, beta)
              + (activation_params or ())
              if _exact(stride, padding, dilation, groups, layout, weight_layout, activation)
              and _floats(alpha, beta) and _spec.flat_floats(activation_params) else None)
    return _spec.eager(ctx, stream, (input, weight, bias, residual), out, params,
                       lambda: _spec.conv2d_spec(input, weight, bias, stride, padding, dilation, groups, layout=layout,
                                                 weight_layout=weight_layout, activation=activation,
                                                 activation_params=activation_params, residual=residual, alpha=alpha,
                                                 beta=beta, out=out))


# ---- gemm, linear, matmul -----------------------------------------------------


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
    activation_params: Optional[Tuple[float, ...]] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """``C = act(alpha * op(a) @ op(b) + beta * C + bias)``, BLAS-style.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` is true. Matrices may have
    strided rows (e.g. column slices); the row stride becomes the leading
    dimension. ``bias`` has length N and is added to every row. With ``c`` the
    result is written into it and returned; ``beta != 0`` needs ``c``.
    activation and activation_params as :func:`conv2d`'s.
    """
    ctx = _context(context, stream)
    spec = _spec.gemm_spec(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b, bias=bias,
                           activation=activation, activation_params=activation_params)
    return _spec.run(spec, ctx, stream)


def linear(
    input: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    activation: Optional[str] = None,
    activation_params: Optional[Tuple[float, ...]] = None,
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """``y = act(input @ weight.T + bias)`` like ``torch.nn.functional.linear``:
    input (..., in_features), weight (out_features, in_features), bias (out_features,).
    activation and activation_params as :func:`conv2d`'s."""
    ctx = _context(context, stream)
    params = (("linear", activation) + (activation_params or ())
              if _exact(activation) and _spec.flat_floats(activation_params) else None)
    return _spec.eager(ctx, stream, (input, weight, bias, None), out, params,
                       lambda: _spec.linear_spec(input, weight, bias, activation=activation,
                                                 activation_params=activation_params, out=out))


def matmul(a: np.ndarray, b: np.ndarray, *, out: Optional[np.ndarray] = None,
           context: Optional[Context] = None, stream: Any = None) -> np.ndarray:
    """``numpy.matmul`` semantics: 1-D operands are promoted and the added axis
    removed, N-D operands are stacks of matrices broadcast over leading axes."""
    ctx = _context(context, stream)
    return _spec.run(_spec.matmul_spec(a, b, out=out), ctx, stream)


# ---- pooling ----------------------------------------------------------------


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
    kernel_size; padding counts as -inf and may be anything smaller than the
    dilated kernel, as ONNX allows; torch allows at most half of it).
    ``return_indices=True`` is not supported."""
    ctx = _context(context, stream)
    spec = _spec.max_pool2d_spec(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                                 layout=layout, out=out)
    return _spec.run(spec, ctx, stream)


def avg_pool2d(
    input: np.ndarray,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    *,
    dilation: IntPair = 1,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """Average pooling like ``torch.nn.functional.avg_pool2d``, plus ``dilation``
    (ONNX AveragePool's ``dilations``, opset 19; torch has none): the window's
    taps are ``dilation`` apart, and the divisor counts the taps inside the input
    (``count_include_pad=False``) or inside the padded input (``True``).
    ``padding`` may be anything smaller than the (dilated) window, as ONNX allows
    (torch: at most half of it)."""
    ctx = _context(context, stream)
    spec = _spec.avg_pool2d_spec(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                 divisor_override, dilation=dilation, layout=layout, out=out)
    return _spec.run(spec, ctx, stream)


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
    ctx = _context(context, stream)
    return _spec.run(_spec.adaptive_avg_pool2d_spec(input, output_size, layout=layout, out=out), ctx, stream)


# ---- element-wise: add, mul, activations, batch norm; cat -------------------------


def _eltwise(input: Any, mul: Any, add: Any, activation: Optional[str], layout: str, out: Any,
             context: Optional[Context], stream: Any, activation_params: Any = None) -> Any:
    ctx = _context(context, stream)
    spec = _spec.eltwise_spec(input, mul, add, activation=activation, activation_params=activation_params,
                              layout=layout, out=out)
    return _spec.run(spec, ctx, stream)


def _commuted(input: Any, other: Any) -> Tuple[Any, Any]:
    """(input, other) or, when only other has the full shape (a broadcast first
    operand, as torch allows), (other, input): the result has the full shape."""
    ishape, oshape = tuple(getattr(input, "shape", ())), tuple(getattr(other, "shape", ()))
    if len(oshape) > len(ishape) or (len(oshape) == len(ishape) and oshape != ishape and
                                     all(o >= i for o, i in zip(oshape, ishape))):
        return other, input
    return input, other


def add(input: Any, other: Any, *, activation: Optional[str] = None, activation_params: Any = None,
        layout: str = "NCHW", out: Any = None, context: Optional[Context] = None, stream: Any = None) -> Any:
    """``activation(input + other)``: other of input's shape or broadcast to it
    numpy-style (a per-channel (1, C, 1, 1) or (N, C, 1, 1) array in NCHW,
    (1, 1, 1, C) in NHWC, a (1,) scalar array, ...). Either operand may be the
    broadcast one. ``out`` may be ``input`` itself (in place). activation_params:
    leaky_relu's (negative_slope,), clamp's (min, max)."""
    input, other = _commuted(input, other)
    return _eltwise(input, None, other, activation, layout, out, context, stream, activation_params)


def mul(input: Any, other: Any, *, activation: Optional[str] = None, activation_params: Any = None,
        layout: str = "NCHW", out: Any = None, context: Optional[Context] = None, stream: Any = None) -> Any:
    """``activation(input * other)``, broadcasting as :func:`add` (e.g. the
    per-channel gate of a squeeze-and-excitation block)."""
    input, other = _commuted(input, other)
    return _eltwise(input, other, None, activation, layout, out, context, stream, activation_params)


def _activation_op(name: str) -> Any:
    def op(input: Any, *, layout: str = "NCHW", out: Any = None, context: Optional[Context] = None,
           stream: Any = None) -> Any:
        return _eltwise(input, None, None, name, layout, out, context, stream)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"``torch.nn.functional.{name}`` on a 4-D (or 3-D unbatched, 2-D, 1-D) array, element by element; "
                  "``out`` may be ``input`` itself (in place).")
    return op


relu = _activation_op("relu")
relu6 = _activation_op("relu6")
sigmoid = _activation_op("sigmoid")
silu = _activation_op("silu")
hardswish = _activation_op("hardswish")
hardsigmoid = _activation_op("hardsigmoid")


def leaky_relu(input: Any, negative_slope: float = 0.01, *, layout: str = "NCHW", out: Any = None,
               context: Optional[Context] = None, stream: Any = None) -> Any:
    """``torch.nn.functional.leaky_relu``: ``x < 0 ? negative_slope * x : x``."""
    ctx = _context(context, stream)
    spec = _spec.eltwise_spec(input, activation="leaky_relu", activation_params=(negative_slope,), layout=layout,
                              out=out)
    return _spec.run(spec, ctx, stream)


def clamp(input: Any, min: Optional[float] = None, max: Optional[float] = None, *, layout: str = "NCHW",
          out: Any = None, context: Optional[Context] = None, stream: Any = None) -> Any:
    """``torch.clamp`` with scalar bounds (None: unbounded on that side; NaN stays NaN)."""
    if min is None and max is None:
        raise ValueError("clamp needs min or max")
    lo = -np.inf if min is None else min
    hi = np.inf if max is None else max
    ctx = _context(context, stream)
    spec = _spec.eltwise_spec(input, activation="clamp", activation_params=(lo, hi), layout=layout, out=out)
    return _spec.run(spec, ctx, stream)


def hardtanh(input: Any, min_val: float = -1.0, max_val: float = 1.0, *, layout: str = "NCHW", out: Any = None,
             context: Optional[Context] = None, stream: Any = None) -> Any:
    """``torch.nn.functional.hardtanh``: clamp to [min_val, max_val]."""
    return clamp(input, min_val, max_val, layout=layout, out=out, context=context, stream=stream)


def gelu(input: Any, approximate: str = "none", *, layout: str = "NCHW", out: Any = None,
         context: Optional[Context] = None, stream: Any = None) -> Any:
    """``torch.nn.functional.gelu``: ``approximate="none"`` (erf) or ``"tanh"``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _eltwise(input, None, None, "gelu" if approximate == "none" else "gelu_tanh", layout, out, context,
                    stream)


def _host_vector(a: Any, name: str, ctx: Context) -> np.ndarray:
    """A per-channel vector as float64 on the host (copied from the GPU when it lives there)."""
    if isinstance(a, np.ndarray):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        return a.astype(np.float64)
    from . import _arrays, _lib

    if not _arrays.is_device_array(a):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    v = _arrays.view(a, name)
    if len(v.shape) != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(v.shape)}")
    if not ctx._gpu:
        raise TypeError("a CPU context takes numpy arrays; this array lives on a GPU")
    D = _arrays.dtypes()
    host = np.empty(v.shape, {D.F32: np.float32, D.F16: np.float16}.get(v.dcode, np.uint16))
    ffi, lib = _lib.load()
    if host.nbytes:
        _lib.check(lib.pask_memcpy(ctx._h(), ffi.cast("void *", host.ctypes.data), ffi.cast("void *", v.ptr),
                                   host.nbytes, lib.PASK_COPY_DEVICE_TO_HOST))
    if host.dtype == np.uint16:  # bfloat16 bits
        return (host.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return host.astype(np.float64)


def batch_norm_scale_shift(running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                           eps: float = 1e-5) -> Tuple[np.ndarray, np.ndarray]:
    """The per-channel (scale, shift) of inference batch norm, in float64:
    ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``."""
    mean = np.asarray(running_mean, np.float64)
    var = np.asarray(running_var, np.float64)
    if mean.ndim != 1 or var.shape != mean.shape:
        raise ValueError(f"running_mean and running_var must be 1-D of one length, got {mean.shape} and {var.shape}")
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if np.any(var + eps < 0):
        raise ValueError("running_var + eps must be >= 0")
    w = np.ones_like(mean) if weight is None else np.asarray(weight, np.float64)
    b = np.zeros_like(mean) if bias is None else np.asarray(bias, np.float64)
    if w.shape != mean.shape or b.shape != mean.shape:
        raise ValueError(f"weight and bias must be ({mean.shape[0]},), got {w.shape} and {b.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = w / np.sqrt(var + eps)
    return scale, b - mean * scale


def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5, *,
               activation: Optional[str] = None, layout: str = "NCHW", out: Any = None,
               context: Optional[Context] = None, stream: Any = None) -> Any:
    """Inference batch norm like ``torch.nn.functional.batch_norm(training=False)``,
    with an optional fused activation: ``act((x - mean) / sqrt(var + eps) * weight + bias)``
    per channel, run as one element-wise pass ``x * scale + shift``. The
    per-channel vectors are folded in float64 on the host (read back from the
    GPU where they live there: for a model, fold once, as the ONNX importer
    does, and call :func:`scale_shift`). ``training=True`` is not supported."""
    if training:
        from ._errors import UnsupportedError
        from ._lib import C

        raise UnsupportedError("batch_norm(training=True) is not supported: paskdnn runs inference",
                               C.PASK_ERROR_UNSUPPORTED)
    ctx = _context(context, stream)
    vecs = [None if v is None else _host_vector(v, name, ctx)
            for v, name in ((running_mean, "running_mean"), (running_var, "running_var"), (weight, "weight"),
                            (bias, "bias"))]
    scale, shift = batch_norm_scale_shift(*vecs, eps=eps)
    return scale_shift(input, scale, shift, activation=activation, layout=layout, out=out, context=ctx,
                       stream=stream)


def scale_shift(input: Any, scale: Any, shift: Any, *, activation: Optional[str] = None, layout: str = "NCHW",
                out: Any = None, context: Optional[Context] = None, stream: Any = None) -> Any:
    """``activation(input * scale[c] + shift[c])`` per channel, scale and shift
    of length C (host arrays, converted to the input's dtype and device, or
    arrays of the input's kind already in (1, C, 1, 1) / (1, 1, 1, C) form)."""
    ctx = _context(context, stream)
    x = _spec._array(input, "input")
    c = _spec.nchw_dims(_spec._batched(x, "input")[0].shape, _spec._layout(layout, _spec.LAYOUTS, "layout"))[1]
    shape = (1, c, 1, 1) if layout == "NCHW" else (1, 1, 1, c)

    def operand(v: Any, name: str) -> Any:
        if isinstance(v, np.ndarray) or isinstance(v, (list, tuple)):
            h = np.asarray(v, np.float64)
            if h.shape != (c,) and h.shape != shape:
                raise ValueError(f"{name} must have {c} values (one per channel), got shape {h.shape}")
            h = h.reshape(shape)
            if not ctx._gpu:
                return h.astype(np.float32)
            from ._context import asarray

            return asarray(h, dtype=x.dtype, context=ctx)
        return v

    return _eltwise(x, operand(scale, "scale"), operand(shift, "shift"), activation, layout, out, ctx, stream)


def cat(tensors: Sequence[Any], dim: int = 1, *, layout: str = "NCHW", out: Any = None,
        context: Optional[Context] = None, stream: Any = None) -> Any:
    """``torch.cat`` along the channel axis: dim 1 (or -3) of NCHW arrays, dim
    3 (or -1) of NHWC ones (``layout="NHWC"``); the other dims must agree."""
    ctx = _context(context, stream)
    return _spec.run(_spec.cat_spec(tensors, dim, layout=layout, out=out), ctx, stream)
