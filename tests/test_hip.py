"""The HIP backend and the MIOpen provider against a test double.

No AMD GPU and no MIOpen can be reached here, so tests/doubles/hip_miopen_double.cpp
(built by the `double` fixture with the system C++ compiler) exports the HIP,
hiprtc and MIOpen entry points paskdnn dlsyms, logs every call and computes
MIOpen's results on the CPU. The tests check paskdnn's side of the contract:
call sequences, descriptors, workspaces, error paths, hint-driven
CompileSolution ordering on loader threads and reuse of compiled solutions.
Results are compared with the float64 references of tests/reference.py. What
this does not show (that the real libraries behave like the double, that the
kernels run correctly on an AMD GPU) is listed in docs/amd.md.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import paskdnn
from reference import (assert_within_bound, avg_pool2d_ref, conv2d_bound, conv2d_ref, max_pool2d_ref)

HERE = Path(__file__).resolve().parent
CXX = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
if CXX is None:
    pytest.skip("no C++ compiler to build the HIP/MIOpen test double", allow_module_level=True)

rng = np.random.default_rng(20261128)


@pytest.fixture(scope="session")
def double_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("hip-double") / "libhip_miopen_double.so"
    subprocess.run([CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(out),
                    str(HERE / "doubles" / "hip_miopen_double.cpp"), "-lpthread"], check=True)
    return str(out)


@pytest.fixture
def double(double_path):
    """The double's controls (the same library instance paskdnn dlopens); reset per test."""
    lib = ctypes.CDLL(double_path)
    lib.double_log.restype = ctypes.c_char_p
    lib.double_set.argtypes = [ctypes.c_char_p, ctypes.c_char_p]

    class Double:
        path = double_path

        def set(self, key, value):
            lib.double_set(key.encode(), None if value is None else str(value).encode())

        def log(self):
            return lib.double_log().decode().splitlines()

        def calls(self, prefix):
            return [line for line in self.log() if line.split(" ", 1)[0] == prefix]

        def clear(self):
            lib.double_log_clear()

        def live_allocations(self):
            return lib.double_live_allocations()

    lib.double_reset()
    yield Double()
    lib.double_reset()


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def hip_context(double, cache, **kwargs):
    kwargs.setdefault("hip", double.path)
    kwargs.setdefault("hiprtc", double.path)
    kwargs.setdefault("miopen", double.path)
    return paskdnn.Context("hip", cache_dir=cache, **kwargs)


def field(line, name):
    m = re.search(r"\b" + name + r"=(\S+)", line)
    assert m, f"{name}= missing in {line!r}"
    return m.group(1)


def names(log):
    return [line.split(" ", 1)[0] for line in log]


def upload(ctx, a, dtype="float32"):
    return paskdnn.asarray(a, dtype=dtype, context=ctx)


# ---- contexts and the HIP backend ----------------------------------------------------


def test_graph_capture_is_refused_on_hip_with_a_message(double, cache):
    # The HIP backend binds no graph API: capture is unsupported, said so, and a
    # graph.Runner stays eager on the thread's default stream.
    from paskdnn import _lib, graph as G

    ffi, lib = _lib.load()
    ctx = hip_context(double, cache)
    try:
        s = ffi.new("void **")
        assert lib.pask_stream_create(ctx._h(), s) == lib.PASK_ERROR_UNSUPPORTED
        assert "the hip backend runs every call eagerly" in ffi.string(lib.pask_last_error_message()).decode()
        assert lib.pask_graph_capture_begin(ctx._h(), ffi.cast("void *", 0x10)) == lib.PASK_ERROR_UNSUPPORTED
        g = G.Graph("one", "x", (3, 5, 5), [G.Node("p", "max_pool2d", ["x"], "y", params=dict(kernel_size=2))], "y")
        r = G.Runner(g, ctx)
        assert not r.capture and r.capture_note == "off: hip:0 contexts run eagerly"
        with pytest.raises(ValueError, match="capture=True needs a CUDA context"):
            G.Runner(g, ctx, capture=True)
    finally:
        ctx.close()



def test_context_over_double_reads_gfx_arch_and_lists_hip_solvers(double, cache):
    ctx = hip_context(double, cache)
    assert ctx.device == "hip:0"
    assert any(line.startswith("hipGetDevicePropertiesR0600 device=0") for line in double.log())
    names_ = {s["name"] for s in paskdnn.solvers() if s["device"] == "hip"}
    assert {"conv2d.hip_igemm", "gemm.hip", "pool2d.hip_direct", "conv2d.miopen", "conv2d.miopen_alt",
            "pool2d.miopen"} <= names_
    ids = {s["name"]: s["id"] for s in paskdnn.solvers()}
    assert ids["conv2d.hip_igemm"] == 19 and ids["pool2d.miopen"] == 26  # append-only ids


def test_missing_hip_runtime_is_a_clear_backend_error(cache, tmp_path):
    with pytest.raises(paskdnn.BackendUnavailableError, match="HIP runtime"):
        paskdnn.Context("hip", cache_dir=cache, hip=str(tmp_path / "no-libamdhip64.so"))


