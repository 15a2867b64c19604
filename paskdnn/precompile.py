"""python -m paskdnn precompile / inspect: bundles made ahead of time, without a GPU.

    python -m paskdnn precompile resnet50 --arch sm_80,sm_90 --dtype float16 --layout NHWC \\
        --batch 1,8 -o resnet50.pask
    python -m paskdnn inspect resnet50.pask [--json]

precompile builds the graph (a zoo model with seeded random weights or
--weights, or an .onnx file), converts its weights to their final dtype, lists
every primitive call of a run for each batch size (the hint list, as the C
library's own Problem fields, through plans on a CPU context), asks the
library which native GPU kernels could run each call on each arch
(pask_kernel_candidates: the kernel source and the NVRTC options the library
itself would use) and compiles each distinct one once: with NVRTC (the
nvidia-cuda-nvrtc wheel found through cuda.pathfinder, $PASKDNN_NVRTC or the
usual sonames) or, without it, nvcc. Compiled objects are kept in a compile
cache (--cache-dir) keyed by source, options and compiler, so bundles of
several models share their compiles.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from . import bundle as B

_ARCH = re.compile(r"^sm_[0-9]{2,3}[a-z]?$")


# ---- the hint list: each call's Problem fields ---------------------------------------


class _FieldsRecorder:
    """Its hint (a Context.hint's signature, for graph.hint_calls): each hint becomes a
    plan on a CPU context (plans need no device of their dtype; nothing runs)
    and its Problem's canonical fields are recorded."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.problems: List[Dict[str, Any]] = []

    def hint(self, op: str, *args: Any, **kwargs: Any) -> None:
        from . import _lib, _spec

        spec = _spec.SPECS[op](*args, hinting=True, **kwargs)
        if spec.key is None or spec.empty:
            return
        ffi, lib = _lib.load()
        plan, shape = _spec.plan_for(spec.key, self.ctx._h())
        spec.check(shape)
        fields = ffi.new("const int64_t **")
        count = ffi.new("int64_t *")
        _lib.check(lib.pask_plan_get_fields(plan, fields, count))
        f = [int(fields[0][i]) for i in range(count[0])]
        for _ in range(spec.repeat):
            self.problems.append({"desc": op, "fields": f})


def hint_records(graph: Any, batches: Sequence[int]) -> List[Dict[str, Any]]:
    """One paskdnn hints record (pask_context_save_record's format) per batch
    size: the graph's primitive calls of a run, in order."""
    from ._context import Context
    from .graph import hint_calls, infer_shapes

    ctx = Context("cpu", num_threads=1, loader_threads=0, trace=False)
    try:
        records = []
        for b in batches:
            rec = _FieldsRecorder(ctx)
            hint_calls(graph, infer_shapes(graph, b), rec.hint)  # the runner's own list of calls
            records.append({"format": "paskdnn-hints", "version": 1, "batch": int(b), "problems": rec.problems})
        return records
    finally:
        ctx.close()


def kernel_candidates(fields: Sequence[int], arch: str, device: str = "cuda") -> List[Dict[str, Any]]:
    """pask_kernel_candidates: the native kernels that could run a Problem on arch."""
    from . import _lib
    from ._context import _device_type

    ffi, lib = _lib.load()
    arr = ffi.new("int64_t[]", list(fields))
    out = ffi.new("const char **")
    _lib.check(lib.pask_kernel_candidates(_device_type(device), arch.encode(), arr, len(fields), out))
    return json.loads(ffi.string(out[0]).decode())


def kernel_source(obj: str, device: str = "cuda") -> str:
    from . import _lib
    from ._context import _device_type

    ffi, lib = _lib.load()
    out = ffi.new("const char **")
    _lib.check(lib.pask_kernel_source(_device_type(device), obj.encode(), out))
    return ffi.string(out[0]).decode()


# ---- compilers --------------------------------------------------------------------------


class CompileError(RuntimeError):
    pass


class Nvrtc:
    """NVRTC through ctypes, compiling with exactly the library's options."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        self.path = path
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.name = f"nvrtc-{major.value}.{minor.value}"
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        self._lock = threading.Lock()  # NVRTC serialises compiles inside a process anyway

    def compile(self, source: str, name: str, options: str) -> bytes:
        lib = self.lib
        with self._lock:
            prog = ctypes.c_void_p()
            r = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
            if r:
                raise CompileError(f"nvrtcCreateProgram: {lib.nvrtcGetErrorString(r).decode()}")
            try:
                opts = [o.encode() for o in options.split()]
                argv = (ctypes.c_char_p * len(opts))(*opts)
                r = lib.nvrtcCompileProgram(prog, len(opts), argv)
                if r:
                    size = ctypes.c_size_t()
                    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
                    log = ctypes.create_string_buffer(size.value)
                    lib.nvrtcGetProgramLog(prog, log)
                    raise CompileError(f"NVRTC failed to compile {name} ({options}): "
                                       f"{lib.nvrtcGetErrorString(r).decode()}\n{log.value.decode(errors='replace')[:4000]}")
                size = ctypes.c_size_t()
                lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
                buf = ctypes.create_string_buffer(size.value)
                lib.nvrtcGetCUBIN(prog, buf)
                return buf.raw
            finally:
                lib.nvrtcDestroyProgram(ctypes.byref(prog))


class Nvcc:
    """nvcc -cubin, with the library's NVRTC options translated (-default-device
    is NVRTC's own; --gpu-architecture, -std, -lineinfo and -D pass through)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CompileError(f"{path} --version failed: {e}") from None
        m = re.search(r"release ([0-9.]+), V([0-9.]+)", out)
        if not m:
            raise CompileError(f"{path} --version did not say its release: {out.strip()[-200:]!r}")
        self.name = f"nvcc-{m.group(2)}"

    def compile(self, source: str, name: str, options: str) -> bytes:
        args = [o for o in options.split() if o != "-default-device"]
        with tempfile.TemporaryDirectory(prefix="paskdnn-nvcc-") as d:
            src = os.path.join(d, name)
            out = os.path.join(d, "out.cubin")
            with open(src, "w") as f:
                f.write(source)
            proc = subprocess.run([self.path, "-cubin", *args, "-o", out, src], capture_output=True, text=True,
                                  timeout=1800)
            if proc.returncode != 0:
                raise CompileError(f"nvcc failed to compile {name} ({options}): {proc.stderr[-4000:]}")
            with open(out, "rb") as f:
                return f.read()


def _nvrtc_paths() -> List[str]:
    paths = []
    if os.environ.get("PASKDNN_NVRTC"):
        paths.append(os.environ["PASKDNN_NVRTC"])
    try:
        from cuda import pathfinder  # type: ignore[import-not-found]

        loaded = pathfinder.load_nvidia_dynamic_lib("nvrtc")
        if getattr(loaded, "abs_path", None):
            paths.append(loaded.abs_path)
    except Exception:  # noqa: BLE001 - not installed, or no NVRTC wheel
        pass
    return paths + ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]


