"""Contexts, the process-wide default context and the solver registry view."""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import _lib
from ._background import Background

# numpy, the arrays and the call specs (_arrays, _spec) are imported where a
# function needs them: a Context is made without numpy (paskdnn.load starts a
# GPU's context while numpy is still being imported).

# Device and op names -> the cdef's enum names (values read from the cdef).
_DEVICE_TYPES = {"cpu": "PASK_DEVICE_CPU", "cuda": "PASK_DEVICE_CUDA", "hip": "PASK_DEVICE_HIP"}
_OPS = {"conv2d": "PASK_OP_CONV2D", "gemm": "PASK_OP_GEMM", "pool2d": "PASK_OP_POOL2D", "eltwise": "PASK_OP_ELTWISE",
        "cat": "PASK_OP_CAT"}


def _forget_plans(handle: Any) -> None:
    """Drops the cached plans of a context closed or collected: there are none
    where the call specs (paskdnn._spec) were never imported. Where another
    thread is importing them right now, the import statement waits for it to
    finish (sys.modules holds the module half made meanwhile); where this
    thread is (a collection inside its import), no plan can exist yet."""
    if __package__ + "._spec" not in sys.modules:
        return
    from . import _spec

    forget = getattr(_spec, "forget", None)
    if forget is not None:
        forget(handle)


