"""The cuDNN provider (src/providers/cudnn), against float64 references
computed by PyTorch on the CPU. Skipped where no GPU, torch or libcudnn.so.9
is found; run on the device machine (bench/device_run.sh)."""
import json
import os

import numpy as np
import pytest

import paskdnn

if paskdnn.device_count("cuda") == 0:  # the reason first: no GPU, before whether torch is installed
    pytest.skip("no CUDA device", allow_module_level=True)
torch = pytest.importorskip("torch", reason="the GPU tests compute their references with torch")
if not torch.cuda.is_available():
    pytest.skip("torch does not see the CUDA device (a CPU-only torch build?)", allow_module_level=True)
from gpu_reference import DTYPES, TOL, F, ref_conv, rel_err  # noqa: E402
from paskdnn._context import _find_cudnn  # noqa: E402

CUDNN = os.environ.get("PASKDNN_CUDNN") or _find_cudnn()
if not CUDNN:
    pytest.skip("libcudnn.so.9 not found (nvidia-cudnn wheel or PASKDNN_CUDNN)", allow_module_level=True)

rng = np.random.default_rng(20261128)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("paskdnn-cudnn-cache"))


def only(cache, *solvers, **kw):
    return paskdnn.Context("cuda", cache_dir=cache, solvers=list(solvers), **kw)


def rand(shape, dtype):
    return torch.from_numpy(rng.uniform(-1, 1, size=shape).astype(np.float32)).to("cuda", DTYPES[dtype])


CONV_CASES = [
    # n, c, h, w, o, k, stride, pad ((t,b),(l,r)), dil, groups
    (1, 16, 14, 14, 32, 3, 1, ((1, 1), (1, 1)), 1, 1),
    (2, 8, 9, 11, 12, 3, 2, ((1, 0), (2, 1)), 1, 1),
    (1, 64, 8, 8, 64, 1, 1, ((0, 0), (0, 0)), 1, 1),
    (2, 3, 17, 17, 16, 7, 2, ((3, 3), (3, 3)), 1, 1),
    (1, 16, 10, 10, 16, 3, 1, ((2, 2), (2, 2)), 2, 1),
    (1, 16, 9, 9, 24, 3, 1, ((1, 1), (1, 1)), 1, 4),
    (2, 32, 15, 13, 32, 3, 2, ((1, 1), (1, 1)), 1, 32),
]
EPILOGUES = [  # bias, residual, activation
    (False, False, None),
    (True, False, "relu"),
    (True, True, "relu"),
    (False, True, "relu6"),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("epi", EPILOGUES)
def test_cudnn_conv_matches_the_float64_reference(cache, dtype, layout, case, epi):
    n, c, h, w_, o, k, s, pad, dil, g = case
    has_bias, has_res, act = epi
    ctx = only(cache, "conv2d.cudnn", "conv2d.cuda_igemm", "conv2d.cuda_depthwise")
    x = rand((n, c, h, w_) if layout == "NCHW" else (n, h, w_, c), dtype)
    w = rand((o, c // g, k, k), dtype)
    b = rand((o,), dtype) if has_bias else None
    y0 = paskdnn.conv2d(x, w, b, s, pad, dil, g, layout=layout, context=ctx)  # output shape for the residual
    r = rand(tuple(y0.shape), dtype) if has_res else None
    y = paskdnn.conv2d(x, w, b, s, pad, dil, g, layout=layout, residual=r, activation=act or "none", context=ctx)
    solver = paskdnn.last_solver()
    torch.cuda.synchronize()
    ref = ref_conv(x, w, b, s, pad, dil, g, layout, r, act)
    assert tuple(y.shape) == tuple(ref.shape)
    assert rel_err(y, ref) < TOL[dtype], solver
    ctx.close()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_epilogue_runs_on_cudnn_itself(cache, dtype, layout):
    """With only conv2d.cudnn allowed, each fused pattern either runs on cuDNN
    or fails with a clear load error naming cuDNN; never a wrong result."""
    ctx = only(cache, "conv2d.cudnn")
    x = rand((2, 24, 12, 12) if layout == "NCHW" else (2, 12, 12, 24), dtype)
    w = rand((40, 24, 3, 3), dtype)
    b = rand((40,), dtype)
    r = rand((2, 40, 12, 12) if layout == "NCHW" else (2, 12, 12, 40), dtype)
    ran = []
    for has_bias, has_res, act in EPILOGUES:
        try:
            y = paskdnn.conv2d(x, w, b if has_bias else None, 1, 1, layout=layout, residual=r if has_res else None,
                               activation=act or "none", context=ctx)
        except paskdnn.Error as e:
            assert "cuDNN" in str(e), str(e)
            continue
        torch.cuda.synchronize()
        assert paskdnn.last_solver() == "conv2d.cudnn"
        ref = ref_conv(x, w, b if has_bias else None, 1, ((1, 1), (1, 1)), 1, 1, layout, r if has_res else None, act)
        assert rel_err(y, ref) < TOL[dtype]
        ran.append((has_bias, has_res, act))
    assert (False, False, None) in ran  # plain convolution always has a precompiled engine
    ctx.close()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_runtime_compiled_fusion_engine(cache, dtype):
    ctx = only(cache, "conv2d.cudnn_rtc", "conv2d.cuda_igemm")
    x, w, b = rand((1, 12, 12, 32), dtype), rand((64, 3, 3, 32), dtype), rand((64,), dtype)
    r = rand((1, 12, 12, 64), dtype)
    y = paskdnn.conv2d(x, w, b, 1, 1, layout="NHWC", weight_layout="OHWI", residual=r, activation="relu", context=ctx)
    torch.cuda.synchronize()
    ref = ref_conv(x, w.permute(0, 3, 1, 2), b, 1, ((1, 1), (1, 1)), 1, 1, "NHWC", r, "relu")
    assert rel_err(y, ref) < TOL[dtype], paskdnn.last_solver()
    st = ctx.stats()
    assert st["loads"] >= 1 and st["load_failures"] <= 1
    ctx.close()


def test_alpha_other_than_one_goes_to_a_native_kernel(cache):
    ctx = only(cache, "conv2d.cudnn", "conv2d.cuda_igemm")
    x, w = rand((1, 16, 8, 8), "float16"), rand((16, 16, 3, 3), "float16")
    y = paskdnn.conv2d(x, w, None, 1, 1, alpha=0.5, context=ctx)
    torch.cuda.synchronize()
    assert paskdnn.last_solver() == "conv2d.cuda_igemm"
    assert rel_err(y, 0.5 * ref_conv(x, w, None, 1, ((1, 1), (1, 1)), 1, 1, "NCHW")) < TOL["float16"]
    only_cudnn = only(cache, "conv2d.cudnn")
    with pytest.raises(paskdnn.Error, match="alpha"):
        paskdnn.conv2d(x, w, None, 1, 1, alpha=0.5, context=only_cudnn)
    ctx.close()
    only_cudnn.close()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("m, n, k", [(1, 1000, 2048), (32, 64, 48), (128, 256, 64), (64, 72, 40)])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True)])
