"""The HIP backend and MIOpen on a real AMD GPU, against the float64
references of tests/reference.py. Skipped unless a ROCm device is found (none
has been available to paskdnn's CI: these tests have never run; docs/amd.md).
The contract tests against the test double are in tests/test_hip.py."""
import numpy as np
import pytest

import paskdnn
from reference import (assert_within_bound, avg_pool2d_ref, conv2d_bound, conv2d_ref, gemm_bound, gemm_ref,
                       max_pool2d_ref)

if paskdnn.device_count("hip") == 0:
    pytest.skip("no ROCm (HIP) device", allow_module_level=True)

rng = np.random.default_rng(20261128)
# float32 runs as float32 FMAs (native kernels) or MIOpen's own float32 paths
TOL = {"float32": (1e-4, 1e-4), "float16": (4e-3, 4e-3)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("paskdnn-hip-cache"))


def ctx_for(cache, solver, **kw):
    return paskdnn.Context("hip", cache_dir=cache, solvers=[solver], **kw)


def hold(x, dtype):  # the values the device holds
    return x.astype(np.float16).astype(np.float32) if dtype == "float16" else x


CONV_CASES = [
    # n, c, h, w, o, k, stride, pad, dil, groups
    (1, 16, 14, 14, 32, 3, 1, 1, 1, 1),
    (2, 8, 9, 11, 12, 3, 2, 1, 1, 1),
    (1, 64, 8, 8, 64, 1, 1, 0, 1, 1),
    (2, 3, 17, 17, 16, 7, 2, 3, 1, 1),
    (1, 12, 10, 10, 12, 3, 1, 2, 2, 1),
    (1, 16, 9, 9, 24, 3, 1, 1, 1, 4),
    (1, 16, 9, 9, 16, 3, 1, 1, 1, 16),
]


@pytest.mark.parametrize("solver", ["conv2d.miopen", "conv2d.miopen_alt", "conv2d.hip_igemm"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_the_float64_reference(cache, solver, dtype, case):
    n, c, h, w, o, k, s, p, d, g = case
    ctx = ctx_for(cache, solver)
    x = hold(rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32), dtype)
    wt = hold(rng.uniform(-1, 1, (o, c // g, k, k)).astype(np.float32), dtype)
    b = hold(rng.uniform(-1, 1, o).astype(np.float32), dtype)
    kw = dict(stride=s, padding=p, dilation=d, groups=g)
    try:
        y = paskdnn.conv2d(paskdnn.asarray(x, dtype=dtype, context=ctx), paskdnn.asarray(wt, dtype=dtype, context=ctx),
                           paskdnn.asarray(b, dtype=dtype, context=ctx), activation="relu", context=ctx, **kw)
    except paskdnn.LoadError as e:
        if solver == "conv2d.miopen_alt" and "no solution #1" in str(e):
            pytest.skip("MIOpen lists one solution for this Problem")
        raise
    assert paskdnn.last_solver() == solver
    rtol, atol = TOL[dtype]
    assert_within_bound(y.numpy().astype(np.float32), conv2d_ref(x, wt, b, activation="relu", **kw),
                        conv2d_bound(x, wt, b, **kw), rtol=rtol, atol=atol, what=f"{solver} {dtype} {case}")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", [(64, 48, 32), (257, 129, 70), (1, 300, 100)])
def test_gemm_matches_the_float64_reference(cache, dtype, shape):
    m, n, k = shape
    ctx = ctx_for(cache, "gemm.hip")
    a = hold(rng.uniform(-1, 1, (m, k)).astype(np.float32), dtype)
    b = hold(rng.uniform(-1, 1, (k, n)).astype(np.float32), dtype)
    y = paskdnn.matmul(paskdnn.asarray(a, dtype=dtype, context=ctx), paskdnn.asarray(b, dtype=dtype, context=ctx),
                       context=ctx)
    rtol, atol = TOL[dtype]
    assert_within_bound(y.numpy().astype(np.float32), gemm_ref(a, b), gemm_bound(a, b), rtol=rtol, atol=atol)


@pytest.mark.parametrize("solver", ["pool2d.miopen", "pool2d.hip_direct"])
@pytest.mark.parametrize("mode", ["max", "avg", "avg_inclusive"])
def test_pooling_matches_the_float64_reference(cache, solver, mode):
    ctx = ctx_for(cache, solver)
    x = rng.uniform(-1, 1, (2, 8, 13, 12)).astype(np.float32)
    xd = paskdnn.asarray(x, context=ctx)
    if mode == "max":
        y, ref = paskdnn.max_pool2d(xd, 3, 2, 1, context=ctx), max_pool2d_ref(x, 3, 2, 1)
    else:
        inc = mode == "avg_inclusive"
        y = paskdnn.avg_pool2d(xd, 3, 2, 1, count_include_pad=inc, context=ctx)
        ref = avg_pool2d_ref(x, 3, 2, 1, count_include_pad=inc)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_global_average_pool_on_the_native_kernel(cache):
    ctx = ctx_for(cache, "pool2d.hip_global_avg")
    x = rng.uniform(-1, 1, (2, 40, 7, 7)).astype(np.float32)
    y = paskdnn.adaptive_avg_pool2d(paskdnn.asarray(x, context=ctx), 1, context=ctx)
    np.testing.assert_allclose(y.numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)


def test_hints_compile_miopen_solutions_ahead_of_the_calls(cache):
    ctx = paskdnn.Context("hip", cache_dir=cache, policy="pask", solvers=["conv2d.miopen"])
    shapes = [((1, 32, 28, 28), (64, 32, 3, 3)), ((1, 64, 14, 14), (64, 64, 3, 3))]
    for xs, ws in shapes:
        ctx.hint("conv2d", xs, ws, padding=1)
    assert ctx.wait_loads(timeout=600)
    for xs, ws in shapes:
        x = rng.uniform(-1, 1, xs).astype(np.float32)
        w = rng.uniform(-1, 1, ws).astype(np.float32)
        y = paskdnn.conv2d(paskdnn.asarray(x, context=ctx), paskdnn.asarray(w, context=ctx), padding=1, context=ctx)
        assert_within_bound(y.numpy(), conv2d_ref(x, w, padding=1), conv2d_bound(x, w, padding=1), rtol=1e-4,
                            atol=1e-4)
    st = ctx.stats()
    assert st["resident_hits"] == 2 and st["blocking_loads"] == 0