def _device_type(name: str) -> int:
    return getattr(_lib.C, _DEVICE_TYPES[name])


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
    """A device, its resident kernels, loader threads, hint queue and policy.

    Args:
        device: ``"cpu"``, ``"cuda[:N]"`` or ``"hip[:N]"`` (AMD GPUs through HIP and
            MIOpen; written to their documented APIs and tested against a test
            double, not yet run on AMD hardware: see docs/amd.md).
        policy: ``"pask"`` (default: proactive loading from hints plus selective
            reuse of resident kernels), ``"proactive"``, ``"reuse"`` or
            ``"reactive"`` (load the best kernel on demand, blocking).
        cache_dir: user cache folder (default ``$PASKDNN_CACHE_DIR`` or
            ``~/.cache/paskdnn``): measured load costs; never host code.
        num_threads: CPU worker threads for kernels (default: all cores).
        solvers: names of the solvers this context may use (default: all);
            see :func:`paskdnn.solvers`.
        kernel_dir: folder of prebuilt kernel code objects (default: installed).
        cpu_isa: ``"avx512"``, ``"avx2"`` or ``"generic"`` to pin the CPU kernel
            variant (default: the best the processor supports).
        loader_threads: background loader threads (default 2; 4 for GPU contexts
            on hosts with 8 or more cores; 0 = none).
        lookahead: how many upcoming hints the loader works on (default 256).
        loader_yield_ms: GPU contexts: the longest a loader thread holds back
            a freshly built cuDNN plan's first run (where the driver loads its
            kernels, which can hold up calls made meanwhile) while this
            context's calls are running; it runs in the first gap of 0.5 ms
            without calls (default ``$PASKDNN_LOADER_YIELD_MS``, else 50;
            0 = never held back).
        resident_capacity: kernels kept resident, LRU (default 256; 0 = none
            beyond the call).
        hints: a hints record saved by :meth:`save_record` to preload from
            (default ``$PASKDNN_HINTS``).
        trace: record the event log for :meth:`export_trace` (default True).
        debug_load_delay_ms: sleep added to every kernel load; for tests that
            need slow loads to be deterministic.
        nvrtc: path of libnvrtc for CUDA contexts (default: found with
            cuda.pathfinder when installed, else ``$PASKDNN_NVRTC`` or the
            usual sonames). Without NVRTC only prebuilt cubins are used.
        cudnn: CUDA contexts only. ``False`` leaves cuDNN out; a path names
            libcudnn.so.9 (default: ``$PASKDNN_CUDNN``, else the nvidia-cudnn
            wheel's copy, else the usual sonames). Without cuDNN the cuDNN
            solvers are simply not candidates.
        explore: GPU contexts with the ``reuse`` or ``pask`` policy: give each
            candidate within 2x (analytically) of the fastest device-timed one
            a timed trial run (default False; not yet measured on a GPU).
        float32_precision: GPU contexts: ``"high"`` (default) runs float32
            conv2d and linear/gemm on TF32 tensor cores (10-bit mantissa
            inputs, float32 accumulation, like PyTorch's ``allow_tf32``);
            ``"highest"`` at full float32 precision (each product as three TF32
            products on paskdnn's own kernels, about 3x the tensor-core work;
            cuDNN is then not a candidate for them). CPU contexts always
            compute in float32.
        hip: HIP contexts only: path of libamdhip64 (default ``$PASKDNN_HIP``,
            else the usual sonames).
        hiprtc: HIP contexts only: path of libhiprtc (default
            ``$PASKDNN_HIPRTC``, else the usual sonames, else the HIP runtime
            itself). Without hiprtc paskdnn's own HIP kernels are not candidates.
        miopen: HIP contexts only. ``False`` leaves MIOpen out; a path names
            libMIOpen.so (default ``$PASKDNN_MIOPEN``, else the usual sonames).
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
        loader_threads: Optional[int] = None,
        lookahead: Optional[int] = None,
        loader_yield_ms: Optional[int] = None,
        resident_capacity: Optional[int] = None,
        hints: Optional[str] = None,
        trace: Optional[bool] = None,
        debug_load_delay_ms: Optional[int] = None,
        nvrtc: Optional[str] = None,
        cudnn: Union[None, bool, str, "os.PathLike[str]"] = None,
        explore: Optional[bool] = None,
        float32_precision: Optional[str] = None,
        hip: Union[None, str, "os.PathLike[str]"] = None,
        hiprtc: Union[None, str, "os.PathLike[str]"] = None,
        miopen: Union[None, bool, str, "os.PathLike[str]"] = None,
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
        for key, value in (("num_threads", num_threads), ("loader_threads", loader_threads),
                           ("lookahead", lookahead), ("loader_yield_ms", loader_yield_ms),
                           ("resident_capacity", resident_capacity),
                           ("debug_load_delay_ms", debug_load_delay_ms)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{key} must be an int")
                options[key] = str(value)
        if hints is not None:
            options["hints_file"] = os.fspath(hints)
        if trace is not None:
            options["trace"] = "1" if trace else "0"
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
        if nvrtc is not None:
            options["nvrtc_library"] = os.fspath(nvrtc)
        elif name == "cuda" and not os.environ.get("PASKDNN_NVRTC"):
            found = _find_nvrtc()
            if found:
                options["nvrtc_library"] = found
        if explore is not None:
            options["explore"] = "1" if explore else "0"
        if float32_precision is not None:
            if not isinstance(float32_precision, str):
                raise TypeError("float32_precision must be 'high' or 'highest'")
            options["float32_precision"] = float32_precision
        if cudnn is False:
            options["cudnn"] = "0"
        elif cudnn is not None and cudnn is not True:
            if not isinstance(cudnn, (str, os.PathLike)):
                raise TypeError("cudnn must be a bool or the path of libcudnn.so.9")
            options["cudnn_library"] = os.fspath(cudnn)
        elif name == "cuda" and not os.environ.get("PASKDNN_CUDNN"):
            found = _find_cudnn()
            if found:
                options["cudnn_library"] = found
        if (hip is not None or hiprtc is not None or miopen is not None) and name != "hip":
            raise ValueError("hip=, hiprtc= and miopen= apply to HIP contexts only")
        for key, value in (("hip_library", hip), ("hiprtc_library", hiprtc)):
            if value is not None:
                if not isinstance(value, (str, os.PathLike)):
                    raise TypeError(f"{key.split('_')[0]} must be the path of a library")
                options[key] = os.fspath(value)
        if miopen is False:
            options["miopen"] = "0"
        elif miopen is not None and miopen is not True:
            if not isinstance(miopen, (str, os.PathLike)):
                raise TypeError("miopen must be a bool or the path of libMIOpen.so")
            options["miopen_library"] = os.fspath(miopen)
        opts = ffi.new("pask_options_t *")
        _lib.check(lib.pask_options_create(opts))
        try:
            for key, value in options.items():
                _lib.check(lib.pask_options_set(opts[0], key.encode(), value.encode()))
            handle = ffi.new("pask_context_t *")
            _lib.check(lib.pask_context_create(handle, _device_type(name), index, opts[0]))
        finally:
            lib.pask_options_destroy(opts[0])
        # The C context dies (close(), or the handle's collection) under the
        # lifetime's lock, after marking it dead: a DeviceArray freed later, or
        # on another thread, or by the same garbage collection in any order,
        # checks it under the same lock and leaves memory the context took with it.
        life = _Lifetime()

        def destroy(h: Any, life: _Lifetime = life, destroy_c: Any = lib.pask_context_destroy) -> None:
            with life.lock:
                life.alive = False
                destroy_c(h)

        self._handle = ffi.gc(handle[0], destroy)
        self._alive = life  # shared with this context's DeviceArrays
        self.device = f"{name}:{index}" if name != "cpu" else "cpu"
        self._gpu = name != "cpu"
        # Per calling thread: the stream last given to pask_set_stream (see _use_stream).
        self._tls = threading.local()
        # The plans cached for this context hold its handle: they go when it is
        # closed or collected (the C context is freed after its last plan).
        self._forget = weakref.finalize(self, _forget_plans, self._handle)
        out = ffi.new("char **")
        _lib.check(lib.pask_context_get_policy(self._handle, out))
        self.policy = ffi.string(out[0]).decode()
        _live.add(self)

    def _h(self) -> Any:
        if self._handle is None:
            raise ValueError("this paskdnn.Context has been closed")
        return self._handle

    def _use_stream(self, stream: int) -> Any:
        """The ``void *`` of a stream handle for a call's plan execution. The
        calling thread's stream on this context (what synchronize(), memcpy and
        a DeviceArray's numpy() wait for) follows the stream the thread last
        ran on: pask_set_stream is called when it changes, not on every call."""
        tls = self._tls
        if getattr(tls, "stream", None) != stream:
            ffi, lib = _lib.load()
            ptr = ffi.cast("void *", stream)
            _lib.check(lib.pask_set_stream(self._h(), ptr))
            tls.stream, tls.ptr = stream, ptr
        return tls.ptr

    def hint(self, op: str, *args: Any, **kwargs: Any) -> None:
        """Tells the context a Problem that will run soon, in execution order.

        ``op`` names a paskdnn function ("conv2d", "linear", "matmul", "gemm",
        "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d") and the remaining
        arguments are that function's, with tensors given as arrays,
        :class:`paskdnn.TensorSpec` or shape tuples (``bias=True`` for a bias of
        the right length). Nothing runs; the loader threads bring the best
        kernel in ahead of the call.
        """
        from . import _spec

        if op not in _spec.SPECS:
            raise ValueError(f"cannot hint {op!r}; expected one of {tuple(_spec.SPECS)}")
        if "context" in kwargs:
            raise TypeError("hint() takes no context= (the hint goes to this context)")
        kwargs.pop("stream", None)  # the ops take it; a hint runs nothing
        self._h()
        _spec.hint(_spec.SPECS[op](*args, hinting=True, **kwargs), self)

    def clear_hints(self) -> None:
        """Drops every pending hint."""
        ffi, lib = _lib.load()
        _lib.check(lib.pask_hint_clear(self._h()))

    def stats(self) -> Dict[str, Any]:
        """The context's counters: calls, resident_hits, reuses, inflight_waits,
        blocking_loads, blocking_wait_ms, loads, load_ms, compiles, compile_ms,
        load_failures, prefetches, hints, hints_matched, hints_dropped,
        evictions, resident, cache_hits, cache_rejects."""
        ffi, lib = _lib.load()
        st = ffi.new("pask_stats_t *")
        _lib.check(lib.pask_context_get_stats(self._h(), st))
        return {name: (float(getattr(st, name)) if name.endswith("_ms") else int(getattr(st, name)))
                for name, _ in ffi.typeof("pask_stats_t").fields}

    def wait_loads(self, timeout: Optional[float] = None) -> bool:
        """Blocks until no kernel load is queued or running (or ``timeout``
        seconds pass); returns whether the loader is idle."""
        ffi, lib = _lib.load()
        idle = ffi.new("int *")
        ms = 2**62 if timeout is None else max(0, int(timeout * 1000))
        _lib.check(lib.pask_context_wait_loads(self._h(), ms, idle))
        return bool(idle[0])

    def set_resident_capacity(self, capacity: int) -> None:
        """Bounds the resident kernels (LRU); 0 keeps none beyond the call."""
        ffi, lib = _lib.load()
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError("capacity must be an int")
        _lib.check(lib.pask_context_set_resident_capacity(self._h(), capacity))

    def export_trace(self, path: str) -> None:
        """Writes the event log as Chrome/Perfetto trace JSON (open it in
        ui.perfetto.dev or chrome://tracing): one row per caller thread and
        per loader thread."""
        ffi, lib = _lib.load()
        _lib.check(lib.pask_context_export_trace(self._h(), os.fsencode(os.fspath(path))))

    def save_record(self, path: str) -> None:
        """Saves the distinct Problems this context ran, in first-seen order, as a
        JSON hints record; pass it as ``hints=`` (or ``$PASKDNN_HINTS``) to a new
        context to start warm."""
        ffi, lib = _lib.load()
        _lib.check(lib.pask_context_save_record(self._h(), os.fsencode(os.fspath(path))))

    @property
    def num_threads(self) -> int:
        ffi, lib = _lib.load()
        out = ffi.new("int *")
        _lib.check(lib.pask_context_get_num_threads(self._h(), out))
        return int(out[0])

    @property
    def target(self) -> str:
        """The code-object target this context's device runs best ("sm_90",
        "gfx90a", "x86_64-avx512"): a bundle's arch. Asks no vendor library."""
        ffi, lib = _lib.load()
        out = ffi.new("const char **")
        _lib.check(lib.pask_context_get_target(self._h(), out))
        return ffi.string(out[0]).decode()

    def prime_thread(self) -> bool:
        """Pays the calling thread's one-time set-up in the vendor libraries now
        (cuDNN's first execution on a thread: about 0.15 ms of host time on an
        H100), e.g. at model load on the thread that will run inference, once
        the context's library set-up (a loader thread's first task) is done; it
        never waits for it. Returns whether anything was primed: False on the
        CPU, without cuDNN, with the reactive policy, without loader threads,
        or before the set-up is done. :class:`paskdnn.graph.Runner` calls it
        when it is created."""
        ffi, lib = _lib.load()
        primed = ffi.new("int *")
        _lib.check(lib.pask_prime_thread(self._h(), primed))
        return bool(primed[0])

    def synchronize(self) -> None:
        """Waits for the calling thread's stream on this context (GPU)."""
        ffi, lib = _lib.load()
        _lib.check(lib.pask_synchronize(self._h()))

    def close(self) -> None:
        """Closes the context now: later calls raise ``ValueError``; calls
        running on other threads are waited for, then the loader threads are
        joined and the kernels, library handles, device memory taken through
        the context and the device itself are released. (It is also closed when
        garbage collected.) Closing twice does nothing."""
        ffi, lib = _lib.load()
        handle = self._handle
        if handle is None:
            return
        self._handle = None
        # The C handle itself is freed when the last reference to it goes (a
        # thread that read it before this line still holds one): a call that
        # races this close finds a closed context, never freed memory.
        try:
            with self._alive.lock:
                self._alive.alive = False
                _lib.check(lib.pask_context_close(handle))
        finally:
            self._forget()  # its cached plans: executing them now would fail

    def __repr__(self) -> str:
        return f"paskdnn.Context(device={self.device!r}, policy={self.policy!r})"


