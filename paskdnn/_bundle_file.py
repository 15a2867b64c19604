"""The bundle container (see paskdnn.bundle and docs/bundles.md): the header,
the index and the sections, written and read back with every bound and
checksum checked. numpy-free, like paskdnn's import: paskdnn.load reads a
bundle's index, and starts the device context it asks for, before numpy and
the graph module are imported."""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._background import Background
from ._context import PendingContext
from ._errors import BundleError

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


@dataclass
class Kernel:
    """One code object of a kernels section: its object id (what
    pask_context_add_code_object takes), its bytes and how it was made."""

    object_id: str
    data: bytes
    solvers: List[str] = field(default_factory=list)
    options: str = ""
    origin: str = ""  # "nvcc-13.0.48", "nvrtc-13.0", "prebuilt: <file>"


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


# ---- loading: the first half, before numpy ---------------------------------------------


class LoadStart:
    """paskdnn.load's first half, before numpy is imported: the header and
    index mapped and checked (fast); then on threads of their own the
    sections' checks (bounds, SHA-256: hashlib releases the GIL) and, unless
    the caller gave a context, the device context (a GPU's takes a few hundred
    ms in the driver) with the options the bundle asks for (a bundle made with
    --solvers restricts a GPU context to them), which takes the bundle's
    kernels for its arch as soon as it is up (each code object's SHA-256 is
    checked again as it is handed over). bundle.finish_load does the rest."""

    def __init__(self, path: Any, device: str, policy: Optional[str], context: Any,
                 context_options: Dict[str, Any]) -> None:
        if context is not None and (policy is not None or context_options):
            raise ValueError("policy and context options are for the context load() makes; "
                             "pass them to your Context instead (context= was given)")
        self.given = context  # the caller's context, if any
        b = self.bundle = Bundle.open(path, verify=False)
        self.checks = Background("paskdnn-bundle-checks", b.verify)
        self.context: Optional[PendingContext] = None
        if context is None:
            solvers = b.index.get("solvers")
            if str(device).startswith(("cuda", "hip")) and solvers and "solvers" not in context_options:
                context_options = dict(context_options, solvers=list(solvers))
            self.context = PendingContext(device, policy, context_options, then=lambda ctx: hand_kernels(b, ctx))

    def discard(self) -> None:
        """After a failure: waits for the threads, closes the context made here."""
        self.checks.wait()
        if self.context is not None:
            self.context.discard()


def hand_kernels(b: Bundle, ctx: Any) -> Tuple[Optional[str], int]:
    """(the context's arch, how many code objects it was handed): a GPU
    context takes the bundle's kernels for its arch, if the bundle has them; a
    CPU context takes none (arch None)."""
    if not ctx.device.startswith(("cuda", "hip")):
        return None, 0
    arch = ctx.target  # the context's own: pask_probe would load the vendor libraries first, on this path
    return arch, (add_kernels(b, ctx, arch) if arch in b.arches else 0)


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
