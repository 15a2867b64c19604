"""Property tests of paskdnn.gemm / linear / matmul against tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.control import currently_in_test_context, note as _note

import paskdnn
import reference as ref

GEMM_SOLVERS = sorted(s["name"] for s in paskdnn.solvers("gemm"))
GENERAL_SOLVERS = {"gemm.blocked"}
# largest M, N, K drawn for each solver; gemm.small is for tiny problems
MAX_DIM = {"gemm.small": 8}

ACTIVATIONS = [None, "relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "gelu_tanh"]


def note(msg):
    if currently_in_test_context():
        _note(msg)


@st.composite
def gemm_cases(draw, max_dim=48, epilogue=True):
    dim = st.integers(1, max_dim)
    case = dict(
        M=draw(dim), N=draw(dim), K=draw(dim),
        trans_a=draw(st.booleans()), trans_b=draw(st.booleans()),
        bias=False, activation=None, alpha=1.0, beta=0.0, use_c=False,
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    if epilogue:
        case.update(
            bias=draw(st.booleans()),
            activation=draw(st.sampled_from(ACTIVATIONS)),
            alpha=draw(st.sampled_from([1.0, 1.0, 0.5, -2.0, 3.0])),
            beta=draw(st.sampled_from([0.0, 0.0, 1.0, -0.5])),
        )
        case["use_c"] = case["beta"] != 0.0 or draw(st.booleans())
    return case


def check_gemm(case, context=None):
    note(repr(case))
    rng = np.random.default_rng(case["seed"])
    M, N, K = case["M"], case["N"], case["K"]
    a = ref.rand32(rng, (K, M) if case["trans_a"] else (M, K))
    b = ref.rand32(rng, (N, K) if case["trans_b"] else (K, N))
    bias = ref.rand32(rng, (N,)) if case["bias"] else None
    c0 = ref.rand32(rng, (M, N))
    kw = dict(alpha=case["alpha"], trans_a=case["trans_a"],
              trans_b=case["trans_b"], activation=case["activation"])
    if case["beta"] != 0.0:
        kw["beta"] = case["beta"]
    if bias is not None:
        kw["bias"] = bias
    if context is not None:
        kw["context"] = context
    a_keep, b_keep = a.copy(), b.copy()
    if case["use_c"]:
        c = c0.copy()
        y = paskdnn.gemm(a, b, c, **kw)
        assert y is c, "gemm(c=...) must return c itself"
    else:
        y = paskdnn.gemm(a, b, **kw)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32
    args = (a, b, c0, case["alpha"], case["beta"], case["trans_a"],
            case["trans_b"], bias)
    ref.assert_within_bound(y, ref.gemm_ref(*args, activation=case["activation"]),
                            ref.gemm_bound(*args), what=f"gemm {case}")
    np.testing.assert_array_equal(a, a_keep)
    np.testing.assert_array_equal(b, b_keep)


@given(gemm_cases())
def test_gemm_default_solver(case):
    check_gemm(case)
    assert paskdnn.last_solver() in GEMM_SOLVERS


@given(gemm_cases(max_dim=130, epilogue=False))
def test_gemm_plain_larger(case):
    check_gemm(case)


@pytest.mark.parametrize("solver", GEMM_SOLVERS)
@given(data=st.data())
def test_gemm_forced_solver(solver, data, make_context):
    case = data.draw(gemm_cases(max_dim=MAX_DIM.get(solver, 64)))
    ctx = make_context(solver)
    if solver in GENERAL_SOLVERS or solver in MAX_DIM:
        check_gemm(case, ctx)
    else:
        try:
            check_gemm(case, ctx)
        except paskdnn.UnsupportedError:
            return
    assert paskdnn.last_solver() == solver


def test_required_gemm_solvers_exist():
    assert "gemm.blocked" in GEMM_SOLVERS and "gemm.small" in GEMM_SOLVERS


@pytest.mark.parametrize("mnk", [(128, 256, 300), (257, 129, 65), (1, 1000, 512),
                                 (64, 1, 64), (33, 17, 1), (196, 64, 576)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True),
                                   (True, True)])
def test_gemm_fixed_shapes(mnk, ta, tb, make_context):
    M, N, K = mnk
    for solver in [None, "gemm.blocked"]:
        case = dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb, bias=True,
                    activation="relu", alpha=1.0, beta=0.0, use_c=False,
                    seed=M * N + K)
        check_gemm(case, None if solver is None else make_context(solver))
        if solver:
            assert paskdnn.last_solver() == solver


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_gemm_beta0_ignores_c_contents(fill):
    rng = np.random.default_rng(1)
    a, b = ref.rand32(rng, (5, 7)), ref.rand32(rng, (7, 3))
    c = np.full((5, 3), fill, np.float32)
    assert paskdnn.gemm(a, b, c) is c
    ref.assert_within_bound(c, ref.gemm_ref(a, b), ref.gemm_bound(a, b))


# ----------------------------------------------------------------- linear ---

@given(st.lists(st.integers(1, 4), max_size=3), st.integers(1, 40),
       st.integers(1, 40), st.booleans(), st.sampled_from(ACTIVATIONS),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_linear(lead, fin, fout, with_bias, act, use_out, seed):
    rng = np.random.default_rng(seed)
    x = ref.rand32(rng, tuple(lead) + (fin,))
    w = ref.rand32(rng, (fout, fin))
    b = ref.rand32(rng, (fout,)) if with_bias else None
    kw = dict(activation=act)
    if use_out:
        out = np.full(tuple(lead) + (fout,), np.nan, np.float32)
        kw["out"] = out
    y = paskdnn.linear(x, w, b, **kw)
    if use_out:
        assert y is out
    assert y.shape == tuple(lead) + (fout,)
    ref.assert_within_bound(y, ref.linear_ref(x, w, b, act), ref.linear_bound(x, w, b))
    assert paskdnn.last_solver() in GEMM_SOLVERS


@pytest.mark.parametrize("solver", GEMM_SOLVERS)
def test_linear_forced_solver(solver, make_context):
    rng = np.random.default_rng(2)
    n = MAX_DIM.get(solver, 40)
    x = ref.rand32(rng, (2, 3, n))
    w = ref.rand32(rng, (n - 1 if n > 1 else 1, n))
    b = ref.rand32(rng, (w.shape[0],))
    try:
        y = paskdnn.linear(x, w, b, activation="relu6", context=make_context(solver))
    except paskdnn.UnsupportedError:
        if solver in GENERAL_SOLVERS or solver in MAX_DIM:
            raise
        pytest.skip(f"{solver} declines this problem")
    ref.assert_within_bound(y, ref.linear_ref(x, w, b, "relu6"), ref.linear_bound(x, w, b))
    assert paskdnn.last_solver() == solver


# ----------------------------------------------------------------- matmul ---

@st.composite
def matmul_shapes(draw):
    m, k, n = (draw(st.integers(1, 12)) for _ in range(3))
    kind = draw(st.sampled_from(["1d1d", "1dNd", "Nd1d", "2d", "batched"]))
    if kind == "1d1d":
        return (k,), (k,)
    if kind == "2d":
        return (m, k), (k, n)
    batch = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    # broadcast: each batch dim of either side may be 1 or dropped
    ba, bb = [], []
    for d in batch:
        ba.append(draw(st.sampled_from([d, 1])))
        bb.append(draw(st.sampled_from([d, 1])))
    ba = ba[draw(st.integers(0, len(ba))):]
    bb = bb[draw(st.integers(0, len(bb))):]
    if kind == "1dNd":
        return (k,), tuple(bb) + (k, n)
    if kind == "Nd1d":
        return tuple(ba) + (m, k), (k,)
    return tuple(ba) + (m, k), tuple(bb) + (k, n)


@given(matmul_shapes(), st.booleans(), st.integers(0, 2**32 - 1))
def test_matmul(shapes, use_out, seed):
    sa, sb = shapes
    rng = np.random.default_rng(seed)
    a, b = ref.rand32(rng, sa), ref.rand32(rng, sb)
    want = ref.matmul_ref(a, b)
    note(f"{sa} @ {sb} -> {want.shape}")
    if use_out and want.ndim > 0:
        out = np.full(want.shape, np.nan, np.float32)
        y = paskdnn.matmul(a, b, out=out)
        assert y is out
    else:
        y = paskdnn.matmul(a, b)
    y = np.asarray(y)
    assert y.dtype == np.float32
    assert y.shape == want.shape
    ref.assert_within_bound(y, want, ref.matmul_bound(a, b))


def test_matmul_examples():
    rng = np.random.default_rng(3)
    for sa, sb in [((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((3, 2, 5), (5,)),
                   ((1, 1), (1, 1)), ((6,), (6,)), ((64, 70), (70, 33))]:
        a, b = ref.rand32(rng, sa), ref.rand32(rng, sb)
        y = np.asarray(paskdnn.matmul(a, b))
        ref.assert_within_bound(y, ref.matmul_ref(a, b), ref.matmul_bound(a, b),
                                what=f"{sa}@{sb}")


@pytest.mark.parametrize("solver", GEMM_SOLVERS)
def test_matmul_forced_solver(solver, make_context):
    rng = np.random.default_rng(4)
    n = MAX_DIM.get(solver, 24)
    a, b = ref.rand32(rng, (3, n, n)), ref.rand32(rng, (n, max(1, n - 2)))
    try:
        y = paskdnn.matmul(a, b, context=make_context(solver))
    except paskdnn.UnsupportedError:
        if solver in GENERAL_SOLVERS or solver in MAX_DIM:
            raise
        pytest.skip(f"{solver} declines this problem")
    ref.assert_within_bound(y, ref.matmul_ref(a, b), ref.matmul_bound(a, b))
    assert paskdnn.last_solver() == solver


@st.composite
def gemv_cases(draw):
    """One row of op(A) against a long, wide op(B) (a linear layer at batch 1):
    gemm.small's row-sequential GEMV path, K past its 4-vector unroll and tail."""
    case = draw(gemm_cases(max_dim=8))
    case.update(M=1, N=draw(st.integers(1, 300)), K=draw(st.integers(1, 300)))
    return case


@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])
@given(data=st.data())
def test_gemm_small_gemv(isa, data, make_context):
    case = data.draw(gemv_cases())
    try:
        ctx = make_context("gemm.small", cpu_isa=isa)
    except paskdnn.UnsupportedError:
        pytest.skip(f"no {isa} on this machine")
    check_gemm(case, ctx)
    assert paskdnn.last_solver() == "gemm.small"
