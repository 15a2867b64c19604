"""ONNX import: an ONNX model as a paskdnn :class:`~paskdnn.graph.Graph`.

    g = paskdnn.load_onnx("resnet50.onnx", layout="NHWC", batch=1)
    runner = paskdnn.graph.Runner(g, ctx, batch=g.batch)
    y = g.output_to_onnx(runner.run(g.input_from_onnx(x_nchw)))

The importer maps each ONNX node through :data:`OPS` (operator -> a small
function). A function either emits one paskdnn node (conv2d, linear, pools,
flatten), fuses its node into the node that produced its input (BatchNormalization
folded into a Conv's weights; Relu, Clip(0, 6), Sigmoid, HardSigmoid (alpha 1/6,
beta 0.5), HardSwish, Gelu, x * Sigmoid(x) (SiLU) and torch's Erf-form GELU
pattern into a conv/linear epilogue;
an Add into a conv's residual input or a constant into a bias), or aliases its
output (Identity, Dropout, Flatten of a 2-D value). Whatever cannot run on
today's primitives raises :class:`paskdnn.UnsupportedError` naming the node, its
operator and the attribute (``err.node``, ``err.op_type``, ``err.attribute``),
before anything touches a device.

Adding an operator is one row in :data:`OPS` and one function
``f(imp: _Importer, node: onnx.NodeProto) -> None``.

Data stays NCHW at the model's boundary: a graph imported with
``layout="NHWC"`` runs NHWC inside (weights converted to OHWI, the first
linear layer after a flatten has its columns permuted), and
:meth:`OnnxGraph.input_from_onnx` / :meth:`OnnxGraph.output_to_onnx` convert
the runner's input and output from and to ONNX's NCHW.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._errors import UnsupportedError
from .graph import Graph, Node

__all__ = ["load_onnx", "OnnxGraph", "OPS", "SUPPORTED"]

_LAYOUTS = ("NCHW", "NHWC")
_DTYPES = ("float32", "float16", "bfloat16")
# ONNX TensorProto element types paskdnn's graphs accept as input (converted to the graph's dtype)
_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


@dataclass
class OnnxGraph(Graph):
    """A :class:`~paskdnn.graph.Graph` imported from ONNX, plus what it takes
    to talk to it in ONNX's terms: ``batch`` (the batch size its shapes were
    checked for; pass it to the Runner), ``onnx_input_shape`` /
    ``onnx_output_shape`` (full NCHW shapes at that batch) and the ONNX names.
    ``output_order`` is ``"chw"`` unless the output is a flatten taken in NHWC
    order (``"hwc"``, with ``output_chw`` its (C, H, W))."""

    batch: int = 1
    onnx_input_name: str = ""
    onnx_output_name: str = ""
    onnx_input_shape: Tuple[int, ...] = ()
    onnx_output_shape: Tuple[int, ...] = ()
    output_order: str = "chw"
    output_chw: Tuple[int, ...] = ()

    def input_from_onnx(self, x: Any) -> np.ndarray:
        """An ONNX (NCHW) host array in the layout the runner takes."""
        x = np.asarray(x)
        if x.ndim == 4 and self.layout == "NHWC":
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return x

    def output_to_onnx(self, y: Any) -> np.ndarray:
        """The runner's output (host array, or a device array with .numpy())
        as the ONNX model's output would be laid out."""
        if not isinstance(y, np.ndarray) and hasattr(y, "numpy"):
            y = y.numpy()
        y = np.asarray(y)
        if y.ndim == 4 and self.layout == "NHWC":
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        if self.output_order == "hwc":
            c, h, w = self.output_chw
            return np.ascontiguousarray(y.reshape(y.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(y.shape[0], -1))
        return y


# ---- values --------------------------------------------------------------------


@dataclass
class _Value:
    """A runtime value of the imported graph: its paskdnn name, its ONNX
    (NCHW) shape, and for a 2-D value flattened from NHWC data the (C, H, W)
    it came from (its columns are in h, w, c order, not ONNX's c, h, w)."""

    name: str
    shape: Tuple[int, ...]
    hwc: Optional[Tuple[int, int, int]] = None


def _refuse(node: Any, attribute: Optional[str], reason: str) -> UnsupportedError:
    """The error for a node paskdnn cannot run: names the node, its op and the attribute."""
    label = _label(node)
    what = f"attribute {attribute}: " if attribute else ""
    err = UnsupportedError(f"ONNX node {label} ({node.op_type}): {what}{reason}", 4)
    err.node = label  # type: ignore[attr-defined]
    err.op_type = node.op_type  # type: ignore[attr-defined]
    err.attribute = attribute  # type: ignore[attr-defined]
    return err


def _graph_refuse(attribute: str, reason: str) -> UnsupportedError:
    """The error for the graph's own inputs/outputs (no node at fault): ``err.node`` and ``err.op_type`` are None."""
    err = UnsupportedError(reason, 4)
    err.node = None  # type: ignore[attr-defined]
    err.op_type = None  # type: ignore[attr-defined]
    err.attribute = attribute  # type: ignore[attr-defined]
    return err


def _label(node: Any) -> str:
    if node.name:
        return repr(node.name)
    return f"<unnamed, output {node.output[0]!r}>" if node.output else "<unnamed>"


def _attrs(node: Any) -> Dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


class _Importer:
    """State of one import; the op functions call its helpers."""

    def __init__(self, model: Any, layout: str, dtype: str, batch: Optional[int]) -> None:
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.layout = layout
        self.nhwc = layout == "NHWC"
        self.dtype = dtype
        g = model.graph
        self.model = model
        self.consts: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.values: Dict[str, _Value] = {}
        self.nodes: List[Node] = []
        self.producer: Dict[str, Node] = {}  # paskdnn value name -> its node
        self.head: Dict[str, str] = {}  # paskdnn node name -> the ONNX name now holding its result
        self.names: set = set()
        # consumers of each ONNX value, for the single-use test of a fusion
        self.consumers: Dict[str, List[Any]] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = [o.name for o in g.output]
        self.inferred: Dict[str, Tuple[Optional[int], ...]] = {}
        # later nodes already handled by a fused pattern: ONNX output name -> the
        # paskdnn node whose result that output now is (None: an inner node)
        self.deferred: Dict[str, Optional[Node]] = {}

    # -- shapes --
    def set_inferred(self, model: Any) -> None:
        for vi in list(model.graph.value_info) + list(model.graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.inferred[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)

    def check_inferred(self, node: Any, out: str, shape: Tuple[int, ...], attribute: Optional[str]) -> None:
        """Refuses when ONNX's own shape inference disagrees with the shape paskdnn's op gives."""
        inf = self.inferred.get(out)
        if inf is None or len(inf) != len(shape) or any(a is not None and a != b for a, b in zip(inf, shape)):
            if inf is not None and None not in inf:
                raise _refuse(node, attribute, f"ONNX gives output shape {tuple(inf)}, paskdnn's op gives "
                              f"{tuple(shape)} (e.g. ceil_mode's rule for a last window in the padding)")

    # -- uses --
    def uses(self, onnx_name: str) -> int:
        """Consumers of an ONNX value, looking through Identity/Dropout; the graph output counts as one."""
        count = self.graph_outputs.count(onnx_name)
        for n in self.consumers.get(onnx_name, []):
            if n.op_type in _PASS_THROUGH:
                count += self.uses(n.output[0])
            else:
                count += 1
        return count

    # -- lookups --
    def const(self, node: Any, index: int, what: str) -> np.ndarray:
        name = node.input[index] if index < len(node.input) else ""
        if not name or name not in self.consts:
            raise _refuse(node, what, f"input {index} ({name!r}) must be a constant (an initializer or Constant "
                          "node); paskdnn takes weights as constants")
        return self.consts[name]

    def opt_const(self, node: Any, index: int, what: str) -> Optional[np.ndarray]:
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.const(node, index, what)

    def value(self, node: Any, index: int = 0) -> _Value:
        name = node.input[index]
        if name in self.consts:
            raise _refuse(node, None, f"input {index} ({name!r}) is a constant; paskdnn computes on the graph "
                          "input's data only (no constant folding of whole ops)")
        if name not in self.values:
            raise _refuse(node, None, f"input {index} ({name!r}) is not computed by any supported node")
        return self.values[name]

    def fusable(self, node: Any, index: int, ops: Sequence[str]) -> Optional[Node]:
        """The paskdnn node producing input ``index`` if it is one of ``ops`` and
        the value it produces has no consumer but ``node``."""
        name = node.input[index]
        v = self.values.get(name)
        if v is None:
            return None
        p = self.producer.get(v.name)
        if p is None or p.op not in ops:
            return None
        if self.uses(self.head[p.name]) != 1:
            return None
        return p

    # -- output --
    def emit(self, node: Any, op: str, inputs: List[str], params: Dict[str, Any], weights: Dict[str, np.ndarray],
             shape: Tuple[int, ...], hwc: Optional[Tuple[int, int, int]] = None, output: Optional[str] = None) -> Node:
        out = node.output[0] if output is None else output  # output: an intermediate of a node run as two
        name = node.name or f"{node.op_type}:{out}"
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}#{k}", k + 1
        self.names.add(name)
        n = Node(name, op, inputs, out, params, weights)
        self.nodes.append(n)
        self.producer[out] = n
        self.head[name] = out
        self.values[out] = _Value(out, tuple(int(s) for s in shape), hwc)
        return n

    def fuse(self, node: Any, into: Node, shape: Optional[Tuple[int, ...]] = None) -> None:
        """``node``'s output is now what ``into`` produces (its epilogue or weights were changed)."""
        v = self.values[into.output]
        self.values[node.output[0]] = _Value(v.name, v.shape if shape is None else shape, v.hwc)
        self.head[into.name] = node.output[0]

    def alias(self, node: Any, src: str) -> None:
        """``node``'s output is its input ``src`` (an ONNX name)."""
        if src in self.consts:
            self.consts[node.output[0]] = self.consts[src]
        else:
            self.values[node.output[0]] = self.values[src]

    def layout_params(self) -> Dict[str, Any]:
        return {"layout": self.layout}


_PASS_THROUGH = ("Identity", "Dropout")


def _f32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64), dtype=np.float32)


