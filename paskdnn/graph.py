"""Graphs of paskdnn primitives and the runner that executes them.

A Graph is a list of Nodes in execution order over named values. Each node is
one paskdnn op with its weights already in the layout it runs in (batch norm
folded, residual adds and activations fused as conv epilogues), so running a
graph is one primitive call per node, and the graph's hints are exactly the
calls it will make.

    graph = paskdnn.models.resnet50(layout="NHWC")
    runner = Runner(graph, context)     # gives the hints at load time
    y = runner.run(x)                    # x: (N, H, W, C) or (N, C, H, W)
    runner.report                        # per layer: solver, resident / reuse / load / replay

On a CUDA context the runner captures its calls as a CUDA graph once the
kernels it runs have settled, and replays the graph (one host call a run)
after that; see :class:`Runner`.
"""
from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import _arrays, _errors, _lib, _spec
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
    """Every value's shape for a batch size, in the graph's layout. Convolution,
    pooling and concatenation sizes are the C library's (pask_conv2d_output_dims,
    pask_pool2d_output_dims, pask_cat_output_dims), so they agree with what the
    calls check."""
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
            dims = _spec.cat_output_dims([_spec.nchw_dims(shapes[i], layout) for i in node.inputs], layout)
            shapes[node.output] = _spec.physical(dims, layout)
        elif node.op == "linear":
            shapes[node.output] = tuple(x[:-1]) + (node.weights["weight"].shape[0],)
    return shapes


def channel_axis(layout: str) -> int:
    """The channel axis of a 4-D value in layout (NCHW or NHWC)."""
    return 1 if layout == "NCHW" else 3


def hint_calls(graph: Graph, shapes: Dict[str, tuple], hint: Callable[..., Any]) -> int:
    """Calls hint(op, *args, **kwargs) (a Context.hint's signature) once per
    primitive call of one run of graph, in order, with shapes from
    infer_shapes; returns how many. Runner.give_hints and precompile's hint
    list are this one list."""
    TensorSpec = _spec.TensorSpec
    dt, layout = graph.dtype, graph.layout
    count = 0
    for node in graph.nodes:
        w = node.weights
        if node.op == "flatten":
            continue
        x = TensorSpec(shapes[node.inputs[0]], dt)
        kw = dict(node.params)
        if node.op == "conv2d":
            if len(node.inputs) > 1:
                kw["residual"] = TensorSpec(shapes[node.inputs[1]], dt)
            hint("conv2d", x, TensorSpec(w["weight"].shape, dt), True if "bias" in w else None, **kw)
        elif node.op == "linear":
            hint("linear", x, TensorSpec(w["weight"].shape, dt), True if "bias" in w else None, **kw)
        elif node.op == "eltwise":
            operands = {role: shapes[name] for role, name in zip(kw.get("roles", ()), node.inputs[1:])}
            operands.update({k: v.shape for k, v in w.items() if k in ("mul", "add")})
            spec = {k: TensorSpec(v, dt) for k, v in operands.items()}
            hint("eltwise", x, spec.get("mul"), spec.get("add"), activation=kw.get("activation"),
                 activation_params=kw.get("activation_params"), layout=layout)
        elif node.op == "cat":
            hint("cat", [TensorSpec(shapes[i], dt) for i in node.inputs], channel_axis(layout), layout=layout)
        else:
            hint(node.op, x, **kw)
        count += 1
    return count


# ---- layout ------------------------------------------------------------------------


