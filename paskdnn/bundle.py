"""Bundles: one file made ahead of time (``python -m paskdnn precompile``), without
a GPU, holding what a fresh process would otherwise build at start: the graph,
its weights in their final dtype and layout, the specialised GPU kernels per
architecture and the hint list. The format is in docs/bundles.md; in short:

    offset 0    header (128 bytes, little-endian)
                  magic     8 bytes  b"PASKBNDL"
                  version   u32      1
                  hdr_size  u32      128
                  file_size u64      the whole file
                  index_off u64      128
                  index_len u64      bytes of the index (UTF-8 JSON)
                  index_sha 32 bytes SHA-256 of the index
                  reserved  56 bytes zero
    128         index: JSON, padded with spaces up to the first section
    ...         sections, each at a multiple of 64, each with its SHA-256 in
                the index: "graph" (JSON), "weights" (raw arrays, each at a
                multiple of 64), "hints" (JSON hints records), "kernels.<arch>"
                (code objects, each at a multiple of 64)

Nothing in a bundle is pickled or runs as host code: JSON, raw little-endian
arrays and GPU code objects (checked again by the library before its loader
hands them to the driver).

    runner = paskdnn.load("model.pask", device="cuda")
    y = runner.run(x)            # as graph.Runner.run
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._bundle_file import (ALIGN, FORMAT, HEADER_SIZE, MAGIC, MAX_INDEX_BYTES, MAX_JSON_SECTION_BYTES,  # noqa: F401
                           STORAGE, VERSION, Bundle, Kernel, LoadStart, _align, add_kernels, hand_kernels,
                           json_section, kernels_section, write)
from ._errors import BundleError, UnsupportedError
from .graph import Graph, Node, Runner


# ---- JSON of node params -----------------------------------------------------------
#
# Node params are the functional ops' keyword arguments: ints, floats, strings,
# None, bools and tuples of them. JSON keeps all of them except the tuple/list
# distinction (every list is read back as a tuple) and non-finite floats, which
# are written as {"$float": "inf"}.


def _to_json(v: Any, where: str) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"$float": repr(f)}
    if isinstance(v, (list, tuple)):
        return [_to_json(x, where) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {k: _to_json(x, f"{where}.{k}") for k, x in v.items()}
    raise ValueError(f"{where}: a {type(v).__name__} cannot be stored in a bundle (JSON values only)")


def _from_json(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_from_json(x) for x in v)
    if isinstance(v, dict):
        if set(v) == {"$float"} and v["$float"] in ("inf", "-inf", "nan"):
            return float(v["$float"])
        return {k: _from_json(x) for k, x in v.items()}
    return v


# ---- weights in their final form ------------------------------------------------------


def final_weight(a: Any, dtype: str) -> np.ndarray:
    """A weight as the device holds it: float32, float16, or bfloat16 as its raw
    16 bits (rounded to nearest even, exactly as paskdnn.asarray converts)."""
    a = np.asarray(a)
    if dtype == "float32":
        return np.ascontiguousarray(a, "<f4")
    if dtype == "float16":
        return np.ascontiguousarray(a, "<f2")
    if dtype == "bfloat16":
        f = np.ascontiguousarray(a, np.float32).view(np.uint32)
        return ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype("<u2")
    raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")


def graph_document(graph: Graph) -> Tuple[Dict[str, Any], bytes]:
    """(the graph section's JSON document, the weights section's bytes): every
    node's weights converted to the graph's dtype, each array at a multiple of
    64 bytes of the section."""
    graph.validate()
    if graph.dtype not in STORAGE:
        raise ValueError(f"graph dtype must be one of {tuple(STORAGE)}, got {graph.dtype!r}")
    chunks: List[bytes] = []
    offset = 0
    nodes = []
    for node in graph.nodes:
        weights = {}
        for role, a in node.weights.items():
            w = final_weight(a, graph.dtype)
            pad = _align(offset) - offset
            if pad:
                chunks.append(b"\0" * pad)
                offset += pad
            weights[role] = {"offset": offset, "shape": [int(d) for d in w.shape], "dtype": graph.dtype,
                             "nbytes": int(w.nbytes)}
            chunks.append(w.tobytes())
            offset += w.nbytes
        nodes.append({"name": node.name, "op": node.op, "inputs": list(node.inputs), "output": node.output,
                      "params": _to_json(dict(node.params), f"node {node.name} params"), "weights": weights})
    doc: Dict[str, Any] = {"name": graph.name, "input_name": graph.input_name,
                           "input_shape": [int(d) for d in graph.input_shape], "output_name": graph.output_name,
                           "layout": graph.layout, "dtype": graph.dtype, "nodes": nodes}
    onnx = _onnx_fields(graph)
    if onnx is not None:
        doc["onnx"] = onnx
    return doc, b"".join(chunks)


_ONNX_FIELDS = ("batch", "onnx_input_name", "onnx_output_name", "onnx_input_shape", "onnx_output_shape",
                "output_order", "output_chw")


def _onnx_fields(graph: Graph) -> Optional[Dict[str, Any]]:
    if not all(hasattr(graph, k) for k in _ONNX_FIELDS):
        return None
    return {k: _to_json(getattr(graph, k), k) for k in _ONNX_FIELDS}


def graph_of(b: Bundle) -> Graph:
    """A bundle's graph, its weights numpy views of the map in their final dtype
    (float32 '<f4', float16 '<f2', bfloat16 its raw bits as '<u2')."""
    doc = b.json("graph")
    ws = b.sections.get("weights")
    if ws is None:
        raise BundleError(f"{b.path}: no 'weights' section", path=b.path, section="weights")
    where = dict(path=b.path, section="graph", offset=b.sections["graph"]["offset"])
    try:
        dtype = doc["dtype"]
        if dtype not in STORAGE:
            raise BundleError(f"{b.path}: graph dtype {dtype!r} is not one of {tuple(STORAGE)}", **where)
        nodes = []
        for n in doc["nodes"]:
            weights = {}
            for role, w in n["weights"].items():
                shape = tuple(int(d) for d in w["shape"])
                count = int(np.prod(shape, dtype=np.int64)) if shape else 1
                item = np.dtype(STORAGE[dtype]).itemsize
                off = int(w["offset"])
                if w.get("dtype") != dtype or off < 0 or off % ALIGN or count < 0 or \
                        off + count * item > ws["size"] or w.get("nbytes") != count * item:
                    raise BundleError(f"{b.path}: weight {role!r} of node {n['name']!r} (offset {off}, "
                                      f"shape {shape}) does not fit the weights section ({ws['size']} bytes, "
                                      f"{ALIGN}-byte aligned arrays of {dtype})", path=b.path,
                                      section="weights", offset=ws["offset"] + max(off, 0))
                weights[role] = np.frombuffer(b._mm, STORAGE[dtype], count, ws["offset"] + off).reshape(shape)
            nodes.append(Node(name=str(n["name"]), op=str(n["op"]), inputs=[str(i) for i in n["inputs"]],
                              output=str(n["output"]), params=_from_json(n["params"]), weights=weights))
        kw = dict(name=str(doc["name"]), input_name=str(doc["input_name"]),
                  input_shape=tuple(int(d) for d in doc["input_shape"]), nodes=nodes,
                  output_name=str(doc["output_name"]), layout=str(doc["layout"]), dtype=dtype)
        if "onnx" in doc:
            from .onnx_import import OnnxGraph

            extra = _from_json(doc["onnx"])
            g: Graph = OnnxGraph(**kw, **{k: extra[k] for k in _ONNX_FIELDS})
        else:
            g = Graph(**kw)
        g.validate()
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BundleError(f"{b.path}: the graph section is malformed ({type(e).__name__}: {e})",
                          **where) from None
    return g


# ---- loading: a ready runner ------------------------------------------------------------


class BundleRunner(Runner):
    """A graph.Runner over a bundle's graph: weights come from the map in their
    final form (on the CPU, float32 views of the map with no copy; on a GPU one
    copy each from the map). ``bundle_info`` says which arch's kernels were
    handed to the context (none when the bundle has no kernels for the device)."""

    bundle_info: Dict[str, Any]

    def _upload(self, a: Any) -> Any:
        if not self.cuda:
            return a  # float32 '<f4' views of the map, read only: the kernels only read weights
        from . import _arrays, _lib
        from ._arrays import DeviceArray

        D = _arrays.dtypes()
        arr = DeviceArray._empty(a.shape, D.code[self.graph.dtype], self.ctx)
        if arr.nbytes:
            ffi, lib = _lib.load()
            src = np.ascontiguousarray(a)
            _lib.check(lib.pask_memcpy(self.ctx._h(), arr._ptr, ffi.cast("void *", src.ctypes.data), arr.nbytes,
                                       lib.PASK_COPY_HOST_TO_DEVICE))
        return arr


def load(path: Any, device: str = "cpu", policy: Optional[str] = None, batch: Optional[int] = None,
         context: Any = None, hints: bool = True, **context_options: Any) -> BundleRunner:
    """A ready runner for a bundle: ``run(x)`` as graph.Runner.run.

    device: "cpu" (float32 bundles only), "cuda[:N]" or "hip[:N]"; policy and
    context_options go to the Context (cache_dir, loader_threads, ...), which
    is created on a thread of its own while the file is mapped and checked
    (pass context= to use one of yours instead). batch: the batch size (default:
    the bundle's first; an ONNX model's bundle takes only its own; a zoo
    model's graph runs at any batch size, the runner giving its own hints).
    On a GPU, the bundle's kernels for the device's arch are handed to the
    context before its hints; a bundle without them still loads (prebuilt or
    NVRTC kernels, as without a bundle) and ``runner.bundle_info["kernels"]``
    is 0. A bundle made with ``--solvers`` restricts a GPU context made here
    to those solvers.

    Raises BundleError for a truncated, corrupted, foreign or wrong-version
    file; nothing of a failed load stays (a context made here is closed)."""
    return finish_load(LoadStart(path, device, policy, context, context_options), batch, hints)


def finish_load(start: LoadStart, batch: Optional[int], hints: bool) -> BundleRunner:
    """load()'s second half, after LoadStart: the graph read, the sections'
    checks and the context (start's, or the caller's, then given the kernels)
    waited for, the runner made. A failure closes start's context."""
    b, pending, ctx = start.bundle, start.context, start.given
    try:
        start.checks.result()  # a damaged section is named as such, before its contents are read
        g = graph_of(b)
        batches = [int(v) for v in b.index.get("model", {}).get("batches", [1])] or [1]
        use_batch = batches[0] if batch is None else batch
        onnx_batch = getattr(g, "onnx_input_shape", None) and getattr(g, "batch", None)
        if onnx_batch and use_batch != onnx_batch:  # an imported graph's shapes hold for its one batch size
            raise ValueError(f"{b.path}: the ONNX model was imported for batch {onnx_batch}, not {use_batch}")
        if pending is not None:  # its thread handed the kernels over as soon as the context was up
            ctx = pending.result()
            arch, kernels = pending.then_value
        if not ctx.device.startswith(("cuda", "hip")) and g.dtype != "float32":
            raise UnsupportedError(f"{b.path}: a {g.dtype} bundle runs on GPUs only; the CPU backend is float32-only "
                                   f"(make a float32 bundle with precompile --dtype float32)")
        if pending is None:
            arch, kernels = hand_kernels(b, ctx)
        info: Dict[str, Any] = {"path": b.path, "arches": b.arches, "arch": arch, "kernels": kernels}
        runner = BundleRunner(g, ctx, batch=use_batch, hints=hints)
        runner.bundle_info = info
        runner.bundle = b
        return runner
    except BaseException:
        start.discard()
        raise
