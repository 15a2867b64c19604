"""Arrays on the GPU: views of the caller's arrays (torch, cupy, anything with
``__cuda_array_interface__`` or DLPack, CUDA or ROCm) and paskdnn's own small DeviceArray."""
from __future__ import annotations

import ctypes
import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _lib

# DLPack device types (dlpack.h DLDeviceType)
KDL_CUDA, KDL_ROCM = 2, 10


class DTypes:
    """The dtypes paskdnn takes: their pask_dtype_t codes (read from the cdef),
    names, sizes and array-interface type strings."""

    __slots__ = ("F32", "F16", "BF16", "code", "name", "itemsize", "typestr")

    def __init__(self) -> None:
        C = _lib.C
        self.F32, self.F16, self.BF16 = C.PASK_DTYPE_FLOAT32, C.PASK_DTYPE_FLOAT16, C.PASK_DTYPE_BFLOAT16
        self.code = {"float32": self.F32, "float16": self.F16, "bfloat16": self.BF16}
        self.name = {v: k for k, v in self.code.items()}
        self.itemsize = {self.F32: 4, self.F16: 2, self.BF16: 2}
        self.typestr = {"<f4": self.F32, "<f2": self.F16}


_DTYPES: Optional[DTypes] = None


def dtypes() -> DTypes:
    """The dtype table (made on first use: it loads the library)."""
    global _DTYPES
    if _DTYPES is None:
        _DTYPES = DTypes()
    return _DTYPES


class DevView:
    """A borrowed view of a C-contiguous device array: pointer, shape, dtype code."""

    __slots__ = ("ptr", "shape", "dcode", "owner", "kind", "device_index")

    def __init__(self, ptr: int, shape: Tuple[int, ...], dcode: int, owner: Any, kind: str, device_index: int = 0):
        self.ptr, self.shape, self.dcode, self.owner, self.kind = int(ptr), tuple(shape), dcode, owner, kind
        self.device_index = device_index

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> str:
        return dtypes().name[self.dcode]

    def reshaped(self, shape: Sequence[int]) -> "DevView":
        return DevView(self.ptr, tuple(shape), self.dcode, self.owner, self.kind, self.device_index)

    def offset(self, elements: int, shape: Sequence[int]) -> "DevView":
        return DevView(self.ptr + elements * dtypes().itemsize[self.dcode], tuple(shape), self.dcode, self.owner,
                       self.kind, self.device_index)


def _contiguous(shape: Sequence[int], strides: Optional[Sequence[int]], itemsize: int) -> bool:
    if strides is None:
        return True
    expect = itemsize
    for dim, st in zip(reversed(shape), reversed(strides)):
        if dim != 1 and st != expect:
            return False
        expect *= dim
    return True


_TORCH_CODES: Optional[dict] = None


def _torch_codes() -> dict:
    global _TORCH_CODES
    if _TORCH_CODES is None:
        import torch

        D = dtypes()
        _TORCH_CODES = {torch.float32: D.F32, torch.float16: D.F16, torch.bfloat16: D.BF16}
    return _TORCH_CODES


def torch_view(t: Any, name: str) -> DevView:
    """A DevView of a CUDA torch tensor (checked: dtype, contiguity)."""
    return _torch_view(t, name)


def _torch_view(t: Any, name: str) -> DevView:
    code = _torch_codes().get(t.dtype)
    if code is None:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (use .contiguous())")
    if type(t) not in KINDS:
        KINDS[type(t)] = _torch_kind()
    return DevView(t.data_ptr(), tuple(t.shape), code, t, "torch", max(t.get_device(), 0))


# ---- array kinds, as the eager memo reads them ------------------------------------


class Kind:
    """How the eager memo (_spec.eager) reads an array of one Python type
    without making a DevView. ``meta(a)``: what of the array a memo key holds
    (everything a call's normalisation reads of it but its address); ``address(a)``:
    its address, or None where the array is not usable as is (not C-contiguous:
    the full normalisation then says why); ``empty(a, shape, ctx)``: a new
    output of a's kind, dtype and device; ``stream(a)``: the stream its
    framework runs on now (GPU kinds)."""

    __slots__ = ("meta", "address", "empty", "stream")

    def __init__(self, meta: Any, address: Any, empty: Any, stream: Any) -> None:
        self.meta, self.address, self.empty, self.stream = meta, address, empty, stream