def relayout(graph: Graph, layout: str) -> Optional[Graph]:
    """The same network computing in ``layout`` ("NCHW" or "NHWC"): conv weights
    transposed (OIHW <-> OHWI), pooling and convolution params and 4-D
    element-wise constants in the new layout, and the columns of a linear layer
    after a flatten of a 4-D value with H*W > 1 permuted to the new flatten's
    order, so its outputs are unchanged. The graph itself is not modified (the
    new one shares nothing that it writes). Returns ``graph`` when it already
    computes in ``layout``, and None where the outputs could not stay the same
    (a flatten of H*W > 1 values read by anything but linear layers, or that is
    the graph's output)."""
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', not {layout!r}")
    if graph.layout == layout:
        return graph
    graph.validate()
    to_nhwc = layout == "NHWC"
    shapes = infer_shapes(graph, 1)  # per-sample sizes do not depend on the batch

    def move(a: Any) -> np.ndarray:  # a 4-D array of the graph's layout in the new one: always a new array
        return np.array(np.asarray(a).transpose((0, 2, 3, 1) if to_nhwc else (0, 3, 1, 2)), order="C", copy=True)

    hw_flat: Dict[str, tuple] = {}  # flatten output -> (c, h, w) of its 4-D input, where h * w > 1
    nodes: List[Node] = []
    for n in graph.nodes:
        p, w = dict(n.params), dict(n.weights)
        for i in n.inputs:
            if i in hw_flat and n.op != "linear":
                return None  # its column order would change under it
        if n.op == "conv2d":
            wl = p.get("weight_layout", "OIHW")
            if (wl == "OIHW") == to_nhwc:
                w["weight"] = move(w["weight"])
            p["weight_layout"] = "OHWI" if to_nhwc else "OIHW"
            p["layout"] = layout
        elif n.op in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
            p["layout"] = layout
        elif n.op == "eltwise" and len(shapes[n.inputs[0]]) == 4:
            w = {k: (move(v) if k in ("mul", "add") and np.ndim(v) == 4 else v) for k, v in w.items()}
        elif n.op == "flatten":
            x = shapes[n.inputs[0]]
            if len(x) == 4:
                c, h, wd = _spec.nchw_dims(x, graph.layout)[1:]
                if h * wd > 1:
                    hw_flat[n.output] = (c, h, wd)
        elif n.op == "linear" and n.inputs[0] in hw_flat:
            c, h, wd = hw_flat[n.inputs[0]]
            wt = np.asarray(w["weight"])
            o = wt.shape[0]
            src = (o, c, h, wd) if graph.layout == "NCHW" else (o, h, wd, c)
            order = (0, 2, 3, 1) if to_nhwc else (0, 3, 1, 2)
            w["weight"] = np.ascontiguousarray(wt.reshape(src).transpose(order).reshape(o, -1))
        nodes.append(Node(n.name, n.op, list(n.inputs), n.output, p, w))
    if graph.output_name in hw_flat:
        return None
    cs = tuple(graph.input_shape)
    if len(cs) == 3:
        cs = (cs[1], cs[2], cs[0]) if to_nhwc else (cs[2], cs[0], cs[1])
    g = Graph(name=graph.name, input_name=graph.input_name, input_shape=cs, nodes=nodes,
              output_name=graph.output_name, layout=layout, dtype=graph.dtype)
    g.validate()
    return g


# ---- the runner -------------------------------------------------------------------


def _capture_default() -> bool:
    return os.environ.get("PASKDNN_CAPTURE", "1").strip().lower() not in ("0", "false", "off", "no")


class _Capture:
    """A runner's stream and captured graph (C handles), freed by release() or
    when the runner is collected (the stream after the graph)."""

    def __init__(self, ctx: Any) -> None:
        ffi, lib = _lib.load()
        out = ffi.new("void **")
        _lib.check(lib.pask_stream_create(ctx._h(), out))
        self.ctx, self.stream = ctx, out[0]
        self.stream_int = int(ffi.cast("uintptr_t", out[0]))
        self.graph: Any = None
        self.info = ffi.new("pask_graph_info_t *")

    def drop_graph(self) -> None:
        if self.graph is not None:
            _, lib = _lib.load()
            lib.pask_graph_destroy(self.graph)  # a closed context freed it already: nothing to report
            self.graph = None

    def release(self) -> None:
        self.drop_graph()
        if self.stream is not None and self.ctx._handle is not None:
            _, lib = _lib.load()
            # the calling thread goes back to the default stream if it ran on this one (C does the same)
            tls = self.ctx._tls
            if getattr(tls, "stream", None) == self.stream_int:
                del tls.stream, tls.ptr
            lib.pask_stream_destroy(self.ctx._handle, self.stream)
        self.stream = None


