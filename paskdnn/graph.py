"""Graphs of paskdnn primitives and the runner that executes them.

A Graph is a list of Nodes in execution order over named values. Each node is
one paskdnn op with its weights already in the layout it runs in (batch norm
folded, residual adds and activations fused as conv epilogues), so running a
graph is one primitive call per node, and the graph's hints are exactly the
calls it will make.

    graph = paskdnn.models.resnet50(layout="NHWC")
    runner = Runner(graph, context)     # gives the hints at load time
    y = runner.run(x)                    # x: (N, H, W, C) or (N, C, H, W)
    runner.report                        # per layer: solver, resident / reuse / load
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _arrays, _lib, _spec
from ._context import asarray, get_default_context

# op name -> the functional op it calls
OPS = ("conv2d", "linear", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "eltwise", "cat")


@dataclass
class Node:
    """One primitive call.

    inputs[0] is the data input; for conv2d an optional inputs[1] is the
    residual added before the activation. params are the op's keyword
    arguments (stride, padding, groups, activation, kernel_size, ...);
    weights holds "weight" and optionally "bias" as arrays of the graph's
    dtype and layout.

    eltwise (y = activation(x * mul + add)): params "activation" (and
    "activation_params" for leaky_relu / clamp) and "roles",
    the role ("mul" or "add") of each of inputs[1:]; an operand that is a
    constant is in weights under its role instead, as a 4-D array in the
    graph's layout broadcasting to x. cat: inputs joined along channels."""

    name: str
    op: str
    inputs: List[str]
    output: str
    params: Dict[str, Any] = field(default_factory=dict)
    weights: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """name; input value name and per-sample input shape in the graph's layout
    ((C, H, W) for NCHW, (H, W, C) for NHWC); nodes in execution order; the
    output value name; layout "NCHW"/"NHWC"; dtype "float32"/"float16"/"bfloat16"."""

    name: str
    input_name: str
    input_shape: Sequence[int]
    nodes: List[Node]
    output_name: str
    layout: str = "NCHW"
    dtype: str = "float32"

    def validate(self) -> None:
        """Checks every node's op and that each input is defined before use."""
        known = {self.input_name}
        for n in self.nodes:
            if n.op not in OPS:
                raise ValueError(f"node {n.name}: unknown op {n.op!r}")
            for i in n.inputs:
                if i not in known:
                    raise ValueError(f"node {n.name}: input {i!r} is used before it is computed")
            known.add(n.output)
        if self.output_name not in known:
            raise ValueError(f"graph output {self.output_name!r} is never computed")


# ---- shape inference ------------------------------------------------------------


def infer_shapes(graph: Graph, batch: int) -> Dict[str, tuple]:
    """Every value's shape for a batch size, in the graph's layout. Convolution
    and pooling sizes are the C library's (pask_conv2d_output_dims,
    pask_pool2d_output_dims), so they agree with what the calls check."""
    layout = graph.layout
    shapes: Dict[str, tuple] = {graph.input_name: (batch,) + tuple(graph.input_shape)}
    for node in graph.nodes:
        x = shapes[node.inputs[0]]
        p = node.params
        if node.op == "conv2d":
            wt = node.weights["weight"]
            wlay = p.get("weight_layout", "OIHW")
            if wlay == "OHWI":
                o, kh, kw, ig = wt.shape
            else:
                o, ig, kh, kw = wt.shape
            st = _spec.pair(p.get("stride", 1), "stride")
            dl = _spec.pair(p.get("dilation", 1), "dilation")
            pads = _spec.padding_pairs(p.get("padding", 0), (kh, kw), dl, st)
            dims = _spec.conv2d_output_dims(_spec.nchw_dims(x, layout), (o, ig, kh, kw), st, dl, pads,
                                            _spec._int(p.get("groups", 1), "groups"), layout, wlay)
            shapes[node.output] = _spec.physical(dims, layout)
        elif node.op in ("max_pool2d", "avg_pool2d"):
            k = _spec.pair(p["kernel_size"], "kernel_size")
            st = k if p.get("stride") is None else _spec.pair(p["stride"], "stride")
            dl = _spec.pair(p.get("dilation", 1), "dilation")
            mode = _spec.MAX if node.op == "max_pool2d" else _spec.AVG
            dims = _spec.pool2d_output_dims(_spec.nchw_dims(x, layout), mode, k, st,
                                            _spec.pool_padding(p.get("padding", 0)), dl,
                                            bool(p.get("ceil_mode", False)), layout=layout)
            shapes[node.output] = _spec.physical(dims, layout)
        elif node.op == "adaptive_avg_pool2d":
            n, c, h, w = _spec.nchw_dims(x, layout)
            oh, ow = _spec.adaptive_output_size(p.get("output_size", 1), h, w)
            shapes[node.output] = _spec.physical((n, c, oh, ow), layout)
        elif node.op == "flatten":
            shapes[node.output] = (x[0], int(np.prod(x[1:])))
        elif node.op == "eltwise":
            shapes[node.output] = tuple(x)
        elif node.op == "cat":
            dims = [_spec.nchw_dims(shapes[i], layout) for i in node.inputs]
            n, _, h, w = dims[0]
            shapes[node.output] = _spec.physical((n, sum(d[1] for d in dims), h, w), layout)
        elif node.op == "linear":
            shapes[node.output] = tuple(x[:-1]) + (node.weights["weight"].shape[0],)
    return shapes