def test_no_hip_device_is_a_backend_error(double, cache):
    double.set("devices", 0)
    with pytest.raises(paskdnn.BackendUnavailableError, match="no HIP device"):
        hip_context(double, cache)


def test_device_index_out_of_range(double, cache):
    with pytest.raises(paskdnn.InvalidArgumentError, match="HIP device 3 does not exist"):
        paskdnn.Context("hip:3", cache_dir=cache, hip=double.path, hiprtc=double.path, miopen=double.path)


def test_hip_options_on_a_cpu_context_are_refused():
    with pytest.raises(ValueError, match="HIP contexts only"):
        paskdnn.Context("cpu", miopen=False)


def test_memory_round_trip_and_pointer_checks(double, cache):
    ctx = hip_context(double, cache)
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    d = upload(ctx, a)
    assert d.__dlpack_device__() == (10, 0)  # kDLROCM
    np.testing.assert_array_equal(d.numpy(), a)
    assert double.calls("hipMalloc") and double.calls("hipMemcpy")

    class HostMemory:  # claims to be a GPU array but points at host memory
        def __init__(self, arr):
            self.arr = arr
            self.__cuda_array_interface__ = {"shape": arr.shape, "typestr": "<f4",
                                             "data": (arr.ctypes.data, False), "version": 3, "strides": None}

    x = HostMemory(rng.standard_normal((1, 2, 5, 5), dtype=np.float32))
    w = upload(ctx, rng.standard_normal((2, 2, 3, 3), dtype=np.float32))
    with pytest.raises(paskdnn.InvalidArgumentError, match="x is not HIP device memory"):
        paskdnn.conv2d(x, w, context=ctx)
    with pytest.raises(TypeError, match="GPU arrays"):
        paskdnn.conv2d(np.zeros((1, 2, 5, 5), np.float32), w, context=ctx)


# ---- MIOpen convolution ----------------------------------------------------------------