class PendingContext:
    """A Context being made on a thread of its own: paskdnn.load starts a GPU's
    (a few hundred ms in the driver, which releases the GIL) before it imports
    numpy and checks the bundle. then(ctx), if given, runs on the same thread
    once the context is up (a bundle's kernels handed over); its return value
    is then_value. result() waits and returns the context, or raises what its
    creation or then raised; discard() waits and closes the context."""

    def __init__(self, device: str, policy: Optional[str], options: Dict[str, Any],
                 then: Optional[Callable[["Context"], Any]] = None) -> None:
        self._ctx: Optional[Context] = None
        self.then_value: Any = None

        def make() -> None:
            self._ctx = Context(device, policy=policy, **options)
            if then is not None:
                self.then_value = then(self._ctx)

        self._work = Background("paskdnn-context", make)

    def result(self) -> "Context":
        self._work.result()
        assert self._ctx is not None
        return self._ctx

    def discard(self) -> None:
        self._work.wait()
        if self._ctx is not None:
            self._ctx.close()


class _Lifetime:
    """Whether a C context still lives, and the lock its end and its
    DeviceArrays' frees take (reentrant: a collection may run inside either)."""

    __slots__ = ("alive", "lock")

    def __init__(self) -> None:
        self.alive = True
        self.lock = threading.RLock()


