"""Bundles (issue 16): python -m paskdnn precompile of a zoo model and of an ONNX
model for sm_80 and sm_90 on a machine without a GPU; the file's sections and
checksums, read back here with struct and hashlib rather than through
paskdnn.bundle; a float32 bundle loaded on the CPU gives exactly the result of
the same graph built without a bundle; truncation and corruption at every
section boundary raise BundleError naming the section and offset, and a
failed load leaves no context open; inspect; the C functions bundles are made
from (pask_kernel_candidates, pask_kernel_source, pask_plan_get_fields,
pask_context_add_code_object).

The GPU side (kernels handed to a CUDA context, loaded with cuModuleLoadData)
runs against the CUDA driver's test double (tests/doubles/cuda_cudnn_double.cpp);
no real GPU is in CI."""
import hashlib
import json
import os
import shutil
import struct

import numpy as np
import pytest

import paskdnn
from paskdnn import _lib, models
from paskdnn import bundle as B
from paskdnn import graph as G
from paskdnn import precompile as P
from paskdnn.__main__ import main as cli

COMPILER, NO_COMPILER = P.find_compiler()
ARCHES = ["sm_80", "sm_90"]
# The generic (dtype-only) native CUDA solvers: their cubins are prebuilt by the
# build when nvcc is found, so the zoo bundle below needs no compile.
GENERIC = ["conv2d.cuda_igemm", "conv2d.cuda_depthwise", "gemm.cuda_tc", "pool2d.cuda_direct",
           "pool2d.cuda_global_avg"]
needs_compiler = pytest.mark.skipif(COMPILER is None, reason=NO_COMPILER)


def sections_of(path):
    """(header fields, index) read with struct and json, independently of paskdnn.bundle."""
    with open(path, "rb") as f:
        head = f.read(128)
        magic, version, hsize, fsize, ioff, ilen, isha = struct.unpack_from("<8sIIQQQ32s", head)
        f.seek(ioff)
        text = f.read(ilen)
    assert hashlib.sha256(text).digest() == isha
    return dict(magic=magic, version=version, header_size=hsize, file_size=fsize, index_offset=ioff,
                index_size=ilen), json.loads(text)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="module")
def zoo(work):
    """resnet18, float32 NCHW, batches 1 and 2, kernels for sm_80 and sm_90 of the generic solvers."""
    path = str(work / "resnet18.pask")
    if COMPILER is None and not any(P.prebuilt_path({"key": "native/cuda/gemm", "object": "gemm",
                                                      "constants": "dtype=0", "target": a}) for a in ARCHES):
        pytest.skip(NO_COMPILER)
    P.precompile("resnet18", path, ARCHES, dtype="float32", layout="NCHW", batches=[1, 2], compiler=COMPILER,
                 cache_dir=str(work / "cc"), solvers=GENERIC)
    return path