def _only_outputs(node: Any, n: int) -> None:
    extra = [o for o in node.output[n:] if o]
    if extra:
        raise _refuse(node, "outputs", f"output {extra[0]!r} is not supported (only the first "
                      f"{'output' if n == 1 else f'{n} outputs'})")


def _four_d(imp: _Importer, node: Any, v: _Value) -> Tuple[int, int, int, int]:
    if len(v.shape) != 4:
        raise _refuse(node, None, f"input {node.input[0]!r} has shape {v.shape}; paskdnn's op takes 4-D NCHW "
                      "(2-D spatial) data only")
    return v.shape  # type: ignore[return-value]


def _ints(a: Dict[str, Any], key: str, default: Sequence[int]) -> List[int]:
    v = a.get(key)
    return list(default) if v is None else [int(i) for i in v]


def _spatial(imp: _Importer, node: Any, a: Dict[str, Any], hw: Tuple[int, int], kernel: Tuple[int, int]) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]:
    """(strides, dilations, ((top, bottom), (left, right))) from a Conv/pool node's attributes."""
    strides = _ints(a, "strides", (1, 1))
    dil = _ints(a, "dilations", (1, 1))
    if len(strides) != 2 or len(dil) != 2:
        raise _refuse(node, "strides" if len(strides) != 2 else "dilations", "2 spatial dims only")
    auto = _s(a.get("auto_pad", "NOTSET"))
    if auto in ("NOTSET", ""):
        pads = _ints(a, "pads", (0, 0, 0, 0))
        if len(pads) != 4:
            raise _refuse(node, "pads", f"{pads}: 2 spatial dims only")
        if min(pads) < 0:
            raise _refuse(node, "pads", f"{pads}: negative padding (cropping) is not supported")
        sides = ((pads[0], pads[2]), (pads[1], pads[3]))
    elif auto == "VALID":
        sides = ((0, 0), (0, 0))
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(hw, kernel, strides, dil):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        sides = (out[0], out[1])
    else:
        raise _refuse(node, "auto_pad", f"unknown value {auto!r}")
    return (strides[0], strides[1]), (dil[0], dil[1]), sides


