"""A model zoo: torchvision's ResNet-18, ResNet-50, VGG-16 and MobileNetV2 as
paskdnn Graphs.

Every builder takes ``(weights=None, *, seed=0, layout="NCHW",
dtype="float32", num_classes=1000)`` and returns a validated
:class:`paskdnn.graph.Graph` for 224x224 RGB input:

* ``weights=None``: seeded random weights, made as a torchvision-style
  state_dict (:func:`state_dict`) and then folded, so random and real weights
  take the same path;
* ``weights="model.npz"`` (or any mapping of arrays): array names follow
  torchvision's ``state_dict()`` (``conv1.weight``, ``layer1.0.bn1.running_var``,
  ``features.1.conv.0.0.weight``, ``classifier.0.weight``, ...);
  ``num_batches_tracked`` entries are ignored, anything else missing, extra or
  of the wrong shape raises ValueError naming it.

Graph conventions (the node params are the functional op's keyword arguments):

* ``conv2d``: params ``stride``, ``padding``, ``dilation``, ``groups``,
  ``activation`` (``"relu"``, ``"relu6"`` or None), ``layout``,
  ``weight_layout`` ("OIHW" for NCHW graphs, "OHWI" for NHWC); weights
  ``weight`` and ``bias`` with batch norm (eps 1e-5) folded in; an optional
  ``inputs[1]`` is the residual, added before the activation;
* ``max_pool2d``: ``kernel_size``, ``stride``, ``padding``, ``layout``;
* ``adaptive_avg_pool2d``: ``output_size``, ``layout``;
* ``flatten``: no params (a reshape to (N, -1) in the graph's layout; the
  first linear layer's columns are permuted to match for NHWC);
* ``linear``: ``activation``; weights ``weight`` (out, in) and ``bias``.

Weights are float32 numpy arrays whatever ``dtype`` says; ``Graph.dtype``
tells the runner what to convert them to when it uploads them.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .graph import Graph, Node

__all__ = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "MODELS", "build", "state_dict", "save_npz",
           "load_npz", "BN_EPS"]

BN_EPS = 1e-5
_LAYOUTS = ("NCHW", "NHWC")
_DTYPES = ("float32", "float16", "bfloat16")

Weights = Union[None, str, "os.PathLike[str]", Mapping[str, Any]]


# ---- architecture specs ----------------------------------------------------------
#
# A model is described once, as a list of layer records naming torchvision's
# state_dict prefixes; the same description produces the expected state_dict
# shapes, the random state_dict, and the graph.


class _Conv:
    """A conv (torchvision prefix ``conv``) optionally followed by a batch norm
    (prefix ``bn``), an activation and a residual add."""

    def __init__(self, conv: str, bn: Optional[str], cin: int, cout: int, k: int, stride: int = 1,
                 groups: int = 1, bias: bool = False, activation: Optional[str] = None,
                 src: str = "", out: str = "", residual: Optional[str] = None) -> None:
        self.conv, self.bn, self.cin, self.cout, self.k = conv, bn, cin, cout, k
        self.stride, self.groups, self.bias, self.activation = stride, groups, bias, activation
        self.padding = (k - 1) // 2
        self.src, self.out, self.residual = src, out, residual


class _Linear:
    def __init__(self, prefix: str, fin: int, fout: int, activation: Optional[str], src: str, out: str) -> None:
        self.prefix, self.fin, self.fout, self.activation, self.src, self.out = prefix, fin, fout, activation, src, out


class _Op:
    """A weightless node: pools and flatten."""

    def __init__(self, name: str, op: str, params: Dict[str, Any], src: str, out: str) -> None:
        self.name, self.op, self.params, self.src, self.out = name, op, params, src, out


class _Spec:
    def __init__(self, name: str) -> None:
        self.name = name
        self.layers: List[Any] = []
        self.input = "input"
        self.output = ""
        # spatial size (h, w) of the tensor flattened before the first linear
        # layer at the graph's 224x224 input; drives the NHWC column permutation
        self.flatten_hw: Tuple[int, int] = (1, 1)

    def add(self, layer: Any) -> str:
        self.layers.append(layer)
        return layer.out


def _resnet_spec(name: str, block: str, layers: List[int], num_classes: int) -> _Spec:
    s = _Spec(name)
    x = s.add(_Conv("conv1", "bn1", 3, 64, 7, 2, activation="relu", src=s.input, out="conv1"))
    x = s.add(_Op("maxpool", "max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, x, "maxpool"))
    expansion = 1 if block == "basic" else 4
    inplanes = 64
    for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for bi in range(blocks):
            stride = 2 if (li > 1 and bi == 0) else 1
            p = f"layer{li}.{bi}"
            identity = x
            ds = None
            if stride != 1 or inplanes != planes * expansion:
                ds = _Conv(f"{p}.downsample.0", f"{p}.downsample.1", inplanes, planes * expansion, 1, stride,
                           src=x, out=f"{p}.downsample")
                identity = ds.out
            if block == "basic":
                h = s.add(_Conv(f"{p}.conv1", f"{p}.bn1", inplanes, planes, 3, stride, activation="relu",
                                src=x, out=f"{p}.conv1"))
                last = _Conv(f"{p}.conv2", f"{p}.bn2", planes, planes, 3, 1, activation="relu", src=h,
                             out=f"{p}.conv2", residual=identity)
            else:  # bottleneck, ResNet v1.5: the stride sits on the 3x3
                h = s.add(_Conv(f"{p}.conv1", f"{p}.bn1", inplanes, planes, 1, 1, activation="relu",
                                src=x, out=f"{p}.conv1"))
                h = s.add(_Conv(f"{p}.conv2", f"{p}.bn2", planes, planes, 3, stride, activation="relu",
                                src=h, out=f"{p}.conv2"))
                last = _Conv(f"{p}.conv3", f"{p}.bn3", planes, planes * expansion, 1, 1, activation="relu",
                             src=h, out=f"{p}.conv3", residual=identity)
            if ds is not None:
                s.add(ds)
            x = s.add(last)
            inplanes = planes * expansion
    x = s.add(_Op("avgpool", "adaptive_avg_pool2d", {"output_size": 1}, x, "avgpool"))
    x = s.add(_Op("flatten", "flatten", {}, x, "flatten"))
    s.output = s.add(_Linear("fc", 512 * expansion, num_classes, None, x, "fc"))
    return s


_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _vgg16_spec(num_classes: int) -> _Spec:
    s = _Spec("vgg16")
    x, cin, idx = s.input, 3, 0
    for v in _VGG16_CFG:
        if v == "M":
            x = s.add(_Op(f"features.{idx}", "max_pool2d", {"kernel_size": 2, "stride": 2, "padding": 0}, x,
                          f"features.{idx}"))
            idx += 1
        else:
            # Conv2d at features.idx, its ReLU at features.idx+1 (fused)
            x = s.add(_Conv(f"features.{idx}", None, cin, v, 3, 1, bias=True, activation="relu", src=x,
                            out=f"features.{idx}"))
            cin, idx = v, idx + 2
    x = s.add(_Op("avgpool", "adaptive_avg_pool2d", {"output_size": 7}, x, "avgpool"))
    x = s.add(_Op("flatten", "flatten", {}, x, "flatten"))
    s.flatten_hw = (7, 7)
    # classifier: 0 Linear, 1 ReLU, 2 Dropout, 3 Linear, 4 ReLU, 5 Dropout, 6 Linear
    x = s.add(_Linear("classifier.0", 512 * 7 * 7, 4096, "relu", x, "classifier.0"))
    x = s.add(_Linear("classifier.3", 4096, 4096, "relu", x, "classifier.3"))
    s.output = s.add(_Linear("classifier.6", 4096, num_classes, None, x, "classifier.6"))
    return s


# (expand ratio t, output channels c, repeats n, first stride s), torchvision's table
_MBV2_CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)]


def _mobilenet_v2_spec(num_classes: int) -> _Spec:
    s = _Spec("mobilenet_v2")
    x = s.add(_Conv("features.0.0", "features.0.1", 3, 32, 3, 2, activation="relu6", src=s.input,
                    out="features.0"))
    cin, idx = 32, 1
    for t, c, n, first_stride in _MBV2_CFG:
        for i in range(n):
            stride = first_stride if i == 0 else 1
            p = f"features.{idx}.conv"
            hidden = cin * t
            h, j = x, 0
            if t != 1:  # pointwise expansion: Conv2dNormActivation at conv.0
                h = s.add(_Conv(f"{p}.{j}.0", f"{p}.{j}.1", cin, hidden, 1, 1, activation="relu6", src=h,
                                out=f"{p}.{j}"))
                j += 1
            h = s.add(_Conv(f"{p}.{j}.0", f"{p}.{j}.1", hidden, hidden, 3, stride, groups=hidden,
                            activation="relu6", src=h, out=f"{p}.{j}"))
            j += 1
            # linear projection: a bare Conv2d at conv.j and its BatchNorm at conv.j+1
            residual = x if (stride == 1 and cin == c) else None
            x = s.add(_Conv(f"{p}.{j}", f"{p}.{j + 1}", hidden, c, 1, 1, activation=None, src=h,
                            out=f"features.{idx}", residual=residual))
            cin, idx = c, idx + 1
    x = s.add(_Conv(f"features.{idx}.0", f"features.{idx}.1", cin, 1280, 1, 1, activation="relu6", src=x,
                    out=f"features.{idx}"))
    x = s.add(_Op("avgpool", "adaptive_avg_pool2d", {"output_size": 1}, x, "avgpool"))
    x = s.add(_Op("flatten", "flatten", {}, x, "flatten"))
    # classifier: 0 Dropout, 1 Linear
    s.output = s.add(_Linear("classifier.1", 1280, num_classes, None, x, "classifier.1"))
    return s


_SPECS: Dict[str, Callable[[int], _Spec]] = {
    "resnet18": lambda nc: _resnet_spec("resnet18", "basic", [2, 2, 2, 2], nc),
    "resnet50": lambda nc: _resnet_spec("resnet50", "bottleneck", [3, 4, 6, 3], nc),
    "vgg16": _vgg16_spec,
    "mobilenet_v2": _mobilenet_v2_spec,
}


def _spec(name: str, num_classes: int) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(_SPECS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return _SPECS[name](int(num_classes))


# ---- state dicts -------------------------------------------------------------------


def _shapes(spec: _Spec) -> Dict[str, Tuple[int, ...]]:
    """The torchvision state_dict's entries (without num_batches_tracked) and shapes."""
    out: Dict[str, Tuple[int, ...]] = {}
    for layer in spec.layers:
        if isinstance(layer, _Conv):
            out[f"{layer.conv}.weight"] = (layer.cout, layer.cin // layer.groups, layer.k, layer.k)
            if layer.bias:
                out[f"{layer.conv}.bias"] = (layer.cout,)
            if layer.bn:
                for k in ("weight", "bias", "running_mean", "running_var"):
                    out[f"{layer.bn}.{k}"] = (layer.cout,)
        elif isinstance(layer, _Linear):
            out[f"{layer.prefix}.weight"] = (layer.fout, layer.fin)
            out[f"{layer.prefix}.bias"] = (layer.fout,)
    return out


def _random_state(spec: _Spec, seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sd: Dict[str, np.ndarray] = {}

    def normal(shape: Tuple[int, ...], std: float) -> np.ndarray:
        a = rng.standard_normal(shape, dtype=np.float32)
        a *= np.float32(std)
        return a

    for layer in spec.layers:
        if isinstance(layer, _Conv):
            fan_in = (layer.cin // layer.groups) * layer.k * layer.k
            sd[f"{layer.conv}.weight"] = normal((layer.cout, layer.cin // layer.groups, layer.k, layer.k),
                                                np.sqrt(2.0 / fan_in))
            if layer.bias:
                sd[f"{layer.conv}.bias"] = normal((layer.cout,), 0.1)
            if layer.bn:
                c = layer.cout
                # the last BN of a residual branch starts small, as in trained networks (and
                # torchvision's zero_init_residual): the residual stream stays bounded, so
                # deep models stay finite in float16
                lo, hi = (0.0, 0.25) if layer.residual else (0.5, 1.5)
                sd[f"{layer.bn}.weight"] = rng.uniform(lo, hi, c).astype(np.float32)
                sd[f"{layer.bn}.bias"] = normal((c,), 0.1)
                sd[f"{layer.bn}.running_mean"] = normal((c,), 0.1)
                sd[f"{layer.bn}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
                sd[f"{layer.bn}.num_batches_tracked"] = np.array(0, np.int64)
        elif isinstance(layer, _Linear):
            sd[f"{layer.prefix}.weight"] = normal((layer.fout, layer.fin), np.sqrt(2.0 / layer.fin))
            sd[f"{layer.prefix}.bias"] = normal((layer.fout,), 0.1)
    return sd


def state_dict(name: str, seed: int = 0, num_classes: int = 1000) -> Dict[str, np.ndarray]:
    """A seeded random torchvision-style state_dict (float32 arrays, plus int64
    ``num_batches_tracked`` scalars like torch's): He-normal conv/linear
    weights, conv/linear biases ~N(0, 0.1), batch norm gamma ~U(0.5, 1.5)
    (~U(0, 0.25) for the last BN of a residual branch, so the residual stream
    stays bounded as in trained networks), beta ~N(0, 0.1), running_mean
    ~N(0, 0.1), running_var ~U(0.5, 1.5)."""
    return _random_state(_spec(name, num_classes), seed)


def save_npz(state: Mapping[str, Any], path: Union[str, "os.PathLike[str]"]) -> None:
    """Writes a state_dict (arrays, or torch tensors) to an uncompressed .npz."""
    arrays = {}
    for k, v in state.items():
        if hasattr(v, "detach"):  # a torch tensor
            v = v.detach().cpu().numpy()
        arrays[k] = np.asarray(v)
    np.savez(path, **arrays)


def load_npz(path: Union[str, "os.PathLike[str]"]) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


class _MappedNpz:
    """The arrays of an uncompressed .npz as read-only views of the file mapped
    in memory, for the model build, which reads each weight once while it folds
    it into a new array: np.load's copy of every array (its page faults and
    passes over memory) is not made. ``intact()`` says whether every member's
    CRC-32 matched, as zipfile checks on reading; the check (about 45 ms for
    ResNet-50's 100 MB on a 2-core Xeon, zlib 1.2) runs on a thread of its own
    (zlib releases the GIL) while the build folds the weights."""

    def __init__(self, arrays: Dict[str, np.ndarray], checks: List[Tuple[memoryview, int]]) -> None:
        import threading

        self.arrays = arrays
        self._ok = False
        self._thread = threading.Thread(target=self._check, args=(checks,), name="paskdnn-npz-crc", daemon=True)
        self._thread.start()

    def _check(self, checks: List[Tuple[memoryview, int]]) -> None:
        import zlib

        self._ok = all(zlib.crc32(data) == crc for data, crc in checks)

    def intact(self) -> bool:
        self._thread.join()
        return self._ok


# The header np.save writes (format 1.0 and 2.0/3.0): read with a pattern
# instead of numpy's reader (ast.literal_eval), about 25 us an array less
# (MobileNetV2's 314 arrays: its build from the .npz 36 -> 28 ms on a 2-core
# VM). Any other header goes through numpy's reader.
_NPY_HEADER = None


def _npy_header(view: memoryview, start: int) -> Optional[Tuple[Tuple[int, ...], bool, np.dtype, int]]:
    """(shape, fortran order, dtype, offset of the data) of the .npy at start,
    for the headers np.save writes; None for any other."""
    global _NPY_HEADER
    if _NPY_HEADER is None:
        import re

        _NPY_HEADER = re.compile(rb"\{'descr': '([<>|=][a-z][0-9]{1,2})', 'fortran_order': (True|False), "
                                 rb"'shape': \(((?:[0-9]+, )*(?:[0-9]+,?)?)\), \} *\n")
    if bytes(view[start:start + 6]) != b"\x93NUMPY":
        return None
    major = view[start + 6]
    width = 2 if major == 1 else 4 if major in (2, 3) else 0
    if not width:
        return None
    at = start + 8 + width
    size = int.from_bytes(view[start + 8:at], "little")
    m = _NPY_HEADER.fullmatch(bytes(view[at:at + size]))
    if m is None:
        return None
    try:
        dtype = np.dtype(m.group(1).decode())
    except TypeError:
        return None
    shape = tuple(int(d) for d in m.group(3).split(b",") if d.strip())
    return shape, m.group(2) == b"True", dtype, at + size


def _mapped_npz(path: Union[str, "os.PathLike[str]"]) -> Optional[_MappedNpz]:
    """The .npz mapped (see _MappedNpz), or None (the caller reads it with
    np.load) for anything but the uncompressed plain numeric arrays that
    np.savez writes."""
    import io
    import mmap
    import zipfile

    from numpy.lib import format as npy

    try:
        with open(path, "rb") as f:
            with zipfile.ZipFile(f) as z:
                infos = z.infolist()
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # np.load raises what it raises for this file
    view = memoryview(mm)
    out: Dict[str, np.ndarray] = {}
    checks: List[Tuple[memoryview, int]] = []
    for info in infos:
        if (info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or not info.filename.endswith(".npy")
                or info.file_size != info.compress_size):
            return None
        local = info.header_offset
        if view[local:local + 4] != b"PK\x03\x04":
            return None
        name_len = int.from_bytes(view[local + 26:local + 28], "little")
        extra_len = int.from_bytes(view[local + 28:local + 30], "little")
        start = local + 30 + name_len + extra_len
        end = start + info.file_size
        if end > len(view):
            return None
        checks.append((view[start:end], info.CRC))
        fast = _npy_header(view, start) if end - start >= 10 else None
        if fast is not None:
            shape, fortran, dtype, data = fast
        else:
            head = io.BytesIO(view[start:min(end, start + 65536)])
            try:
                version = npy.read_magic(head)
                if version == (1, 0):
                    shape, fortran, dtype = npy.read_array_header_1_0(head)
                elif version == (2, 0):
                    shape, fortran, dtype = npy.read_array_header_2_0(head)
                else:
                    return None
            except ValueError:
                return None
            data = start + head.tell()
        if dtype.hasobject:
            return None
        count = int(np.prod(shape, dtype=np.int64))
        if data + count * dtype.itemsize != end:
            return None
        a = np.frombuffer(view, dtype=dtype, count=count, offset=data)
        out[info.filename[:-len(".npy")]] = a.reshape(shape, order="F" if fortran else "C")
    return _MappedNpz(out, checks)


def _checked_state(spec: _Spec, weights: Weights, mapped: Optional[Mapping[str, np.ndarray]] = None
                   ) -> Dict[str, np.ndarray]:
    if isinstance(weights, (str, os.PathLike)):
        raw = dict(mapped) if mapped is not None else load_npz(weights)
        where = f"weights file {os.fspath(weights)!r}"
    elif isinstance(weights, Mapping):
        raw = dict(weights)
        where = "weights"
    else:
        raise TypeError(f"weights must be None, a path to an .npz or a mapping of arrays, got {type(weights).__name__}")
    expect = _shapes(spec)
    state = {k: v for k, v in raw.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expect if k not in state]
    extra = [k for k in state if k not in expect]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("unexpected " + ", ".join(extra))
    out: Dict[str, np.ndarray] = {}
    bad = []
    for k, shape in expect.items():
        if k not in state:
            continue
        v = state[k]
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        v = np.asarray(v)
        if tuple(v.shape) != shape:
            bad.append(f"{k} has shape {tuple(v.shape)}, expected {shape}")
            continue
        if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
            bad.append(f"{k} has dtype {v.dtype}, expected a float array")
            continue
        out[k] = v
    if bad:
        problems.append("wrong " + "; ".join(bad))
    if problems:
        raise ValueError(f"{where} do not fit {spec.name}: " + "; ".join(problems))
    return out


# ---- folding and graph building ------------------------------------------------


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _own(a: np.ndarray) -> np.ndarray:
    """a, or a copy of it where it is a read-only view (of a mapped .npz)."""
    return a if a.flags.writeable else a.copy()


def _fold(layer: _Conv, sd: Mapping[str, np.ndarray], nhwc: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """The conv's weight and bias with its batch norm folded in: float32, OIHW
    (OHWI when ``nhwc``). The product is taken in float64 and rounded to float32
    once, as ever; one ufunc pass writes it straight into the result in its
    layout (the float64 values live only in the ufunc's small buffers) rather
    than through whole float64 copies of the weight, which a fresh process paid
    for in page faults and passes over memory."""
    w = np.asarray(sd[f"{layer.conv}.weight"])
    b = np.asarray(sd[f"{layer.conv}.bias"], np.float64) if layer.bias else np.zeros(layer.cout)
    if w.dtype not in (np.float32, np.float64):
        w = w.astype(np.float64)  # exact for the float types below 64 bits; ints round once, as before
    if nhwc:
        w = w.transpose(0, 2, 3, 1)  # OIHW -> OHWI, read strided, written in order
    out = np.empty(w.shape, np.float32)
    if layer.bn:
        gamma = np.asarray(sd[f"{layer.bn}.weight"], np.float64)
        beta = np.asarray(sd[f"{layer.bn}.bias"], np.float64)
        mean = np.asarray(sd[f"{layer.bn}.running_mean"], np.float64)
        var = np.asarray(sd[f"{layer.bn}.running_var"], np.float64)
        scale = gamma / np.sqrt(var + BN_EPS)
        # float32 * float64 runs the float64 loop: the same products as w.astype(float64) * scale
        np.multiply(w, scale[:, None, None, None], out=out, casting="unsafe")
        b = (b - mean) * scale + beta
    else:
        np.copyto(out, w, casting="unsafe")
    return out, _f32(b)


def _graph(spec: _Spec, sd: Mapping[str, np.ndarray], layout: str, dtype: str) -> Graph:
    nhwc = layout == "NHWC"
    nodes: List[Node] = []
    first_linear = True
    for layer in spec.layers:
        if isinstance(layer, _Conv):
            w, b = _fold(layer, sd, nhwc)
            inputs = [layer.src] + ([layer.residual] if layer.residual else [])
            params = {"stride": layer.stride, "padding": layer.padding, "dilation": 1, "groups": layer.groups,
                      "activation": layer.activation, "layout": layout,
                      "weight_layout": "OHWI" if nhwc else "OIHW"}
            nodes.append(Node(layer.conv, "conv2d", inputs, layer.out, params, {"weight": w, "bias": b}))
        elif isinstance(layer, _Linear):
            w = np.asarray(sd[f"{layer.prefix}.weight"], np.float32)
            if first_linear and nhwc and spec.flatten_hw != (1, 1):
                # torchvision flattens (c, h, w); an NHWC flatten gives (h, w, c)
                fh, fw = spec.flatten_hw
                w = w.reshape(layer.fout, layer.fin // (fh * fw), fh, fw).transpose(0, 2, 3, 1).reshape(
                    layer.fout, layer.fin)
            first_linear = False
            nodes.append(Node(layer.prefix, "linear", [layer.src], layer.out, {"activation": layer.activation},
                              {"weight": _own(_f32(w)), "bias": _own(_f32(np.asarray(sd[f"{layer.prefix}.bias"])))}))
        else:
            params = dict(layer.params)
            if layer.op != "flatten":
                params["layout"] = layout
            nodes.append(Node(layer.name, layer.op, [layer.src], layer.out, params, {}))
    g = Graph(name=spec.name, input_name=spec.input, input_shape=(224, 224, 3) if nhwc else (3, 224, 224),
              nodes=nodes, output_name=spec.output, layout=layout, dtype=dtype)
    g.validate()
    return g


def _build(name: str, weights: Weights, seed: int, layout: str, dtype: str, num_classes: int) -> Graph:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    spec = _spec(name, num_classes)
    mapped = _mapped_npz(weights) if isinstance(weights, (str, os.PathLike)) else None
    if mapped is None:
        sd = _random_state(spec, seed) if weights is None else _checked_state(spec, weights)
        return _graph(spec, sd, layout, dtype)
    try:
        graph = _graph(spec, _checked_state(spec, weights, mapped.arrays), layout, dtype)
    except ValueError:
        if mapped.intact():
            raise
        graph = None
    if graph is not None and mapped.intact():
        return graph
    # a member's CRC-32 does not match: np.load raises zipfile's error for it
    return _graph(spec, _checked_state(spec, weights), layout, dtype)


def resnet18(weights: Weights = None, *, seed: int = 0, layout: str = "NCHW", dtype: str = "float32",
             num_classes: int = 1000) -> Graph:
    """torchvision's resnet18 (BasicBlock, [2, 2, 2, 2]): 20 convs, 1 linear."""
    return _build("resnet18", weights, seed, layout, dtype, num_classes)


def resnet50(weights: Weights = None, *, seed: int = 0, layout: str = "NCHW", dtype: str = "float32",
             num_classes: int = 1000) -> Graph:
    """torchvision's resnet50 (ResNet v1.5 Bottleneck, [3, 4, 6, 3]): 53 convs, 1 linear."""
    return _build("resnet50", weights, seed, layout, dtype, num_classes)


def vgg16(weights: Weights = None, *, seed: int = 0, layout: str = "NCHW", dtype: str = "float32",
          num_classes: int = 1000) -> Graph:
    """torchvision's vgg16 (no batch norm): 13 convs, 5 max pools, 3 linear."""
    return _build("vgg16", weights, seed, layout, dtype, num_classes)


def mobilenet_v2(weights: Weights = None, *, seed: int = 0, layout: str = "NCHW", dtype: str = "float32",
                 num_classes: int = 1000) -> Graph:
    """torchvision's mobilenet_v2 (width 1.0): 52 convs, 1 linear."""
    return _build("mobilenet_v2", weights, seed, layout, dtype, num_classes)


MODELS: Dict[str, Callable[..., Graph]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg16": vgg16,
    "mobilenet_v2": mobilenet_v2,
}


def build(name: str, **kw: Any) -> Graph:
    """``MODELS[name](**kw)``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**kw)