def tiny_onnx(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as T
    from onnx import helper as H
    from onnx import numpy_helper as nh

    r = np.random.default_rng(3)
    inits = [nh.from_array(r.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             nh.from_array(r.standard_normal(8).astype(np.float32), "b"),
             nh.from_array(r.standard_normal((5, 8)).astype(np.float32), "fw"),
             nh.from_array(r.standard_normal(5).astype(np.float32), "fb")]
    nodes = [H.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             H.make_node("Relu", ["c"], ["r"]),
             H.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             H.make_node("GlobalAveragePool", ["p"], ["g"]),
             H.make_node("Flatten", ["g"], ["f"]),
             H.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    g = H.make_graph(nodes, "tiny", [H.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                     [H.make_tensor_value_info("y", T.FLOAT, [1, 5])], inits)
    onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def onnx_bundle(work):
    """A small ONNX model, float16 NHWC, every applicable kernel for sm_80 and
    sm_90 (the 3x3 conv's specialised kernel compiled here), through the CLI."""
    if COMPILER is None:
        pytest.skip(NO_COMPILER)
    model = tiny_onnx(str(work / "tiny.onnx"))
    out = str(work / "tiny.pask")
    rc = cli(["precompile", model, "--arch", "sm_80,sm_90", "--dtype", "float16", "--layout", "NHWC",
              "--cache-dir", str(work / "cc"), "--quiet", "-o", out])
    assert rc == 0
    return model, out


# ---- the file ------------------------------------------------------------------------


def check_sections(path):
    head, index = sections_of(path)
    assert head["magic"] == b"PASKBNDL" and head["version"] == 1 and head["header_size"] == 128
    assert head["file_size"] == os.path.getsize(path)
    data = open(path, "rb").read()
    for s in index["sections"]:
        assert s["offset"] % 64 == 0, s["name"]
        assert s["offset"] >= head["index_offset"] + head["index_size"]
        assert hashlib.sha256(data[s["offset"]:s["offset"] + s["size"]]).hexdigest() == s["sha256"], s["name"]
        for k in s.get("kernels", ()):
            blob = data[s["offset"] + k["offset"]:s["offset"] + k["offset"] + k["size"]]
            assert (s["offset"] + k["offset"]) % 64 == 0
            assert blob[:4] == b"\x7fELF" and hashlib.sha256(blob).hexdigest() == k["sha256"]
            assert k["object_id"].endswith("@" + s["arch"])
            # a cubin: ELF machine EM_CUDA (190), the SM in the second byte of e_flags
            machine, = struct.unpack_from("<H", blob, 18)
            flags, = struct.unpack_from("<I", blob, 48)
            assert machine == 190 and (flags >> 8) & 0xFF == int(s["arch"][3:]), (k["object_id"], hex(flags))
    return index, data


def test_zoo_bundle_has_its_sections_aligned_and_checksummed(zoo):
    index, data = check_sections(zoo)
    assert [s["name"] for s in index["sections"]] == ["graph", "weights", "hints", "kernels.sm_80", "kernels.sm_90"]
    assert index["model"]["name"] == "resnet18" and index["model"]["batches"] == [1, 2]
    # resnet18 needs the implicit GEMM conv (no depthwise layer), pooling and the classifier's GEMM
    for arch in ARCHES:
        s = next(s for s in index["sections"] if s["name"] == f"kernels.{arch}")
        assert sorted(k["object_id"] for k in s["kernels"]) == [
            f"native/cuda/conv_igemm[dtype=0]@{arch}", f"native/cuda/gemm[dtype=0]@{arch}",
            f"native/cuda/pool[dtype=0]@{arch}"]


def test_zoo_bundle_weights_are_the_folded_float32_weights(zoo):
    ref = models.resnet18(seed=0, layout="NCHW", dtype="float32")
    b = B.Bundle.open(zoo)
    g = B.graph_of(b)
    assert [n.name for n in g.nodes] == [n.name for n in ref.nodes]
    for n, r in zip(g.nodes, ref.nodes):
        assert n.params == {k: tuple(v) if isinstance(v, list) else v for k, v in r.params.items()}
        for role, w in r.weights.items():
            assert n.weights[role].dtype == np.dtype("<f4") and np.array_equal(n.weights[role], w)
            assert n.weights[role].ctypes.data % 64 == 0  # aligned in memory: mapped, not copied


def test_hints_are_the_runners_calls_per_batch(zoo):
    b = B.Bundle.open(zoo)
    recs = b.hints()
    g = models.resnet18(seed=0, layout="NCHW")
    calls = [n for n in g.nodes if n.op != "flatten"]
    assert [r["batch"] for r in recs] == [1, 2]
    for r in recs:
        assert r["format"] == "paskdnn-hints" and len(r["problems"]) == len(calls)
        conv = r["problems"][0]["fields"]
        # op, device, index, dtype, layout, weight layout, then n, c, h, w, o, oh, ow, kh, kw
        assert conv[0] == _lib.C.PASK_OP_CONV2D and conv[3] == _lib.C.PASK_DTYPE_FLOAT32
        assert conv[6:15] == [r["batch"], 3, 224, 224, 64, 112, 112, 7, 7]


def test_float32_bundle_on_the_cpu_matches_the_graph_built_without_it(zoo):
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    runner = paskdnn.load(zoo, device="cpu", batch=2, policy="reactive", num_threads=2)
    assert isinstance(runner, G.Runner) and runner.bundle_info["kernels"] == 0
    y = np.array(runner.run(x))
    ctx = paskdnn.Context("cpu", policy="reactive", num_threads=2)
    plain = G.Runner(models.resnet18(seed=0, layout="NCHW"), ctx, batch=2)
    ref = plain.run(x)
    assert y.shape == (2, 1000) and np.array_equal(y, ref)
    assert [r["solver"] for r in runner.report] == [r["solver"] for r in plain.report]
    runner.ctx.close()
    ctx.close()


def test_load_on_a_context_of_ones_own_leaves_it_open(zoo):
    ctx = paskdnn.Context("cpu", num_threads=1)
    runner = paskdnn.load(zoo, context=ctx, batch=1)
    assert runner.ctx is ctx and runner.shapes[runner.graph.input_name] == (1, 3, 224, 224)
    del runner
    assert ctx._handle is not None
    with pytest.raises(ValueError, match="pass them to your Context"):
        paskdnn.load(zoo, context=ctx, policy="pask")
    ctx.close()


def test_load_starts_the_context_before_numpy_and_the_graph_are_imported(zoo):
    # issue 16: a GPU's context comes up in the driver (releasing the GIL) while
    # numpy and the graph module are imported; the sections' checksums on a
    # thread of their own
    code = ("import sys, paskdnn\n"
            "from paskdnn import _context\n"
            "seen = []\n"
            "real = _context.PendingContext.__init__\n"
            "def init(self, *a, **kw):\n"
            "    seen.append(sorted(m for m in ('numpy', 'paskdnn.graph', 'paskdnn.bundle') if m in sys.modules))\n"
            "    real(self, *a, **kw)\n"
            "_context.PendingContext.__init__ = init\n"
            "import threading\n"
            "from paskdnn import _bundle_file\n"
            "hashed_on, sha = set(), _bundle_file._sha\n"
            "_bundle_file._sha = lambda data: hashed_on.add(threading.current_thread().name) or sha(data)\n"
            "runner = paskdnn.load(sys.argv[1], device='cpu', num_threads=1)\n"
            "print(seen, type(runner).__name__, runner.ctx.device, 'numpy' in sys.modules, sorted(hashed_on))\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, zoo], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[[]]", "BundleRunner", "cpu", "True", "['paskdnn-bundle-checks']"]


def test_a_contexts_target_is_its_best_isa_and_follows_cpu_isa():
    ctx = paskdnn.Context("cpu", num_threads=1)
    assert ctx.target in ("x86_64-avx512", "x86_64-avx2", "x86_64-generic")
    ctx.close()
    generic = paskdnn.Context("cpu", num_threads=1, cpu_isa="generic")
    assert generic.target == "x86_64-generic"
    generic.close()
    with pytest.raises(ValueError, match="closed"):
        generic.target


def test_onnx_bundle_compiles_the_specialised_conv_for_each_arch(onnx_bundle):
    model, path = onnx_bundle
    index, data = check_sections(path)
    assert index["model"]["kind"] == "onnx" and index["model"]["dtype"] == "float16"
    for arch in ARCHES:
        s = next(s for s in index["sections"] if s["name"] == f"kernels.{arch}")
        ids = {k["object_id"]: k for k in s["kernels"]}
        fixed = f"native/cuda/conv_igemm[dtype=1,kh=3,kw=3,stride=1,pad=1,dil=1]@{arch}"
        assert fixed in ids and "conv2d.cuda_igemm_fixed" in ids[fixed]["solvers"]
        assert f"--gpu-architecture={arch}" in ids[fixed]["options"]
        assert {f"native/cuda/conv_igemm[dtype=1]@{arch}", f"native/cuda/pool[dtype=1]@{arch}",
                f"native/cuda/gemm[dtype=1]@{arch}"} <= set(ids)
    # weights in their final dtype: float16, the conv's in OHWI for NHWC
    g = B.graph_of(B.Bundle.open(path))
    ref = paskdnn.load_onnx(model, layout="NHWC", dtype="float16")
    for n, r in zip(g.nodes, ref.nodes):
        for role, w in r.weights.items():
            assert n.weights[role].dtype == np.dtype("<f2")
            assert np.array_equal(n.weights[role], np.asarray(w, np.float32).astype(np.float16))
    assert g.onnx_input_shape == (1, 3, 8, 8) and g.batch == 1


def test_float16_bundle_is_refused_on_the_cpu_and_its_context_closed(onnx_bundle, monkeypatch):
    made = []
    real = paskdnn.Context

    class Recording(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(paskdnn._context, "Context", Recording)
    with pytest.raises(paskdnn.UnsupportedError, match="float16 bundle runs on GPUs only"):
        paskdnn.load(onnx_bundle[1], device="cpu")
    with pytest.raises(ValueError, match="imported for batch 1, not 2"):
        paskdnn.load(onnx_bundle[1], device="cpu", batch=2)
    assert len(made) == 2 and all(c._handle is None for c in made)


def test_bfloat16_weights_round_to_nearest_even():
    # 1.0, 1 + 2^-8 (a tie: to even, 1.0), 1 + 3 * 2^-8 (a tie: up), -2.5
    v = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -2.5], np.float32)
    assert B.final_weight(v, "bfloat16").tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020]


def test_coldstart_runs_the_main_job_from_a_bundle(zoo, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cs"
    proc = subprocess.run([sys.executable, "-m", "paskdnn", "coldstart", "--bundle", zoo, "--device", "cpu",
                           "--policies", "pask", "--repeats", "1", "--steady", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "coldstart.json").read_text())
    assert [(r["model"], r["dtype"], r["layout"], r["cache"]) for r in doc["runs"]] == [
        ("resnet18", "float32", "NCHW", "cold"), ("resnet18", "float32", "NCHW", "warm")]
    assert all(r["stats"]["calls"] == 23 for r in doc["runs"])  # the bundle's 23 calls at batch 1
    proc = subprocess.run([sys.executable, "-m", "paskdnn", "coldstart", "--bundle", zoo, "--device", "cpu",
                           "--batch", "8", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "made for batch sizes 1, 2" in proc.stderr


# ---- the GPU path, against the CUDA driver's test double ------------------------------------
#
# tests/doubles/cuda_cudnn_double.cpp stands in for libcuda.so.1 (nothing is
# computed; cuModuleLoadData logs whether it got a cubin and its SM). With no
# prebuilt folder (kernel_dir: an empty one) and no NVRTC, a CUDA context can
# only run the graph on the bundle's kernels. Not a real GPU: whether the
# driver accepts the cubins is not tested here.

DOUBLE_RUN = r"""
import ctypes, json, os, sys
import numpy as np
import threading
import paskdnn
from paskdnn import _bundle_file
D = ctypes.CDLL(os.environ["PASKDNN_LIBCUDA"])
D.double_log.restype = ctypes.c_char_p
path, empty = sys.argv[1], sys.argv[2]
out = {"handed_on": []}
real_add = _bundle_file.add_kernels
def add_kernels(*a):
    out["handed_on"].append(threading.current_thread().name)
    return real_add(*a)
_bundle_file.add_kernels = add_kernels
try:
    r = paskdnn.load(path, device="cuda", policy="reactive", cache_dir=os.path.join(empty, "cache"), kernel_dir=empty,
                     cudnn=False, loader_threads=0)
    out["info"] = {k: r.bundle_info[k] for k in ("arch", "arches", "kernels")}
    out["target"] = r.ctx.target
    g = r.graph
    y = g.output_to_onnx(r.run(g.input_from_onnx(np.ones(g.onnx_input_shape, np.float32))))
    out["shape"] = list(y.shape)
    out["solvers"] = [x["solver"] for x in r.report]
    st = r.ctx.stats()
    out["stats"] = {k: st[k] for k in ("compiles", "loads", "load_failures")}
except paskdnn.Error as e:
    out["error"] = type(e).__name__ + ": " + str(e)
out["log"] = D.double_log().decode()
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def cuda_double(work):
    import subprocess

    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the CUDA driver's test double")
    out = str(work / "libcuda_double.so")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-o", out,
                    os.path.join(here, "doubles", "cuda_cudnn_double.cpp"), "-lpthread"], check=True)
    return out


def on_double(double, bundle, tmp_path, cc=90):
    import subprocess
    import sys

    empty = tmp_path / "no-prebuilt"
    empty.mkdir(exist_ok=True)
    env = dict(os.environ, PASKDNN_LIBCUDA=double, PASKDNN_NVRTC="/nonexistent", PASKDNN_DOUBLE_CC=str(cc))
    p = subprocess.run([sys.executable, "-c", DOUBLE_RUN, bundle, str(empty)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])
    return out, out.pop("log").splitlines()


def test_a_cuda_context_runs_the_graph_on_the_bundles_kernels(onnx_bundle, cuda_double, tmp_path):
    out, log = on_double(cuda_double, onnx_bundle[1], tmp_path)
    assert "error" not in out, out["error"]
    n = len(next(s for s in sections_of(onnx_bundle[1])[1]["sections"] if s["name"] == "kernels.sm_90")["kernels"])
    assert out["info"] == {"arch": "sm_90", "arches": ARCHES, "kernels": n} and out["target"] == "sm_90"
    assert out["handed_on"] == ["paskdnn-context"]  # on the context's thread, beside the caller's checks
    assert out["shape"] == [1, 5]
    assert out["solvers"] == ["conv2d.cuda_igemm_fixed", "pool2d.cuda_direct", "pool2d.cuda_global_avg",
                              "gemm.cuda_tc"]
    assert out["stats"]["compiles"] == 0 and out["stats"]["load_failures"] == 0 and out["stats"]["loads"] >= 3
    loaded = [ln for ln in log if ln.startswith("cuModuleLoadData")]
    assert loaded and all(" elf=1 sm=90 " in ln + " " for ln in loaded), loaded
    assert any("fn=pask_conv2d_igemm " in ln for ln in log if ln.startswith("cuLaunchKernel"))


def test_without_kernels_for_its_arch_a_bundle_still_loads(onnx_bundle, cuda_double, tmp_path):
    # an sm_86 device: none of the bundle's kernels are handed in; with no prebuilt
    # folder and no NVRTC here, the first call then finds no kernel to load
    out, log = on_double(cuda_double, onnx_bundle[1], tmp_path, cc=86)
    assert out["info"] == {"arch": "sm_86", "arches": ARCHES, "kernels": 0} and out["target"] == "sm_86"
    assert out["error"].startswith("LoadError: no kernel for conv2d float16 NHWC")
    assert not [ln for ln in log if ln.startswith("cuModuleLoadData")]


# ---- bad files --------------------------------------------------------------------------


def damaged(src, dst, truncate=None, flip=None, put=None):
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        if truncate is not None:
            f.truncate(truncate)
        if flip is not None:
            f.seek(flip)
            b = f.read(1)
            f.seek(flip)
            f.write(bytes([b[0] ^ 0x40]))
        if put is not None:
            f.seek(put[0])
            f.write(put[1])
    return dst


def test_truncation_at_every_section_boundary_names_the_section(onnx_bundle, tmp_path):
    path = onnx_bundle[1]
    head, index = sections_of(path)
    bad = str(tmp_path / "bad.pask")
    cases = [(0, "header"), (127, "header"), (head["index_offset"] + head["index_size"] // 2, "index")]
    for s in index["sections"]:
        cases += [(s["offset"], s["name"]), (s["offset"] + s["size"] - 1, s["name"])]
    for size, section in cases:
        damaged(path, bad, truncate=size)
        with pytest.raises(paskdnn.BundleError) as e:
            B.Bundle.open(bad)
        assert e.value.section == section, (size, str(e.value))
        assert "truncated" in str(e.value) and bad in str(e.value)
    # extra bytes after the last section are refused too
    damaged(path, bad, put=(os.path.getsize(path), b"\0" * 64))
    with pytest.raises(paskdnn.BundleError, match="extra bytes"):
        B.Bundle.open(bad)


def test_corruption_at_every_section_boundary_names_the_section(onnx_bundle, tmp_path):
    path = onnx_bundle[1]
    head, index = sections_of(path)
    bad = str(tmp_path / "bad.pask")
    for s in index["sections"]:
        for at in (s["offset"], s["offset"] + s["size"] - 1):
            damaged(path, bad, flip=at)
            with pytest.raises(paskdnn.BundleError, match="SHA-256") as e:
                B.Bundle.open(bad)
            assert (e.value.section, e.value.offset) == (s["name"], s["offset"]), str(e.value)
    damaged(path, bad, flip=head["index_offset"] + 10)
    with pytest.raises(paskdnn.BundleError, match="index does not match its SHA-256") as e:
        B.Bundle.open(bad)
    assert e.value.section == "index"


def test_foreign_and_wrong_version_files_are_refused(onnx_bundle, tmp_path):
    path = onnx_bundle[1]
    bad = str(tmp_path / "bad.pask")
    with pytest.raises(paskdnn.BundleError, match="not a paskdnn bundle") as e:
        B.Bundle.open(damaged(path, bad, put=(0, b"\x7fELF\2\1\1\0")))
    assert (e.value.section, e.value.offset) == ("header", 0)
    with pytest.raises(paskdnn.BundleError, match="format version 2") as e:
        B.Bundle.open(damaged(path, bad, put=(8, struct.pack("<I", 2))))
    assert e.value.section == "header" and isinstance(e.value, paskdnn.Error)
    with pytest.raises(paskdnn.BundleError, match="reserved"):
        B.Bundle.open(damaged(path, bad, put=(100, b"\1")))
    with pytest.raises(paskdnn.BundleError, match="cannot open"):
        B.Bundle.open(str(tmp_path / "missing.pask"))


def test_a_failed_load_leaves_no_context_open(zoo, tmp_path, monkeypatch):
    head, index = sections_of(zoo)
    weights = next(s for s in index["sections"] if s["name"] == "weights")
    bad = damaged(zoo, str(tmp_path / "bad.pask"), flip=weights["offset"] + weights["size"] // 2)
    made = []
    real = paskdnn.Context

    class Recording(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(paskdnn._context, "Context", Recording)
    with pytest.raises(paskdnn.BundleError) as e:
        paskdnn.load(bad, device="cpu")
    assert e.value.section == "weights"
    assert len(made) == 1 and made[0]._handle is None  # made while the file was checked, then closed


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    out = str(tmp_path / "x.pask")
    with pytest.raises(ValueError, match="unique"):
        B.write(out, {}, [B.json_section("a", {}), B.json_section("a", {})])
    B.write(out, {}, [B.json_section("a", {"k": 1})])
    with pytest.raises(TypeError):
        B.write(out, {}, [B.json_section("b", {}), ({"name": "c", "kind": "raw"}, None)])
    assert os.listdir(tmp_path) == ["x.pask"]
    assert B.Bundle.open(out).json("a") == {"k": 1}  # the earlier file is intact


# ---- inspect ------------------------------------------------------------------------------


def test_inspect_lists_sections_arches_kernels_and_hints(onnx_bundle, capsys):
    path = onnx_bundle[1]
    assert cli(["inspect", path]) == 0
    out = capsys.readouterr().out
    _, index = sections_of(path)
    for s in index["sections"]:
        assert s["name"] in out and str(s["size"]) in out
        for k in s.get("kernels", ()):
            assert k["object_id"] in out
    assert "sm_80, sm_90" in out and "float16 NHWC" in out
    assert cli(["inspect", path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sections"] == index["sections"] and doc["nodes"] == 5 and doc["hints"] == {"1": 4}  # flatten is no call


def test_inspect_of_a_bad_file_says_why_and_exits_1(onnx_bundle, tmp_path, capsys):
    bad = damaged(onnx_bundle[1], str(tmp_path / "bad.pask"), put=(0, b"NOTABNDL"))
    assert cli(["inspect", bad]) == 1
    assert "not a paskdnn bundle" in capsys.readouterr().err


def test_precompile_refuses_bad_options(tmp_path, capsys):
    out = str(tmp_path / "m.pask")
    for argv, msg in [(["resnet18", "--arch", "sm_8", "-o", out], "expected CUDA archs"),
                      (["resnet18", "--arch", "sm_80,sm_80", "-o", out], "appears twice"),
                      (["nosuchnet", "-o", out], "MODEL must be one of"),
                      (["resnet18", "--batch", "0", "-o", out], "batch sizes"),
                      (["resnet18", "-o", str(tmp_path / "no" / "m.pask")], "does not exist"),
                      (["x.onnx", "-o", out], "no such file")]:
        with pytest.raises(SystemExit) as e:
            cli(["precompile", *argv])
        assert e.value.code == 2
        assert msg in capsys.readouterr().err
    assert not os.path.exists(out)


# ---- the C functions bundles are made from --------------------------------------------------


def _records():
    C = _lib.C
    head = [C.PASK_DEVICE_CPU, 0, C.PASK_DTYPE_FLOAT16, C.PASK_LAYOUT_NHWC, C.PASK_LAYOUT_NHWC]
    relu = [C.PASK_ACTIVATION_RELU, 0, 0]
    return {
        "conv2d": [C.PASK_OP_CONV2D, *head, 1, 32, 56, 56, 64, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1, 0, 0, *relu],
        "pool2d": [C.PASK_OP_POOL2D, *head, 2, 16, 9, 9, 4, 4, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0],
        "gemm": [C.PASK_OP_GEMM, *head[:2], C.PASK_DTYPE_FLOAT16, C.PASK_LAYOUT_ROW_MAJOR, C.PASK_LAYOUT_ROW_MAJOR,
                 0, 1, 8, 100, 64, 64, 64, 100, 1, 0, *relu],
        "eltwise": [C.PASK_OP_ELTWISE, *head, 2, 8, 5, 5, 1, 8, 1, 1, 2, 8, 5, 5, *relu],
        "cat": [C.PASK_OP_CAT, *head, 1, 7, 7, 3, 8, 16, 24],
    }


@pytest.mark.parametrize("op", ["conv2d", "pool2d", "gemm", "eltwise", "cat"])
def test_problem_records_read_every_field_checked(op):
    """pask_kernel_candidates reads a bundle's problem record field by field:
    a good record of each op is read, and any one field out of range (or the
    record one field short or long) is refused naming the record."""
    rec = _records()[op]
    assert isinstance(P.kernel_candidates(rec, "sm_90"), list)
    for i in range(len(rec)):
        bad = list(rec)
        bad[i] = -5
        with pytest.raises(paskdnn.InvalidArgumentError, match="bad problem record"):
            P.kernel_candidates(bad, "sm_90")
    for bad in (rec[:-1], rec + [1]):
        with pytest.raises(paskdnn.InvalidArgumentError, match="bad problem record"):
            P.kernel_candidates(bad, "sm_90")


def test_kernel_candidates_list_the_native_kernels_without_a_device():
    conv = [_lib.C.PASK_OP_CONV2D, _lib.C.PASK_DEVICE_CPU, 0, _lib.C.PASK_DTYPE_FLOAT16, _lib.C.PASK_LAYOUT_NHWC,
            _lib.C.PASK_LAYOUT_NHWC, 1, 32, 56, 56, 32, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 32, 1, 0, 0, 0, 0, 0]
    cands = P.kernel_candidates(conv, "sm_90")
    by = {c["solver"]: c for c in cands}
    assert set(by) == {"conv2d.cuda_igemm", "conv2d.cuda_igemm_fixed", "conv2d.cuda_depthwise"}
    fixed = by["conv2d.cuda_igemm_fixed"]
    assert fixed["object_id"] == "native/cuda/conv_igemm[dtype=1,kh=3,kw=3,stride=1,pad=1,dil=1]@sm_90"
    assert fixed["options"].split() == ["-std=c++17", "--gpu-architecture=sm_90", "-default-device", "-lineinfo",
                                        "-DPASK_DTYPE=1", "-DPASK_FIXED_KH=3", "-DPASK_FIXED_KW=3",
                                        "-DPASK_FIXED_STRIDE=1", "-DPASK_FIXED_PAD=1", "-DPASK_FIXED_DIL=1"]
    assert "pask_conv2d_igemm" in P.kernel_source("conv_igemm")
    with pytest.raises(paskdnn.InvalidArgumentError, match="target must be"):
        P.kernel_candidates(conv, "sm_90 -Dx")
    with pytest.raises(paskdnn.InvalidArgumentError, match="CUDA or HIP only"):
        P.kernel_candidates(conv, "sm_90", device="cpu")
    with pytest.raises(paskdnn.InvalidArgumentError, match="bad problem record"):
        P.kernel_candidates(conv[:-1], "sm_90")
    with pytest.raises(paskdnn.InvalidArgumentError, match="no kernel source"):
        P.kernel_source("no_such_object")


def test_add_code_object_checks_everything_and_a_cpu_context_takes_none():
    ffi, lib = _lib.load()
    ctx = paskdnn.Context("cpu")
    blob = b"\x7fELF" + bytes(60)
    good = hashlib.sha256(blob).hexdigest().encode()

    def add(oid, data, sha):
        _lib.check(lib.pask_context_add_code_object(ctx._h(), oid, data, len(data), sha))

    oid = b"native/cuda/gemm[dtype=1]@sm_90"
    with pytest.raises(paskdnn.InvalidArgumentError, match="checksum mismatch"):
        add(oid, blob, hashlib.sha256(b"other").hexdigest().encode())
    with pytest.raises(paskdnn.InvalidArgumentError, match="no ELF header"):
        add(oid, b"PTX " + bytes(60), hashlib.sha256(b"PTX " + bytes(60)).hexdigest().encode())
    for bad_id in (b"native/cuda/gemm", b"cudnn/cuda/gemm@sm_90", b"native/cuda/gemm[dtype=1@sm_90",
                   b"native/cuda/../x@sm_90"):
        with pytest.raises(paskdnn.InvalidArgumentError, match="object_id must read"):
            add(bad_id, blob, good)
    with pytest.raises(paskdnn.UnsupportedError, match="host code loads only from the installed package"):
        add(oid, blob, good)
    ctx.close()


def test_plan_fields_are_the_problems_canonical_fields():
    ffi, lib = _lib.load()
    ctx = paskdnn.Context("cpu")
    from paskdnn import _spec

    spec = _spec.SPECS["max_pool2d"](paskdnn.TensorSpec((2, 4, 9, 9)), 3, 2, 1, hinting=True)
    plan, _ = _spec.plan_for(spec.key, ctx._h())
    f, n = ffi.new("const int64_t **"), ffi.new("int64_t *")
    _lib.check(lib.pask_plan_get_fields(plan, f, n))
    fields = [f[0][i] for i in range(n[0])]
    # op, device, index, dtype, layout, weight layout, n, c, h, w, oh, ow, kh, kw, stride, stride, pads...
    assert fields[:14] == [_lib.C.PASK_OP_POOL2D, _lib.C.PASK_DEVICE_CPU, 0, _lib.C.PASK_DTYPE_FLOAT32,
                           _lib.C.PASK_LAYOUT_NCHW, fields[5], 2, 4, 9, 9, 5, 5, 3, 3]
    ctx.close()
