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
            ``"hardswish"``, ``"hardsigmoid"``, ``"gelu"`` or ``"gelu_tanh"``
            (torch.nn.functional's, gelu_tanh being gelu(approximate="tanh")).
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
    spec = _spec.conv2d_spec(input, weight, bias, stride, padding, dilation, groups, layout=layout,
                             weight_layout=weight_layout, activation=activation, residual=residual, alpha=alpha,
                             beta=beta, out=out)
    return _spec.run(spec, ctx, stream)


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
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """``C = act(alpha * op(a) @ op(b) + beta * C + bias)``, BLAS-style.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` is true. Matrices may have
    strided rows (e.g. column slices); the row stride becomes the leading
    dimension. ``bias`` has length N and is added to every row. With ``c`` the
    result is written into it and returned; ``beta != 0`` needs ``c``.
    """
    ctx = _context(context, stream)
    spec = _spec.gemm_spec(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b, bias=bias,
                           activation=activation)
    return _spec.run(spec, ctx, stream)


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
    ctx = _context(context, stream)
    return _spec.run(_spec.linear_spec(input, weight, bias, activation=activation, out=out), ctx, stream)


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
    kernel_size; padding counts as -inf and is at most half the dilated kernel).
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
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
    context: Optional[Context] = None,
    stream: Any = None,
) -> np.ndarray:
    """Average pooling like ``torch.nn.functional.avg_pool2d``."""
    ctx = _context(context, stream)
    spec = _spec.avg_pool2d_spec(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                 divisor_override, layout=layout, out=out)
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