# Contexts still alive at interpreter exit are closed first, so loader threads
# are joined before the runtime tears down.
_live: "weakref.WeakSet[Context]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for ctx in list(_live):
        try:
            ctx.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


_default: Optional[Context] = None
_default_lock = threading.Lock()
_cuda_defaults: Dict[str, Context] = {}


# The nvidia-cuda-nvrtc wheels' library folders: CUDA 13 (nvidia/cu13/lib) and 12.
_NVRTC_WHEELS = (("nvidia.cu13", "libnvrtc.so.13"), ("nvidia.cuda_nvrtc", "libnvrtc.so.12"))


def _find_nvrtc() -> Optional[str]:
    """libnvrtc's path: an nvidia-cuda-nvrtc wheel's copy, found without loading
    it or importing cuda.pathfinder (about 90 ms on a context's start path;
    the C core opens the library itself), else what cuda.pathfinder finds;
    None: the C core searches the usual sonames."""
    import importlib.util

    for package, soname in _NVRTC_WHEELS:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = os.path.join(folder, "lib", soname)
            if os.path.isfile(candidate):
                return candidate
    try:
        from cuda import pathfinder
    except ImportError:
        return None
    try:
        return str(pathfinder.load_nvidia_dynamic_lib("nvrtc").abs_path)
    except Exception:  # not installed there: the C core searches the usual sonames
        return None


