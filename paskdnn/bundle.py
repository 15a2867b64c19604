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

import hashlib
import json
import math
import mmap
import os
import stat
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._errors import BundleError, UnsupportedError
from .graph import Graph, Node, Runner

MAGIC = b"PASKBNDL"
VERSION = 1
HEADER_SIZE = 128
ALIGN = 64
FORMAT = "paskdnn-bundle"
_HEADER = struct.Struct("<8sIIQQQ32s56s")
assert _HEADER.size == HEADER_SIZE

# Limits on what a reader accepts (a bundle is trusted no more than a cache entry).
MAX_INDEX_BYTES = 64 << 20
MAX_JSON_SECTION_BYTES = 256 << 20

# Final dtypes of the weights: name -> little-endian storage dtype.
STORAGE = {"float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def _sha(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


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


# ---- writing -------------------------------------------------------------------------


@dataclass
class Kernel:
    """One code object of a kernels section: its object id (what
    pask_context_add_code_object takes), its bytes and how it was made."""

    object_id: str
    data: bytes
    solvers: List[str] = field(default_factory=list)
    options: str = ""
    origin: str = ""  # "nvcc-13.0.48", "nvrtc-13.0", "prebuilt: <file>"


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


def write(path: str, index: Dict[str, Any], sections: Sequence[Tuple[Dict[str, Any], bytes]]) -> Dict[str, Any]:
    """Writes a bundle atomically (a temporary file in the same folder, then a
    rename): index holds the metadata; sections are (entry, bytes) with entry's
    "name" and "kind" (and, for kernels, "kernels": entries with "offset" and
    "size" inside the section). Offsets and checksums are filled in here.
    Returns the index written."""
    names = [e["name"] for e, _ in sections]
    if len(set(names)) != len(names):
        raise ValueError(f"section names must be unique: {names}")
    entries = []
    for entry, data in sections:
        e = dict(entry)
        e["size"] = len(data)
        e["sha256"] = _sha(data)
        entries.append(e)
    # The index sits before the sections, so a truncated file still names the
    # section it lost; its length fixes the sections' offsets, so lay out until stable.
    start = _align(HEADER_SIZE + 4096)
    while True:
        offset = start
        for e, (_, data) in zip(entries, sections):
            e["offset"] = offset
            offset = _align(offset + len(data))
        file_size = offset
        doc = dict(index, format=FORMAT, version=VERSION, sections=entries)
        text = json.dumps(doc, indent=1, allow_nan=False).encode()
        if HEADER_SIZE + len(text) <= start:
            break
        start = _align(HEADER_SIZE + len(text) + 4096)
    header = _HEADER.pack(MAGIC, VERSION, HEADER_SIZE, file_size, HEADER_SIZE, len(text), hashlib.sha256(text).digest(),
                          b"\0" * 56)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".paskdnn-bundle-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(text)
            f.write(b" " * (start - HEADER_SIZE - len(text)))
            pos = start
            for e, (_, data) in zip(entries, sections):
                f.write(b"\0" * (e["offset"] - pos))
                f.write(data)
                pos = e["offset"] + len(data)
            f.write(b"\0" * (file_size - pos))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return doc


def kernels_section(arch: str, kernels: Sequence[Kernel]) -> Tuple[Dict[str, Any], bytes]:
    """A "kernels.<arch>" section: the code objects, each at a multiple of 64."""
    parts: List[bytes] = []
    table = []
    offset = 0
    for k in kernels:
        pad = _align(offset) - offset
        parts.append(b"\0" * pad)
        offset += pad
        table.append({"object_id": k.object_id, "offset": offset, "size": len(k.data), "sha256": _sha(k.data),
                      "solvers": list(k.solvers), "options": k.options, "origin": k.origin})
        parts.append(k.data)
        offset += len(k.data)
    return {"name": f"kernels.{arch}", "kind": "kernels", "arch": arch, "kernels": table}, b"".join(parts)


def json_section(name: str, doc: Any) -> Tuple[Dict[str, Any], bytes]:
    return {"name": name, "kind": "json"}, json.dumps(doc, indent=None, allow_nan=False).encode()


# ---- reading -------------------------------------------------------------------------


class Bundle:
    """A bundle file, mapped read-only and checked: header, index, every
    section's bounds, alignment and SHA-256 (:meth:`open`). Sections are
    memoryviews of the map; weights are numpy views of it (no copy)."""

    def __init__(self, path: str, mm: mmap.mmap, index: Dict[str, Any]) -> None:
        self.path = path
        self._mm = mm
        self.index = index
        self.sections: Dict[str, Dict[str, Any]] = {s["name"]: s for s in index["sections"]}
        self._size = 0

    @classmethod
    def open(cls, path: Any, verify: bool = True) -> "Bundle":
        """Maps and checks a bundle; raises BundleError naming what is wrong and
        where. verify=False checks the header and the index only (then call
        :meth:`verify` before using the sections)."""
        b = cls._map(os.fspath(path))
        if verify:
            try:
                b.verify()
            except BaseException:
                b._mm.close()
                raise
        return b

    def verify(self) -> None:
        """Checks every section's bounds, alignment and SHA-256 and every
        kernel's; raises BundleError naming the first one that is wrong."""
        _check_sections(self.path, self._mm, self._size, self.index, True)

    @classmethod
    def _map(cls, path: str) -> "Bundle":
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise BundleError(f"{path}: cannot open it ({e.strerror})", path=path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BundleError(f"{path}: not a regular file", path=path)
            size = st.st_size
            if size < HEADER_SIZE:
                raise BundleError(f"{path}: truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header",
                                  path=path, section="header", offset=size)
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        try:
            index = _check_index(path, mm, size)
            _check_sections(path, mm, size, index, False)
        except BaseException:
            mm.close()
            raise
        b = cls(path, mm, index)
        b._size = size
        return b

    def close(self) -> None:
        """Unmaps the file (fails while arrays of it are alive; they keep it mapped)."""
        self._mm.close()

    def data(self, name: str) -> memoryview:
        s = self.sections[name]
        return memoryview(self._mm)[s["offset"]:s["offset"] + s["size"]]

    def json(self, name: str) -> Any:
        if name not in self.sections:
            raise BundleError(f"{self.path}: no {name!r} section", path=self.path, section=name)
        s = self.sections[name]
        if s["size"] > MAX_JSON_SECTION_BYTES:
            raise BundleError(f"{self.path}: section {name!r} is {s['size']} bytes, over the "
                              f"{MAX_JSON_SECTION_BYTES}-byte limit for JSON", path=self.path, section=name,
                              offset=s["offset"])
        try:
            return json.loads(bytes(self.data(name)).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BundleError(f"{self.path}: section {name!r} is not valid JSON ({e})", path=self.path,
                              section=name, offset=s["offset"]) from None

    @property
    def arches(self) -> List[str]:
        return [s["arch"] for s in self.index["sections"] if s.get("kind") == "kernels"]

    def kernels(self, arch: str) -> List[Tuple[Dict[str, Any], memoryview]]:
        """The code objects for arch: (table entry, bytes), each already checked
        against its SHA-256 when the bundle was opened."""
        name = f"kernels.{arch}"
        if name not in self.sections:
            return []
        s = self.sections[name]
        mv = self.data(name)
        return [(k, mv[k["offset"]:k["offset"] + k["size"]]) for k in s["kernels"]]

    def graph(self) -> Graph:
        """The graph, its weights numpy views of the map in their final dtype
        (float32 '<f4', float16 '<f2', bfloat16 its raw bits as '<u2')."""
        doc = self.json("graph")
        ws = self.sections.get("weights")
        if ws is None:
            raise BundleError(f"{self.path}: no 'weights' section", path=self.path, section="weights")
        where = dict(path=self.path, section="graph", offset=self.sections["graph"]["offset"])
        try:
            dtype = doc["dtype"]
            if dtype not in STORAGE:
                raise BundleError(f"{self.path}: graph dtype {dtype!r} is not one of {tuple(STORAGE)}", **where)
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
                        raise BundleError(f"{self.path}: weight {role!r} of node {n['name']!r} (offset {off}, "
                                          f"shape {shape}) does not fit the weights section ({ws['size']} bytes, "
                                          f"{ALIGN}-byte aligned arrays of {dtype})", path=self.path,
                                          section="weights", offset=ws["offset"] + max(off, 0))
                    weights[role] = np.frombuffer(self._mm, STORAGE[dtype], count, ws["offset"] + off).reshape(shape)
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
            raise BundleError(f"{self.path}: the graph section is malformed ({type(e).__name__}: {e})",
                              **where) from None
        return g

    def hints(self) -> List[Dict[str, Any]]:
        """The hint records, one per batch size: paskdnn hints records (the
        format of pask_context_save_record) with a "batch" key."""
        return self.json("hints")["records"] if "hints" in self.sections else []


def _bad(path: str, msg: str, section: str, offset: int) -> BundleError:
    return BundleError(f"{path}: {msg} (section {section!r}, offset {offset})", path=path, section=section,
                       offset=offset)


def _check_index(path: str, mm: mmap.mmap, size: int) -> Dict[str, Any]:
    """The header and the index, checked (magic, version, sizes, the index's SHA-256)."""
    def bad(msg: str, section: str, offset: int) -> BundleError:
        return _bad(path, msg, section, offset)

    magic, version, hdr, file_size, index_off, index_len, index_sha, reserved = _HEADER.unpack_from(mm, 0)
    if magic != MAGIC:
        raise bad(f"not a paskdnn bundle (magic {magic!r}, expected {MAGIC!r})", "header", 0)
    if version != VERSION:
        raise bad(f"bundle format version {version}; this paskdnn reads version {VERSION} "
                  f"(make the bundle again with this paskdnn's precompile)", "header", 8)
    if hdr != HEADER_SIZE or reserved != b"\0" * 56 or index_off != HEADER_SIZE:
        raise bad("corrupted header (its size, index offset or reserved bytes are wrong)", "header", 12)
    if index_len > MAX_INDEX_BYTES:
        raise bad(f"corrupted header: an index of {index_len} bytes is over the limit", "header", 32)
    if size < index_off + index_len:
        raise bad(f"truncated: the file is {size} bytes and ends inside the index "
                  f"({index_len} bytes at {index_off})", "index", index_off)
    text = mm[index_off:index_off + index_len]
    if hashlib.sha256(text).digest() != index_sha:
        raise bad("corrupted: the index does not match its SHA-256", "index", index_off)
    try:
        index = json.loads(text.decode("utf-8"))
        sections = index["sections"]
        ok = index.get("format") == FORMAT and index.get("version") == VERSION and isinstance(sections, list)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise bad("the index is not a paskdnn bundle index", "index", index_off)
    return index


def _check_sections(path: str, mm: mmap.mmap, size: int, index: Dict[str, Any], verify: bool) -> None:
    """Every section's bounds and alignment; with verify, their SHA-256 and their kernels'."""
    def bad(msg: str, section: str, offset: int) -> BundleError:
        return _bad(path, msg, section, offset)

    sections = index["sections"]
    _, _, _, file_size, index_off, index_len, _, _ = _HEADER.unpack_from(mm, 0)
    end_of_index = index_off + index_len
    seen = set()
    for s in sections:
        try:
            name, off, n, sha = str(s["name"]), int(s["offset"]), int(s["size"]), str(s["sha256"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"a malformed section entry {s!r}", "index", index_off) from None
        if name in seen:
            raise bad(f"section {name!r} appears twice", "index", index_off)
        seen.add(name)
        if off % ALIGN or off < end_of_index or n < 0:
            raise bad(f"section offset {off} is not {ALIGN}-byte aligned after the index", name, off)
        if off + n > size:
            raise bad(f"truncated: the section ({n} bytes) ends at {off + n}, past the end of the file "
                      f"({size} bytes)", name, off)
        if verify and _sha(memoryview(mm)[off:off + n]) != sha:
            raise bad("corrupted: the section does not match its SHA-256", name, off)
        if s.get("kind") == "kernels":
            for k in s.get("kernels", ()):
                try:
                    ko, kn = int(k["offset"]), int(k["size"])
                    kid, ksha = str(k["object_id"]), str(k["sha256"])
                except (KeyError, TypeError, ValueError):
                    raise bad(f"a malformed kernel entry {k!r}", name, off) from None
                if ko < 0 or ko % ALIGN or kn <= 0 or ko + kn > n:
                    raise bad(f"kernel {kid} ({kn} bytes at {ko}) does not fit the section", name, off + max(ko, 0))
                if verify and _sha(memoryview(mm)[off + ko:off + ko + kn]) != ksha:
                    raise bad(f"corrupted: kernel {kid} does not match its SHA-256", name, off + ko)
    if size != file_size:
        raise bad(f"the file is {size} bytes; its header says {file_size}"
                  + (" (truncated)" if size < file_size else " (extra bytes after the last section)"),
                  "header", 16)


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


def add_kernels(bundle: Bundle, ctx: Any, arch: str) -> int:
    """Hands the bundle's code objects for arch to a GPU context
    (pask_context_add_code_object checks each: its id, SHA-256 and ELF header).
    Returns how many. The objects go in on a few threads at once (the C call
    releases the GIL): its SHA-256 check of ResNet-50's 17 MB of sm_90 kernels
    takes 66 ms on one core of this project's CPU machine."""
    from concurrent.futures import ThreadPoolExecutor

    from . import _lib

    ffi, lib = _lib.load()
    h = ctx._h()

    def add(item: Tuple[Dict[str, Any], memoryview]) -> None:
        k, data = item
        _lib.check(lib.pask_context_add_code_object(h, k["object_id"].encode(), ffi.from_buffer(data), len(data),
                                                    k["sha256"].encode()))

    items = bundle.kernels(arch)
    workers = min(8, len(items), os.cpu_count() or 1)
    if workers <= 1:
        for item in items:
            add(item)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paskdnn-bundle-kernels") as pool:
            for _ in pool.map(add, items):  # the first failure, in the bundle's order, is raised
                pass
    return len(items)


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
    if context is not None and (policy is not None or context_options):
        raise ValueError("policy and context options are for the context load() makes; "
                         "pass them to your Context instead (context= was given)")
    b = Bundle.open(path, verify=False)  # header and index: fast
    made: Dict[str, Any] = {}
    gpu_device = str(device).startswith(("cuda", "hip"))
    solvers = b.index.get("solvers")
    if gpu_device and solvers and "solvers" not in context_options:
        context_options = dict(context_options, solvers=list(solvers))

    def make_context() -> None:
        from ._context import Context

        try:
            made["ctx"] = Context(device, policy=policy, **context_options)
        except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
            made["error"] = e

    thread = None
    if context is None:  # the device context comes up while the sections are checked
        thread = threading.Thread(target=make_context, name="paskdnn-bundle-context", daemon=True)
        thread.start()
    ctx = context
    try:
        b.verify()
        g = b.graph()
        batches = [int(v) for v in b.index.get("model", {}).get("batches", [1])] or [1]
        use_batch = batches[0] if batch is None else batch
        onnx_batch = getattr(g, "onnx_input_shape", None) and getattr(g, "batch", None)
        if onnx_batch and use_batch != onnx_batch:  # an imported graph's shapes hold for its one batch size
            raise ValueError(f"{b.path}: the ONNX model was imported for batch {onnx_batch}, not {use_batch}")
        if thread is not None:
            thread.join()
            if "error" in made:
                raise made["error"]
            ctx = made["ctx"]
        gpu = ctx.device.startswith(("cuda", "hip"))
        if not gpu and g.dtype != "float32":
            raise UnsupportedError(f"{b.path}: a {g.dtype} bundle runs on GPUs only; the CPU backend is float32-only "
                                   f"(make a float32 bundle with precompile --dtype float32)")
        info: Dict[str, Any] = {"path": b.path, "arches": b.arches, "arch": None, "kernels": 0}
        if gpu:
            arch = ctx.target  # the context's own: pask_probe would load the vendor libraries first, on this path
            info["arch"] = arch
            if arch in b.arches:
                info["kernels"] = add_kernels(b, ctx, arch)
        runner = BundleRunner(g, ctx, batch=use_batch, hints=hints)
        runner.bundle_info = info
        runner.bundle = b
        return runner
    except BaseException:
        if thread is not None:
            thread.join()
            if "ctx" in made:
                made["ctx"].close()
        raise