def _numpy_address(a: np.ndarray) -> Optional[int]:
    if not a.flags.c_contiguous:
        return None
    ffi = _lib.load()[0]
    return int(ffi.cast("uintptr_t", ffi.from_buffer(a)))


def _torch_kind() -> Kind:
    """The Kind of torch tensors (made once, when the first CUDA tensor is viewed)."""
    global _TORCH_KIND
    if _TORCH_KIND is None:
        import torch

        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        if raw is not None:  # the handle alone, without building a Stream object
            def stream(t: Any) -> int:
                return int(raw(t.get_device()))
        else:
            def stream(t: Any) -> int:
                return int(torch.cuda.current_stream(t.device).cuda_stream)
        _TORCH_KIND = Kind(lambda t: (t.shape, t.dtype, t.get_device()),
                           lambda t: t.data_ptr() if t.is_contiguous() else None,
                           lambda t, shape, ctx: t.new_empty(shape), stream)
    return _TORCH_KIND


_TORCH_KIND: Optional[Kind] = None
# Python type -> Kind: numpy arrays, and each torch tensor type once a CUDA tensor of it was viewed.
KINDS: dict = {np.ndarray: Kind(lambda a: (a.shape, a.dtype), _numpy_address,
                                lambda a, shape, ctx: np.empty(shape, np.float32), None)}


def is_device_array(a: Any) -> bool:
    if type(a) is DeviceArray:
        return True
    mod = type(a).__module__
    if mod.startswith("torch"):
        return getattr(a, "is_cuda", False) is True
    return hasattr(a, "__cuda_array_interface__") or (hasattr(a, "__dlpack__") and not isinstance(a, np.ndarray))


def view(a: Any, name: str) -> DevView:
    """A DevView of a GPU array, or a TypeError/ValueError saying why not."""
    if type(a).__module__.startswith("torch"):
        if not a.is_cuda:
            raise TypeError(f"{name} is a CPU torch tensor but the context is a CUDA one")
        return _torch_view(a, name)
    if type(a) is DeviceArray:  # paskdnn's own: C-contiguous, its address kept (no interface dict per call)
        return DevView(a._addr, a.shape, a.dcode, a, "paskdnn", a.device_index)
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        D = dtypes()
        typestr = cai["typestr"]
        if typestr not in D.typestr and not (isinstance(a, DeviceArray) and a.dcode == D.BF16):
            raise TypeError(f"{name} must be float32 or float16 (bfloat16 through torch tensors or "
                            f"paskdnn.asarray(..., dtype='bfloat16')), got {typestr}")
        dcode = a.dcode if isinstance(a, DeviceArray) else D.typestr[typestr]
        shape = tuple(cai["shape"])
        if not _contiguous(shape, cai.get("strides"), D.itemsize[dcode]):
            raise ValueError(f"{name} must be C-contiguous")
        kind = "paskdnn" if isinstance(a, DeviceArray) else ("cupy" if type(a).__module__.startswith("cupy") else "cai")
        return DevView(cai["data"][0], shape, dcode, a, kind, getattr(a, "device_index", 0))
    if hasattr(a, "__dlpack__") and _dlpack_device_type(a) == KDL_ROCM:
        return _rocm_dlpack_view(a, name)
    if hasattr(a, "__dlpack__"):
        try:
            from cuda.core.utils import StridedMemoryView
        except ImportError:
            raise TypeError(f"{name}: reading a DLPack-only array needs the cuda-core package") from None
        v = StridedMemoryView(a, stream_ptr=-1)
        dt = np.dtype(v.dtype)
        codes = {np.dtype(np.float32): dtypes().F32, np.dtype(np.float16): dtypes().F16}
        if dt not in codes:
            raise TypeError(f"{name} must be float32 or float16, got {dt}")
        if not _contiguous(v.shape, v.strides and [s * dt.itemsize for s in v.strides], dt.itemsize):
            raise ValueError(f"{name} must be C-contiguous")
        return DevView(v.ptr, tuple(v.shape), codes[dt], a, "dlpack", v.device_id)
    raise TypeError(f"{name} must be a GPU array (torch, cupy, paskdnn.DeviceArray, DLPack) for a CUDA context, "
                    f"got {type(a).__name__}")