def test_cudnn_gemm(cache, dtype, m, n, k, trans):
    ctx = only(cache, "gemm.cudnn", "gemm.cuda_tc")
    ta, tb = trans
    a = rand((k, m) if ta else (m, k), dtype)
    b = rand((n, k) if tb else (k, n), dtype)
    bias = rand((n,), dtype)
    y = paskdnn.gemm(a, b, trans_a=ta, trans_b=tb, bias=bias, activation="relu", context=ctx)
    torch.cuda.synchronize()
    ad, bd = a.to("cpu", torch.float64), b.to("cpu", torch.float64)
    ref = ((ad.T if ta else ad) @ (bd.T if tb else bd) + bias.to("cpu", torch.float64)).clamp_min(0)
    assert rel_err(y, ref) < TOL[dtype], paskdnn.last_solver()
    ctx.close()


POOL_CASES = [  # kind, kernel, stride, padding, ceil, count_include_pad
    ("max", 3, 2, 1, False, True),
    ("max", 2, 2, 0, False, True),
    ("avg", 3, 2, 1, False, True),
    ("avg", 3, 2, 1, False, False),
    ("avg", 7, 1, 0, False, True),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_cudnn_pooling(cache, dtype, layout, case):
    ctx = only(cache, "pool2d.cudnn")
    kind, k, s, p, ceil, cip = case
    x = rand((2, 8, 11, 13) if layout == "NCHW" else (2, 11, 13, 8), dtype)
    if kind == "max":
        y = paskdnn.max_pool2d(x, k, s, p, 1, ceil, layout=layout, context=ctx)
    else:
        y = paskdnn.avg_pool2d(x, k, s, p, ceil, cip, layout=layout, context=ctx)
    torch.cuda.synchronize()
    assert paskdnn.last_solver() == "pool2d.cudnn"
    xd = x.to("cpu", torch.float64)
    if layout == "NHWC":
        xd = xd.permute(0, 3, 1, 2)
    ref = F.max_pool2d(xd, k, s, p, 1, ceil) if kind == "max" else F.avg_pool2d(xd, k, s, p, ceil, cip)
    if layout == "NHWC":
        ref = ref.permute(0, 2, 3, 1)
    assert rel_err(y, ref) < TOL[dtype] / 2
    ctx.close()


def test_pooling_cudnn_cannot_do_is_not_offered_to_it(cache):
    ctx = only(cache, "pool2d.cudnn", "pool2d.cuda_direct")
    x = rand((1, 8, 11, 11), "float16")
    paskdnn.max_pool2d(x, 3, 2, 1, 1, True, context=ctx)  # ceil mode changes the output size here
    assert paskdnn.last_solver() == "pool2d.cuda_direct"
    paskdnn.max_pool2d(x, 3, 1, 1, 2, context=ctx)  # dilation
    assert paskdnn.last_solver() == "pool2d.cuda_direct"
    ctx.close()


def test_plan_lands_and_the_layer_switches_from_native_to_cudnn(cache):
    """pask: a hinted layer runs at once on a native kernel while its cuDNN
    plan is built on a loader thread, then on cuDNN once the plan is resident."""
    ctx = paskdnn.Context("cuda", cache_dir=cache, policy="pask", loader_threads=2,
                          solvers=["conv2d.cudnn", "conv2d.cuda_igemm"])
    x, w, b = rand((1, 28, 28, 64), "float16"), rand((64, 3, 3, 64), "float16"), rand((64,), "float16")
    args = dict(bias=b, stride=1, padding=1, layout="NHWC", weight_layout="OHWI", activation="relu", context=ctx)
    ctx.hint("conv2d", x, w, **{k: v for k, v in args.items() if k != "context"})
    y = paskdnn.conv2d(x, w, **args)
    first = paskdnn.last_solver()
    assert first == "conv2d.cuda_igemm"  # nothing resident: the native kernel gives a result soonest
    assert ctx.wait_loads(120)
    before = ctx.stats()
    y2 = paskdnn.conv2d(x, w, **args)
    assert paskdnn.last_solver() == "conv2d.cudnn"
    after = ctx.stats()
    assert after["resident_hits"] == before["resident_hits"] + 1
    assert after["prefetches"] >= 1 and after["loads"] >= 2
    torch.cuda.synchronize()
    ref = ref_conv(x, w.permute(0, 3, 1, 2), b, 1, ((1, 1), (1, 1)), 1, 1, "NHWC", None, "relu")
    assert rel_err(y, ref) < TOL["float16"] and rel_err(y2, ref) < TOL["float16"]
    ctx.close()


def test_measured_device_times_pick_the_faster_solver(cache):
    """Both solvers run (native first, then cuDNN); after their timed runs the
    context keeps the one the device measured faster."""
    ctx = paskdnn.Context("cuda", cache_dir=cache, policy="pask", solvers=["conv2d.cudnn", "conv2d.cuda_igemm"])
    x, w = rand((8, 56, 56, 64), "float16"), rand((64, 3, 3, 64), "float16")
    args = dict(stride=1, padding=1, layout="NHWC", weight_layout="OHWI", context=ctx)
    seen = []
    for _ in range(30):
        paskdnn.conv2d(x, w, **args)
        seen.append(paskdnn.last_solver())
        ctx.wait_loads(60)
        torch.cuda.synchronize()
    assert len(set(seen[-5:])) == 1, seen  # settled
    ctx.close()


def test_out_of_memory_on_the_workspace_falls_back(cache, tmp_path):
    """Fill the device so cuDNN's workspace cannot be allocated: the call runs
    on a native kernel instead (no workspace), with a correct result."""
    ctx = only(cache, "conv2d.cudnn", "conv2d.cuda_igemm")
    x, w = rand((32, 64, 56, 56), "float16"), rand((64, 64, 7, 7), "float16")
    y = paskdnn.conv2d(x, w, None, 1, 3, context=ctx)  # plan resident (and pool warmed) before memory runs out
    torch.cuda.synchronize()
    hog = []
    try:
        while True:
            hog.append(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    except torch.cuda.OutOfMemoryError:
        pass
    try:
        while True:
            hog.append(torch.empty(8 << 20, dtype=torch.uint8, device="cuda"))
    except torch.cuda.OutOfMemoryError:
        pass
    try:
        y = paskdnn.conv2d(x, w, None, 1, 3, out=y, context=ctx)  # the output exists: only the workspace is new
        solver = paskdnn.last_solver()
        torch.cuda.synchronize()
    finally:
        hog.clear()
        torch.cuda.empty_cache()
    ref = ref_conv(x[:2], w, None, 1, ((3, 3), (3, 3)), 1, 1, "NCHW")
    assert rel_err(y[:2], ref) < TOL["float16"]
    ctx.export_trace(str(tmp_path / "t.json"))
    names = [e.get("name", "") for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"]]
    oom = any(n.startswith("out of memory: conv2d.cudnn") for n in names)
    # either cuDNN's plan needed no new memory, or its workspace failed and the native kernel ran
    assert (solver == "conv2d.cudnn" and not oom) or (solver == "conv2d.cuda_igemm" and oom), (solver, oom)
    print(f"out-of-memory test: ran on {solver}, workspace allocation failed: {oom}")
    ctx.close()


def test_missing_cudnn_leaves_the_native_solvers_working(cache, tmp_path):
    ctx = paskdnn.Context("cuda", cache_dir=cache, cudnn=str(tmp_path / "libcudnn-missing.so.9"))
    x, w = rand((1, 16, 8, 8), "float16"), rand((16, 16, 3, 3), "float16")
    paskdnn.conv2d(x, w, None, 1, 1, context=ctx)
    assert "cudnn" not in paskdnn.last_solver()
    ctx.close()
    with pytest.raises(paskdnn.Error, match="cuDNN|cudnn"):
        c2 = paskdnn.Context("cuda", cache_dir=cache, cudnn=str(tmp_path / "libcudnn-missing.so.9"),
                             solvers=["conv2d.cudnn"])
        paskdnn.conv2d(x, w, None, 1, 1, context=c2)


def test_trace_names_the_cudnn_handle_and_plan_builds(cache, tmp_path):
    ctx = paskdnn.Context("cuda", cache_dir=cache, policy="pask", solvers=["conv2d.cudnn", "conv2d.cuda_igemm"])
    x, w = rand((1, 16, 8, 8), "float16"), rand((16, 16, 3, 3), "float16")
    ctx.hint("conv2d", x, w, padding=1)
    ctx.wait_loads(120)
    paskdnn.conv2d(x, w, None, 1, 1, context=ctx)
    assert paskdnn.last_solver() == "conv2d.cudnn"
    path = tmp_path / "t.json"
    ctx.export_trace(str(path))
    names = [e.get("name", "") for e in json.loads(path.read_text())["traceEvents"]]
    assert "cuDNN handle" in names and any(n.startswith("load conv2d@") for n in names)
    ctx.close()


def test_exploration_times_the_next_configuration_and_keeps_the_fastest(cache, tmp_path):
    """A GPU context that reuses tries, once each, the candidates the analytic
    model puts within 2x of the fastest measured one (here cuDNN's first and
    second heuristic configurations and the native kernel), loading them in the
    background, and settles on the one the device timed fastest."""
    ctx = paskdnn.Context("cuda", cache_dir=cache, policy="pask", explore=True,
                          solvers=["conv2d.cudnn", "conv2d.cudnn_h1", "conv2d.cuda_igemm"])
    x, w = rand((8, 28, 28, 64), "float16"), rand((64, 3, 3, 64), "float16")
    args = dict(stride=1, padding=1, layout="NHWC", weight_layout="OHWI", context=ctx)
    seen = []
    for _ in range(30):
        y = paskdnn.conv2d(x, w, **args)
        seen.append(paskdnn.last_solver())
        ctx.wait_loads(60)
        torch.cuda.synchronize()
    assert {"conv2d.cudnn", "conv2d.cudnn_h1"} <= set(seen), seen
    assert len(set(seen[-5:])) == 1, seen
    ref = ref_conv(x, w.permute(0, 3, 1, 2), None, 1, ((1, 1), (1, 1)), 1, 1, "NHWC")
    assert rel_err(y, ref) < TOL["float16"]
    ctx.close()