def _conv_out(size: int, k: int, s: int, pre: int, post: int, d: int) -> int:
    return (size + pre + post - d * (k - 1) - 1) // s + 1


def _pool_out(size: int, k: int, s: int, pre: int, post: int, d: int, ceil: bool) -> int:
    span = size + pre + post - d * (k - 1) - 1
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= size + pre:
        o -= 1
    return o


# ---- the operators ---------------------------------------------------------------


def _conv(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    x = imp.value(node)
    n, c, h, w = _four_d(imp, node, x)
    wt = imp.const(node, 1, "W")
    if wt.ndim != 4:
        raise _refuse(node, "W", f"weight of shape {wt.shape}: 2-D convolutions only")
    o, cg, kh, kw = wt.shape
    ks = _ints(a, "kernel_shape", (kh, kw))
    if tuple(ks) != (kh, kw):
        raise _refuse(node, "kernel_shape", f"{ks} does not match the weight's {(kh, kw)}")
    g = int(a.get("group", 1))
    if g < 1 or c % g or o % g or cg != c // g:
        raise _refuse(node, "group", f"group={g} does not fit {c} input channels and a weight of shape {wt.shape}")
    bias = imp.opt_const(node, 2, "B")
    st, dl, pads = _spatial(imp, node, a, (h, w), (kh, kw))
    for i, (size, k) in enumerate(((h, kh), (w, kw))):
        if dl[i] * (k - 1) + 1 > size + pads[i][0] + pads[i][1]:
            raise _refuse(node, "kernel_shape", "the dilated kernel is larger than the padded input")
    oh = _conv_out(h, kh, st[0], pads[0][0], pads[0][1], dl[0])
    ow = _conv_out(w, kw, st[1], pads[1][0], pads[1][1], dl[1])
    wts = wt.astype(np.float64)
    weights = {"weight": _f32(wts.transpose(0, 2, 3, 1) if imp.nhwc else wts)}
    if bias is not None:
        weights["bias"] = _f32(np.broadcast_to(bias, (o,)))
    params = {"stride": st, "padding": pads, "dilation": dl, "groups": g, "activation": None,
              "layout": imp.layout, "weight_layout": "OHWI" if imp.nhwc else "OIHW"}
    imp.check_inferred(node, node.output[0], (n, o, oh, ow), "pads")
    imp.emit(node, "conv2d", [x.name], params, weights, (n, o, oh, ow))


def _pool(imp: _Importer, node: Any, op: str) -> None:
    a = _attrs(node)
    _only_outputs(node, 1)
    x = imp.value(node)
    n, c, h, w = _four_d(imp, node, x)
    if int(a.get("storage_order", 0)) != 0:
        raise _refuse(node, "storage_order", f"{a['storage_order']}: only 0 (row major) is supported")
    k = _ints(a, "kernel_shape", ())
    if len(k) != 2:
        raise _refuse(node, "kernel_shape", f"{k}: 2-D pooling only")
    st, dl, pads = _spatial(imp, node, a, (h, w), (k[0], k[1]))
    ceil = bool(int(a.get("ceil_mode", 0)))
    for i in range(2):
        eff = dl[i] * (k[i] - 1) + 1
        if max(pads[i]) >= eff:
            raise _refuse(node, "pads" if _s(a.get("auto_pad", "NOTSET")) in ("NOTSET", "") else "auto_pad",
                          f"padding {pads[i]} along {'HW'[i]} is not smaller than the (dilated) kernel {eff}: "
                          "a window would lie wholly in the padding")
        if eff > (h, w)[i] + pads[i][0] + pads[i][1]:
            raise _refuse(node, "kernel_shape", "the pool window is larger than the padded input")
    oh = _pool_out(h, k[0], st[0], pads[0][0], pads[0][1], dl[0], ceil)
    ow = _pool_out(w, k[1], st[1], pads[1][0], pads[1][1], dl[1], ceil)
    params: Dict[str, Any] = {"kernel_size": (k[0], k[1]), "stride": st, "padding": pads, "ceil_mode": ceil,
                              "layout": imp.layout}
    params["dilation"] = dl
    if op == "avg_pool2d":
        params["count_include_pad"] = bool(int(a.get("count_include_pad", 0)))
    imp.check_inferred(node, node.output[0], (n, c, oh, ow), "ceil_mode")
    imp.emit(node, op, [x.name], params, {}, (n, c, oh, ow))


def _max_pool(imp: _Importer, node: Any) -> None:
    _pool(imp, node, "max_pool2d")


def _avg_pool(imp: _Importer, node: Any) -> None:
    _pool(imp, node, "avg_pool2d")


def _global_avg_pool(imp: _Importer, node: Any) -> None:
    x = imp.value(node)
    n, c, _, _ = _four_d(imp, node, x)
    imp.emit(node, "adaptive_avg_pool2d", [x.name], {"output_size": 1, "layout": imp.layout}, {}, (n, c, 1, 1))


def _global_max_pool(imp: _Importer, node: Any) -> None:
    # one max pool whose window is the whole image
    x = imp.value(node)
    n, c, h, w = _four_d(imp, node, x)
    imp.emit(node, "max_pool2d", [x.name], {"kernel_size": (h, w), "stride": (h, w), "padding": 0,
                                            "layout": imp.layout}, {}, (n, c, 1, 1))


def _reduce_mean(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    x = imp.value(node)
    n, c, _, _ = _four_d(imp, node, x)
    if "axes" in a:
        axes = [int(i) for i in a["axes"]]
        where = "axes"
    else:
        ax = imp.opt_const(node, 1, "axes")
        axes = [] if ax is None else [int(i) for i in np.asarray(ax).ravel()]
        where = "axes"
    if not axes and int(a.get("noop_with_empty_axes", 0)):
        imp.alias(node, node.input[0])
        return
    if sorted(i % 4 for i in axes) != [2, 3]:
        raise _refuse(node, where, f"{axes or 'all axes'}: only the mean over H and W (axes 2, 3) is supported, "
                      "as a global average pool")
    # the pool's (N, C, 1, 1); keepdims=0 is the pool and a flatten to (N, C)
    keep = int(a.get("keepdims", 1))
    if keep:
        imp.emit(node, "adaptive_avg_pool2d", [x.name], {"output_size": 1, "layout": imp.layout}, {}, (n, c, 1, 1))
        return
    pooled = _Proxy(node, node.output[0] + ":pool")
    imp.emit(pooled, "adaptive_avg_pool2d", [x.name], {"output_size": 1, "layout": imp.layout}, {}, (n, c, 1, 1))
    imp.emit(node, "flatten", [pooled.output[0]], {}, {}, (n, c))


class _Proxy:
    """A node-like record for an extra paskdnn node made from one ONNX node."""

    def __init__(self, node: Any, out: str) -> None:
        self.name = f"{node.name or node.op_type}:{out.split(':')[-1]}"
        self.op_type = node.op_type
        self.output = [out]
        self.input = list(node.input)


def _linear(imp: _Importer, node: Any, x: _Value, weight: np.ndarray, bias: Optional[np.ndarray],
            output: Optional[str] = None) -> None:
    """y = x @ weight.T + bias, weight (out, in) in ONNX's column order."""
    if len(x.shape) != 2:
        raise _refuse(node, None, f"input {node.input[0]!r} has shape {x.shape}; 2-D inputs only "
                      "(Flatten or Reshape to (N, -1) first)")
    nout, nin = weight.shape
    if x.shape[1] != nin:
        raise _refuse(node, None, f"input has {x.shape[1]} features, the weight {nin}")
    if x.hwc is not None:  # the flatten before it ran in NHWC: its columns are (h, w, c)
        c, h, w = x.hwc
        weight = weight.reshape(nout, c, h, w).transpose(0, 2, 3, 1).reshape(nout, nin)
    weights = {"weight": _f32(weight)}
    if bias is not None:
        weights["bias"] = _f32(bias)
    imp.emit(node, "linear", [x.name], {"activation": None}, weights, (x.shape[0], nout), output=output)


def _gemm(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    x = imp.value(node)
    if int(a.get("transA", 0)):
        raise _refuse(node, "transA", "1: the data operand A must not be transposed (paskdnn's linear)")
    b = imp.const(node, 1, "B").astype(np.float64)
    if b.ndim != 2:
        raise _refuse(node, "B", f"shape {b.shape}: must be 2-D")
    weight = b if int(a.get("transB", 0)) else b.T  # (N, K)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    weight = weight * alpha
    c = imp.opt_const(node, 2, "C")
    bias = None
    if c is not None:
        nout = weight.shape[0]
        c = np.asarray(c, np.float64)
        rows = x.shape[0] if len(x.shape) == 2 else None
        if c.ndim > 2 or (c.ndim >= 1 and c.shape[-1] not in (1, nout)) or (
                c.ndim == 2 and c.shape[0] not in (1, rows)):
            raise _refuse(node, "C", f"shape {c.shape}: C must broadcast to the output ({rows}, {nout})")
        if c.ndim < 2 or c.shape[0] == 1:  # the same for every row: the linear's bias
            bias = beta * np.broadcast_to(c.reshape(-1) if c.ndim else c, (nout,))
        else:  # (M, 1) or (M, N): an eltwise add after the linear, on the (M, N) product
            mid = node.output[0] + "/gemm"
            _linear(imp, node, x, weight, None, output=mid)
            _eltwise(imp, node, imp.values[mid], operands=[("add", beta * c)])
            return
    _linear(imp, node, x, weight, bias)


def _matmul(imp: _Importer, node: Any) -> None:
    x = imp.value(node)
    b = imp.const(node, 1, "B")
    if b.ndim != 2 or len(x.shape) != 2:
        raise _refuse(node, "B" if b.ndim != 2 else None,
                      f"A {x.shape} @ B {b.shape}: 2-D MatMul with a constant B only")
    _linear(imp, node, x, np.asarray(b, np.float64).T, None)


def _flatten_to_2d(imp: _Importer, node: Any, x: _Value) -> None:
    if len(x.shape) == 2:
        imp.alias(node, node.input[0])
        return
    n, c, h, w = _four_d(imp, node, x)
    hwc = (c, h, w) if imp.nhwc and h * w > 1 else None
    imp.emit(node, "flatten", [x.name], {}, {}, (n, c * h * w), hwc)


def _flatten(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    x = imp.value(node)
    axis = int(a.get("axis", 1))
    if axis < 0:
        axis += len(x.shape)
    if axis != 1:
        raise _refuse(node, "axis", f"{axis}: only Flatten(axis=1) to (N, -1) is supported")
    _flatten_to_2d(imp, node, x)


def _reshape(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    x = imp.value(node)
    shape = [int(i) for i in np.asarray(imp.const(node, 1, "shape")).ravel()]
    total = int(np.prod(x.shape[1:]))
    zero = bool(int(a.get("allowzero", 0))) and 0 in shape
    ok = len(shape) == 2 and not zero and ((shape[0] in (0, x.shape[0]) and shape[1] in (-1, total))
                                           or (shape[0] == -1 and shape[1] == total))
    if not ok:
        raise _refuse(node, "shape", f"{shape} from {x.shape}: only a reshape to (N, -1) is supported")
    _flatten_to_2d(imp, node, x)


def _batch_norm(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    _only_outputs(node, 1)
    if int(a.get("training_mode", 0)):
        raise _refuse(node, "training_mode", "1: inference only")
    scale, bias, mean, var = (imp.const(node, i, k).astype(np.float64) for i, k in
                              ((1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")))
    eps = float(a.get("epsilon", 1e-5))
    p = imp.fusable(node, 0, ("conv2d",))
    if p is None or p.params.get("activation") or len(p.inputs) > 1:
        # not foldable (e.g. DenseNet's BN -> ReLU -> Conv on a concatenation):
        # a per-channel scale-shift, x * s + t
        x = imp.value(node, 0)
        if len(x.shape) != 4 or scale.shape != (x.shape[1],):
            raise _refuse(node, None, f"input of shape {x.shape}: a standalone BatchNormalization takes 4-D "
                          "(N, C, H, W) values with C-long scale, B, mean and var")
        s = scale / np.sqrt(var + eps)
        c = x.shape[1]
        _eltwise(imp, node, x, None, (("mul", s.reshape(1, c, 1, 1)), ("add", (bias - mean * s).reshape(1, c, 1, 1))))
        return
    s = scale / np.sqrt(var + eps)
    w = p.weights["weight"].astype(np.float64)
    w = w * s[:, None, None, None]  # O first in OIHW and OHWI
    b = p.weights["bias"].astype(np.float64) if "bias" in p.weights else np.zeros(w.shape[0])
    p.weights["weight"] = _f32(w)
    p.weights["bias"] = _f32((b - mean) * s + bias)
    imp.fuse(node, p)


def _layout_const(imp: _Importer, node: Any, cst: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """A constant operand of an element-wise op on a 4-D value of ONNX shape
    ``shape``: right-aligned to 4-D (numpy broadcasting), checked to broadcast
    to it, in the graph's layout."""
    c = np.asarray(cst, np.float64)
    rank = len(shape)  # 4, or 2 for (N, features)
    if c.ndim > rank:
        raise _refuse(node, None, f"a constant of shape {c.shape} does not broadcast to {shape}")
    c = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if any(d != 1 and d != x for d, x in zip(c.shape, shape)):
        raise _refuse(node, None, f"a constant of shape {cst.shape} does not broadcast to the value's {shape} "
                      "(paskdnn's element-wise ops broadcast the second operand to the first)")
    if imp.nhwc and rank == 4:
        c = c.transpose(0, 2, 3, 1)
    return _f32(c)


def _eltwise(imp: _Importer, node: Any, x: _Value, act: Optional[str] = None,
             operands: Sequence[Tuple[str, Any]] = (), act_params: Optional[Tuple[float, ...]] = None) -> Node:
    """A standalone eltwise node y = act(x * mul + add) on a 4-D value x (or a
    2-D (N, features) one); each operand is (role, _Value or constant array)."""
    if len(x.shape) not in (2, 4):
        raise _refuse(node, None, f"input of shape {x.shape}: paskdnn's standalone element-wise ops take 4-D "
                      "(N, C, H, W) or 2-D (N, features) values")
    roles, inputs, weights = [], [x.name], {}
    for role, v in operands:
        if isinstance(v, _Value):
            if len(v.shape) != len(x.shape) or any(d != 1 and d != xd for d, xd in zip(v.shape, x.shape)):
                raise _refuse(node, None, f"shapes {x.shape} and {v.shape}: the second operand must broadcast "
                              "to the first (same rank, each dim equal or 1)")
            roles.append(role)
            inputs.append(v.name)
        else:
            weights[role] = _layout_const(imp, node, v, x.shape)
    params: Dict[str, Any] = {"activation": act}
    if act_params is not None:
        params["activation_params"] = tuple(act_params)
    if roles:
        params["roles"] = roles
    return imp.emit(node, "eltwise", inputs, params, weights, x.shape)


def _activation(imp: _Importer, node: Any, act: str, act_params: Optional[Tuple[float, ...]] = None) -> None:
    """An activation: fused into the conv/linear (or a standalone eltwise
    without one yet) that produces its input, else a standalone eltwise."""
    p = imp.fusable(node, 0, ("conv2d", "linear", "eltwise"))
    if p is not None and not p.params.get("activation"):
        p.params["activation"] = act
        if act_params:
            p.params["activation_params"] = tuple(act_params)
        imp.fuse(node, p)
        return
    _eltwise(imp, node, imp.value(node, 0), act, act_params=act_params)


def _leaky_relu(imp: _Importer, node: Any) -> None:
    _activation(imp, node, "leaky_relu", (float(_attrs(node).get("alpha", 0.01)),))


def _relu(imp: _Importer, node: Any) -> None:
    _activation(imp, node, "relu")


def _clip(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    lo, hi = a.get("min"), a.get("max")  # opset < 11
    def bound(i: int, name: str) -> Optional[float]:
        m = imp.opt_const(node, i, name)
        if m is None:
            return None
        m = np.asarray(m)
        if m.size != 1:  # a scalar by the spec; exporters also write shape (1,)
            raise _refuse(node, name, f"shape {m.shape}: Clip's bounds must be scalars")
        return float(m.reshape(-1)[0])

    if len(node.input) > 1:
        lo = bound(1, "min")
    if len(node.input) > 2:
        hi = bound(2, "max")
    if lo == 0.0 and (hi is None or hi == float("inf")):
        _activation(imp, node, "relu")
    elif lo == 0.0 and hi == 6.0:
        _activation(imp, node, "relu6")
    else:
        lo = float("-inf") if lo is None else float(lo)
        hi = float("inf") if hi is None else float(hi)
        if not lo <= hi:
            raise _refuse(node, "min", f"Clip({lo}, {hi}): min must be <= max")
        _activation(imp, node, "clamp", (lo, hi))


def _sole_consumer(imp: _Importer, name: str, op_type: str) -> Optional[Any]:
    """The one node reading ONNX value ``name`` if it is an ``op_type`` (and
    ``name`` is not a graph output), else None."""
    c = imp.consumers.get(name, [])
    if len(c) != 1 or c[0].op_type != op_type or name in imp.graph_outputs:
        return None
    return c[0]


def _scalar(imp: _Importer, node: Any, name: str) -> Optional[float]:
    """The value of a constant scalar (any shape of one element) input, else None."""
    if name not in imp.consts or np.asarray(imp.consts[name]).size != 1:
        return None
    return float(np.asarray(imp.consts[name]).reshape(-1)[0])


def _other(node: Any, name: str) -> Optional[str]:
    """The other input of a two-input node one of whose inputs is ``name``."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def _epilogue_producer(imp: _Importer, name: str) -> Optional[Node]:
    """The conv2d/linear producing ONNX value ``name`` with no activation yet."""
    v = imp.values.get(name)
    p = None if v is None else imp.producer.get(v.name)
    if p is None or p.op not in ("conv2d", "linear") or p.params.get("activation") or imp.head[p.name] != name:
        return None
    return p


def _silu_mul(imp: _Importer, node: Any) -> Optional[Any]:
    """For Sigmoid(y) in y * Sigmoid(y) (SiLU, as torch exports it): the Mul,
    when y is read by this Sigmoid and that Mul only and the Sigmoid's output by
    the Mul only; else None."""
    y, s = node.input[0], node.output[0]
    mul = _sole_consumer(imp, s, "Mul")
    if mul is None or _other(mul, s) != y or y in imp.graph_outputs:
        return None
    readers = imp.consumers.get(y, [])
    if len(readers) != 2 or not any(r is node for r in readers) or not any(r is mul for r in readers):
        return None
    return mul


def _sigmoid(imp: _Importer, node: Any) -> None:
    mul = _silu_mul(imp, node)
    p = None if mul is None else _epilogue_producer(imp, node.input[0])
    if p is not None:
        p.params["activation"] = "silu"
        imp.deferred[mul.output[0]] = p  # the Mul is now the conv/linear's output
        return
    y, s = node.input[0], node.output[0]
    gate = _sole_consumer(imp, s, "Mul")
    if gate is not None and _other(gate, s) == y and y not in imp.consts:
        # x * sigmoid(x) on a value no epilogue can take: one standalone silu,
        # emitted under the Mul's output name (the Mul itself is then skipped)
        _eltwise(imp, gate, imp.value(node, 0), "silu")
        imp.deferred[gate.output[0]] = None
        return
    _activation(imp, node, "sigmoid")


def _hard_sigmoid(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if not np.isclose(alpha, 1.0 / 6.0, rtol=1e-6, atol=0):
        raise _refuse(node, "alpha", f"{alpha}: only alpha = 1/6 (with beta = 0.5: torch's hardsigmoid) is "
                      "supported")
    if beta != 0.5:
        raise _refuse(node, "beta", f"{beta}: only beta = 0.5 (with alpha = 1/6: torch's hardsigmoid) is supported")
    _activation(imp, node, "hardsigmoid")


def _gelu_chain(imp: _Importer, node: Any) -> Optional[Tuple[Node, List[Any], Any]]:
    """For the first node of torch's Erf-form GELU on a value y,
        Mul(Mul(y, Add(Erf(Div(y, sqrt 2)), 1)), 0.5)
    (the scaling also as Mul by 1/sqrt 2; operands of Add / Mul in either
    order), with y produced by a conv/linear and read by nothing else and each
    intermediate read by the next node only: (producer, the inner nodes, the
    last Mul). Else None."""
    y = node.input[0]
    if len(node.input) != 2 or node.input[1] == y:
        return None
    k = _scalar(imp, node, node.input[1])
    if k is None or not (node.op_type == "Div" and np.isclose(k, np.sqrt(2.0), rtol=1e-6) or
                         node.op_type == "Mul" and np.isclose(k, np.sqrt(0.5), rtol=1e-6)):
        return None
    erf = _sole_consumer(imp, node.output[0], "Erf")
    add = erf and _sole_consumer(imp, erf.output[0], "Add")
    one = add and _other(add, erf.output[0])
    if not add or one is None or _scalar(imp, add, one) != 1.0:
        return None
    mul1 = _sole_consumer(imp, add.output[0], "Mul")
    if mul1 is None or _other(mul1, add.output[0]) != y:
        return None
    mul2 = _sole_consumer(imp, mul1.output[0], "Mul")
    half = mul2 and _other(mul2, mul1.output[0])
    if not mul2 or half is None or _scalar(imp, mul2, half) != 0.5:
        return None
    readers = imp.consumers.get(y, [])
    if len(readers) != 2 or y in imp.graph_outputs or not all(r is node or r is mul1 for r in readers):
        return None
    p = _epilogue_producer(imp, y)
    return None if p is None else (p, [erf, add, mul1], mul2)


def _binary_operands(imp: _Importer, node: Any) -> Tuple[_Value, Any]:
    """(the full-shape value, the other operand: a _Value or a constant) of a
    two-input element-wise node; the operands are swapped when the first one
    is the broadcast one (Add and Mul commute)."""
    names = list(node.input)
    if len(names) != 2:
        raise _refuse(node, None, "two inputs expected")
    if names[0] in imp.consts and names[1] in imp.consts:
        raise _refuse(node, None, "both inputs are constants (no constant folding of whole ops)")
    if names[0] in imp.consts:
        return imp.value(node, 1), np.asarray(imp.consts[names[0]])
    if names[1] in imp.consts:
        return imp.value(node, 0), np.asarray(imp.consts[names[1]])
    a, b = imp.value(node, 0), imp.value(node, 1)
    if len(a.shape) == len(b.shape) == 4 and a.shape != b.shape and \
            all(x == 1 or x == y for x, y in zip(a.shape, b.shape)):
        a, b = b, a
    return a, b


def _div_or_mul(imp: _Importer, node: Any) -> None:
    chain = _gelu_chain(imp, node)
    if chain is None:
        if node.op_type == "Div":
            if node.input[1] not in imp.consts or node.input[0] in imp.consts:
                raise _refuse(node, None, "a Div runs as a Mul by the reciprocal of a constant divisor only")
            x = imp.value(node, 0)
            with np.errstate(divide="ignore"):
                inv = 1.0 / np.asarray(imp.consts[node.input[1]], np.float64)
            _eltwise(imp, node, x, None, (("mul", inv),))
            return
        x, other = _binary_operands(imp, node)
        _eltwise(imp, node, x, None, (("mul", other),))
        return
    p, inner, last = chain
    p.params["activation"] = "gelu"
    for n in inner:
        imp.deferred[n.output[0]] = None  # absorbed
    imp.deferred[last.output[0]] = p


def _gelu(imp: _Importer, node: Any) -> None:  # opset 20's Gelu
    approx = _s(_attrs(node).get("approximate", "none"))
    if approx not in ("none", "tanh"):
        raise _refuse(node, "approximate", f"{approx!r}: 'none' or 'tanh' expected")
    _activation(imp, node, "gelu" if approx == "none" else "gelu_tanh")


def _per_channel(cst: np.ndarray, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """cst as a per-channel (C,) vector if adding it to a value of ``shape``
    (N, C, ...) broadcasts along axis 1 only, else None."""
    if cst.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - cst.ndim) + cst.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(cst.reshape(-1), (shape[1],))


def _add(imp: _Importer, node: Any) -> None:
    names = list(node.input)
    if len(names) != 2:
        raise _refuse(node, None, "two inputs expected")
    # a constant: folded into the producing conv's or linear's bias
    for i in (0, 1):
        if names[i] in imp.consts and names[1 - i] not in imp.consts:
            cst = np.asarray(imp.consts[names[i]], np.float64)
            p = imp.fusable(node, 1 - i, ("conv2d", "linear"))
            v = imp.values.get(names[1 - i])
            if p is None or p.params.get("activation") or v is None:
                break
            add = _per_channel(cst, v.shape)
            if add is None:
                break
            b = p.weights.get("bias")
            p.weights["bias"] = _f32((0.0 if b is None else b.astype(np.float64)) + add)
            imp.fuse(node, p)
            return
    if names[0] in imp.consts or names[1] in imp.consts:
        x, other = _binary_operands(imp, node)
        _eltwise(imp, node, x, None, (("add", other),))
        return
    va, vb = imp.value(node, 0), imp.value(node, 1)
    if va.shape != vb.shape or len(va.shape) != 4:
        x, other = _binary_operands(imp, node)
        _eltwise(imp, node, x, None, (("add", other),))
        return
    for i in (1, 0):  # prefer the conv emitted last: no reordering
        p = imp.fusable(node, i, ("conv2d",))
        if p is None or p.params.get("activation") or len(p.inputs) > 1:
            continue
        other = (va, vb)[1 - i]
        if other.name == p.output:
            continue
        idx = imp.nodes.index(p)
        src = imp.producer.get(other.name)
        if src is not None and imp.nodes.index(src) > idx:
            # the residual is computed after the conv: run the conv last (nothing else reads it)
            imp.nodes.append(imp.nodes.pop(idx))
        p.inputs.append(other.name)
        imp.fuse(node, p)
        return
    _eltwise(imp, node, va, None, (("add", vb),))  # no conv to take it as a residual: a standalone add


def _concat(imp: _Importer, node: Any) -> None:
    a = _attrs(node)
    vals = [imp.value(node, i) for i in range(len(node.input))]
    rank = len(vals[0].shape)
    axis = int(a.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if rank != 4 or axis != 1:
        raise _refuse(node, "axis", f"{a.get('axis')} on {rank}-D values: paskdnn's cat joins the channels of 4-D "
                      "(N, C, H, W) values (axis 1)")
    n, _, h, w = vals[0].shape
    for v in vals:
        if len(v.shape) != 4 or (v.shape[0], v.shape[2], v.shape[3]) != (n, h, w):
            raise _refuse(node, None, f"shapes {[v.shape for v in vals]}: N, H and W must agree")
    if len(vals) == 1:
        imp.alias(node, node.input[0])
        return
    imp.emit(node, "cat", [v.name for v in vals], {}, {}, (n, sum(v.shape[1] for v in vals), h, w))


def _identity(imp: _Importer, node: Any) -> None:
    imp.alias(node, node.input[0])


def _dropout(imp: _Importer, node: Any) -> None:
    if len(node.output) > 1 and node.output[1] and imp.uses(node.output[1]):
        raise _refuse(node, "outputs", "the mask output is not supported")
    if len(node.input) > 2 and node.input[2]:
        t = imp.const(node, 2, "training_mode")
        if bool(np.asarray(t)):
            raise _refuse(node, "training_mode", "true: inference only")
    imp.alias(node, node.input[0])


def _constant(imp: _Importer, node: Any) -> None:
    from onnx import numpy_helper

    a = node.attribute[0] if len(node.attribute) == 1 else None
    if a is None:
        raise _refuse(node, None, "one value attribute expected")
    if a.name == "value":
        v = numpy_helper.to_array(a.t)
    elif a.name in ("value_float", "value_int"):
        v = np.array(a.f if a.name == "value_float" else a.i)
    elif a.name in ("value_floats", "value_ints"):
        v = np.array(list(a.floats if a.name == "value_floats" else a.ints))
    else:
        raise _refuse(node, a.name, "sparse and string constants are not supported")
    imp.consts[node.output[0]] = v


#: ONNX operator -> the function that imports it (see the module docstring).
OPS: Dict[str, Callable[[_Importer, Any], None]] = {
    "Conv": _conv,
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": _global_avg_pool,
    "GlobalMaxPool": _global_max_pool,
    "ReduceMean": _reduce_mean,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "BatchNormalization": _batch_norm,
    "Relu": _relu,
    "Clip": _clip,
    "LeakyRelu": _leaky_relu,
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": lambda imp, node: _activation(imp, node, "hardswish"),
    "Gelu": _gelu,
    "Mul": _div_or_mul,
    "Div": _div_or_mul,
    "Add": _add,
    "Concat": _concat,
    "Identity": _identity,
    "Dropout": _dropout,
    "Constant": _constant,
}

#: the operators load_onnx maps, sorted
SUPPORTED = tuple(sorted(OPS))


# ---- entry point -------------------------------------------------------------------


def _as_model(model: Any) -> Any:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray, memoryview)):
        return onnx.load_model_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise TypeError(f"model must be a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def load_onnx(model: Union[str, "os.PathLike[str]", bytes, Any], *, layout: str = "NCHW",
              dtype: str = "float32", batch: Optional[int] = None) -> OnnxGraph:
    """An ONNX model as a paskdnn graph (an :class:`OnnxGraph`) for
    :class:`paskdnn.graph.Runner`.

    Args:
        model: a path to an .onnx file, its bytes, or an ``onnx.ModelProto``.
        layout: ``"NCHW"`` or ``"NHWC"``, the layout the graph runs in (its
            boundary stays NCHW through ``input_from_onnx``/``output_to_onnx``).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``, what the runner
            converts weights and data to.
        batch: the batch size when the model's batch dim is dynamic (also
            overrides a fixed one).

    Raises:
        paskdnn.UnsupportedError: an operator, attribute value or shape
            paskdnn cannot run, naming the node, its op and the attribute.
        ValueError: a bad argument or an invalid model.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
        raise ValueError(f"batch must be a positive int or None, got {batch!r}")
    try:
        import onnx
    except ImportError:
        raise ImportError("load_onnx needs the onnx package: pip install 'paskdnn[onnx]'") from None
    model = _as_model(model)
    imp = _Importer(model, layout, dtype, batch)
    g = model.graph
    inputs = [i for i in g.input if i.name not in imp.consts]
    if len(inputs) != 1:
        raise _graph_refuse("inputs", f"ONNX graph {g.name!r}: {len(inputs)} inputs "
                            f"({', '.join(i.name for i in inputs)}); paskdnn graphs take one input (weights must be "
                            "initializers)")
    if len(g.output) != 1:
        raise _graph_refuse("outputs", f"ONNX graph {g.name!r}: {len(g.output)} outputs; paskdnn graphs have one")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or tt.elem_type not in _FLOAT_TYPES:
        raise _graph_refuse("elem_type", f"ONNX graph input {inp.name!r}: element type {tt.elem_type} "
                            "(only floating-point inputs)")
    if not tt.HasField("shape"):
        raise _graph_refuse("shape", f"ONNX graph input {inp.name!r} has no shape")
    shape: List[int] = []
    for i, d in enumerate(tt.shape.dim):
        if i == 0 and batch is not None:
            shape.append(int(batch))
        elif d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        else:
            what = d.dim_param or "unknown"
            hint = "; pass batch=" if i == 0 else ""
            raise _graph_refuse("shape", f"ONNX graph input {inp.name!r}: dim {i} is dynamic ({what}){hint}")
    if len(shape) not in (2, 4):
        raise _graph_refuse("shape", f"ONNX graph input {inp.name!r} has shape {shape}: paskdnn takes 4-D NCHW "
                            "or 2-D (N, features) input")
    # shape inference on a copy whose input dims are all known
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        if vi.name == inp.name:
            for d, v in zip(vi.type.tensor_type.shape.dim, shape):
                d.Clear()
                d.dim_value = v
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds
        raise ValueError(f"ONNX shape inference failed: {e}") from None
    imp.set_inferred(inferred)
    imp.values[inp.name] = _Value(inp.name, tuple(shape))
    for node in g.node:
        if node.output and node.output[0] in imp.deferred:  # inside a fused pattern (SiLU, GELU)
            into = imp.deferred.pop(node.output[0])
            if into is not None:
                imp.fuse(node, into)
            continue
        fn = OPS.get(node.op_type)
        if fn is None or (node.domain not in ("", "ai.onnx")):
            raise _refuse(node, None, f"operator {node.domain + '.' if node.domain else ''}{node.op_type} is not "
                          f"supported (supported: {', '.join(SUPPORTED)})")
        fn(imp, node)
    out = g.output[0].name
    if out not in imp.values:
        raise _graph_refuse("outputs", f"ONNX graph output {out!r} is not computed at run time (a constant?)")
    v = imp.values[out]
    if v.name == inp.name:
        raise _graph_refuse("outputs", f"ONNX graph output {out!r} is the input itself; nothing to run")
    per_sample = tuple(shape[1:])
    if layout == "NHWC" and len(per_sample) == 3:
        per_sample = (per_sample[1], per_sample[2], per_sample[0])
    name = g.name or "onnx"
    graph = OnnxGraph(name=name, input_name=inp.name, input_shape=per_sample, nodes=imp.nodes, output_name=v.name,
                      layout=layout, dtype=dtype, batch=shape[0], onnx_input_name=inp.name, onnx_output_name=out,
                      onnx_input_shape=tuple(shape), onnx_output_shape=v.shape,
                      output_order="hwc" if v.hwc else "chw", output_chw=v.hwc or ())
    graph.validate()
    return graph