def _nvcc_paths() -> List[str]:
    paths = [os.environ["PASKDNN_NVCC"]] if os.environ.get("PASKDNN_NVCC") else []
    found = shutil.which("nvcc")
    if found:
        paths.append(found)
    return paths + ["/usr/local/cuda/bin/nvcc"]


def find_compiler(which: str = "auto") -> Tuple[Optional[Any], str]:
    """(compiler, "") or (None, why none): NVRTC first (what the library itself
    compiles with), then nvcc; which: "auto", "nvrtc" or "nvcc"."""
    why = []
    if which in ("auto", "nvrtc"):
        for p in _nvrtc_paths():
            try:
                return Nvrtc(p), ""
            except (OSError, AttributeError) as e:
                why.append(f"{p}: {e}")
                continue
    if which in ("auto", "nvcc"):
        for p in _nvcc_paths():
            if os.path.isfile(p) and os.access(p, os.X_OK):
                try:
                    return Nvcc(p), ""
                except CompileError as e:
                    why.append(str(e))
            else:
                why.append(f"{p}: not found")
    return None, "no CUDA compiler found (NVRTC: pip install 'paskdnn[cuda13]'; or nvcc on PATH); tried " + \
        "; ".join(why[-6:])


class CompileCache:
    """Compiled objects under sha256(source, options, compiler): one file each,
    written atomically; a read whose bytes do not start with an ELF header is a miss."""

    def __init__(self, folder: Optional[str]) -> None:
        self.folder = folder
        if folder:
            os.makedirs(folder, mode=0o700, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.folder or "", key + ".cubin")

    def get(self, key: str) -> Optional[bytes]:
        if not self.folder:
            return None
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
        except OSError:
            return None
        return data if data[:4] == b"\x7fELF" else None

    def put(self, key: str, data: bytes) -> None:
        if not self.folder:
            return
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._path(key))
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def default_cache_dir() -> str:
    base = os.environ.get("PASKDNN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "paskdnn")
    return os.path.join(base, "precompile")


EM_CUDA = 190  # the ELF machine of a cubin


def check_cubin(data: bytes, what: str) -> None:
    """A cubin is a 64-bit little-endian ELF file for EM_CUDA; anything else is refused."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1 or \
            int.from_bytes(data[18:20], "little") != EM_CUDA:
        raise CompileError(f"{what} is not a CUDA cubin (a 64-bit ELF file for EM_CUDA)")


def prebuilt_path(c: Dict[str, Any], folder: Optional[str] = None) -> Optional[str]:
    """The installed prebuilt cubin of a kernel candidate (nvcc at build time),
    named as the library's KernelStore names it:
    pask_<backend>_<object>[.<constants, ',' -> '.'>].<target>.cubin; None when absent."""
    if folder is None:
        from ._lib import library_dir

        folder = str(library_dir() / "kernels")
    backend = c["key"].split("/")[1]
    consts = c["constants"].replace(",", ".")
    name = f"pask_{backend}_{c['object']}" + (f".{consts}" if consts else "") + f".{c['target']}.cubin"
    path = os.path.join(folder, name)
    return path if os.path.isfile(path) else None


def compile_kernels(records: Sequence[Dict[str, Any]], arches: Sequence[str], compiler: Any, cache: CompileCache,
                    jobs: int = 0, kernels: str = "all", solvers: Optional[Sequence[str]] = None,
                    use_prebuilt: bool = True, log: Any = None) -> Dict[str, List[B.Kernel]]:
    """Per arch, the distinct code objects the records' Problems need: the
    installed prebuilt cubin where there is one (use_prebuilt), else compiled.
    kernels: "all" (every applicable native solver's, so a replica that reuses
    another resident kernel compiles nothing either) or "best" (each Problem's
    first by the analytic cost model); solvers: only these solvers' kernels."""
    from . import bundle as B

    wanted: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for arch in arches:
        for rec in records:
            for p in rec["problems"]:
                cands = kernel_candidates(p["fields"], arch)
                if solvers is not None:
                    cands = [c for c in cands if c["solver"] in solvers]
                if kernels == "best" and cands:
                    cands = [min(cands, key=lambda c: c["cost_us"])]
                for c in cands:
                    w = wanted.setdefault((arch, c["object_id"]), dict(c, solvers=[]))
                    if c["solver"] not in w["solvers"]:
                        w["solvers"].append(c["solver"])
    sources: Dict[str, str] = {}
    for (_, _), c in wanted.items():
        if c["object"] not in sources:
            sources[c["object"]] = kernel_source(c["object"])

    def build(item: Tuple[Tuple[str, str], Dict[str, Any]]) -> B.Kernel:
        (arch, oid), c = item
        pre = prebuilt_path(c) if use_prebuilt else None
        if pre is not None:
            with open(pre, "rb") as f:
                data = f.read()
            check_cubin(data, pre)
            if log:
                log(f"  prebuilt {oid} ({len(data)} bytes)")
            return B.Kernel(object_id=oid, data=data, solvers=list(c["solvers"]), options=c["options"],
                            origin="prebuilt: " + os.path.basename(pre))
        if compiler is None:
            raise CompileError(f"{oid} is not prebuilt here and no compiler was given")
        src = sources[c["object"]]
        key = hashlib.sha256("\0".join([src, c["options"], compiler.name]).encode()).hexdigest()
        data = cache.get(key)
        if data is not None:
            try:
                check_cubin(data, "cached")
            except CompileError:
                data = None  # a damaged cache entry is a miss
        if data is None:
            t0 = time.perf_counter()
            data = compiler.compile(src, c["object"] + ".cu", c["options"])
            check_cubin(data, f"what {compiler.name} made for {oid}")
            cache.put(key, data)
            if log:
                log(f"  compiled {oid} ({len(data)} bytes, {time.perf_counter() - t0:.1f} s)")
        elif log:
            log(f"  cached   {oid} ({len(data)} bytes)")
        return B.Kernel(object_id=oid, data=data, solvers=list(c["solvers"]), options=c["options"],
                        origin=compiler.name)

    workers = jobs or max(1, os.cpu_count() or 1)
    if isinstance(compiler, Nvrtc):
        workers = 1
    items = sorted(wanted.items())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        built = list(pool.map(build, items))
    out: Dict[str, List[B.Kernel]] = {a: [] for a in arches}
    for ((arch, _), _), k in zip(items, built):
        out[arch].append(k)
    return out


# ---- precompile ------------------------------------------------------------------------


def _solvers() -> List[Dict[str, Any]]:
    from ._context import solvers

    return solvers()


def build_graph(model: str, dtype: str, layout: str, batch: int, weights: Optional[str]) -> Any:
    if model.lower().endswith(".onnx"):
        from .onnx_import import load_onnx

        return load_onnx(model, layout=layout, dtype=dtype, batch=batch)
    from . import models

    return models.build(model, weights=weights, seed=0, layout=layout, dtype=dtype)


def precompile(model: str, out: str, arches: Sequence[str], dtype: str = "float16", layout: str = "NHWC",
               batches: Sequence[int] = (1,), weights: Optional[str] = None, compiler: Any = None,
               cache_dir: Optional[str] = None, kernels: str = "all", jobs: int = 0, log: Any = None,
               command: str = "", solvers: Optional[Sequence[str]] = None,
               use_prebuilt: bool = True) -> Dict[str, Any]:
    """Makes a bundle (see the module's doc); returns its index. kernels:
    "all", "best" or "none" (no kernel sections: the graph, weights and hints
    only). compiler: from find_compiler() (found here when None and kernels
    are wanted). solvers: only these native solvers' kernels; the bundle then
    restricts a context made by paskdnn.load to them (option "solvers"), so
    nothing else is compiled there either. use_prebuilt: take the installed
    prebuilt cubins (nvcc at build time) where they exist."""
    from . import bundle as B

    from . import __version__

    t0 = time.perf_counter()
    onnx = model.lower().endswith(".onnx")
    graph = build_graph(model, dtype, layout, batches[0], weights)
    if onnx and any(b != graph.batch for b in batches):
        raise ValueError(f"{model}: an ONNX graph is imported for one batch size ({graph.batch}); "
                         f"pass one --batch")
    records = hint_records(graph, batches)
    doc, weight_bytes = B.graph_document(graph)
    sections = [B.json_section("graph", doc), ({"name": "weights", "kind": "raw", "align": B.ALIGN}, weight_bytes),
                B.json_section("hints", {"records": records})]
    compiler_name = None
    if solvers is not None:
        known = {s["name"] for s in _solvers() if s["device"] == "cuda"}
        unknown = [n for n in solvers if n not in known]
        if unknown or not solvers:
            raise ValueError(f"solvers must name CUDA solvers ({', '.join(sorted(known))}); got {list(solvers)}")
    if kernels != "none" and arches:
        if compiler is None:
            compiler, why = find_compiler()
            if compiler is None and not use_prebuilt:
                raise CompileError(why)
        compiler_name = compiler.name if compiler is not None else None
        built = compile_kernels(records, arches, compiler, CompileCache(cache_dir), jobs=jobs, kernels=kernels,
                                solvers=solvers, use_prebuilt=use_prebuilt, log=log)
        sections += [B.kernels_section(a, built[a]) for a in arches]
    index = {"paskdnn": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "command": command,
             "model": {"source": os.path.basename(model) if onnx else model, "kind": "onnx" if onnx else "zoo",
                       "name": graph.name, "dtype": graph.dtype, "layout": graph.layout,
                       "batches": [int(b) for b in batches], "weights": os.path.basename(weights) if weights else
                       ("onnx initializers" if onnx else "seeded random (seed 0)")},
             "arches": list(arches) if kernels != "none" else [], "kernels": kernels, "compiler": compiler_name,
             "solvers": list(solvers) if solvers is not None else None,
             "hints": {str(r["batch"]): len(r["problems"]) for r in records}}
    written = B.write(out, index, sections)
    written["build_s"] = round(time.perf_counter() - t0, 2)
    return written


# ---- CLI ---------------------------------------------------------------------------------


def _arches(text: str) -> List[str]:
    out = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in out if not _ARCH.match(a)]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"expected CUDA archs like sm_80,sm_90, got {text!r}")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"an arch appears twice in {text!r}")
    return out