def _buffer_offsets(graph: Graph, shapes: Dict[str, tuple], itemsize: int = 4,
                    align: int = 64) -> "tuple[Dict[str, int], int]":
    """Byte offsets in one arena for every node output (flatten's output is a
    view of its input, not a buffer) and the arena's size: a buffer's bytes are
    reused once the last node reading it has run, never while it is live, so a
    node's output never overlaps its inputs, and the graph's output is live to
    the end. First fit in execution order."""
    owner: Dict[str, Optional[str]] = {graph.input_name: None}  # value -> the buffer it lives in
    last: Dict[str, int] = {}  # buffer -> index of the last node reading it
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            b = owner.get(v)
            if b is not None:
                last[b] = i
        owner[n.output] = owner[n.inputs[0]] if n.op == "flatten" else n.output
    out = owner.get(graph.output_name)
    if out is not None:
        last[out] = len(graph.nodes)
    live: List[tuple] = []  # (offset, size, buffer), sorted by offset
    offsets: Dict[str, int] = {}
    end = 0
    for i, n in enumerate(graph.nodes):
        if n.op != "flatten":
            size = -(-int(np.prod(shapes[n.output], dtype=np.int64)) * itemsize // align) * align
            at = 0
            for o, sz, _ in live:
                if o - at >= size:
                    break
                at = max(at, o + sz)
            live.append((at, size, n.output))
            live.sort()
            offsets[n.output] = at
            end = max(end, at + size)
        live = [b for b in live if last.get(b[2], i) > i]
    return offsets, end


def _host_buffers(graph: Graph, shapes: Dict[str, tuple]) -> Dict[str, np.ndarray]:
    """The CPU runner's node outputs: float32 views of one arena laid out by
    _buffer_offsets, written once here so that set-up, not the first inference,
    pays their first-touch page faults. Reusing the bytes of dead values makes
    the arena a quarter of the separate buffers' total for ResNet-50 and
    MobileNetV2 (fewer faults to pay, and a smaller working set)."""
    offsets, size = _buffer_offsets(graph, shapes)
    raw = np.empty(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    arena = raw[start:start + size]
    arena.fill(0)
    out = {}
    for n in graph.nodes:
        if n.op != "flatten":
            count = int(np.prod(shapes[n.output], dtype=np.int64))
            at = offsets[n.output]
            out[n.output] = arena[at:at + 4 * count].view(np.float32).reshape(shapes[n.output])
    return out


class Runner:
    """Runs a Graph on a context: weights moved to the device once (on the CPU
    copied: the runner's conv plans declare them constant and keep them packed
    as their kernels want them), every intermediate buffer allocated once, and the graph's Problems given to the
    context as hints in execution order when ``hints`` is true (the default),
    so the loader threads bring each layer's kernel in ahead of its call.

    ``report`` lists, after each run, every layer's solver and what the policy
    did for it (resident / reuse / waited / load; ``captured`` for the run that
    captured the graph and replayed it, ``replay`` for a replay) and, with
    ``timed=True``, its time in ms (synchronising after each layer on a GPU;
    timed runs are eager).

    Graph capture (``capture``; default on for CUDA contexts unless
    ``PASKDNN_CAPTURE=0``): the runner runs on a stream of its own. Once
    ``settle_runs`` eager runs in a row chose the same solver for every layer,
    each from a resident kernel, with no load in flight, the next run captures
    the calls as a CUDA graph and later runs replay it (one host call a run).
    While best kernels are still loading (a cold cache's compiles), the runner
    captures the stand-ins it reuses once ``STAND_IN_SETTLE`` (4) times
    ``settle_runs`` eager runs in a row made the same choices, resident or
    reused. When a kernel load lands afterwards (the context's count of loads moves),
    the runner asks whether a layer's best kernel is now another one
    (``pask_graph_info_t.stale``): then it drops the graph, runs eagerly and
    captures again once settled. A capture that fails (a kernel evicted
    meanwhile) leaves the run eager; after ``MAX_FAILED_CAPTURES`` (3) failures
    capture is off for the runner. ``capture_note`` says why.
    ``captures`` and ``replays`` count them; the context's trace shows each
    capture and launch ("graph" events). capture=True on a CPU or HIP context
    raises ValueError.

    Layout (``layout``): the layout the runner computes in. The default (None)
    is the graph's own on GPUs and NHWC on the CPU, whose NHWC kernels are the
    fast ones: an NCHW float32 graph is converted once at set-up
    (:func:`relayout`), and the runner still takes its input and gives a 4-D
    output in the graph's layout (the input transposed while it is copied in,
    the output a transposed view), so only the speed changes. ``layout="NCHW"``
    keeps an NCHW graph's NCHW kernels on the CPU; a layout other than the
    graph's on a GPU raises ValueError. ``runner.layout`` says which, and
    ``runner.shapes`` / ``input_shape`` / ``output_shape`` are the graph's."""

    MAX_FAILED_CAPTURES = 3
    # Eager runs in a row (times settle_runs) with the same choices, stand-ins
    # (reuse) among them while their best kernels load, before the runner
    # captures the stand-ins: a cold cache's NVRTC compiles take 12-33 s a
    # kernel on a GPU, and eager runs on stand-ins cost MobileNetV2 at batch 1
    # 1.1 ms against 0.4 replayed (H100, session 21). The graph goes stale and
    # is captured again when the best kernels land.
    STAND_IN_SETTLE = 4

    def __init__(self, graph: Graph, context: Any = None, batch: int = 1, hints: bool = True,
                 capture: Optional[bool] = None, settle_runs: int = 8, layout: Optional[str] = None) -> None:
        graph.validate()
        self.ctx = context if context is not None else get_default_context()
        self.batch = batch
        self.cuda = self.ctx.device.startswith(("cuda", "hip"))  # any GPU context
        self.source_graph = graph
        self.graph = self._compute_graph(graph, layout)
        self.layout = self.graph.layout
        self._shapes = infer_shapes(self.graph, batch)  # what it computes
        # every value's shape as the caller's graph has it (its layout)
        self.shapes = infer_shapes(graph, batch) if self.graph is not graph else self._shapes
        self.input_shape = self.shapes[graph.input_name]
        self.output_shape = self.shapes[graph.output_name]
        self.report: List[Dict[str, Any]] = []
        self.last_enqueue_ms = 0.0
        # Hints first: the loader threads work while the weights move to the device.
        if hints:
            self.give_hints()
        graph = self.graph
        # Arrays relayout made for this runner are its own already (fresh, C-order
        # float32, referenced by nothing else): the CPU keeps them without the
        # copy that _upload makes of the caller's (ResNet-50 NCHW: 100 MB less
        # copied at set-up).
        src = {id(v) for n in self.source_graph.nodes for v in n.weights.values()} if graph is not self.source_graph else None
        self._weights = [{k: (v if self._own(v, src) else self._upload(v)) for k, v in n.weights.items()}
                         for n in graph.nodes]
        if self.cuda:
            self._buffers = {n.output: self._alloc(self._shapes[n.output]) for n in graph.nodes if n.op != "flatten"}
        else:
            self._buffers = _host_buffers(graph, self._shapes)
        self._input = self._alloc(self._shapes[graph.input_name])
        self._calls = self._prepare()
        self._seq = _spec.BoundSequence([c for c in self._calls if c is not None])
        self._seq_nodes = [n for n, c in zip(self.graph.nodes, self._calls) if c is not None]
        if not self.cuda:
            self._pack_weights()
        # The calling thread's one-time set-up in cuDNN (its first execution on
        # a thread: about 0.15 ms of host time on an H100), paid at model load
        # on the runner's stream rather than in the first inference.
        self.primed = False
        self._init_capture(capture, settle_runs)
        if self.cuda:
            self.ctx._use_stream(self._stream_int)  # the runner's stream
            self.primed = self.ctx.prime_thread()

    def _compute_graph(self, graph: Graph, layout: Optional[str]) -> Graph:
        """The graph the runner computes: ``graph`` itself, or on the CPU the
        same network in another layout (see :func:`relayout`)."""
        if layout is None:
            # The CPU's NHWC kernels (implicit GEMM, packed weights, vectorised
            # depthwise) beat its NCHW ones by 1.3-1.5x on the zoo models
            # (bench/results/peer-ort-*): an NCHW float32 graph computes in NHWC there.
            if self.cuda or graph.layout == "NHWC" or graph.dtype != "float32":
                return graph
            return relayout(graph, "NHWC") or graph
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW', 'NHWC' or None (the runner's choice), not {layout!r}")
        if layout == graph.layout:
            return graph
        if self.cuda:
            raise ValueError(f"a runner on {self.ctx.device} computes in its graph's layout ({graph.layout}); "
                             f"build the graph in {layout} instead")
        moved = relayout(graph, layout)
        if moved is None:
            raise ValueError(f"graph {graph.name!r} cannot compute in {layout} with the same outputs: a flatten of a "
                             "4-D value with H*W > 1 feeds something other than linear layers or is the output")
        return moved

    # -- graph capture --
    def _init_capture(self, capture: Optional[bool], settle_runs: int) -> None:
        if isinstance(settle_runs, bool) or not isinstance(settle_runs, int) or settle_runs < 1:
            raise ValueError(f"settle_runs must be an int >= 1, not {settle_runs!r}")
        cuda = self.ctx.device.startswith("cuda")
        if capture and not cuda:
            raise ValueError(f"capture=True needs a CUDA context; this runner's context is {self.ctx.device}")
        self.settle_runs = settle_runs
        self.captures = 0
        self.replays = 0
        self.capture_note = ""
        self._cap: Optional[_Capture] = None
        self._stream_int = 0  # the thread's default stream
        self._settled = 0  # eager runs in a row with the same settled choices
        self._standing = 0  # eager runs in a row with the same choices, stand-ins allowed
        self._choices: Optional[List[str]] = None
        self._loads_seen = -1
        self._failed_captures = 0
        want = _capture_default() if capture is None else bool(capture)
        if not cuda or not want:
            self.capture_note = "off" if cuda else f"off: {self.ctx.device} contexts run eagerly"
            return
        try:
            self._cap = _Capture(self.ctx)
        except Exception as e:  # a driver without the graph API: the runner stays eager
            if capture:
                raise
            self.capture_note = f"off: {e}"
            return
        self._stream_int = self._cap.stream_int
        self._cap_finalizer = weakref.finalize(self, self._cap.release)
        ffi, _ = _lib.load()
        self._stats = ffi.new("pask_stats_t *")

    @property
    def capture(self) -> bool:
        """Whether this runner captures and replays its calls."""
        return self._cap is not None

    @property
    def captured(self) -> bool:
        """Whether a captured graph is ready to replay."""
        return self._cap is not None and self._cap.graph is not None

    def close(self) -> None:
        """Frees the runner's graph and stream now (else when it is collected)."""
        if self._cap is not None:
            self._cap_finalizer()
            self._cap = None
            self._stream_int = 0  # later runs are eager, on the thread's default stream

    def _loads(self) -> int:
        _, lib = _lib.load()
        _lib.check(lib.pask_context_get_stats(self.ctx._h(), self._stats))
        return int(self._stats.loads)

    def _still_best(self) -> bool:
        """Whether the graph still runs every layer's best kernel. Asked of the
        C library (pask_graph_get_info's stale count) only when a kernel load
        has landed since the last answer; a stale graph is dropped."""
        loads = self._loads()
        if loads == self._loads_seen:
            return True
        _, lib = _lib.load()
        _lib.check(lib.pask_graph_get_info(self._cap.graph, self._cap.info))
        if self._cap.info.stale == 0:
            self._loads_seen = loads
            return True
        self.capture_note = f"graph dropped: {self._cap.info.stale} layer(s) have a better kernel now"
        self._cap.drop_graph()
        self._settled = self._standing = 0
        return False

    def _note_eager(self, report: List[Dict[str, Any]]) -> None:
        """After an eager run: counts it towards settling (same solvers as the
        run before, each from a resident kernel, no load in flight) and towards
        standing (same solvers, resident or stand-ins: STAND_IN_SETTLE)."""
        choices = [r["solver"] for r in report]
        decisions = {r["decision"] for r in report}
        same = choices == self._choices
        settled = decisions <= {"resident"} and self.ctx.wait_loads(0)
        self._settled = self._settled + 1 if settled and same else (1 if settled else 0)
        standing = decisions <= {"resident", "reuse"}
        self._standing = self._standing + 1 if standing and same else (1 if standing else 0)
        self._choices = choices

    def _ready_to_capture(self) -> bool:
        return self._settled >= self.settle_runs or self._standing >= self.STAND_IN_SETTLE * self.settle_runs

    def _capture_now(self) -> bool:
        """Captures the calls (they are recorded, not run); False when it failed."""
        ffi, lib = _lib.load()
        cap = self._cap
        h = self.ctx._h()
        chosen = []
        try:
            _lib.check(lib.pask_graph_capture_begin(h, cap.stream))
            for call in self._calls:
                if call is not None:
                    call()
                    chosen.append(lib.pask_last_solver())
        except _errors.Error as e:  # a failing call ended the capture
            return self._capture_failed(str(e))
        out = ffi.new("pask_graph_t *")
        status = lib.pask_graph_capture_end(h, out)
        if status:
            return self._capture_failed(ffi.string(lib.pask_last_error_message()).decode())
        cap.graph = out[0]
        self._choices = [ffi.string(c).decode() for c in chosen]  # what the graph runs
        self.captures += 1
        self._loads_seen = self._loads()
        self.capture_note = f"captured {self._n_calls()} calls (capture {self.captures})"
        return True

    def _capture_failed(self, why: str) -> bool:
        """A failed capture: eager again, settling anew; after
        ``MAX_FAILED_CAPTURES`` failures capture is off for this runner."""
        self._failed_captures += 1
        self._settled = self._standing = 0
        if self._failed_captures >= self.MAX_FAILED_CAPTURES:
            self.close()
            self.ctx._use_stream(0)
            self.capture_note = f"off after {self._failed_captures} failed captures; the last: {why}"
        else:
            self.capture_note = f"capture failed, running eagerly: {why}"
        return False

    def _n_calls(self) -> int:
        return sum(call is not None for call in self._calls)

    def _replay(self, record: bool, decision: str = "replay") -> None:
        _, lib = _lib.load()
        _lib.check(lib.pask_graph_launch(self._cap.graph, self._cap.stream))
        self.replays += 1
        if record:
            self.report = [dict(layer=node.name, op=node.op, solver=solver, decision=decision, ms=None)
                           for node, solver in zip((n for n, c in zip(self.graph.nodes, self._calls) if c is not None),
                                                   self._choices or [])]

    # -- device data --
    def _own(self, a: Any, source_ids: Optional[set]) -> bool:
        """Whether a computed-graph weight is a CPU runner's own: made by relayout
        (not one of the caller's arrays), C-contiguous float32 and owning its data."""
        return (not self.cuda and source_ids is not None and id(a) not in source_ids
                and isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
                and a.flags.owndata and a.flags.writeable)

    def _upload(self, a: np.ndarray) -> Any:
        if not self.cuda:
            # A copy of the runner's own, never written: its conv plans declare
            # their weights constant and may keep them packed (so a graph's
            # arrays changed in place later do not reach this runner).
            return np.array(a, np.float32, order="C", copy=True)
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
        input buffer on the context's device and returns that buffer (in the
        layout the runner computes in; pass it to :meth:`run` as it is)."""
        expect = self.input_shape
        if tuple(x.shape) != tuple(expect):
            raise ValueError(f"input has shape {tuple(x.shape)}, the graph expects {expect}")
        self._set_input(x)
        return self._input

    def _set_input(self, x: Any) -> None:
        if x is self._input:
            return
        if not self.cuda:
            x = np.asarray(x)
            if self.graph is not self.source_graph and x.ndim == 4:
                if tuple(x.shape) != tuple(self.input_shape):
                    raise ValueError(f"input has shape {tuple(x.shape)}, the graph expects {self.input_shape}")
                x = x.transpose((0, 2, 3, 1) if self.layout == "NHWC" else (0, 3, 1, 2))
            np.copyto(self._input, x, casting="same_kind" if x.dtype.kind == "f" else "unsafe")
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
                values[node.output] = self._flatten(src, self._shapes[node.output])
                calls.append(None)
                continue
            out = self._buffers[node.output]
            kw = dict(node.params)
            if node.op == "conv2d":
                if len(node.inputs) > 1:
                    kw["residual"] = values[node.inputs[1]]
                spec = _spec.conv2d_spec(src, w["weight"], w.get("bias"), out=out, **kw)
                calls.append(_spec.prepare(spec, self.ctx, constant_weights=not self.cuda))  # the runner's own copy
                values[node.output] = out
                continue
            elif node.op == "linear":
                spec = _spec.linear_spec(src, w["weight"], w.get("bias"), out=out, **kw)
            elif node.op == "eltwise":
                ops = self._operands(node, w, values)
                spec = _spec.eltwise_spec(src, ops.get("mul"), ops.get("add"), out=out, layout=self.graph.layout,
                                          activation=kw.get("activation"),
                                          activation_params=kw.get("activation_params"))
            elif node.op == "cat":
                spec = _spec.cat_spec([values[i] for i in node.inputs], channel_axis(self.graph.layout), out=out,
                                      layout=self.graph.layout)
            else:
                spec = _spec.SPECS[node.op](src, out=out, **kw)
            calls.append(_spec.prepare(spec, self.ctx))
            values[node.output] = out
        return calls

    def _pack_weights(self) -> None:
        """CPU: the conv plans' constant weights packed at set-up for the kernels
        resident once the hinted loads are done (about a millisecond on the CPU),
        and those kernels' scratch reserved on this thread (a stem's padded input
        copy: 150 page faults), so the first inference pays neither when it runs
        on the thread that built the runner. A plan whose kernel is not resident
        by then packs on its first run, as before."""
        if not any(node.op == "conv2d" for node in self.graph.nodes):
            return
        ffi, lib = _lib.load()
        self.ctx.wait_loads(2.0)
        for node, call in zip(self.graph.nodes, self._calls):
            if node.op == "conv2d" and call is not None:
                _lib.check(lib.pask_plan_pack_weights(call.plan, ffi.NULL))

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
        return hint_calls(self.graph, self._shapes, self.ctx.hint)

    # -- execution --
    def run(self, x: Any, timed: bool = False, record: bool = True) -> Any:
        """One inference of x (the buffer from :meth:`input`, or any array of the
        input's shape, copied in). Returns the output buffer (reused by the next
        run). record=False skips the per-layer report (for steady-state timing)."""
        t_run = time.perf_counter()
        if self.cuda:  # the runner's plans run on this thread's stream: the runner's
            self.ctx._use_stream(self._stream_int)
        self._set_input(x)
        self.report = []
        cap = self._cap
        if cap is not None and not timed:
            if cap.graph is not None and self._still_best():
                self._replay(record)
                return self._finish(t_run)
            if cap.graph is None and self._ready_to_capture() and self._capture_now():
                self._replay(record, "captured")
                return self._finish(t_run)
        # eager: a layer per call (before a capture, or after a graph went stale)
        if cap is not None and not record:
            record = True  # the choices are read to settle
        if not record:
            self._run_sequence(False)
        else:
            # The report costs two per-thread reads a layer (static strings,
            # decoded after the run): the solver and the policy's decision.
            ffi, lib = _lib.load()
            if timed:
                raw = []
                for node, call in zip(self.graph.nodes, self._calls):
                    if call is None:
                        continue
                    t0 = time.perf_counter()
                    call()
                    if self.cuda:
                        self.ctx.synchronize()
                    ms = (time.perf_counter() - t0) * 1e3
                    raw.append((node, lib.pask_last_solver(), lib.pask_last_decision(), ms))
            else:  # one C call for every layer
                raw = [(node, solver, decision, None)
                       for node, (solver, decision) in zip(self._seq_nodes, self._run_sequence(True))]
            for node, solver, decision, ms in raw:
                self.report.append(dict(layer=node.name, op=node.op, solver=ffi.string(solver).decode(),
                                        decision=ffi.string(decision).decode(), ms=ms))
            if cap is not None:
                self._note_eager(self.report)
        return self._finish(t_run)

    def _run_sequence(self, choices: bool) -> Any:
        """Every layer in one C call; a failure names its layer."""
        try:
            return self._seq.run(choices)
        except _errors.Error as e:
            at = self._seq.failed_at
            if at >= len(self._seq_nodes):
                raise
            node = self._seq_nodes[at]
            message = str(e)
            prefix = f"call {at} of {len(self._seq_nodes)}: "
            if message.startswith(prefix):  # the C library's index: the layer's name says more
                message = message[len(prefix):]
            raise type(e)(f"{message} (layer {node.name!r}, {node.op})", e.status) from None

    def _finish(self, t_run: float) -> Any:
        # host time until the last call (or the replay) returned (on a GPU the rest is the device finishing)
        self.last_enqueue_ms = (time.perf_counter() - t_run) * 1e3
        if self.cuda:
            self.ctx.synchronize()
        return self._output()

    def _output(self) -> Any:
        name = self.graph.output_name
        if name in self._buffers:
            out = self._buffers[name]
            if self.graph is not self.source_graph and out.ndim == 4:  # a view in the graph's own layout
                return out.transpose((0, 3, 1, 2) if self.layout == "NHWC" else (0, 2, 3, 1))
            return out
        node = next(n for n in self.graph.nodes if n.output == name)  # a trailing flatten
        return self._flatten(self._buffers.get(node.inputs[0], self._input), self._shapes[name])

    def _flatten(self, a: Any, shape: tuple) -> Any:
        if isinstance(a, np.ndarray):
            return a.reshape(shape)
        # the runner's own buffers: a DeviceArray, so that a graph ending in a
        # flatten gives the caller what any other graph does
        return a._reshaped(shape)

