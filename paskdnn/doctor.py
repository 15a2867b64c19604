"""python -m paskdnn doctor: what paskdnn finds on this machine for its GPU backends.

For CUDA and HIP it prints the driver or runtime, the devices and their
architectures, the run-time compiler (NVRTC, hiprtc) and the vendor DNN library
(cuDNN, MIOpen), each with the file loaded and its version, or why it cannot be
used and what it would enable; then the cache folder and its state. The
libraries are found exactly as a Context finds them (the C core's pask_probe,
with the same Python-side look-ups for NVRTC and cuDNN), so what the doctor
says is what a context would meet.

With --device cuda|hip (or cuda:N, hip:N) it also creates a context on that
device and exits 1 when it cannot be created: the requested backend cannot work.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

# What each piece enables, and the one install step that brings it.
_ENABLES = {
    ("cuda", "driver"): ("the cuda device: every CUDA solver", "an NVIDIA driver for CUDA 11.0 or newer"),
    ("cuda", "compiler"): ("compiling paskdnn's own CUDA kernels for this GPU (conv2d.cuda_igemm, "
                           "conv2d.cuda_igemm_fixed, conv2d.cuda_depthwise, gemm.cuda_tc, pool2d.cuda_*); "
                           "without it only prebuilt cubins and kernels already in the cache run",
                           'pip install "paskdnn[cuda12]" (or [cuda13] with a CUDA 13 driver)'),
    ("cuda", "dnn"): ("the cuDNN solvers (conv2d.cudnn, conv2d.cudnn_rtc, conv2d.cudnn_h1/_h2, gemm.cudnn, "
                      "gemm.cudnn_h1, gemm.cudnn_rtc, pool2d.cudnn)",
                      'pip install "paskdnn[cuda12]" (or [cuda13] with a CUDA 13 driver)'),
    ("hip", "driver"): ("the hip device: every HIP solver", "ROCm 5.2 or newer (the amdgpu driver and libamdhip64)"),
    ("hip", "compiler"): ("compiling paskdnn's own HIP kernels (conv2d.hip_igemm, conv2d.hip_depthwise, gemm.hip, "
                          "pool2d.hip_*)", "ROCm's hiprtc (libhiprtc.so, part of ROCm)"),
    ("hip", "dnn"): ("the MIOpen solvers (conv2d.miopen, conv2d.miopen_alt, pool2d.miopen)",
                     "ROCm's MIOpen (libMIOpen.so, the miopen-hip package)"),
}
_LABELS = {("cuda", "driver"): "driver", ("cuda", "compiler"): "NVRTC", ("cuda", "dnn"): "cuDNN",
           ("hip", "driver"): "runtime", ("hip", "compiler"): "hiprtc", ("hip", "dnn"): "MIOpen"}
# The Python packages the extras bring (pyproject.toml), reported when installed.
_PACKAGES = ("cuda-pathfinder", "cuda-bindings", "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-nvrtc",
             "nvidia-cudnn-cu12", "nvidia-cudnn-cu13", "hip-python")


def _device(text: str) -> str:
    kind, _, index = text.partition(":")
    if kind not in ("cuda", "hip") or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"must be cuda, hip, cuda:N or hip:N, not {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=_device, default=None,
                        help="a backend that must work: cuda, hip, cuda:N or hip:N; the doctor then also "
                        "creates a context on it and exits 1 when it cannot (default: none, exit 0)")
    parser.add_argument("--json", action="store_true",
                        help="print the findings as one JSON object instead of text (default: text)")


def _library_sources(device_type: str) -> Tuple[Dict[str, Optional[str]], Dict[str, str]]:
    """The library paths a Context would pass to the C core, and how each was found."""
    from ._context import _find_cudnn, _find_nvrtc

    paths: Dict[str, Optional[str]] = {}
    how: Dict[str, str] = {}
    if device_type == "cuda":
        if os.environ.get("PASKDNN_LIBCUDA"):
            how["driver"] = "$PASKDNN_LIBCUDA"
        if os.environ.get("PASKDNN_NVRTC"):
            how["compiler"] = "$PASKDNN_NVRTC"
        else:
            paths["nvrtc"] = _find_nvrtc()
            if paths["nvrtc"]:
                how["compiler"] = "cuda.pathfinder"
        if os.environ.get("PASKDNN_CUDNN"):
            how["dnn"] = "$PASKDNN_CUDNN"
        else:
            paths["cudnn"] = _find_cudnn()
            if paths["cudnn"]:
                how["dnn"] = "the nvidia-cudnn wheel or cuda.pathfinder"
    else:
        for key, env in (("driver", "PASKDNN_HIP"), ("compiler", "PASKDNN_HIPRTC"), ("dnn", "PASKDNN_MIOPEN")):
            if os.environ.get(env):
                how[key] = "$" + env
    return paths, how


def _cache_state(folder: str) -> Dict[str, Any]:
    state: Dict[str, Any] = {"path": folder, "exists": os.path.isdir(folder)}
    if not state["exists"]:
        parent = folder
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        state["writable"] = bool(parent) and os.access(parent, os.W_OK)
        return state
    files = size = 0
    for root, _dirs, names in os.walk(folder):
        for n in names:
            try:
                size += os.path.getsize(os.path.join(root, n))
                files += 1
            except OSError:
                pass
    state.update(files=files, bytes=size, writable=os.access(folder, os.W_OK))
    return state


def _installed_packages() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def collect(device: Optional[str] = None) -> Dict[str, Any]:
    """The doctor's findings as a dict (what --json prints)."""
    import paskdnn
    from ._context import probe
    from ._lib import library_dir

    report: Dict[str, Any] = {"paskdnn": paskdnn.version(), "library_dir": str(library_dir()),
                              "python_packages": _installed_packages(), "backends": {}}
    for device_type in ("cuda", "hip"):
        paths, how = _library_sources(device_type)
        found = probe(device_type, **paths)
        found["found_by"] = how
        report["backends"][device_type] = found
        report.setdefault("cache", _cache_state(found["cache_dir"]))
        report["cache"]["from"] = found["cache_from"]
    if device is not None:
        report["requested"] = {"device": device, **_try_context(device)}
    return report