def _batches(text: str) -> List[int]:
    try:
        out = [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8,32, got {text!r}") from None
    if not out or any(b < 1 or b > 65536 for b in out) or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"batch sizes must be distinct, in [1, 65536]: {text!r}")
    return out


def add_precompile_arguments(ap: argparse.ArgumentParser) -> None:
    from .models import MODELS

    ap.add_argument("model", metavar="MODEL", help=f"a zoo model ({', '.join(MODELS)}) or an .onnx file")
    ap.add_argument("-o", "--out", required=True, metavar="FILE.pask", help="the bundle to write")
    ap.add_argument("--arch", type=_arches, default=["sm_80", "sm_90"], metavar="sm_80,sm_90",
                    help="CUDA architectures to compile kernels for (default: sm_80,sm_90)")
    ap.add_argument("--dtype", default="float16", choices=("float32", "float16", "bfloat16"),
                    help="the weights' and activations' dtype (default: %(default)s; float32 bundles also run "
                         "on the CPU)")
    ap.add_argument("--layout", default="NHWC", choices=("NCHW", "NHWC"), help="activation layout (default: %(default)s)")
    ap.add_argument("--batch", type=_batches, default=[1], metavar="1,8,32",
                    help="batch sizes to give hints and kernels for (default: 1; an ONNX model takes one)")
    ap.add_argument("--weights", default=None, metavar="FILE.npz",
                    help="torchvision-style weights for a zoo model (default: seeded random)")
    ap.add_argument("--kernels", default="all", choices=("all", "best", "none"),
                    help="which kernels: every applicable native one (all, the default), each call's analytic "
                         "best, or none (graph, weights and hints only)")
    ap.add_argument("--solvers", default=None, metavar="NAME,...",
                    help="only these native CUDA solvers' kernels (e.g. conv2d.cuda_igemm,gemm.cuda_tc); a context "
                         "made by paskdnn.load from the bundle is restricted to them (default: all)")
    ap.add_argument("--no-prebuilt", action="store_true",
                    help="compile every kernel, also those the installed package has prebuilt")
    ap.add_argument("--compiler", default="auto", choices=("auto", "nvrtc", "nvcc"),
                    help="NVRTC (from the nvidia-cuda-nvrtc wheel via cuda.pathfinder, $PASKDNN_NVRTC or the "
                         "sonames) or nvcc; auto takes NVRTC when found (default: auto)")
    ap.add_argument("--cache-dir", default=None, metavar="DIR",
                    help="compile cache (default: $PASKDNN_CACHE_DIR/precompile, else ~/.cache/paskdnn/precompile)")
    ap.add_argument("--jobs", type=int, default=0, metavar="N", help="parallel nvcc compiles (default: cores)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary line")


