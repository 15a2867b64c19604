"""paskdnn: DNN primitives (conv2d, gemm, pooling) whose first call is nearly
as fast as a warm one.

Every call routes through a solver registry and a cache of resident kernels
filed by (device, op, layout, dtype). ``import paskdnn`` is cheap: the C library
is loaded on first use.
"""
from ._arrays import DeviceArray
from ._context import (Context, asarray, device_count, get_default_context, last_decision, last_solver,
                       set_default_context, solvers, version)
from ._errors import (
    BackendUnavailableError,
    Error,
    InternalError,
    InvalidArgumentError,
    LoadError,
    NullPointerError,
    OutOfMemoryError,
    ShapeMismatchError,
    SizeOverflowError,
    UnsupportedError,
)
from .functional import TensorSpec, adaptive_avg_pool2d, avg_pool2d, conv2d, gemm, linear, matmul, max_pool2d

__version__ = "0.1.0"

__all__ = [
    "Context",
    "TensorSpec",
    "DeviceArray",
    "asarray",
    "device_count",
    "get_default_context",
    "set_default_context",
    "solvers",
    "last_decision",
    "last_solver",
    "version",
    "conv2d",
    "linear",
    "matmul",
    "gemm",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "Error",
    "InvalidArgumentError",
    "NullPointerError",
    "ShapeMismatchError",
    "UnsupportedError",
    "SizeOverflowError",
    "OutOfMemoryError",
    "BackendUnavailableError",
    "LoadError",
    "InternalError",
]
