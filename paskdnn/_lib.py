"""Loads libpaskdnn through cffi (ABI mode) on first use, never at import time.

The cdef is read from the installed paskdnn.h (see _header.py), so the C header
is the one description of the API.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional, Tuple

from ._errors import BY_STATUS_NAME, error_for_status

#: The environment variables paskdnn reads, and what each is for. Any other
#: ``PASKDNN_*`` name (a typo such as ``PASKDNN_HINT``) is reported once, when
#: the library loads, as a warning on the ``paskdnn`` logger.
ENVIRONMENT = {
    "PASKDNN_LIBRARY": "path of libpaskdnn.so to load (its folder holds include/ and kernels/)",
    "PASKDNN_CACHE_DIR": "user cache folder (kernels, load_costs.json)",
    "PASKDNN_HINTS": "hints record a new context loads",
    "PASKDNN_NVRTC": "path of libnvrtc",
    "PASKDNN_CUDNN": "path of libcudnn.so.9",
    "PASKDNN_LIBCUDA": "path of the CUDA driver library",
    "PASKDNN_HIP": "path of libamdhip64",
    "PASKDNN_HIPRTC": "path of libhiprtc",
    "PASKDNN_MIOPEN": "path of libMIOpen",
    "PASKDNN_LOADER_YIELD_MS": "default of the context option loader_yield_ms",
    "PASKDNN_CAPTURE": "0 turns graph capture off in graph.Runner (default on for CUDA contexts)",
    "PASKDNN_T_SPAWN": "set by the coldstart runner for its child processes",
    "PASKDNN_SHA256": "portable: checksum code objects without the x86 SHA instructions (tests check both)",
    # read by the test suite only
    "PASKDNN_EMU_CXXFLAGS": "tests: compiler flags of the GPU-kernel emulation",
    "PASKDNN_SLOW_TESTS": "tests: run the slow tests",
    "PASKDNN_TEST_HIPRTC": "tests: a real hiprtc to compile with",
}

log = logging.getLogger("paskdnn")
log.addHandler(logging.NullHandler())  # a library never prints: the application decides


def _warn_unknown_environment() -> None:
    for name in sorted(os.environ):
        if name.startswith("PASKDNN_") and name not in ENVIRONMENT:
            import difflib  # only for a misspelt name: not on every process's way to its first call

            close = difflib.get_close_matches(name, ENVIRONMENT, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            log.warning("unknown environment variable %s ignored%s; paskdnn reads %s", name, hint,
                        ", ".join(sorted(ENVIRONMENT)))

_lock = threading.Lock()
_state: Optional[Tuple[Any, Any]] = None
_by_status: dict = {}

LIB_NAME = "libpaskdnn.so"


def library_dir() -> Path:
    """The folder holding libpaskdnn, its kernels/, include/ and pkgconfig/.

    Looked up in order: $PASKDNN_LIBRARY's folder; _lib/ beside this file (an
    installed wheel); the package's resources (an editable install, whose import
    hook maps _lib/libpaskdnn.so to the meson build tree's file: no build path
    is written into the package); the installed distribution (when a source
    checkout shadows the installed package).
    """
    env = os.environ.get("PASKDNN_LIBRARY")
    if env:
        _check_library_variable(env)
        return Path(env).parent
    installed = Path(__file__).resolve().parent / "_lib"
    if (installed / LIB_NAME).exists():
        return installed
    editable = _library_from_resources()
    if editable is not None:
        return editable
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        found = Path(str(distribution("paskdnn").locate_file("paskdnn/_lib")))
        if (found / LIB_NAME).exists():
            return found
    except (ImportError, PackageNotFoundError):
        pass
    raise ImportError("paskdnn: libpaskdnn.so not found; install the package with `pip install .` "
                      "or set PASKDNN_LIBRARY")


def _library_from_resources() -> Optional[Path]:
    """The folder of _lib/libpaskdnn.so as the package's resource reader sees it.

    meson-python's editable import hook serves the package's installed files from
    the build tree: there _lib/libpaskdnn.so is the build tree's library, and its
    folder holds include/ and kernels/ as an installed _lib/ does.
    """
    try:
        from importlib.resources import files

        lib = files(__package__).joinpath("_lib", LIB_NAME)
        if isinstance(lib, Path) and lib.is_file():
            return lib.resolve().parent
    except (ImportError, OSError, TypeError, ValueError, AttributeError):
        pass
    return None


def pkgconfig_dir() -> Path:
    """The folder to put on PKG_CONFIG_PATH for `pkg-config paskdnn`.

    An installed package has pkgconfig/paskdnn.pc beside the library. A meson
    build tree (an editable install, or PASKDNN_LIBRARY at a build) has meson's
    meson-uninstalled/paskdnn-uninstalled.pc instead, which pkg-config prefers
    when asked for paskdnn.
    """
    d = library_dir()
    if (d / "pkgconfig" / "paskdnn.pc").is_file():
        return d / "pkgconfig"
    for up in (d, *list(d.parents)[:3]):
        if (up / "meson-uninstalled" / "paskdnn-uninstalled.pc").is_file():
            return up / "meson-uninstalled"
    return d / "pkgconfig"


# Every C type string the bindings pass to ffi.new / ffi.cast / ffi.typeof.
_CALL_TYPES = ("void *", "void **", "int *", "char **", "uintptr_t", "int64_t[4]", "pask_stats_t",
               "pask_stats_t *", "pask_epilogue_t *", "pask_tensor_desc_t *", "pask_pool2d_params_t *",
               "pask_options_t *", "pask_op_t *", "pask_device_type_t *", "pask_conv2d_params_t *",
               "pask_context_t *", "pask_plan_t *", "pask_plan_args_t *", "pask_graph_t *",
               "pask_graph_info_t *")


def _check_library_variable(value: str) -> None:
    path = Path(value)
    if not path.is_file():
        raise ImportError(f"paskdnn: $PASKDNN_LIBRARY={value!r} is not a file; it must name libpaskdnn.so "
                          "(or be unset to use the installed library)")
    if not (path.parent / "include" / "paskdnn.h").is_file():
        raise ImportError(f"paskdnn: $PASKDNN_LIBRARY={value!r}: its folder has no include/paskdnn.h "
                          "(point it at libpaskdnn.so in a build or install tree)")


#: The prebuilt cffi module's file name, beside libpaskdnn (tools/gen_cffi.py).
PREBUILT_FFI = "paskdnn_cffi.py"


def prebuilt_ffi(folder: Path, cdef: str) -> Any:
    """The cffi FFI of the build's prebuilt module in ``folder`` (cffi's
    out-of-line ABI mode: the header's declarations parsed at build time), or
    None when the folder has none, or one made from another cdef, or one this
    cffi cannot read. Parsing the cdef at run time instead cost a fresh process
    about 75 ms (2-core Xeon, measured); loading the module about 1 ms.

    The module is read from the library's own folder (the installed package,
    or the build that $PASKDNN_LIBRARY names), never from the user cache."""
    import importlib.util

    file = folder / PREBUILT_FFI
    if not file.is_file():
        return None
    try:
        spec = importlib.util.spec_from_file_location("paskdnn._prebuilt_cffi", file)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - an unreadable module is a miss: parse the header
        log.debug("paskdnn: prebuilt cffi module %s not used: %s", file, e)
        return None
    if getattr(module, "CDEF", None) != cdef:
        log.debug("paskdnn: prebuilt cffi module %s was made from another header", file)
        return None
    return module.ffi


def load() -> Tuple[Any, Any]:
    """Returns (ffi, lib), loading the library the first time."""
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            from ._header import cdef_from_header

            env = os.environ.get("PASKDNN_LIBRARY")
            if env:
                _check_library_variable(env)
            path = Path(env) if env else library_dir() / LIB_NAME
            header = path.parent / "include" / "paskdnn.h"
            _warn_unknown_environment()
            cdef = cdef_from_header(header.read_text(encoding="utf-8"))
            ffi = prebuilt_ffi(path.parent, cdef)
            if ffi is None:
                import cffi

                log.debug("paskdnn: no prebuilt cffi tables for %s; parsing the header", header)
                ffi = cffi.FFI()
                ffi.cdef(cdef)
            try:
                lib = ffi.dlopen(str(path))
            except OSError as e:  # pragma: no cover - broken installation
                raise ImportError(f"paskdnn: cannot load {path}: {e}") from e
            # cffi parses a C type string on its first use (with pycparser, about
            # a millisecond each, when the cdef was parsed here): parse the ones
            # calls use now, not on a call's path (a fresh process's first
            # inference paid for them, measured).
            for t in _CALL_TYPES:
                ffi.typeof(t)
            _by_status.update({int(getattr(lib, name)): cls for name, cls in BY_STATUS_NAME.items()})
            _state = (ffi, lib)
    return _state


def check(status: int) -> None:
    """Raises the paskdnn.Error subclass for a failed status, with the C message."""
    if status != 0:
        ffi, lib = load()
        message = ffi.string(lib.pask_last_error_message()).decode("utf-8", "replace")
        raise error_for_status(int(status), message, _by_status)


class _Enums:
    """The C enums' values (``C.PASK_LAYOUT_NCHW``, ``C.PASK_ERROR_UNSUPPORTED``,
    ...), read from the cdef: the header is their one source. The first read
    loads the library; each value is kept as a plain attribute after that."""

    def __getattr__(self, name: str) -> int:
        if not name.startswith("PASK_"):
            raise AttributeError(name)
        _, lib = load()
        try:
            value = int(getattr(lib, name))
        except AttributeError:
            raise AttributeError(f"paskdnn.h defines no {name}") from None
        setattr(self, name, value)
        return value


C = _Enums()
