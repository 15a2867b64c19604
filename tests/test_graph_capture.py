"""Graph capture through the C API (pask_stream_create, pask_graph_capture_begin /
_end, pask_graph_launch, pask_graph_destroy), checked without a GPU.

tests/doubles/cuda_cudnn_double.cpp stands in for libcuda and libcudnn: work
queued on a stream being captured is recorded, and each cuGraphLaunch runs the
recorded work again (logged with replay=1). With its "digest" switch on, every
cuDNN execution writes a digest of its inputs' first bytes into its output, so
a chain of calls has a result that depends on each call, their order and the
input data: a replay must give what the eager run gives. What a real GPU
computes under replay is untested here (no GPU in CI).

Each double test runs in a fresh Python process (the driver is loaded once per
process); the CPU refusal runs in this one.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import paskdnn
from paskdnn import _lib

HERE = Path(__file__).resolve().parent
CXX = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")

PRELUDE = textwrap.dedent("""
    import ctypes, json, os, sys
    import numpy as np
    import paskdnn
    from paskdnn import _lib
    ffi, lib = _lib.load()
    D = ctypes.CDLL(os.environ["PASKDNN_LIBCUDA"])
    D.double_log.restype = ctypes.c_char_p
    D.double_set.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    def knob(k, v): D.double_set(k.encode(), str(v).encode())
    def log(): return D.double_log().decode()
    def err(): return ffi.string(lib.pask_last_error_message()).decode()
    def status_name(s): return ffi.string(lib.pask_status_string(s)).decode()
    out = {}

    def ctx(**kw):
        kw.setdefault("cache_dir", os.environ["CACHE"])
        kw.setdefault("solvers", ["conv2d.cudnn"])
        return paskdnn.Context("cuda", cudnn=os.environ["PASKDNN_LIBCUDA"], **kw)

    def desc(shape, layout):
        d = ffi.new("pask_tensor_desc_t *")
        dims = ffi.new("int64_t[]", list(shape))
        assert lib.pask_tensor_desc_create(d, lib.PASK_DTYPE_FLOAT16, layout, len(shape), dims) == 0, err()
        return d[0]

    class Chain:
        # x -> conv1 -> y1 -> conv2 (+ bias) -> y2 -> conv3 (+ residual y1) -> y3: fp16 NHWC, three plans
        def __init__(self, c, seed=1):
            rng = np.random.default_rng(seed)
            dev = lambda shape: paskdnn.asarray(rng.standard_normal(shape).astype(np.float32), dtype="float16", context=c)
            self.c, self.h = c, c._h()
            self.x = dev((1, 8, 8, 16))
            self.w = [dev((16, 3, 3, 16)), dev((16, 1, 1, 16)), dev((16, 3, 3, 16))]
            self.b = dev((16,))
            self.y = [dev((1, 8, 8, 16)) for _ in range(3)]
            act = desc((1, 16, 8, 8), lib.PASK_LAYOUT_NHWC)
            w3, w1 = desc((16, 16, 3, 3), lib.PASK_LAYOUT_NHWC), desc((16, 16, 1, 1), lib.PASK_LAYOUT_NHWC)
            bias = desc((16,), lib.PASK_LAYOUT_ROW_MAJOR)
            NULL = ffi.NULL
            self.plans, self.args = [], []
            for i, (wd, bd, rd, pad) in enumerate([(w3, NULL, NULL, 1), (w1, bias, NULL, 0), (w3, NULL, act, 1)]):
                prm = ffi.new("pask_conv2d_params_t *")
                prm.stride = [1, 1]; prm.pad_pre = [pad, pad]; prm.pad_post = [pad, pad]
                prm.dilation = [1, 1]; prm.groups = 1
                plan = ffi.new("pask_plan_t *")
                assert lib.pask_plan_create_conv2d(plan, self.h, prm, NULL, act, wd, bd, rd, act) == 0, err()
                self.plans.append(plan[0])
                a = ffi.new("pask_plan_args_t *")
                a.x = (self.x if i == 0 else self.y[i - 1])._ptr
                a.w = self.w[i]._ptr
                a.bias = self.b._ptr if bd != NULL else NULL
                a.residual = self.y[0]._ptr if rd != NULL else NULL
                a.y = self.y[i]._ptr
                self.args.append(a)

        def run(self, stream):
            # the status of each execution, stopping at the first failure
            for p, a in zip(self.plans, self.args):
                s = lib.pask_plan_execute(p, a, stream)
                if s:
                    return s
            return 0

        def output(self, stream):
            # the first 8 bytes of y3 (after the stream's work), as an int
            assert lib.pask_set_stream(self.h, stream) == 0, err()
            buf = ffi.new("char[8]")
            assert lib.pask_memcpy(self.h, buf, self.y[2]._ptr, 8, lib.PASK_COPY_DEVICE_TO_HOST) == 0, err()
            return int.from_bytes(ffi.buffer(buf, 8), "little")

        def clear_output(self, stream):
            assert lib.pask_set_stream(self.h, stream) == 0, err()
            zero = ffi.new("char[8]")
            assert lib.pask_memcpy(self.h, self.y[2]._ptr, zero, 8, lib.PASK_COPY_HOST_TO_DEVICE) == 0, err()

        def set_input(self, stream, seed):
            data = np.random.default_rng(seed).standard_normal((1, 8, 8, 16)).astype(np.float16)
            assert lib.pask_set_stream(self.h, stream) == 0, err()
            assert lib.pask_memcpy(self.h, self.x._ptr, ffi.from_buffer(data), data.nbytes,
                                   lib.PASK_COPY_HOST_TO_DEVICE) == 0, err()

        def destroy(self):
            for p in self.plans:
                lib.pask_plan_destroy(p)

    def new_stream(h):
        s = ffi.new("void **")
        assert lib.pask_stream_create(h, s) == 0, err()
        return s[0]

    def since(mark):
        return log()[mark:].splitlines()

    def named(lines, name):
        return [ln for ln in lines if ln.split(" ", 1)[0] == name]
