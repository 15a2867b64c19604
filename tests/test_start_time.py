"""A fresh process's way to its first result stays short (issue 19: process start
to first result no slower than ONNX Runtime's): the library loads without
parsing its header, and a model built from an .npz reads it once, mapped, with
the same weights as before."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from paskdnn import _lib, models
from paskdnn._header import cdef_from_header


def _cdef() -> str:
    return cdef_from_header((_lib.library_dir() / "include" / "paskdnn.h").read_text(encoding="utf-8"))


def test_context_creation_parses_no_c_declarations():
    # pycparser (cffi's run-time parser of the cdef) cost every process about 75 ms
    code = ("import sys, paskdnn\n"
            "ctx = paskdnn.Context('cpu', num_threads=1)\n"
            "paskdnn.relu(__import__('numpy').ones(4, 'float32'), context=ctx)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pycparser', 'cffi')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_loads_neither_numpy_nor_the_library_and_a_context_needs_no_numpy():
    # issue 16: paskdnn.load starts a GPU's context (a few hundred ms in the driver)
    # before numpy's import (100-200 ms), so ``import paskdnn`` must not import it
    code = ("import sys, paskdnn\n"
            "heavy = ('numpy', 'cffi', 'paskdnn._lib', 'paskdnn._arrays', 'paskdnn.functional', 'paskdnn.graph')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "ctx = paskdnn.Context('cpu', num_threads=1)\n"
            "print('numpy' in sys.modules, 'paskdnn._lib' in sys.modules)\n"
            "from paskdnn import relu, TensorSpec, DeviceArray\n"
            "print(paskdnn.conv2d.__module__, paskdnn.Context.__module__, paskdnn.graph.__name__, "
            "'linear' in dir(paskdnn), 'numpy' in sys.modules)\n"
            "try:\n"
            "    paskdnn.no_such_name\n"
            "except AttributeError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "False True", "paskdnn.functional paskdnn._context paskdnn.graph True True",
                   "module 'paskdnn' has no attribute 'no_such_name'"]


def test_prebuilt_cffi_tables_declare_what_the_header_declares():
    import cffi

    folder = _lib.library_dir()
    prebuilt = _lib.prebuilt_ffi(folder, _cdef())
    assert prebuilt is not None, f"no {_lib.PREBUILT_FFI} for this header beside the library"
    parsed = cffi.FFI()
    parsed.cdef(_cdef())
    a, b = prebuilt.dlopen(str(folder / _lib.LIB_NAME)), parsed.dlopen(str(folder / _lib.LIB_NAME))
    assert sorted(dir(a)) == sorted(dir(b))
    for name in dir(b):
        if name.startswith("PASK_"):
            assert getattr(a, name) == getattr(b, name), name
    for t in _lib._CALL_TYPES:
        assert prebuilt.sizeof(t) == parsed.sizeof(t), t
    for t in ("pask_conv2d_params_t", "pask_pool2d_params_t", "pask_epilogue_t", "pask_stats_t", "pask_graph_info_t"):
        assert prebuilt.sizeof(t) == parsed.sizeof(t), t
        assert [f for f, _ in prebuilt.typeof(t).fields] == [f for f, _ in parsed.typeof(t).fields], t


def test_prebuilt_cffi_module_of_another_header_is_not_used(tmp_path):
    cdef = _cdef()
    assert _lib.prebuilt_ffi(tmp_path, cdef) is None  # none there
    shutil.copy(_lib.library_dir() / _lib.PREBUILT_FFI, tmp_path / _lib.PREBUILT_FFI)
    assert _lib.prebuilt_ffi(tmp_path, cdef) is not None
    assert _lib.prebuilt_ffi(tmp_path, cdef + "int pask_new_function(void);\n") is None  # another header
    (tmp_path / _lib.PREBUILT_FFI).write_text("raise RuntimeError('broken')\n")
    assert _lib.prebuilt_ffi(tmp_path, cdef) is None  # unreadable: a miss, not a crash


# ---- model build from an .npz ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_folded_weights_are_the_float64_products_rounded_once(layout):
    sd = models.state_dict("resnet18", seed=1, num_classes=10)
    g = models.resnet18(sd, layout=layout, num_classes=10)
    node = next(n for n in g.nodes if n.name == "layer2.0.conv1")
    scale = sd["layer2.0.bn1.weight"].astype(np.float64) / np.sqrt(
        sd["layer2.0.bn1.running_var"].astype(np.float64) + models.BN_EPS)
    w = sd["layer2.0.conv1.weight"].astype(np.float64) * scale[:, None, None, None]
    if layout == "NHWC":
        w = w.transpose(0, 2, 3, 1)
    expect = w.astype(np.float32)
    assert node.weights["weight"].flags.c_contiguous
    assert np.array_equal(node.weights["weight"].view(np.uint32), expect.view(np.uint32))
    b = (0.0 - sd["layer2.0.bn1.running_mean"].astype(np.float64)) * scale + sd["layer2.0.bn1.bias"]
    assert np.array_equal(node.weights["bias"], b.astype(np.float32))


def test_npz_build_equals_mapping_build_and_owns_its_arrays(tmp_path):
    sd = models.state_dict("resnet18", seed=2, num_classes=10)
    path = tmp_path / "w.npz"
    models.save_npz(sd, path)
    from_file = models.resnet18(path, layout="NHWC", num_classes=10)
    from_dict = models.resnet18(sd, layout="NHWC", num_classes=10)
    for a, b in zip(from_file.nodes, from_dict.nodes):
        for k in a.weights:
            assert np.array_equal(a.weights[k], b.weights[k]), (a.name, k)
            # no weight is a view of the mapped file: writable, and alive after the file goes
            assert a.weights[k].flags.writeable and a.weights[k].flags.c_contiguous, (a.name, k)
    path.unlink()
    assert np.array_equal(from_file.nodes[-1].weights["weight"], from_dict.nodes[-1].weights["weight"])


def test_compressed_npz_still_loads(tmp_path):
    sd = models.state_dict("resnet18", seed=2, num_classes=10)
    path = tmp_path / "w.npz"
    np.savez_compressed(path, **sd)
    g = models.resnet18(path, num_classes=10)
    ref = models.resnet18(sd, num_classes=10)
    assert all(np.array_equal(a.weights[k], b.weights[k]) for a, b in zip(g.nodes, ref.nodes) for k in a.weights)


def test_mapped_npz_reads_every_header_np_save_writes_as_np_load_does(tmp_path):
    """The .npz reader parses np.save's headers with a pattern (numpy's reader costs
    about 25 us an array more: 8 ms of MobileNetV2's build), in formats 1.0 and 2.0; other
    headers, such as a structured dtype's, go through numpy's. Either way the
    arrays equal np.load's."""
    rng = np.random.default_rng(5)
    arrays = {
        "f32_4d": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "f64_fortran": np.asfortranarray(rng.standard_normal((3, 5))),
        "scalar": np.float32(2.5) * np.ones((), np.float32),
        "empty": np.zeros((0, 7), np.float32),
        "one_dim": rng.integers(-9, 9, 11).astype(np.int64),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "bytes": np.arange(5, dtype=np.uint8),
        "flags": np.array([True, False, True]),
        "complex": (rng.standard_normal(3) + 1j).astype(np.complex64),
        "structured": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i2")]),
        "forty_dims": np.zeros((1,) * 40, np.float32),
    }
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    mapped = models._mapped_npz(path)
    assert mapped is not None and mapped.intact()
    with np.load(path) as ref:
        assert sorted(mapped.arrays) == sorted(ref.files)
        for k in ref.files:
            got, want = mapped.arrays[k], ref[k]
            assert got.dtype == want.dtype and got.shape == want.shape, k
            assert np.array_equal(got, want), k
            assert got.flags.f_contiguous == want.flags.f_contiguous, k
    v2 = tmp_path / "v2.npy"
    with open(v2, "wb") as f:
        np.lib.format.write_array(f, arrays["f32_4d"], version=(2, 0))
    with zipfile.ZipFile(tmp_path / "w2.npz", "w") as z:
        z.write(v2, "v2.npy")
    mapped = models._mapped_npz(tmp_path / "w2.npz")
    assert mapped is not None and np.array_equal(mapped.arrays["v2"], arrays["f32_4d"])
    assert models._npy_header(memoryview(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz'} \n"), 0) is None


def test_corrupted_npz_fails_as_np_load_does(tmp_path):
    sd = models.state_dict("resnet18", seed=2, num_classes=10)
    path = tmp_path / "w.npz"
    models.save_npz(sd, path)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("layer1.0.conv1.weight.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # a byte of the array's data
    path.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        models.load_npz(path)
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        models.resnet18(path, num_classes=10)


# ---- the CPU runner's buffers ----------------------------------------------------------------


def _live_at(graph, i):
    """Buffers (node outputs, following flatten views) holding a value some node
    at or after i reads, or the graph's output."""
    owner = {graph.input_name: None}
    for n in graph.nodes:
        owner[n.output] = owner[n.inputs[0]] if n.op == "flatten" else n.output
    needed = {owner[v] for n in graph.nodes[i:] for v in n.inputs} | {owner[graph.output_name]}
    made = {owner[n.output] for n in graph.nodes[:i]}
    return (needed & made) - {None}


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "vgg16"])
def test_runner_buffers_share_bytes_only_between_values_never_live_together(name):
    from paskdnn.graph import _buffer_offsets, infer_shapes

    g = models.build(name, layout="NHWC")
    shapes = infer_shapes(g, 2)
    offsets, size = _buffer_offsets(g, shapes)
    span = {b: (o, o + 4 * int(np.prod(shapes[b]))) for b, o in offsets.items()}
    assert all(0 <= lo and hi <= size and lo % 64 == 0 for lo, hi in span.values())
    for i, n in enumerate(g.nodes):
        if n.op == "flatten":
            continue
        lo, hi = span[n.output]
        for b in _live_at(g, i):  # the inputs of node i, and every value read later
            if b != n.output:
                blo, bhi = span[b]
                assert hi <= blo or bhi <= lo, f"{name}: {n.output} overlaps {b}, live at node {i}"
    assert size < sum(hi - lo for lo, hi in span.values()) / 2  # the point of sharing


def test_runner_on_shared_buffers_gives_the_same_output_each_run():
    import paskdnn
    from paskdnn.graph import Runner

    ctx = paskdnn.Context("cpu", num_threads=1)
    g = models.resnet18(seed=3, layout="NHWC", num_classes=10)
    r = Runner(g, ctx)
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    y1 = np.array(r.run(x))
    y2 = np.array(r.run(x))
    assert np.array_equal(y1, y2)
    assert np.isfinite(y1).all() and np.abs(y1).max() > 0


def test_nvrtc_is_found_in_its_wheel_without_cuda_pathfinder(tmp_path, monkeypatch):
    """A CUDA context's start path finds the nvidia-cuda-nvrtc wheel's library by
    its file (importing cuda.pathfinder, which loads the library to find it, cost
    about 90 ms of a bundle's load on an H100)."""
    import importlib
    import sys

    from paskdnn import _context

    lib = tmp_path / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    (lib / "libnvrtc.so.13").write_bytes(b"not loaded")
    (lib / "libnvrtc-builtins.so.13.5").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    blocked = type(sys)("cuda.pathfinder")  # an import of it would not find load_nvidia_dynamic_lib
    monkeypatch.setitem(sys.modules, "cuda.pathfinder", blocked)
    assert _context._find_nvrtc() == str(lib / "libnvrtc.so.13")