def test_miopen_conv_call_sequence_workspace_and_result(double, cache):
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen"])
    x = rng.standard_normal((2, 3, 9, 9), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    xd, wd = upload(ctx, x), upload(ctx, w)
    double.clear()
    y = paskdnn.conv2d(xd, wd, stride=2, padding=1, context=ctx)
    assert paskdnn.last_solver() == "conv2d.miopen"
    ref = conv2d_ref(x, w, stride=2, padding=1)
    assert_within_bound(y.numpy(), ref, conv2d_bound(x, w, stride=2, padding=1), what="miopen conv")

    log = double.log()
    seq = [n for n in names(log) if n.startswith("miopen") and "Destroy" not in n]
    first = {n: seq.index(n) for n in reversed(seq)}
    order = ["miopenSet4dTensorDescriptorEx", "miopenInitConvolutionDescriptor",
             "miopenConvolutionForwardGetSolutionCount", "miopenConvolutionForwardGetSolution",
             "miopenConvolutionForwardCompileSolution", "miopenConvolutionForwardGetSolutionWorkspaceSize",
             "miopenConvolutionForwardImmediate"]
    assert [first[n] for n in order] == sorted(first[n] for n in order), seq
    # descriptors: x, w, y in NCHW strides
    descs = [line for line in log if line.startswith("miopenSet4dTensorDescriptorEx")]
    assert [field(d, "dims") for d in descs[:3]] == ["2x3x9x9", "4x3x3x3", "2x4x5x5"]
    assert field(descs[0], "strides") == "243,81,9,1"
    init = [line for line in log if line.startswith("miopenInitConvolutionDescriptor")][0]
    assert field(init, "pad") == "1,1" and field(init, "stride") == "2,2" and field(init, "dil") == "1,1"
    # MIOpen's first-ranked solution (85) is compiled, then run with its workspace
    (compile_,) = double.calls("miopenConvolutionForwardCompileSolution")
    assert field(compile_, "sol") == "85"
    (wsq,) = double.calls("miopenConvolutionForwardGetSolutionWorkspaceSize")
    ws = int(field(wsq, "ws"))
    assert ws == 3 * 3 * 3 * 5 * 5 * 4
    (imm,) = double.calls("miopenConvolutionForwardImmediate")
    assert field(imm, "sol") == "85" and int(field(imm, "ws")) == ws and field(imm, "compiled") == "1"
    (alloc,) = [line for line in double.calls("hipMallocAsync") if int(field(line, "bytes")) == ws]
    assert field(imm, "wsptr") == field(alloc, "ptr")
    frees = [field(line, "ptr") for line in double.calls("hipFreeAsync")]
    assert field(alloc, "ptr") in frees  # the workspace is given back after the call
    assert names(log).index("hipFreeAsync") > names(log).index("miopenConvolutionForwardImmediate")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_miopen_conv_epilogue_groups_dilation_match_reference(double, cache, dtype):
    ctx = hip_context(double, cache, solvers=["conv2d.miopen"])
    x = rng.standard_normal((1, 4, 11, 10), dtype=np.float32)
    w = rng.standard_normal((6, 2, 3, 3), dtype=np.float32)
    b = rng.standard_normal(6, dtype=np.float32)
    r = rng.standard_normal((1, 6, 5, 4), dtype=np.float32)
    if dtype == "float16":  # the reference sees the values the device holds
        x, w, b, r = (a.astype(np.float16).astype(np.float32) for a in (x, w, b, r))
    kw = dict(stride=2, padding=1, dilation=2, groups=2)
    y = paskdnn.conv2d(upload(ctx, x, dtype), upload(ctx, w, dtype), upload(ctx, b, dtype),
                       residual=upload(ctx, r, dtype), activation="relu6", context=ctx, **kw)
    ref = conv2d_ref(x, w, b, residual=r, activation="relu6", **kw)
    bound = conv2d_bound(x, w, b, residual=r, **kw)
    assert_within_bound(y.numpy().astype(np.float32), ref, bound, rtol=1e-5 if dtype == "float32" else 2e-3,
                        atol=1e-5 if dtype == "float32" else 2e-3, what=f"miopen conv {dtype}")
    log = double.log()
    assert field(double.calls("miopenSetConvolutionGroupCount")[0], "groups") == "2"
    assert double.calls("miopenConvolutionForwardBias") and double.calls("miopenOpTensor")
    act = double.calls("miopenSetActivationDescriptor")[0]
    assert field(act, "mode") == "7" and float(field(act, "alpha")) == 6.0  # clipped ReLU at 6
    epi = [n for n in names(log) if n in ("miopenConvolutionForwardImmediate", "miopenConvolutionForwardBias",
                                          "miopenOpTensor", "miopenActivationForward")]
    assert epi == ["miopenConvolutionForwardImmediate", "miopenConvolutionForwardBias", "miopenOpTensor",
                   "miopenActivationForward"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_miopen_conv_sigmoid_is_its_logistic_activation(double, cache, dtype):
    ctx = hip_context(double, cache, solvers=["conv2d.miopen"])
    x = rng.standard_normal((1, 4, 9, 8), dtype=np.float32)
    w = rng.standard_normal((6, 4, 3, 3), dtype=np.float32)
    b = rng.standard_normal(6, dtype=np.float32)
    if dtype == "float16":
        x, w, b = (a.astype(np.float16).astype(np.float32) for a in (x, w, b))
    y = paskdnn.conv2d(upload(ctx, x, dtype), upload(ctx, w, dtype), upload(ctx, b, dtype), padding=1,
                       activation="sigmoid", context=ctx)
    assert paskdnn.last_solver() == "conv2d.miopen"
    ref = conv2d_ref(x, w, b, padding=1, activation="sigmoid")
    assert_within_bound(y.numpy().astype(np.float32), ref, conv2d_bound(x, w, b, padding=1),
                        rtol=1e-5 if dtype == "float32" else 2e-3, atol=1e-5 if dtype == "float32" else 2e-3)
    act = double.calls("miopenSetActivationDescriptor")[0]
    assert field(act, "mode") == "1"  # miopenActivationLOGISTIC


@pytest.mark.parametrize("activation", ["silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh"])
def test_miopen_is_not_applicable_to_activations_it_lacks(double, cache, activation):
    """MIOpen's activation descriptor has no silu, hardswish, hardsigmoid or gelu:
    the MIOpen conv solvers decline (another solver would run), no descriptor is made."""
    ctx = hip_context(double, cache, solvers=["conv2d.miopen", "conv2d.miopen_alt"])
    x = rng.standard_normal((1, 2, 6, 6), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    with pytest.raises(paskdnn.UnsupportedError):
        paskdnn.conv2d(upload(ctx, x), upload(ctx, w), padding=1, activation=activation, context=ctx)
    assert not double.calls("miopenSetActivationDescriptor")
    assert not double.calls("miopenConvolutionForwardImmediate")


def test_failing_compile_solution_falls_back_to_the_next_solution(double, cache):
    double.set("fail_compile", "85")
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen", "conv2d.miopen_alt"])
    x = rng.standard_normal((1, 2, 6, 6), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    y = paskdnn.conv2d(upload(ctx, x), upload(ctx, w), padding=1, context=ctx)
    assert paskdnn.last_solver() == "conv2d.miopen_alt"
    assert_within_bound(y.numpy(), conv2d_ref(x, w, padding=1), conv2d_bound(x, w, padding=1))
    compiles = double.calls("miopenConvolutionForwardCompileSolution")
    assert [field(c, "sol") for c in compiles] == ["85", "26"]
    assert compiles[0].endswith("-> failed") or "-> failed" in compiles[0]
    (imm,) = double.calls("miopenConvolutionForwardImmediate")
    assert field(imm, "sol") == "26" and field(imm, "ws") == "0"
    assert ctx.stats()["load_failures"] == 1
    # the failed key stays bad: the next call goes straight to the alternative
    double.clear()
    paskdnn.conv2d(upload(ctx, x), upload(ctx, w), padding=1, context=ctx)
    assert double.calls("miopenConvolutionForwardCompileSolution") == []
    assert paskdnn.last_solver() == "conv2d.miopen_alt"


def test_every_solution_failing_is_a_load_error_naming_miopen(double, cache):
    double.set("fail_compile", "85,26")
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen", "conv2d.miopen_alt"])
    x, w = upload(ctx, np.ones((1, 2, 6, 6), np.float32)), upload(ctx, np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(paskdnn.LoadError, match="miopenConvolutionForwardCompileSolution failed"):
        paskdnn.conv2d(x, w, context=ctx)


def test_no_solution_listed_is_a_load_error(double, cache):
    double.set("no_solutions", 1)
    ctx = hip_context(double, cache, solvers=["conv2d.miopen"])
    x, w = upload(ctx, np.ones((1, 2, 6, 6), np.float32)), upload(ctx, np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(paskdnn.LoadError, match="MIOpen has no convolution solution"):
        paskdnn.conv2d(x, w, context=ctx)


def test_workspace_out_of_memory_moves_to_a_solution_without_workspace(double, cache):
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen", "conv2d.miopen_alt"])
    x = rng.standard_normal((1, 2, 8, 8), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    xd, wd = upload(ctx, x), upload(ctx, w)
    double.set("malloc_limit", 1000)  # solution 85 wants 2*3*3*6*6*4 = 2592 bytes
    y = paskdnn.conv2d(xd, wd, context=ctx)
    assert paskdnn.last_solver() == "conv2d.miopen_alt"
    assert_within_bound(y.numpy(), conv2d_ref(x, w), conv2d_bound(x, w))
    assert any("out of memory" in line for line in double.calls("hipMalloc"))
    assert [field(c, "sol") for c in double.calls("miopenConvolutionForwardImmediate")] == ["26"]


def test_missing_miopen_leaves_miopen_out_with_its_reason(double, cache, tmp_path):
    missing = str(tmp_path / "no-libMIOpen.so")
    ctx = hip_context(double, cache, miopen=missing, solvers=["conv2d.miopen"])
    x, w = upload(ctx, np.ones((1, 2, 6, 6), np.float32)), upload(ctx, np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(paskdnn.LoadError, match="miopen: MIOpen .* could not be loaded"):
        paskdnn.conv2d(x, w, context=ctx)
    # with every solver allowed, paskdnn's own HIP kernel is the candidate instead
    ctx2 = hip_context(double, cache, miopen=missing)
    double.clear()
    with pytest.raises(paskdnn.InternalError, match="hipModuleLaunchKernel failed.*test double"):
        paskdnn.conv2d(x, w, context=ctx2)
    assert double.calls("hipModuleLaunchKernel")[0].startswith("hipModuleLaunchKernel name=pask_conv2d_igemm")
    assert not [n for n in names(double.log()) if n.startswith("miopen")]


def test_old_miopen_is_refused_with_its_version(double, cache, tmp_path):
    # a copy of the double is a separate library instance (paskdnn keeps each
    # loaded MIOpen for the process), told to report version 1.2
    old = tmp_path / "libMIOpen-old.so"
    shutil.copy(double.path, old)
    lib = ctypes.CDLL(str(old))
    lib.double_set.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.double_set(b"miopen_major", b"1")
    ctx = hip_context(double, cache, miopen=str(old), solvers=["pool2d.miopen"])
    x = upload(ctx, np.ones((1, 2, 6, 6), np.float32))
    with pytest.raises(paskdnn.LoadError) as e:
        paskdnn.max_pool2d(x, 2, context=ctx)
    assert f"{old} ({old}) is MIOpen 1.2.0; MIOpen 2.0 or newer is required (its immediate-mode convolution API)" \
        in str(e.value)


# ---- the PaSK setting: CompileSolution on loader threads, in hint order ---------------


def test_hints_drive_compile_solution_in_order_on_loader_threads(double, cache):
    double.set("compile_ms", 20)
    ctx = hip_context(double, cache, policy="pask", loader_threads=1, solvers=["conv2d.miopen"])
    shapes = [((1, 3, 10, 10), (4, 3, 3, 3)), ((1, 4, 8, 8), (8, 4, 3, 3)), ((1, 8, 6, 6), (5, 8, 1, 1))]
    tensors = [(upload(ctx, rng.standard_normal(xs, dtype=np.float32)),
                upload(ctx, rng.standard_normal(ws, dtype=np.float32))) for xs, ws in shapes]
    double.clear()
    for xs, ws in shapes:
        ctx.hint("conv2d", xs, ws)
    assert ctx.wait_loads(timeout=30)
    compiles = double.calls("miopenConvolutionForwardCompileSolution")
    assert [field(c, "x") for c in compiles] == ["1x3x10x10", "1x4x8x8", "1x8x6x6"]
    main_tid = None
    for x, w in tensors:
        paskdnn.conv2d(x, w, context=ctx)
    imms = double.calls("miopenConvolutionForwardImmediate")
    assert [field(i, "compiled") for i in imms] == ["1", "1", "1"]
    main_tid = {field(i, "tid") for i in imms}
    assert len(main_tid) == 1 and not main_tid & {field(c, "tid") for c in compiles}  # built off the caller's thread
    # the builds ran before the calls, which found them resident: no compile on the call path
    assert names(double.log()).count("miopenConvolutionForwardCompileSolution") == 3
    st = ctx.stats()
    assert st["resident_hits"] == 3 and st["blocking_loads"] == 0 and st["prefetches"] == 3


def test_device_events_time_the_miopen_call_and_are_read_later(double, cache):
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen"])
    x = upload(ctx, rng.standard_normal((1, 3, 7, 7), dtype=np.float32))
    w = upload(ctx, rng.standard_normal((2, 3, 3, 3), dtype=np.float32))
    double.clear()
    paskdnn.conv2d(x, w, context=ctx)  # the first run of a (solver, Problem) is a warm-up: not timed
    seq = [n for n in names(double.log()) if n in ("hipEventRecord", "miopenConvolutionForwardImmediate")]
    assert seq == ["miopenConvolutionForwardImmediate"]
    double.clear()
    paskdnn.conv2d(x, w, context=ctx)
    seq = [n for n in names(double.log()) if n in ("hipEventRecord", "miopenConvolutionForwardImmediate")]
    assert seq == ["hipEventRecord", "miopenConvolutionForwardImmediate", "hipEventRecord"]
    assert double.calls("hipEventElapsedTime") == []  # not waited for on the call path
    paskdnn.conv2d(x, w, context=ctx)  # the next call polls the finished timing
    assert len(double.calls("hipEventElapsedTime")) == 1


def test_the_callers_stream_carries_the_miopen_work_and_its_workspace(double, cache):
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen"])
    x = upload(ctx, rng.standard_normal((1, 3, 7, 7), dtype=np.float32))
    w = upload(ctx, rng.standard_normal((2, 3, 3, 3), dtype=np.float32))
    double.clear()
    y = paskdnn.conv2d(x, w, context=ctx, stream=0x5EED)
    stream = hex(0x5EED)
    assert {field(line, "stream") for line in double.calls("miopenSetStream")} == {stream}
    assert field(double.calls("miopenConvolutionForwardImmediate")[0], "stream") == stream
    assert [field(line, "stream") for line in double.calls("hipMallocAsync") + double.calls("hipFreeAsync")] == \
        [stream, stream]
    y.numpy()  # the copy back waits for this thread's stream first
    assert field(double.calls("hipStreamSynchronize")[-1], "stream") == stream


def test_a_stream_set_for_a_closed_context_never_reaches_a_new_one(double, cache):
    """Per-thread streams are filed under a backend's unique id, not its
    address: a new HIP backend that lands where a closed one stood (the
    allocator hands the same block back) starts on the default stream, never
    on the stream a caller set for the closed one."""
    import threading

    from paskdnn import _lib

    ffi = _lib.load()[0]
    seen = []  # per context: (stream its op ran on, stream the next context's first copy waited for)
    addresses = []  # each context's handle: its backend is made and freed with it

    def body():
        for i in range(32):
            ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen"])
            double.clear()
            x = upload(ctx, rng.standard_normal((1, 3, 5, 5), dtype=np.float32))  # the copy syncs this thread's stream
            first_sync = field(double.calls("hipStreamSynchronize")[0], "stream")
            w = upload(ctx, rng.standard_normal((2, 3, 3, 3), dtype=np.float32))
            stream = 0x5EED0 + 16 * i  # a stream of this context's own, made current for this thread
            paskdnn.conv2d(x, w, context=ctx, stream=stream)
            assert field(double.calls("miopenConvolutionForwardImmediate")[-1], "stream") == hex(stream)
            seen.append((hex(stream), first_sync))
            addresses.append(int(ffi.cast("uintptr_t", ctx._h())))
            del x, w
            ctx.close()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert len(seen) == 32
    default = seen[0][1]  # the first context on this thread: nothing set yet
    assert default not in {s for s, _ in seen}
    # every later context (several at an address an earlier one had) starts on the default stream
    assert [first for _, first in seen] == [default] * 32
    # ... and the case under test happened: the allocator handed a closed context's block to a later one
    if len(set(addresses)) == len(addresses):
        if "libasan" in os.environ.get("LD_PRELOAD", ""):
            pytest.skip("ASan's quarantine never hands a freed block back: no recycled address to check")
        pytest.fail("no context landed where a closed one stood: the case under test did not happen")


def test_compiled_solution_is_reused_not_compiled_again(double, cache):
    ctx = hip_context(double, cache, policy="reactive", solvers=["conv2d.miopen"])
    x = upload(ctx, rng.standard_normal((1, 3, 7, 7), dtype=np.float32))
    w = upload(ctx, rng.standard_normal((2, 3, 3, 3), dtype=np.float32))
    paskdnn.conv2d(x, w, context=ctx)
    paskdnn.conv2d(x, w, context=ctx)
    assert len(double.calls("miopenConvolutionForwardCompileSolution")) == 1
    assert len(double.calls("miopenConvolutionForwardImmediate")) == 2
    assert ctx.stats()["resident_hits"] == 1


def test_miopen_handle_is_prepared_on_a_loader_thread(double, cache):
    ctx = hip_context(double, cache, policy="pask")
    assert ctx.wait_loads(timeout=10)
    creates = double.calls("miopenCreate")
    assert len(creates) == 1
    x = upload(ctx, np.ones((1, 2, 4, 4), np.float32))
    paskdnn.max_pool2d(x, 2, context=ctx)
    caller = field(double.calls("miopenPoolingForward")[0], "tid")
    assert field(creates[0], "tid") != caller


# ---- MIOpen pooling -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["max", "avg_exclusive", "avg_inclusive"])
def test_miopen_pooling_matches_reference(double, cache, mode):
    ctx = hip_context(double, cache, solvers=["pool2d.miopen"])
    x = rng.standard_normal((2, 3, 9, 8), dtype=np.float32)
    xd = upload(ctx, x)
    if mode == "max":
        y, ref = paskdnn.max_pool2d(xd, 3, stride=2, padding=1, context=ctx), max_pool2d_ref(x, 3, 2, 1)
    else:
        inc = mode == "avg_inclusive"
        y = paskdnn.avg_pool2d(xd, 3, stride=2, padding=1, count_include_pad=inc, context=ctx)
        ref = avg_pool2d_ref(x, 3, 2, 1, count_include_pad=inc)
    assert paskdnn.last_solver() == "pool2d.miopen"
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6, atol=1e-6)
    (desc,) = double.calls("miopenSet2dPoolingDescriptor")
    assert field(desc, "mode") == {"max": "0", "avg_exclusive": "1", "avg_inclusive": "2"}[mode]
    assert field(desc, "k") == "3,3" and field(desc, "pad") == "1,1" and field(desc, "stride") == "2,2"
    (fwd,) = double.calls("miopenPoolingForward")
    assert field(fwd, "backward") == "0" and field(fwd, "ws") == "0"


def test_ceil_mode_pooling_is_not_offered_to_miopen(double, cache):
    ctx = hip_context(double, cache, solvers=["pool2d.miopen"])
    x = upload(ctx, np.ones((1, 1, 6, 6), np.float32))
    with pytest.raises(paskdnn.UnsupportedError):
        paskdnn.max_pool2d(x, 3, stride=2, ceil_mode=True, context=ctx)


# ---- paskdnn's own kernels on HIP: hiprtc compile, user cache, load ---------------------


def test_native_hip_kernel_compiles_into_the_user_cache_and_loads_from_it(double, cache):
    ctx = hip_context(double, cache, solvers=["conv2d.hip_igemm"])
    ctx.hint("conv2d", (1, 8, 8, 8), (16, 8, 3, 3), padding=1)
    assert ctx.wait_loads(timeout=30)
    st = ctx.stats()
    assert st["compiles"] == 1 and st["loads"] == 1 and st["load_failures"] == 0
    (rtc,) = double.calls("hiprtcCompileProgram")
    assert "name=conv_igemm.hip" in rtc
    opts = rtc.split("options=", 1)[1]
    for o in ("--offload-arch=gfx90a", "-DPASK_HIP=1", "-DPASK_DTYPE=0", "-std=c++17"):
        assert o in opts
    entries = list((Path(cache) / "kernels").glob("*.bin"))
    assert len(entries) == 1
    assert b"PASKDOUBLE-CO1" in entries[0].read_bytes()
    assert any(line.startswith("hipModuleGetFunction name=pask_conv2d_igemm") for line in double.log())

    # a fresh context finds the code object in the cache: no compile
    double.clear()
    ctx2 = hip_context(double, cache, solvers=["conv2d.hip_igemm"])
    ctx2.hint("conv2d", (1, 8, 8, 8), (16, 8, 3, 3), padding=1)
    assert ctx2.wait_loads(timeout=30)
    st2 = ctx2.stats()
    assert st2["compiles"] == 0 and st2["cache_hits"] == 1 and st2["loads"] == 1
    assert double.calls("hiprtcCompileProgram") == []

    # another gfx target is another key: compiled again, a second cache entry
    double.set("arch", "gfx942:sramecc+:xnack-")
    ctx3 = hip_context(double, cache, solvers=["conv2d.hip_igemm"])
    ctx3.hint("conv2d", (1, 8, 8, 8), (16, 8, 3, 3), padding=1)
    assert ctx3.wait_loads(timeout=30)
    assert ctx3.stats()["compiles"] == 1
    assert "--offload-arch=gfx942" in double.calls("hiprtcCompileProgram")[0]
    assert len(list((Path(cache) / "kernels").glob("*.bin"))) == 2


def test_native_hip_launch_uses_the_64_kb_lds_tile(double, cache):
    ctx = hip_context(double, cache, solvers=["gemm.hip"])
    a = upload(ctx, np.ones((512, 256), np.float32))
    b = upload(ctx, np.ones((256, 512), np.float32))
    with pytest.raises(paskdnn.InternalError, match="hipModuleLaunchKernel"):
        paskdnn.matmul(a, b, context=ctx)
    (launch,) = double.calls("hipModuleLaunchKernel")
    assert field(launch, "block") == "128,1,1" and int(field(launch, "shared")) <= 65536


def test_hiprtc_failure_is_a_load_error_with_the_compiler_log(double, cache):
    double.set("hiprtc_fail", "expected ';' (told to fail)")
    ctx = hip_context(double, cache, solvers=["pool2d.hip_direct"])
    x = upload(ctx, np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(paskdnn.LoadError, match=r"(?s)hiprtc failed to compile pool\.hip.*told to fail"):
        paskdnn.max_pool2d(x, 2, context=ctx)


def test_without_hiprtc_native_hip_solvers_are_not_candidates(double, cache, tmp_path):
    ctx = hip_context(double, cache, hiprtc=str(tmp_path / "no-libhiprtc.so"), miopen=False)
    x = upload(ctx, np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(paskdnn.LoadError, match="cannot compile"):
        paskdnn.max_pool2d(x, 2, context=ctx)


def _real_hiprtc():
    """A hiprtc library of this machine (ROCm's libhiprtc, or a libamdhip64 that
    carries hiprtc, as ROCm 5.2's does), or None. hiprtc needs no GPU."""
    names = [os.environ.get("PASKDNN_TEST_HIPRTC", ""), "libhiprtc.so.6", "libhiprtc.so.5", "libhiprtc.so",
             "libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so"]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "hiprtcCompileProgram"):
            return name
    return None


@pytest.mark.skipif(_real_hiprtc() is None, reason="no hiprtc library on this machine (CI installs one with hipcc)")
def test_real_hiprtc_compiles_the_kernel_sources_through_the_hip_backend(double, cache):
    """ROCm's own hiprtc (no GPU needed to compile) builds paskdnn's embedded
    kernel sources with the backend's options; the double's runtime loads the
    AMDGPU ELF and finds the entry points."""
    ctx = hip_context(double, cache, hiprtc=_real_hiprtc(), miopen=False,
                      solvers=["pool2d.hip_direct", "conv2d.hip_igemm"])
    ctx.hint("max_pool2d", (1, 8, 8, 8), 2)
    ctx.hint("conv2d", paskdnn.TensorSpec((1, 8, 8, 8), "float16"), paskdnn.TensorSpec((8, 8, 3, 3), "float16"),
             padding=1)
    assert ctx.wait_loads(timeout=300)
    st = ctx.stats()
    assert st["load_failures"] == 0 and st["compiles"] == 2 and st["loads"] == 2, st
    loads = double.calls("hipModuleLoadData")
    assert len(loads) == 2 and all("elf machine=224" in line for line in loads)
    found = {field(line, "name") for line in double.calls("hipModuleGetFunction")}
    assert found == {"pask_pool2d", "pask_conv2d_igemm"}


# ---- Python: ROCm DLPack, env vars, device discovery -----------------------------------


def test_rocm_dlpack_arrays_are_accepted(double, cache):
    ctx = hip_context(double, cache, solvers=["pool2d.miopen"])
    x = rng.standard_normal((1, 2, 6, 6), dtype=np.float32)
    inner = upload(ctx, x)

    class RocmTensor:  # DLPack only (device type 10), like a ROCm framework's tensor
        def __dlpack__(self, stream=None):
            return inner.__dlpack__()

        def __dlpack_device__(self):
            return inner.__dlpack_device__()

    y = paskdnn.max_pool2d(RocmTensor(), 2, context=ctx)
    np.testing.assert_allclose(y.numpy(), max_pool2d_ref(x, 2), rtol=0, atol=0)


def test_env_vars_select_the_libraries_and_device_count(double_path, tmp_path):
    env = dict(os.environ, PASKDNN_HIP=double_path, PASKDNN_HIPRTC=double_path, PASKDNN_MIOPEN=double_path,
               PASKDNN_CACHE_DIR=str(tmp_path))
    code = ("import sys\n"
            "sys.modules['hip'] = None  # hip-python, if installed, would ask the real runtime\n"
            "import numpy as np, paskdnn\n"
            "ctx = paskdnn.Context(device='hip', solvers=['pool2d.miopen'])\n"
            "x = paskdnn.asarray(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), context=ctx)\n"
            "print(paskdnn.device_count('hip'), paskdnn.max_pool2d(x, 2, context=ctx).numpy().ravel().tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 [5.0, 7.0, 13.0, 15.0]"


def test_device_count_asks_hip_python_when_it_is_installed(monkeypatch):
    """hip-python's module layout (`from hip import hip`; hipGetDeviceCount()
    returns (hipError_t, count)), stood in for by a fake module."""
    import enum
    import types

    class hipError_t(enum.IntEnum):  # noqa: N801 - hip-python's name
        hipSuccess = 0
        hipErrorNoDevice = 100

    answers = {"value": (hipError_t.hipSuccess, 3)}
    inner = types.SimpleNamespace(hipError_t=hipError_t, hipGetDeviceCount=lambda: answers["value"])
    package = types.ModuleType("hip")
    package.hip = inner
    monkeypatch.setitem(sys.modules, "hip", package)
    assert paskdnn.device_count("hip") == 3
    answers["value"] = (hipError_t.hipErrorNoDevice, 0)
    assert paskdnn.device_count("hip") == 0


def test_threads_calling_miopen_while_loader_threads_compile(double, cache):
    """Callers on four threads share one HIP context while two loader threads
    compile hinted solutions (per-thread build handles, one execution handle)."""
    import threading

    double.set("compile_ms", 5)
    ctx = hip_context(double, cache, policy="pask", loader_threads=2,
                      solvers=["conv2d.miopen", "conv2d.miopen_alt", "pool2d.miopen"])
    shapes = [((1, 3, 9, 9), (4, 3, 3, 3)), ((1, 4, 8, 8), (6, 4, 3, 3)), ((2, 2, 7, 7), (3, 2, 1, 1)),
              ((1, 6, 6, 6), (6, 6, 3, 3))]
    data = [(rng.standard_normal(xs, dtype=np.float32), rng.standard_normal(ws, dtype=np.float32))
            for xs, ws in shapes]
    dev = [(upload(ctx, x), upload(ctx, w)) for x, w in data]
    for xs, ws in shapes:
        ctx.hint("conv2d", xs, ws, padding=1)
    errors = []

    def worker(seed):
        try:
            for i in range(6):
                j = (seed + i) % len(shapes)
                y = paskdnn.conv2d(*dev[j], padding=1, context=ctx).numpy()
                x, w = data[j]
                assert_within_bound(y, conv2d_ref(x, w, padding=1), conv2d_bound(x, w, padding=1))
                paskdnn.max_pool2d(dev[j][0], 2, context=ctx)
        except Exception as e:  # reported on the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # each Problem's solution was compiled once, however many threads wanted it
    compiled = [field(c, "x") + field(c, "w") for c in double.calls("miopenConvolutionForwardCompileSolution")]
    assert len(compiled) == len(set(compiled)) == len(shapes)


def test_pask_reuses_a_compiled_alternative_while_the_best_solution_compiles(double, cache):
    """The PaSK policy on MIOpen solutions: with the best solution known to take
    long to compile (load_costs.json), the first call compiles the second-ranked
    one, the best compiles on a loader thread, calls meanwhile reuse the
    alternative, and once the best is resident the calls move to it."""
    import json

    x_np = rng.standard_normal((1, 3, 8, 8), dtype=np.float32)
    w_np = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    for solver in ("conv2d.miopen", "conv2d.miopen_alt"):  # record both keys' load costs
        scratch = hip_context(double, cache, policy="reactive", solvers=[solver])
        paskdnn.conv2d(upload(scratch, x_np), upload(scratch, w_np), context=scratch)
        scratch.close()
    costs_path = Path(cache) / "load_costs.json"
    costs = json.loads(costs_path.read_text())
    keys = {("sol=0" in k): k for k in costs["load_ms"] if k.startswith("miopen/hip/conv2d")}
    costs["load_ms"][keys[True]] = 5000.0   # the best: slow to compile
    costs["load_ms"][keys[False]] = 0.5     # the alternative: quick
    costs_path.write_text(json.dumps(costs))

    double.set("compile_ms", 300)
    ctx = hip_context(double, cache, policy="pask", solvers=["conv2d.miopen", "conv2d.miopen_alt"])
    x, w = upload(ctx, x_np), upload(ctx, w_np)
    double.clear()
    paskdnn.conv2d(x, w, context=ctx)
    assert paskdnn.last_solver() == "conv2d.miopen_alt"  # quickest to a result
    y = paskdnn.conv2d(x, w, context=ctx)                 # the best is still compiling
    assert paskdnn.last_solver() == "conv2d.miopen_alt" and ctx.stats()["reuses"] >= 1
    assert_within_bound(y.numpy(), conv2d_ref(x_np, w_np), conv2d_bound(x_np, w_np))
    assert ctx.wait_loads(timeout=30)
    paskdnn.conv2d(x, w, context=ctx)
    assert paskdnn.last_solver() == "conv2d.miopen"
    compiled = [field(c, "sol") for c in double.calls("miopenConvolutionForwardCompileSolution")]
    assert sorted(compiled) == ["26", "85"]  # each compiled once
