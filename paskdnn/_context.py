"""Contexts, the process-wide default context and the solver registry view."""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional, Sequence

from . import _lib

_DEVICE_TYPES = {"cpu": 0, "cuda": 1, "hip": 2}
_OPS = {0: "conv2d", 1: "gemm", 2: "pool2d"}
_DEVICE_NAMES = {v: k for k, v in _DEVICE_TYPES.items()}


def _parse_device(device: str) -> tuple:
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {type(device).__name__}")
    name, _, index = device.partition(":")
    if name not in _DEVICE_TYPES:
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda[:N]' or 'hip[:N]'")
    if index == "":
        return name, 0
    if not index.isdigit():
        raise ValueError(f"bad device index in {device!r}")
    return name, int(index)


class Context:
    """A device, its resident kernels and its dispatch policy.

    Args:
        device: ``"cpu"`` (``"cuda[:N]"`` and ``"hip[:N]"`` are not in this build yet).
        policy: ``"reactive"`` (load the best kernel on demand; the only policy of
            this build), ``None`` for the default.
        cache_dir: user kernel cache folder (default ``$PASKDNN_CACHE_DIR`` or
            ``~/.cache/paskdnn``); the CPU backend never loads host code from it.
        num_threads: CPU worker threads (default: all cores).
        solvers: names of the solvers this context may use (default: all);
            see :func:`paskdnn.solvers`.
        kernel_dir: folder of prebuilt kernel code objects (default: installed).
        cpu_isa: ``"avx512"``, ``"avx2"`` or ``"generic"`` to pin the CPU kernel
            variant (default: the best the processor supports).
    """

    def __init__(
        self,
        device: str = "cpu",
        policy: Optional[str] = None,
        cache_dir: Optional[str] = None,
        num_threads: Optional[int] = None,
        solvers: Optional[Sequence[str]] = None,
        kernel_dir: Optional[str] = None,
        cpu_isa: Optional[str] = None,
    ) -> None:
        ffi, lib = _lib.load()
        name, index = _parse_device(device)
        options: Dict[str, str] = {}
        if policy is not None:
            if not isinstance(policy, str):
                raise TypeError("policy must be a string")
            options["policy"] = policy
        if cache_dir is not None:
            options["cache_dir"] = os.fspath(cache_dir)
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, int):
                raise TypeError("num_threads must be an int")
            options["num_threads"] = str(num_threads)
        if solvers is not None:
            if isinstance(solvers, str):
                solvers = [solvers]
            names = list(solvers)
            if not names or not all(isinstance(s, str) and s and "," not in s for s in names):
                raise ValueError("solvers must be a non-empty list of solver names")
            options["solvers"] = ",".join(names)
        if kernel_dir is not None:
            options["kernel_dir"] = os.fspath(kernel_dir)
        if cpu_isa is not None:
            options["cpu_isa"] = str(cpu_isa)
        opts = ffi.new("pask_options_t *")
        _lib.check(lib.pask_options_create(opts))
        try:
            for key, value in options.items():
                _lib.check(lib.pask_options_set(opts[0], key.encode(), value.encode()))
            handle = ffi.new("pask_context_t *")
            _lib.check(lib.pask_context_create(handle, _DEVICE_TYPES[name], index, opts[0]))
        finally:
            lib.pask_options_destroy(opts[0])
        self._handle = ffi.gc(handle[0], lib.pask_context_destroy)
        self.device = f"{name}:{index}" if name != "cpu" else "cpu"
        self.policy = options.get("policy", "reactive")

    @property
    def num_threads(self) -> int:
        ffi, lib = _lib.load()
        out = ffi.new("int *")
        _lib.check(lib.pask_context_get_num_threads(self._handle, out))
        return int(out[0])

    def close(self) -> None:
        """Frees the context now (it is also freed when garbage collected)."""
        ffi, lib = _lib.load()
        if self._handle is not None:
            handle = self._handle
            self._handle = None
            ffi.release(handle)

    def __repr__(self) -> str:
        return f"paskdnn.Context(device={self.device!r}, policy={self.policy!r})"


_default: Optional[Context] = None
_default_lock = threading.Lock()


def get_default_context() -> Context:
    """The process-wide default context (CPU), created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Context()
    return _default


def set_default_context(context: Context) -> None:
    """Makes ``context`` the one ops use when no ``context=`` is given."""
    global _default
    if not isinstance(context, Context):
        raise TypeError("set_default_context needs a paskdnn.Context")
    with _default_lock:
        _default = context


def resolve(context: Optional[Context]) -> Any:
    ctx = get_default_context() if context is None else context
    if not isinstance(ctx, Context):
        raise TypeError(f"context must be a paskdnn.Context, got {type(ctx).__name__}")
    if ctx._handle is None:
        raise ValueError("this paskdnn.Context has been closed")
    return ctx._handle


def solvers(op: Optional[str] = None) -> List[Dict[str, Any]]:
    """The solver registry: dicts with ``id``, ``name``, ``op`` and ``device``, in table order."""
    ffi, lib = _lib.load()
    count = ffi.new("int *")
    _lib.check(lib.pask_solver_count(count))
    out = []
    sid, name, sop, dev = ffi.new("int *"), ffi.new("char **"), ffi.new("pask_op_t *"), ffi.new("pask_device_type_t *")
    for i in range(count[0]):
        _lib.check(lib.pask_solver_info(i, sid, name, sop, dev))
        entry = {
            "id": int(sid[0]),
            "name": ffi.string(name[0]).decode(),
            "op": _OPS[int(sop[0])],
            "device": _DEVICE_NAMES[int(dev[0])],
        }
        if op is None or entry["op"] == op:
            out.append(entry)
    if op is not None and op not in _OPS.values():
        raise ValueError(f"unknown op {op!r}; expected one of {sorted(_OPS.values())}")
    return out


def last_solver() -> str:
    """Name of the solver that ran this thread's last successful op ("" if none)."""
    ffi, lib = _lib.load()
    return ffi.string(lib.pask_last_solver()).decode()


def version() -> str:
    ffi, lib = _lib.load()
    return ffi.string(lib.pask_version_string()).decode()
