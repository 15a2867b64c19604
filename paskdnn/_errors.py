"""Exceptions raised by paskdnn. Every C status maps to one class here."""
from __future__ import annotations


class Error(Exception):
    """Base class of paskdnn errors; ``status`` is the C status code, ``message`` the C message."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class InvalidArgumentError(Error, ValueError):
    """A value out of range or inconsistent (PASK_ERROR_INVALID_ARGUMENT)."""


class NullPointerError(Error, ValueError):
    """A required argument was missing (PASK_ERROR_NULL_POINTER)."""


class ShapeMismatchError(Error, ValueError):
    """Tensor shapes do not agree (PASK_ERROR_SHAPE_MISMATCH)."""


class UnsupportedError(Error, NotImplementedError):
    """Valid, but not supported by this build or device (PASK_ERROR_UNSUPPORTED)."""


class SizeOverflowError(Error, OverflowError):
    """A size computation would overflow (PASK_ERROR_OVERFLOW)."""


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed (PASK_ERROR_OUT_OF_MEMORY)."""


class BackendUnavailableError(Error, RuntimeError):
    """The device API or vendor library could not be loaded (PASK_ERROR_BACKEND_UNAVAILABLE)."""


class LoadError(Error, RuntimeError):
    """A kernel code object could not be found or loaded (PASK_ERROR_LOAD_FAILED)."""


class InternalError(Error, RuntimeError):
    """A bug in paskdnn (PASK_ERROR_INTERNAL); please report it."""


class BundleError(Error, ValueError):
    """A bundle file (python -m paskdnn precompile) that cannot be used: truncated,
    corrupted (a checksum does not match), foreign (not a bundle) or of another
    format version. ``path``, ``section`` (e.g. "header", "index", "weights",
    "kernels.sm_90") and ``offset`` (bytes from the start of the file) say where;
    section and offset are None where no one place is to blame."""

    def __init__(self, message: str, path: str = "", section: "str | None" = None,
                 offset: "int | None" = None) -> None:
        super().__init__(message)
        self.path = path
        self.section = section
        self.offset = offset


#: The class of each C status, by its name in the cdef (pask_status_t); the
#: numbers come from the cdef when the library loads (see _lib.load).
BY_STATUS_NAME = {
    "PASK_ERROR_INVALID_ARGUMENT": InvalidArgumentError,
    "PASK_ERROR_NULL_POINTER": NullPointerError,
    "PASK_ERROR_SHAPE_MISMATCH": ShapeMismatchError,
    "PASK_ERROR_UNSUPPORTED": UnsupportedError,
    "PASK_ERROR_OVERFLOW": SizeOverflowError,
    "PASK_ERROR_OUT_OF_MEMORY": OutOfMemoryError,
    "PASK_ERROR_BACKEND_UNAVAILABLE": BackendUnavailableError,
    "PASK_ERROR_LOAD_FAILED": LoadError,
    "PASK_ERROR_INTERNAL": InternalError,
}


def error_for_status(status: int, message: str, by_status: dict) -> Error:
    """The exception for a C status; by_status maps status numbers to classes."""
    cls = by_status.get(status, Error)
    return cls(message or f"paskdnn status {status}", status)