""")


@pytest.fixture(scope="session")
def double_path(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler to build the CUDA/cuDNN test double")
    out = tmp_path_factory.mktemp("cuda-double-graph") / "libcuda_cudnn_double.so"
    subprocess.run([CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(out),
                    str(HERE / "doubles" / "cuda_cudnn_double.cpp"), "-lpthread"], check=True)
    return str(out)


def run(double_path, tmp_path, body):
    """Runs PRELUDE + body in a fresh process on the double; returns the out dict."""
    script = PRELUDE + textwrap.dedent(body) + "\nprint('RESULT' + json.dumps(out))\n"
    env = dict(os.environ, PASKDNN_LIBCUDA=double_path, CACHE=str(tmp_path / "cache"), PASKDNN_NVRTC="/nonexistent")
    env.pop("PASKDNN_CUDNN", None)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def named(lines, name):
    return [ln for ln in lines if ln.split(" ", 1)[0] == name]


def without_thread(line):
    return re.sub(r" (thread|replay|ctx)=\S+", "", line)


def test_replay_runs_the_captured_calls_again_and_gives_the_eager_result(double_path, tmp_path):
    out = run(double_path, tmp_path, """
        knob("digest", 1)
        knob("ws_10", 4096)  # a workspace: allocated in the graph while capturing
        c = ctx(loader_threads=0)
        ch = Chain(c)
        s = new_stream(ch.h)
        assert ch.run(s) == 0, err()          # loads (builds the cuDNN plans)
        mark = len(log())
        ch.clear_output(s)
        assert ch.run(s) == 0, err()          # resident
        out["eager"] = ch.output(s)
        out["eager_log"] = since(mark)
        allocs_before = D.double_live_allocations()

        mark = len(log())
        assert lib.pask_graph_capture_begin(ch.h, s) == 0, err()
        assert ch.run(s) == 0, err()
        g = ffi.new("pask_graph_t *")
        assert lib.pask_graph_capture_end(ch.h, g) == 0, err()
        out["capture_log"] = since(mark)
        info = ffi.new("pask_graph_info_t *")
        assert lib.pask_graph_get_info(g[0], info) == 0, err()
        out["info"] = [info.calls, info.reuses, info.launches]

        ch.clear_output(s)
        mark = len(log())
        assert lib.pask_graph_launch(g[0], s) == 0, err()
        out["replay_log"] = since(mark)
        out["replayed"] = ch.output(s)
        # new input data: the replay reads it (the graph holds the buffers, not their contents)
        ch.set_input(s, 99)
        assert ch.run(s) == 0, err()
        out["eager2"] = ch.output(s)
        ch.clear_output(s)
        assert lib.pask_graph_launch(g[0], s) == 0, err()
        assert lib.pask_graph_launch(g[0], s) == 0, err()
        out["replayed2"] = ch.output(s)
        assert lib.pask_graph_get_info(g[0], info) == 0, err()
        out["launches"] = info.launches
        out["graphs_live"] = D.double_live_graphs()
        assert lib.pask_graph_destroy(g[0]) == 0, err()
        out["graphs_after"] = D.double_live_graphs()
        out["allocs"] = [allocs_before, D.double_live_allocations()]
        stats = c.stats()
        out["calls"] = stats["calls"]
        assert lib.pask_stream_destroy(ch.h, s) == 0, err()
        ch.destroy()
        c.close()
    """)
    eager = named(out["eager_log"], "cudnnBackendExecute")
    assert len(eager) == 3
    cap = out["capture_log"]
    # captured: recorded, not run; nothing loaded or built while capturing
    assert len([ln for ln in cap if ln.startswith("capture cudnnBackendExecute")]) == 3
    assert named(cap, "cudnnBackendExecute") == []
    assert not [ln for ln in cap if "finalize plan" in ln or "cuModuleLoadData" in ln or ln.startswith("unsafe")]
    assert any(ln.startswith("cuStreamBeginCapture") and "mode=1" in ln for ln in cap)  # thread-local mode
    assert len([ln for ln in cap if ln.startswith("capture cuMemAllocAsync bytes=4096")]) == 3
    assert out["info"] == [3, 0, 0]
    # the replay runs the same cuDNN plans on the same buffers, in the eager order
    replay = named(out["replay_log"], "cudnnBackendExecute")
    assert named(out["replay_log"], "cuGraphLaunch")
    assert [without_thread(r) for r in replay] == [without_thread(e) for e in eager]
    assert all("replay=1" in r for r in replay)
    # and computes what the eager calls compute, from the current input
    assert out["eager"] != 0 and out["replayed"] == out["eager"]
    assert out["eager2"] != out["eager"] and out["replayed2"] == out["eager2"]
    assert out["launches"] == 2 + 1
    # the graph's calls are not dispatched again: only the eager runs count as calls
    assert out["calls"] == 3 + 3 + 3 + 3
    assert out["graphs_live"] == 2 and out["graphs_after"] == 0  # the graph and its executable form
    assert out["allocs"][1] == out["allocs"][0]  # the graph's workspaces went with it


def test_capture_refuses_a_call_whose_kernel_is_not_resident(double_path, tmp_path):
    out = run(double_path, tmp_path, """
        c = ctx(loader_threads=0)
        ch = Chain(c)
        s = new_stream(ch.h)
        mark = len(log())
        assert lib.pask_graph_capture_begin(ch.h, s) == 0, err()
        st = ch.run(s)
        out["status"], out["message"] = status_name(st), err()
        out["log"] = since(mark)
        g = ffi.new("pask_graph_t *")
        g[0] = ffi.cast("pask_graph_t", 0x55)
        st = lib.pask_graph_capture_end(ch.h, g)
        out["end"], out["end_message"] = status_name(st), err()
        out["untouched"] = int(ffi.cast("uintptr_t", g[0]))
        out["graphs"] = D.double_live_graphs()
        # the stream is usable again: run eagerly (loads), then capture
        assert ch.run(s) == 0, err()
        assert lib.pask_graph_capture_begin(ch.h, s) == 0, err()
        assert ch.run(s) == 0, err()
        assert lib.pask_graph_capture_end(ch.h, g) == 0, err()
        assert lib.pask_graph_destroy(g[0]) == 0, err()
        out["graphs_end"] = D.double_live_graphs()
        lib.pask_stream_destroy(ch.h, s)
        ch.destroy()
        c.close()
    """)
    assert out["status"] == "PASK_ERROR_UNSUPPORTED", out["message"]
    assert "resident" in out["message"] and "ended and discarded" in out["message"]
    log = out["log"]
    # refused before any load: no plan built, no module loaded, nothing recorded, the capture ended
    assert not [ln for ln in log if "finalize plan" in ln or "heuristics" in ln or "cuModuleLoadData" in ln]
    assert not [ln for ln in log if ln.startswith(("capture ", "unsafe"))]
    assert [ln for ln in log if ln.startswith("cuStreamEndCapture")]
    assert [ln for ln in log if ln.startswith("cuGraphDestroy")]
    assert out["end"] == "PASK_ERROR_INVALID_ARGUMENT" and "no graph capture is in progress" in out["end_message"]
    assert out["untouched"] == 0x55
    assert out["graphs"] == 0 and out["graphs_end"] == 0


def test_capture_misuse_fails_cleanly(double_path, tmp_path):
    out = run(double_path, tmp_path, """
        c = ctx(loader_threads=0)
        ch = Chain(c)
        h = ch.h
        s, s2 = new_stream(h), new_stream(h)
        assert ch.run(s) == 0, err()
        g = ffi.new("pask_graph_t *")
        res = {}
        def note(name, st):
            res[name] = [status_name(st), err()]

        note("null_stream", lib.pask_graph_capture_begin(h, ffi.NULL))
        note("end_without_begin", lib.pask_graph_capture_end(h, g))
        # a second begin on the same thread; the first capture goes on
        assert lib.pask_graph_capture_begin(h, s) == 0, err()
        note("begin_twice", lib.pask_graph_capture_begin(h, s2))
        note("destroy_captured_stream", lib.pask_stream_destroy(h, s))
        assert ch.run(s) == 0, err()
        assert lib.pask_graph_capture_end(h, g) == 0, err()
        note("end_twice", lib.pask_graph_capture_end(h, g))
        good = g[0]
        # a call on another stream ends the capture
        assert lib.pask_graph_capture_begin(h, s) == 0, err()
        note("other_stream", lib.pask_plan_execute(ch.plans[0], ch.args[0], s2))
        note("end_after_other_stream", lib.pask_graph_capture_end(h, g))
        # synchronising calls end it too, before reaching the driver
        mark = len(log())
        for name, call in [("memcpy", lambda: lib.pask_memcpy(h, ch.y[1]._ptr, ch.y[0]._ptr, 8,
                                                              lib.PASK_COPY_DEVICE_TO_DEVICE)),
                           ("synchronize", lambda: lib.pask_synchronize(h)),
                           ("malloc", lambda: lib.pask_malloc(h, 64, ffi.new("void **")))]:
            assert lib.pask_set_stream(h, s) == 0, err()
            assert lib.pask_graph_capture_begin(h, s) == 0, err()
            note(name, call())
            note(name + "_end", lib.pask_graph_capture_end(h, g))
        res["unsafe_reached_driver"] = [ln for ln in since(mark) if ln.startswith("unsafe")]
        # an instantiation that fails: the capture is over, nothing is kept
        knob("instantiate_fail", 1)
        assert lib.pask_graph_capture_begin(h, s) == 0, err()
        assert ch.run(s) == 0, err()
        note("instantiate", lib.pask_graph_capture_end(h, g))
        knob("instantiate_fail", 0)
        note("begin_after_failed_end", lib.pask_graph_capture_begin(h, s))
        assert lib.pask_graph_capture_end(h, g) == 0, err()
        assert lib.pask_graph_destroy(g[0]) == 0, err()
        # handles after destroy
        assert lib.pask_graph_launch(good, s) == 0, err()
        assert lib.pask_graph_destroy(good) == 0, err()
        note("launch_after_destroy", lib.pask_graph_launch(good, s))
        note("info_after_destroy", lib.pask_graph_get_info(good, ffi.new("pask_graph_info_t *")))
        note("destroy_twice", lib.pask_graph_destroy(good))
        note("destroy_null", lib.pask_graph_destroy(ffi.NULL))
        note("launch_null", lib.pask_graph_launch(ffi.NULL, s))
        # destroying the thread's stream puts the thread back on the default stream
        assert lib.pask_set_stream(h, s2) == 0, err()
        assert lib.pask_stream_destroy(h, s2) == 0, err()
        mark = len(log())
        assert lib.pask_plan_execute(ch.plans[0], ch.args[0], ffi.NULL) == 0, err()
        res["stream_after_destroy"] = [ln.split("stream=")[1].split()[0]
                                       for ln in named(since(mark), "cudnnBackendExecute")]
        # a graph of a context that closes goes with it
        assert lib.pask_graph_capture_begin(h, s) == 0, err()
        assert ch.run(s) == 0, err()
        assert lib.pask_graph_capture_end(h, g) == 0, err()
        res["graphs_before_close"] = D.double_live_graphs()
        assert lib.pask_stream_destroy(h, s) == 0, err()
        ch.destroy()
        c.close()
        res["graphs_after_close"] = D.double_live_graphs()
        note("launch_after_close", lib.pask_graph_launch(g[0], ffi.NULL))
        out.update(res)
    """)
    inv = "PASK_ERROR_INVALID_ARGUMENT"
    assert out["null_stream"][0] == inv and "default stream" in out["null_stream"][1]
    assert out["end_without_begin"][0] == inv and "no graph capture is in progress" in out["end_without_begin"][1]
    assert out["begin_twice"][0] == inv and "already capturing" in out["begin_twice"][1]
    assert out["destroy_captured_stream"][0] == inv and "being captured" in out["destroy_captured_stream"][1]
    assert out["end_twice"][0] == inv
    assert out["other_stream"][0] == inv and "cannot be part of that graph" in out["other_stream"][1]
    assert "ended and discarded" in out["other_stream"][1]
    assert out["end_after_other_stream"][0] == inv
    for name in ("memcpy", "synchronize", "malloc"):
        assert out[name][0] == inv and f"pask_{name} cannot run while this thread captures" in out[name][1], out[name]
        assert out[name + "_end"][0] == inv
    assert out["unsafe_reached_driver"] == []
    assert out["instantiate"][0] == "PASK_ERROR_OUT_OF_MEMORY" and "cuGraphInstantiate" in out["instantiate"][1]
    assert out["begin_after_failed_end"] == ["PASK_SUCCESS", ""]
    for name in ("launch_after_destroy", "info_after_destroy", "destroy_twice", "launch_after_close"):
        assert out[name][0] == inv and "not a live graph" in out[name][1], (name, out[name])
    assert out["destroy_null"] == ["PASK_SUCCESS", ""]
    assert out["launch_null"][0] == "PASK_ERROR_NULL_POINTER"
    assert out["graphs_before_close"] == 2 and out["graphs_after_close"] == 0
    assert out["stream_after_destroy"] == ["(nil)"]


def test_capture_is_unsupported_on_the_cpu_with_a_message():
    ffi, lib = _lib.load()
    c = paskdnn.Context("cpu")
    try:
        s = ffi.new("void **")
        assert lib.pask_stream_create(c._h(), s) == lib.PASK_ERROR_UNSUPPORTED
        assert "cpu backend runs every call eagerly" in ffi.string(lib.pask_last_error_message()).decode()
        stream = ffi.cast("void *", 0x1234)
        assert lib.pask_graph_capture_begin(c._h(), stream) == lib.PASK_ERROR_UNSUPPORTED
        assert "graph capture needs a CUDA context" in ffi.string(lib.pask_last_error_message()).decode()
        g = ffi.new("pask_graph_t *")
        assert lib.pask_graph_capture_end(c._h(), g) == lib.PASK_ERROR_INVALID_ARGUMENT  # the refusal kept nothing
        assert g[0] == ffi.NULL
    finally:
        c.close()


def test_capture_with_stand_ins_while_the_best_kernels_build_then_stale(double_path, tmp_path):
    # cuDNN plans (the analytic best here) take a second to build on the loader
    # thread; paskdnn's prebuilt implicit GEMM serves meanwhile. A capture then
    # holds the stand-ins (reuses), the loader keeps building during it, and once
    # the plans land the graph reports itself stale; a new capture holds cuDNN.
    out = run(double_path, tmp_path, """
        knob("finalize_ms", 1000)
        c = ctx(loader_threads=1, policy="pask", solvers=["conv2d.cudnn", "conv2d.cuda_igemm"])
        ch = Chain(c)
        s = new_stream(ch.h)
        st = ch.run(s)
        if st:
            print("RESULT" + json.dumps({"skip": err()}))  # a libpaskdnn built without nvcc: no prebuilt kernels
            sys.exit(0)
        mark = len(log())
        assert ch.run(s) == 0, err()
        out["eager"] = [(ln.split("fn=")[1].split()[0], ln.split("grid=")[1].split()[0])
                        for ln in named(since(mark), "cuLaunchKernel")]
        g = ffi.new("pask_graph_t *")
        info = ffi.new("pask_graph_info_t *")
        mark = len(log())
        assert lib.pask_graph_capture_begin(ch.h, s) == 0, err()
        assert ch.run(s) == 0, err()
        out["solvers"] = ffi.string(lib.pask_last_solver()).decode()
        assert lib.pask_graph_capture_end(ch.h, g) == 0, err()
        out["captured"] = [ln for ln in since(mark) if ln.startswith("capture ")]
        assert lib.pask_graph_get_info(g[0], info) == 0, err()
        out["info_during_builds"] = [info.calls, info.reuses, info.stale]
        mark = len(log())
        assert lib.pask_graph_launch(g[0], s) == 0, err()
        out["replayed"] = [(ln.split("fn=")[1].split()[0], ln.split("grid=")[1].split()[0])
                           for ln in named(since(mark), "cuLaunchKernel")]
        assert c.wait_loads(30)
        assert lib.pask_graph_get_info(g[0], info) == 0, err()
        out["info_after_builds"] = [info.calls, info.reuses, info.stale]
        g2 = ffi.new("pask_graph_t *")
        assert lib.pask_graph_capture_begin(ch.h, s) == 0, err()
        assert ch.run(s) == 0, err()
        assert lib.pask_graph_capture_end(ch.h, g2) == 0, err()
        assert lib.pask_graph_get_info(g2[0], info) == 0, err()
        out["info_second"] = [info.calls, info.reuses, info.stale]
        mark = len(log())
        assert lib.pask_graph_launch(g2[0], s) == 0, err()
        out["second_replay"] = [ln.split(" ", 1)[0] for ln in since(mark)
                                if ln.startswith(("cuLaunchKernel", "cudnnBackendExecute"))]
        for x in (g, g2):
            lib.pask_graph_destroy(x[0])
        out["graphs"] = D.double_live_graphs()
        lib.pask_stream_destroy(ch.h, s)
        ch.destroy()
        c.close()
    """)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["solvers"] == "conv2d.cuda_igemm"
    assert out["captured"] and all(ln.startswith("capture cuLaunchKernel") for ln in out["captured"]), out["captured"]
    assert out["info_during_builds"] == [3, 3, 0]  # stand-ins, and the best not landed yet
    # the replay launches the kernels the eager run launched, with the same grids
    assert out["replayed"] == out["eager"] and out["replayed"]
    assert out["info_after_builds"] == [3, 3, 3]   # every captured call has a better kernel now
    assert out["info_second"] == [3, 0, 0]
    assert out["second_replay"] == ["cudnnBackendExecute"] * 3
    assert out["graphs"] == 0