# ---- the runner -------------------------------------------------------------------


class Runner:
    """Runs a Graph on a context: weights moved to the device once, every
    intermediate buffer allocated once, and the graph's Problems given to the
    context as hints in execution order when ``hints`` is true (the default),
    so the loader threads bring each layer's kernel in ahead of its call.

    ``report`` lists, after each run, every layer's solver and what the policy
    did for it (resident / reuse / waited / load) and, with ``timed=True``,
    its time in ms (synchronising after each layer on a GPU)."""

    def __init__(self, graph: Graph, context: Any = None, batch: int = 1, hints: bool = True) -> None:
        graph.validate()
        self.graph = graph
        self.ctx = context if context is not None else get_default_context()
        self.batch = batch
        self.cuda = self.ctx.device.startswith(("cuda", "hip"))  # any GPU context
        self.shapes = infer_shapes(graph, batch)
        self.report: List[Dict[str, Any]] = []
        self.last_enqueue_ms = 0.0
        # Hints first: the loader threads work while the weights move to the device.
        if hints:
            self.give_hints()
        self._weights = [{k: self._upload(v) for k, v in n.weights.items()} for n in graph.nodes]
        self._buffers = {n.output: self._alloc(self.shapes[n.output]) for n in graph.nodes if n.op != "flatten"}
        self._input = self._alloc(self.shapes[graph.input_name])
        self._calls = self._prepare()
        # The calling thread's one-time set-up in cuDNN (its first execution on
        # a thread: about 0.15 ms of host time on an H100), paid at model load
        # on the runner's stream rather than in the first inference.
        self.primed = False
        if self.cuda:
            self.ctx._use_stream(0)  # the runner's stream: the thread's default one
            self.primed = self.ctx.prime_thread()

    # -- device data --
    def _upload(self, a: np.ndarray) -> Any:
        if not self.cuda:
            return np.ascontiguousarray(a, np.float32)
        return asarray(a, dtype=self.graph.dtype, context=self.ctx)

    def _alloc(self, shape: tuple) -> Any:
        if not self.cuda:
            # Written once here, so set-up pays the buffers' first-touch page
            # faults (thousands per model) instead of the first inference.
            a = np.empty(shape, np.float32)
            a.fill(0.0)
            return a
        return _arrays.DeviceArray._empty(shape, _arrays.dtypes().code[self.graph.dtype], self.ctx)

    def input(self, x: np.ndarray) -> Any:
        """Copies x (a host array of the graph's input shape) into the runner's
        input buffer on the context's device and returns that buffer."""
        expect = self.shapes[self.graph.input_name]
        if tuple(x.shape) != tuple(expect):
            raise ValueError(f"input has shape {tuple(x.shape)}, the graph expects {expect}")
        self._set_input(x)
        return self._input

    def _set_input(self, x: Any) -> None:
        if x is self._input:
            return
        if not self.cuda:
            np.copyto(self._input, np.asarray(x, np.float32))
            return
        src = asarray(np.asarray(x), dtype=self.graph.dtype, context=self.ctx) if isinstance(x, np.ndarray) else x
        v = _arrays.view(src, "input")
        if tuple(v.shape) != tuple(self._input.shape) or v.dcode != self._input.dcode:
            raise ValueError(f"input must be {self._input.dtype} of shape {self._input.shape}")
        ffi, lib = _lib.load()
        nbytes = int(np.prod(v.shape)) * _arrays.dtypes().itemsize[v.dcode]
        _lib.check(lib.pask_memcpy(self.ctx._h(), self._input._ptr, ffi.cast("void *", v.ptr), nbytes,
                                   lib.PASK_COPY_DEVICE_TO_DEVICE))

    def _prepare(self) -> List[Any]:
        """One prepared call per node (None for flatten): the node's spec's C plan
        with its buffers' pointers bound (_spec.Bound), validated now."""
        values: Dict[str, Any] = {self.graph.input_name: self._input}
        calls: List[Any] = []
        for node, w in zip(self.graph.nodes, self._weights):
            src = values[node.inputs[0]]
            if node.op == "flatten":
                values[node.output] = self._flatten(src, self.shapes[node.output])
                calls.append(None)
                continue
            out = self._buffers[node.output]
            kw = dict(node.params)
            if node.op == "conv2d":
                if len(node.inputs) > 1:
                    kw["residual"] = values[node.inputs[1]]
                spec = _spec.conv2d_spec(src, w["weight"], w.get("bias"), out=out, **kw)
            elif node.op == "linear":
                spec = _spec.linear_spec(src, w["weight"], w.get("bias"), out=out, **kw)
            elif node.op == "eltwise":
                ops = self._operands(node, w, values)
                spec = _spec.eltwise_spec(src, ops.get("mul"), ops.get("add"), out=out, layout=self.graph.layout,
                                          activation=kw.get("activation"),
                                          activation_params=kw.get("activation_params"))
            elif node.op == "cat":
                spec = _spec.cat_spec([values[i] for i in node.inputs], self._channel_axis(), out=out,
                                      layout=self.graph.layout)
            else:
                spec = _spec.SPECS[node.op](src, out=out, **kw)
            calls.append(_spec.prepare(spec, self.ctx))
            values[node.output] = out
        return calls

    def _channel_axis(self) -> int:
        return 1 if self.graph.layout == "NCHW" else 3

    @staticmethod
    def _operands(node: Node, weights: Dict[str, Any], values: Dict[str, Any]) -> Dict[str, Any]:
        """An eltwise node's mul / add operands: graph values (inputs[1:], by
        params["roles"]) or constants (weights)."""
        ops = {role: values[name] for role, name in zip(node.params.get("roles", ()), node.inputs[1:])}
        ops.update({k: v for k, v in weights.items() if k in ("mul", "add")})
        return ops

    # -- hints --
    def give_hints(self) -> int:
        """Gives the context one hint per primitive call of a run; returns how many."""
        TensorSpec = _spec.TensorSpec
        count = 0
        for node in self.graph.nodes:
            w = node.weights
            if node.op == "flatten":
                continue
            x = TensorSpec(self.shapes[node.inputs[0]], self.graph.dtype)
            kw = dict(node.params)
            if node.op == "conv2d":
                if len(node.inputs) > 1:
                    kw["residual"] = TensorSpec(self.shapes[node.inputs[1]], self.graph.dtype)
                self.ctx.hint("conv2d", x, TensorSpec(node.weights["weight"].shape, self.graph.dtype),
                              True if "bias" in w else None, **kw)
            elif node.op == "linear":
                self.ctx.hint("linear", x, TensorSpec(node.weights["weight"].shape, self.graph.dtype),
                              True if "bias" in w else None, **kw)
            elif node.op == "eltwise":
                shapes = {role: self.shapes[name] for role, name in zip(kw.get("roles", ()), node.inputs[1:])}
                shapes.update({k: v.shape for k, v in w.items() if k in ("mul", "add")})
                spec = {k: TensorSpec(v, self.graph.dtype) for k, v in shapes.items()}
                self.ctx.hint("eltwise", x, spec.get("mul"), spec.get("add"), activation=kw.get("activation"),
                              activation_params=kw.get("activation_params"), layout=self.graph.layout)
            elif node.op == "cat":
                self.ctx.hint("cat", [TensorSpec(self.shapes[i], self.graph.dtype) for i in node.inputs],
                              self._channel_axis(), layout=self.graph.layout)
            else:
                self.ctx.hint(node.op, x, **kw)
            count += 1
        return count

    # -- execution --
    def run(self, x: Any, timed: bool = False, record: bool = True) -> Any:
        """One inference of x (the buffer from :meth:`input`, or any array of the
        input's shape, copied in). Returns the output buffer (reused by the next
        run). record=False skips the per-layer report (for steady-state timing)."""
        t_run = time.perf_counter()
        self._set_input(x)
        if self.cuda:  # the runner's plans run on this thread's stream: the default one
            self.ctx._use_stream(0)
        self.report = []
        if not record:
            for call in self._calls:
                if call is not None:
                    call()
        else:
            # The report costs two per-thread reads a layer (static strings,
            # decoded after the run): the solver and the policy's decision.
            ffi, lib = _lib.load()
            raw = []
            for node, call in zip(self.graph.nodes, self._calls):
                if call is None:
                    continue
                if timed:
                    t0 = time.perf_counter()
                    call()
                    if self.cuda:
                        self.ctx.synchronize()
                    ms = (time.perf_counter() - t0) * 1e3
                else:
                    call()
                    ms = None
                raw.append((node, lib.pask_last_solver(), lib.pask_last_decision(), ms))
            for node, solver, decision, ms in raw:
                self.report.append(dict(layer=node.name, op=node.op, solver=ffi.string(solver).decode(),
                                        decision=ffi.string(decision).decode(), ms=ms))
        # host time until the last call returned (on a GPU the rest is the device finishing)
        self.last_enqueue_ms = (time.perf_counter() - t_run) * 1e3
        if self.cuda:
            self.ctx.synchronize()
        return self._output()

    def _output(self) -> Any:
        name = self.graph.output_name
        if name in self._buffers:
            return self._buffers[name]
        node = next(n for n in self.graph.nodes if n.output == name)  # a trailing flatten
        return self._flatten(self._buffers.get(node.inputs[0], self._input), self.shapes[name])

    def _flatten(self, a: Any, shape: tuple) -> Any:
        if isinstance(a, np.ndarray):
            return a.reshape(shape)
        return _arrays.view(a, "flatten input").reshaped(shape)