def _dlpack_device_type(a: Any) -> int:
    try:
        return int(a.__dlpack_device__()[0])
    except Exception:  # no __dlpack_device__: the consumer finds out from the capsule
        return -1


def _rocm_dlpack_view(a: Any, name: str) -> DevView:
    """A DevView of a ROCm DLPack array (device type 10), read from its capsule.
    The capsule is kept (not consumed), so the producer's own capsule
    destructor releases the tensor when the view goes away."""
    capsule = a.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    addr = get(capsule, b"dltensor")
    if not addr:
        raise TypeError(f"{name}: __dlpack__ did not return a DLPack tensor capsule")
    t = _DLManagedTensor.from_address(addr).dl_tensor
    if t.device.device_type != KDL_ROCM:
        raise TypeError(f"{name} is not a ROCm array (DLPack device type {t.device.device_type})")
    code, bits, lanes = t.dtype.code, t.dtype.bits, t.dtype.lanes
    D = dtypes()
    codes = {(2, 32): D.F32, (2, 16): D.F16, (4, 16): D.BF16}  # kDLFloat = 2, kDLBfloat = 4
    if lanes != 1 or (code, bits) not in codes:
        raise TypeError(f"{name} must be float32, float16 or bfloat16")
    dcode = codes[(code, bits)]
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    strides = None if not t.strides else [int(t.strides[i]) * D.itemsize[dcode] for i in range(t.ndim)]
    if not _contiguous(shape, strides, D.itemsize[dcode]):
        raise ValueError(f"{name} must be C-contiguous")
    return DevView(int(t.data or 0) + int(t.byte_offset), shape, dcode, (a, capsule), "dlpack", int(t.device.device_id))


def empty_like_kind(like: DevView, shape: Sequence[int], ctx: Any) -> Any:
    """A new array of like's kind (torch tensor, cupy array, else DeviceArray)."""
    D = dtypes()
    if like.kind == "torch":
        import torch

        dt = {D.F32: torch.float32, D.F16: torch.float16, D.BF16: torch.bfloat16}[like.dcode]
        return torch.empty(tuple(shape), dtype=dt, device=like.owner.device)
    if like.kind == "cupy" and like.dcode != D.BF16:
        import cupy

        return cupy.empty(tuple(shape), dtype=np.float32 if like.dcode == D.F32 else np.float16)
    return DeviceArray._empty(tuple(shape), like.dcode, ctx)


def stream_of(stream: Any, like: Optional[DevView]) -> int:
    """A CUstream handle from stream=, else the caller's framework's current stream."""
    if stream is None:
        if like is not None and like.kind == "torch":
            import torch

            raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
            if raw is not None:  # the handle alone, without building a Stream object
                try:
                    return int(raw(like.device_index))
                except (TypeError, RuntimeError):
                    pass
            return int(torch.cuda.current_stream(like.owner.device).cuda_stream)
        if like is not None and like.kind == "cupy":
            import cupy

            return int(cupy.cuda.get_current_stream().ptr)
        return 0
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr", "handle"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    raise TypeError(f"stream must be an int handle or a stream object, got {type(stream).__name__}")