def _find_cudnn() -> Optional[str]:
    """libcudnn.so.9's path: the nvidia-cudnn wheel's copy, found without
    loading it (the C core opens it on a loader thread), else what
    cuda.pathfinder finds; None: the C core tries the usual sonames."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia.cudnn")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(folder, "lib", "libcudnn.so.9")
        if os.path.isfile(candidate):
            return candidate
    try:  # cuda.pathfinder knows more places, but finds a library by loading it
        from cuda import pathfinder

        if "cudnn" in getattr(pathfinder, "SUPPORTED_NVIDIA_LIBNAMES", ()):
            return str(pathfinder.load_nvidia_dynamic_lib("cudnn").abs_path)
    except Exception:  # not installed, or cuDNN not found there: the C core tries the sonames
        pass
    return None


def default_cuda_context(device: str = "cuda") -> "Context":
    """A process-wide context per GPU device, ``"cuda[:N]"`` or ``"hip[:N]"``
    (used by paskdnn.asarray)."""
    key = device if ":" in device else device + ":0"
    with _default_lock:
        if key not in _cuda_defaults:
            _cuda_defaults[key] = Context(device=key)
        return _cuda_defaults[key]


def device_count(device_type: str = "cuda") -> int:
    """Number of devices of a type this process can use (0 without a driver).
    For ``"hip"``, hip-python (``from hip import hip``) answers when installed,
    else paskdnn's own HIP loader (hipGetDeviceCount)."""
    ffi, lib = _lib.load()
    if device_type not in _DEVICE_TYPES:
        raise ValueError(f"unknown device type {device_type!r}")
    if device_type == "hip":
        found = _hip_python_device_count()
        if found is not None:
            return found
    out = ffi.new("int *")
    _lib.check(lib.pask_device_count(_device_type(device_type), out))
    return int(out[0])