def run_precompile(args: argparse.Namespace, ap: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from .models import MODELS

    onnx = args.model.lower().endswith(".onnx")
    if onnx:
        if not os.path.isfile(args.model):
            ap.error(f"{args.model}: no such file")
        if args.weights:
            ap.error("--weights is for zoo models; an ONNX model carries its weights")
        if len(args.batch) != 1:
            ap.error("an ONNX model is imported for one batch size: pass one --batch")
    elif args.model not in MODELS:
        ap.error(f"MODEL must be one of {', '.join(MODELS)} or an .onnx file, got {args.model!r}")
    if args.weights and not os.path.isfile(args.weights):
        ap.error(f"--weights {args.weights}: no such file")
    if args.jobs < 0:
        ap.error("--jobs must be >= 0")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        ap.error(f"-o {args.out}: the folder {folder} does not exist")
    compiler = None
    if args.kernels != "none":
        compiler, why = find_compiler(args.compiler)
        if compiler is None and (args.no_prebuilt or args.compiler != "auto"):
            ap.exit(2, f"{ap.prog}: error: {why} (or pass --kernels none)\n")
    log = None if args.quiet else (lambda m: print(m, flush=True))
    if log:
        log(f"paskdnn precompile: {args.model}, {args.dtype} {args.layout}, batch {','.join(map(str, args.batch))}, "
            f"arches {','.join(args.arch) if args.kernels != 'none' else '(no kernels)'}"
            + (f", {compiler.name}" if compiler else ""))
    try:
        index = precompile(args.model, args.out, args.arch, dtype=args.dtype, layout=args.layout, batches=args.batch,
                           weights=args.weights, compiler=compiler,
                           cache_dir=args.cache_dir or default_cache_dir(), kernels=args.kernels, jobs=args.jobs,
                           log=log, command="python -m paskdnn " + " ".join(argv),
                           solvers=args.solvers.split(",") if args.solvers else None,
                           use_prebuilt=not args.no_prebuilt)
    except Exception as e:  # noqa: BLE001 - one line and exit 1, not a traceback
        print(f"paskdnn precompile failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.out)
    nk = sum(len(s.get("kernels", ())) for s in index["sections"])
    print(f"wrote {args.out}: {size / 1e6:.1f} MB, {len(index['sections'])} sections, {nk} kernels, "
          f"{index['build_s']:.1f} s")
    return 0


def add_inspect_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("bundle", metavar="FILE.pask", help="a bundle made by precompile")
    ap.add_argument("--json", action="store_true", help="print the index (and what was checked) as JSON")


def describe(b: B.Bundle) -> Dict[str, Any]:
    """What inspect prints: the index, plus the graph's node count and the hint counts."""
    g = b.json("graph")
    d = dict(b.index)
    d["path"] = b.path
    d["file_size"] = os.path.getsize(b.path)
    d["nodes"] = len(g["nodes"])
    d["checked"] = "header, index and every section's SHA-256"
    return d


def run_inspect(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    from . import bundle as B

    try:
        b = B.Bundle.open(args.bundle)
        d = describe(b)
    except B.BundleError as e:
        print(f"paskdnn inspect: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    m = d.get("model", {})
    print(f"{d['path']}: paskdnn bundle v{d['version']}, {d['file_size']} bytes, made by paskdnn {d.get('paskdnn')} "
          f"on {d.get('created')}")
    print(f"model    {m.get('name')} ({m.get('kind')}: {m.get('source')}), {m.get('dtype')} {m.get('layout')}, "
          f"{d['nodes']} nodes, weights: {m.get('weights')}")
    print(f"batches  {', '.join(str(x) for x in m.get('batches', []))}; hints per batch: "
          + ", ".join(f"{k}: {v}" for k, v in d.get("hints", {}).items()))
    print(f"arches   {', '.join(d.get('arches') or []) or '(none)'}; kernels: {d.get('kernels')}; "
          f"compiler: {d.get('compiler') or '-'}")
    print("sections (all checked: SHA-256 of each matches)")
    print(f"  {'name':<16} {'kind':<8} {'offset':>12} {'bytes':>12}  sha256")
    for s in d["sections"]:
        print(f"  {s['name']:<16} {s.get('kind', ''):<8} {s['offset']:>12} {s['size']:>12}  {s['sha256'][:16]}...")
    for s in d["sections"]:
        if s.get("kind") != "kernels":
            continue
        print(f"kernels for {s['arch']}: {len(s['kernels'])}")
        for k in s["kernels"]:
            print(f"  {k['object_id']:<72} {k['size']:>9} bytes  ({', '.join(k['solvers'])})")
    return 0