class DeviceArray:
    """A C-contiguous array in a device's memory, for users with neither torch
    nor cupy. Exposes ``__cuda_array_interface__`` (float32/float16) and
    ``__dlpack__``; ``numpy()`` copies it to the host."""

    def __init__(self) -> None:
        raise TypeError("use paskdnn.asarray(x, device='cuda') to make a DeviceArray")

    @classmethod
    def _empty(cls, shape: Tuple[int, ...], dcode: int, ctx: Any) -> "DeviceArray":
        """Device memory of ctx (a paskdnn.Context) for shape and dtype code."""
        ffi, lib = _lib.load()
        self = object.__new__(cls)
        self.shape = tuple(int(s) for s in shape)
        self.dcode = dcode
        handle = ctx._h()
        self._handle = handle
        self.device_index = int(ctx.device.partition(":")[2] or 0)
        self._dl_type = KDL_ROCM if ctx.device.startswith("hip") else KDL_CUDA
        nbytes = math.prod(self.shape) * dtypes().itemsize[dcode]
        out = ffi.new("void **")
        _lib.check(lib.pask_malloc(handle, max(nbytes, 1), out))
        life = ctx._alive  # freed only while the context lives; a dead context took its memory with it
        self._alive = life

        def free(p: Any, h: Any = handle, life: Any = life, free_c: Any = lib.pask_free) -> None:
            with life.lock:
                if life.alive:
                    free_c(h, p)

        self._ptr = ffi.gc(out[0], free)
        self._addr = int(ffi.cast("uintptr_t", out[0]))
        self.nbytes = nbytes
        return self

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> str:
        return dtypes().name[self.dcode]

    @property
    def data_ptr(self) -> int:
        return self._addr

    @property
    def __cuda_array_interface__(self) -> dict:
        D = dtypes()
        typestr = {D.F32: "<f4", D.F16: "<f2", D.BF16: "<V2"}[self.dcode]
        return {"shape": self.shape, "typestr": typestr, "data": (self.data_ptr, False), "version": 3,
                "strides": None}

    def _reshaped(self, shape: Sequence[int]) -> "DeviceArray":
        """The same memory under another shape of as many elements (it keeps the memory alive)."""
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != math.prod(self.shape):
            raise ValueError(f"cannot view {self.shape} as {shape}")
        v = object.__new__(DeviceArray)
        v.__dict__.update(self.__dict__)
        v.shape = shape
        return v

    def numpy(self) -> np.ndarray:
        """A host copy (bfloat16 comes back as float32)."""
        ffi, lib = _lib.load()
        raw = np.empty(self.nbytes, np.uint8)
        with self._alive.lock:
            if not self._alive.alive:
                raise ValueError("this DeviceArray's context has been closed")
            if self.nbytes:
                _lib.check(lib.pask_memcpy(self._handle, ffi.cast("void *", raw.ctypes.data), self._ptr, self.nbytes,
                                           lib.PASK_COPY_DEVICE_TO_HOST))
        D = dtypes()
        if self.dcode == D.BF16:
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(self.shape)
        return raw.view(np.float32 if self.dcode == D.F32 else np.float16).reshape(self.shape)

    def __dlpack_device__(self) -> Tuple[int, int]:
        return (self._dl_type, self.device_index)  # kDLCUDA or kDLROCM

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        return _dlpack_capsule(self)

    def __repr__(self) -> str:
        return f"paskdnn.DeviceArray(shape={self.shape}, dtype={self.dtype})"


# ---- DLPack export (capsule built with ctypes) ------------------------------


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]
_keep: dict = {}


@_DELETER
def _dl_deleter(ptr: Any) -> None:
    _keep.pop(ctypes.addressof(ptr.contents), None)


def _dlpack_capsule(arr: DeviceArray) -> Any:
    shape = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
    mt = _DLManagedTensor()
    mt.dl_tensor.data = arr.data_ptr
    mt.dl_tensor.device = _DLDevice(arr._dl_type, arr.device_index)
    mt.dl_tensor.ndim = arr.ndim
    D = dtypes()
    mt.dl_tensor.dtype = _DLDataType(4 if arr.dcode == D.BF16 else 2, 16 if arr.dcode != D.F32 else 32, 1)
    mt.dl_tensor.shape = shape
    mt.dl_tensor.strides = None
    mt.dl_tensor.byte_offset = 0
    mt.deleter = _dl_deleter
    _keep[ctypes.addressof(mt)] = (mt, shape, arr)
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(ctypes.addressof(mt), b"dltensor", None)


# paskdnn's own arrays: always C-contiguous; the default stream (stream_of's answer for them).
KINDS[DeviceArray] = Kind(lambda a: (a.shape, a.dcode, a.device_index, a._dl_type), lambda a: a._addr,
                          lambda a, shape, ctx: DeviceArray._empty(shape, a.dcode, ctx), lambda a: 0)
