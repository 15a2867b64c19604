"""Loads libpaskdnn through cffi (ABI mode) on first use, never at import time.

The cdef comes from include/paskdnn.h (see tools/gen_cdef.py), so the C header
is the one description of the API.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional, Tuple

from ._errors import error_for_status

_lock = threading.Lock()
_state: Optional[Tuple[Any, Any]] = None

LIB_NAME = "libpaskdnn.so"


def library_dir() -> Path:
    """The folder holding libpaskdnn, its kernels/, include/ and pkgconfig/."""
    env = os.environ.get("PASKDNN_LIBRARY")
    if env:
        return Path(env).parent
    installed = Path(__file__).resolve().parent / "_lib"
    if (installed / LIB_NAME).exists():
        return installed
    from . import _build_info  # editable install: the build tree

    return Path(_build_info.LIBDIR)


def load() -> Tuple[Any, Any]:
    """Returns (ffi, lib), loading the library the first time."""
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            import cffi

            from ._cdef import CDEF

            ffi = cffi.FFI()
            ffi.cdef(CDEF)
            env = os.environ.get("PASKDNN_LIBRARY")
            path = Path(env) if env else library_dir() / LIB_NAME
            try:
                lib = ffi.dlopen(str(path))
            except OSError as e:  # pragma: no cover - broken installation
                raise ImportError(f"paskdnn: cannot load {path}: {e}") from e
            _state = (ffi, lib)
    return _state


def check(status: int) -> None:
    """Raises the paskdnn.Error subclass for a failed status, with the C message."""
    if status != 0:
        ffi, lib = load()
        message = ffi.string(lib.pask_last_error_message()).decode("utf-8", "replace")
        raise error_for_status(int(status), message)