def _try_context(device: str) -> Dict[str, Any]:
    import paskdnn

    try:
        ctx = paskdnn.Context(device)
    except Exception as e:  # the reason the requested backend cannot work
        return {"works": False, "error": f"{type(e).__name__}: {e}"}
    try:
        return {"works": True, "error": ""}
    finally:
        ctx.close()


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _piece_lines(device_type: str, key: str, piece: Dict[str, Any], how: Dict[str, str]) -> List[str]:
    label = _LABELS[(device_type, key)]
    if piece["ok"]:
        where = piece["file"] if piece["file"] == piece["name"] else f"{piece['name']} ({piece['file']})"
        version = piece["version"]
        if key == "driver" and piece.get("driver_version"):
            version += f", driver {piece['driver_version']}"
        by = f", found by {how[key]}" if key in how else ""
        return [f"  {label:<9} ok       {version}  {where}{by}"]
    enables, install = _ENABLES[(device_type, key)]
    return [f"  {label:<9} missing  {piece['error']}",
            f"  {'':<9}          would enable {enables}",
            f"  {'':<9}          get it: {install}"]


def render(report: Dict[str, Any]) -> str:
    out = [f"paskdnn {report['paskdnn']} ({report['library_dir']})"]
    pk = report["python_packages"]
    out.append("python packages: " + (", ".join(f"{k} {v}" for k, v in pk.items()) if pk else
                                      "none of the GPU extras' packages (cuda-pathfinder, nvidia-cuda-nvrtc, "
                                      "nvidia-cudnn, hip-python)"))
    for device_type, title in (("cuda", "CUDA"), ("hip", "HIP (ROCm)")):
        b = report["backends"][device_type]
        out.append("")
        out.append(title)
        out += _piece_lines(device_type, "driver", b["driver"], b["found_by"])
        if b["driver"]["ok"]:
            if not b["devices"]:
                out.append(f"  {'devices':<9} none     the {title} driver sees no device")
            for d in b["devices"]:
                name = f"{d['name']}, " if d["name"] else ""
                extra = (f" (compute capability {d['compute_capability']}), {d['multiprocessors']} SMs"
                         if device_type == "cuda" else "")
                status = "ok     " if not d["problem"] else "refused"
                out.append(f"  {'device ' + str(d['index']):<9} {status}  {name}{d['arch']}{extra}")
                if d["problem"]:
                    out.append(f"  {'':<9}          {d['problem']}")
        out += _piece_lines(device_type, "compiler", b["compiler"], b["found_by"])
        if b["compiler"]["ok"]:
            for d in b["devices"]:
                if d.get("compiler_problem"):
                    out.append(f"  {'':<9} unusable for device {d['index']}: {d['compiler_problem']}")
        out += _piece_lines(device_type, "dnn", b["dnn"], b["found_by"])
        out.append("  => " + _verdict(device_type, b))
    c = report["cache"]
    out.append("")
    if c["exists"]:
        state = f"{c['files']} files, {_fmt_bytes(c['bytes'])}" + ("" if c["writable"] else ", NOT writable")
    else:
        state = "not created yet (the first context that stores a kernel creates it)" + \
            ("" if c["writable"] else "; its parent folder is NOT writable")
    out.append(f"cache folder: {c['path']} (from {c['from']}): {state}")
    if "requested" in report:
        r = report["requested"]
        out.append("")
        out.append(f"requested device {r['device']}: " + ("a context was created: the backend works" if r["works"]
                                                          else f"cannot work: {r['error']}"))
    return "\n".join(out)


def _verdict(device_type: str, b: Dict[str, Any]) -> str:
    name = device_type
    if not b["driver"]["ok"]:
        return f"the {name} device is unavailable on this machine"
    usable = [d for d in b["devices"] if not d["problem"]]
    if not usable:
        return f"the {name} device is unavailable: no usable device"
    compiles = b["compiler"]["ok"] and any(not d.get("compiler_problem") for d in usable)
    parts = []
    if compiles:
        parts.append("paskdnn's own kernels (compiled here)")
    else:
        parts.append("paskdnn's own kernels only from prebuilt cubins or the cache")
    if b["dnn"]["ok"]:
        parts.append("cuDNN" if device_type == "cuda" else "MIOpen")
    return ", ".join(f"{name}:{d['index']}" for d in usable) + " usable with " + " and ".join(parts)


def run(args: argparse.Namespace) -> int:
    device = args.device
    report = collect(device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    if device is not None and not report["requested"]["works"]:
        return 1
    return 0