def probe(device_type: str = "cuda", nvrtc: Optional[str] = None, cudnn: Optional[str] = None,
          hip: Optional[str] = None, hiprtc: Optional[str] = None, miopen: Optional[str] = None,
          cache_dir: Optional[str] = None) -> Dict[str, Any]:
    """What a context of ``device_type`` would find on this machine (pask_probe):
    the cache folder and, for ``"cuda"`` / ``"hip"``, the driver or runtime, its
    devices and architectures, the run-time compiler and the vendor DNN library,
    each as ``{"ok", "name", "file", "version", "error"}``. Loads those libraries
    (once per process, as contexts do); creates no context. Library paths left
    None are found as Context finds them."""
    ffi, lib = _lib.load()
    if device_type not in _DEVICE_TYPES:
        raise ValueError(f"unknown device type {device_type!r}")
    options: Dict[str, str] = {}
    for key, value in (("nvrtc_library", nvrtc), ("cudnn_library", cudnn), ("hip_library", hip),
                       ("hiprtc_library", hiprtc), ("miopen_library", miopen), ("cache_dir", cache_dir)):
        if value is not None:
            options[key] = os.fspath(value)
    opts = ffi.new("pask_options_t *")
    _lib.check(lib.pask_options_create(opts))
    try:
        for key, value in options.items():
            _lib.check(lib.pask_options_set(opts[0], key.encode(), value.encode()))
        out = ffi.new("const char **")
        _lib.check(lib.pask_probe(_device_type(device_type), opts[0], out))
        return json.loads(ffi.string(out[0]).decode())
    finally:
        lib.pask_options_destroy(opts[0])


def _hip_python_device_count() -> Optional[int]:
    """hipGetDeviceCount through hip-python (ROCm's Python bindings), or None
    when hip-python is not installed or cannot load the HIP runtime."""
    try:
        from hip import hip  # type: ignore[import-not-found]
    except Exception:  # not installed, or its HIP runtime is missing
        return None
    try:
        err, count = hip.hipGetDeviceCount()
        ok = err == hip.hipError_t.hipSuccess
    except Exception:  # hip-python could not reach a runtime: let the C core answer
        return None
    return int(count) if ok else 0


def get_default_context() -> Context:
    """The process-wide default context (CPU), created on first use (and
    created anew in a child of ``os.fork()``)."""
    global _default, _default_made_here
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Context()
                _default_made_here = True
    return _default


def set_default_context(context: Context) -> None:
    """Makes ``context`` the one ops use when no ``context=`` is given."""
    global _default, _default_made_here
    if not isinstance(context, Context):
        raise TypeError("set_default_context needs a paskdnn.Context")
    with _default_lock:
        _default = context
        _default_made_here = False


_default_made_here = False


def _after_fork_in_child() -> None:
    """A child of fork() inherits the parent's contexts without their threads:
    the C library refuses calls on them (a clear error) and never joins them.
    Here the locks another parent thread may have held are made anew, the
    inherited contexts' device memory is left alone, and the contexts paskdnn
    made by itself (the default ones) are dropped so the child makes its own."""
    global _default, _default_lock, _default_made_here
    _default_lock = threading.Lock()
    _lib._lock = threading.Lock()
    for ctx in list(_live):
        ctx._alive.lock = threading.RLock()
        ctx._alive.alive = False
    if _default_made_here:
        _default = None
        _default_made_here = False
    _cuda_defaults.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def solvers(op: Optional[str] = None) -> List[Dict[str, Any]]:
    """The solver registry: dicts with ``id``, ``name``, ``op`` and ``device``, in table order."""
    ffi, lib = _lib.load()
    ops = {getattr(_lib.C, v): k for k, v in _OPS.items()}
    devices = {_device_type(k): k for k in _DEVICE_TYPES}
    count = ffi.new("int *")
    _lib.check(lib.pask_solver_count(count))
    out = []
    sid, name, sop, dev = ffi.new("int *"), ffi.new("char **"), ffi.new("pask_op_t *"), ffi.new("pask_device_type_t *")
    for i in range(count[0]):
        _lib.check(lib.pask_solver_info(i, sid, name, sop, dev))
        entry = {
            "id": int(sid[0]),
            "name": ffi.string(name[0]).decode(),
            "op": ops[int(sop[0])],
            "device": devices[int(dev[0])],
        }
        if op is None or entry["op"] == op:
            out.append(entry)
    if op is not None and op not in _OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {sorted(_OPS)}")
    return out


def last_decision() -> str:
    """What the policy did for this thread's last successful op: "resident",
    "reuse", "waited", "load" ("" if none)."""
    ffi, lib = _lib.load()
    return ffi.string(lib.pask_last_decision()).decode()


def last_solver() -> str:
    """Name of the solver that ran this thread's last successful op ("" if none)."""
    ffi, lib = _lib.load()
    return ffi.string(lib.pask_last_solver()).decode()


def version() -> str:
    ffi, lib = _lib.load()
    return ffi.string(lib.pask_version_string()).decode()


def asarray(x: Any, device: str = "cuda", dtype: Optional[str] = None, context: Any = None) -> Any:
    """Copies a host array (numpy) to the device of ``context`` (default: a
    process-wide context of ``device``, "cuda[:N]" or "hip[:N]") as a
    DeviceArray; dtype "float32", "float16" or "bfloat16" (default: the array's)."""
    if context is None and device not in ("cuda", "hip") and not device.startswith(("cuda:", "hip:")):
        raise ValueError("asarray copies to a GPU: device='cuda', 'cuda:N', 'hip' or 'hip:N'")
    ctx = context if context is not None else default_cuda_context(device)
    if not isinstance(ctx, Context):
        raise TypeError("context must be a paskdnn.Context")
    import numpy as np

    from . import _arrays

    a = np.asarray(x)
    D = _arrays.dtypes()
    name = dtype or ("float16" if a.dtype == np.float16 else "float32")
    if name == "float32":
        host, dcode = np.ascontiguousarray(a, np.float32), D.F32
    elif name == "float16":
        host, dcode = np.ascontiguousarray(a, np.float16), D.F16
    elif name == "bfloat16":
        f = np.ascontiguousarray(a, np.float32).view(np.uint32)
        rounded = ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
        host, dcode = rounded, D.BF16
    else:
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {name!r}")
    arr = _arrays.DeviceArray._empty(a.shape, dcode, ctx)
    ffi, lib = _lib.load()
    if arr.nbytes:
        _lib.check(lib.pask_memcpy(ctx._h(), arr._ptr, ffi.cast("void *", host.ctypes.data), arr.nbytes,
                                   lib.PASK_COPY_HOST_TO_DEVICE))
    return arr
