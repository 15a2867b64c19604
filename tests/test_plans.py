"""Python's prepared calls: one call spec per op call, C plans cached under
(spec key, context handle), plans that hold their context's handle, and plans
of a closed context that raise ValueError like every other use after close."""
import gc

import numpy as np
import pytest

import paskdnn
from paskdnn import _spec
from paskdnn import functional as Fn
from paskdnn import graph as G


def _conv_args():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    return x, w, b


def _entries(ctx):
    handle = ctx._handle
    return [k for k, h in Fn._EAGER if h == handle]


def test_the_plan_cache_key_names_the_context():
    x, w, b = _conv_args()
    one, two = paskdnn.Context(), paskdnn.Context()
    y1 = paskdnn.conv2d(x, w, b, padding=1, activation="relu", context=one)
    y2 = paskdnn.conv2d(x, w, b, padding=1, activation="relu", context=two)
    np.testing.assert_array_equal(y1, y2)
    assert len(_entries(one)) == 1 and len(_entries(two)) == 1
    assert _entries(one) == _entries(two)  # one spec key, two plans
    one.close()
    two.close()


def test_close_drops_the_contexts_plans_and_later_calls_raise_value_error():
    x, w, b = _conv_args()
    ctx = paskdnn.Context()
    paskdnn.conv2d(x, w, b, padding=1, context=ctx)
    assert _entries(ctx)
    handle = ctx._handle
    ctx.close()
    assert not [k for k, h in Fn._EAGER if h == handle]
    with pytest.raises(ValueError, match="closed"):
        paskdnn.conv2d(x, w, b, padding=1, context=ctx)
    with pytest.raises(ValueError, match="closed"):
        ctx.hint("conv2d", x, w, b, padding=1)


def test_a_collected_context_takes_its_plans_with_it():
    x, w, b = _conv_args()
    ctx = paskdnn.Context()
    paskdnn.conv2d(x, w, b, padding=2, context=ctx)
    handle = ctx._handle
    del ctx
    gc.collect()
    assert not [k for k, h in Fn._EAGER if h == handle]


def test_a_prepared_call_of_a_closed_context_raises_value_error_and_keeps_the_handle():
    """A plan holds its context's handle: the C context is not freed under it,
    so executing it after close (even with the Context gone) is a clear
    ValueError, never freed memory."""
    x, w, b = _conv_args()
    ctx = paskdnn.Context()
    y = np.empty((1, 4, 6, 6), np.float32)
    bound = Fn._prepare("conv2d", ctx, x, w, b, padding=1, out=y)
    bound()
    np.testing.assert_allclose(y, paskdnn.conv2d(x, w, b, padding=1), rtol=1e-5, atol=1e-5)
    ctx.close()
    del ctx
    gc.collect()
    with pytest.raises(ValueError, match="closed"):
        bound()


def _small_graph():
    rng = np.random.default_rng(5)
    nodes = [
        G.Node("c1", "conv2d", ["x"], "a", params=dict(padding=1, activation="relu"),
               weights={"weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                        "bias": rng.standard_normal(4).astype(np.float32)}),
        G.Node("p1", "max_pool2d", ["a"], "b", params=dict(kernel_size=2)),
        G.Node("gap", "adaptive_avg_pool2d", ["b"], "c", params=dict(output_size=1)),
        G.Node("fl", "flatten", ["c"], "d"),
        G.Node("fc", "linear", ["d"], "y", weights={"weight": rng.standard_normal((5, 4)).astype(np.float32)}),
    ]
    return G.Graph("small", "x", (3, 8, 8), nodes, "y")


def test_a_runner_of_a_closed_context_raises_value_error():
    g = _small_graph()
    ctx = paskdnn.Context()
    runner = G.Runner(g, ctx, batch=2)
    x = np.random.default_rng(0).standard_normal(runner.shapes["x"]).astype(np.float32)
    y = runner.run(x).copy()
    assert y.shape == (2, 5)
    a = paskdnn.conv2d(x, g.nodes[0].weights["weight"], g.nodes[0].weights["bias"], padding=1, activation="relu")
    c = paskdnn.adaptive_avg_pool2d(paskdnn.max_pool2d(a, 2), 1).reshape(2, 4)
    np.testing.assert_allclose(y, paskdnn.linear(c, g.nodes[4].weights["weight"]), rtol=1e-5, atol=1e-5)
    ctx.close()
    with pytest.raises(ValueError, match="closed"):
        runner.run(x)


def test_a_hint_makes_the_plan_the_call_then_uses():
    x, w, b = _conv_args()
    ctx = paskdnn.Context()
    ctx.hint("conv2d", x.shape, w.shape, True, padding=1, activation="relu6")
    assert len(_entries(ctx)) == 1
    paskdnn.conv2d(x, w, b, padding=1, activation="relu6", context=ctx)
    assert len(_entries(ctx)) == 1
    s = ctx.stats()
    assert s["hints"] == 1 and s["calls"] == 1
    ctx.close()


def test_one_spec_feeds_running_hinting_and_preparing():
    x, w, b = _conv_args()
    spec = _spec.conv2d_spec(x, w, b, padding=1, activation="relu")
    assert spec.key[0] == "conv2d" and spec.key[-1] == paskdnn._lib.C.PASK_DTYPE_FLOAT32
    ctx = paskdnn.Context()
    y = _spec.run(spec, ctx)
    _spec.hint(spec, ctx)
    out = np.empty_like(y)
    bound = _spec.prepare(_spec.conv2d_spec(x, w, b, padding=1, activation="relu", out=out), ctx)
    bound()
    # the first call may have run a resident stand-in while the best solver loaded
    # (pask policy), so the prepared run may sum in another order: a few ulps
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5)
    assert len(_entries(ctx)) == 1
    ctx.close()


def test_graph_shapes_come_from_the_c_library():
    node = G.Node("p", "max_pool2d", ["x"], "y", params=dict(kernel_size=3, stride=2, padding=1, ceil_mode=True))
    g = G.Graph("g", "x", (3, 9, 9), [node], "y")
    n, c, oh, ow = _spec.pool2d_output_dims((2, 3, 9, 9), _spec.MAX, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), True)
    assert G.infer_shapes(g, 2)["y"] == (n, c, oh, ow) == (2, 3, 5, 5)
    bad = G.Node("c", "conv2d", ["x"], "y", weights={"weight": np.zeros((4, 2, 3, 3), np.float32)})
    with pytest.raises(paskdnn.Error):  # 3 input channels, weight for 2: the C library's check
        G.infer_shapes(G.Graph("g", "x", (3, 9, 9), [bad], "y"), 1)


# ---- pask_plan_execute_sequence: a layer loop in one C call ----


def _chain(ctx, rng):
    """conv (bias, relu) -> max pool -> linear, each a Bound on its own output."""
    from reference import conv2d_bound, conv2d_ref, linear_ref, max_pool2d_ref
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    fw = rng.standard_normal((5, 64)).astype(np.float32)
    a = np.full((2, 4, 8, 8), np.nan, np.float32)
    p = np.full((2, 4, 4, 4), np.nan, np.float32)
    y = np.full((2, 5), np.nan, np.float32)
    calls = [Fn._prepare("conv2d", ctx, x, w, b, padding=1, activation="relu", out=a),
             Fn._prepare("max_pool2d", ctx, a, 2, out=p),
             Fn._prepare("linear", ctx, p.reshape(2, 64), fw, out=y)]
    a64 = conv2d_ref(x, w, b, padding=1, activation="relu")
    p64 = max_pool2d_ref(a64, 2)
    refs = dict(a=a64, p=p64, y=linear_ref(p64.reshape(2, 64), fw))
    return calls, dict(a=a, p=p, y=y), refs, conv2d_bound(x, w, b, padding=1)


def test_a_sequence_runs_its_calls_in_order_like_one_call_each():
    ctx = paskdnn.Context()
    calls, outs, refs, conv_bound = _chain(ctx, np.random.default_rng(11))
    seq = _spec.BoundSequence(calls)
    choices = seq.run(choices=True)
    assert seq.failed_at == 3 and len(choices) == 3
    ffi, lib = paskdnn._lib.load()
    got = [(ffi.string(s).decode(), ffi.string(d).decode()) for s, d in choices]
    assert [s.split(".")[0] for s, _ in got] == ["conv2d", "pool2d", "gemm"]
    assert all(d in ("resident", "load", "waited", "reuse") for _, d in got)
    # each output against the float64 reference of its own input (the chain's
    # errors stay within the bound of each op on what it was given)
    np.testing.assert_allclose(outs["a"], refs["a"], rtol=1e-4, atol=float(conv_bound.max()) * 1e-5 + 1e-5)
    from reference import linear_ref, max_pool2d_ref
    np.testing.assert_array_equal(outs["p"], max_pool2d_ref(outs["a"].astype(np.float64), 2).astype(np.float32))
    np.testing.assert_allclose(outs["y"], linear_ref(outs["p"].astype(np.float64).reshape(2, 64),
                                                     calls[2].keep[0][1]), rtol=1e-4, atol=1e-4)
    # a second run, the calls one by one, gives the same values (the first run
    # may have used a resident stand-in while the best kernel loaded: a few ulps)
    before = {k: v.copy() for k, v in outs.items()}
    for c in calls:
        c()
    for k in outs:
        np.testing.assert_allclose(outs[k], before[k], rtol=1e-5, atol=1e-5)
    assert ctx.stats()["calls"] == 6
    ctx.close()


def test_a_sequence_stops_at_the_failing_call_and_names_it():
    ctx, other = paskdnn.Context(), paskdnn.Context()
    calls, outs, _, _ = _chain(ctx, np.random.default_rng(12))
    late = Fn._prepare("max_pool2d", other, outs["a"], 2, out=np.full((2, 4, 4, 4), np.nan, np.float32))
    seq = _spec.BoundSequence([calls[0], late, calls[2]])
    other.close()
    with pytest.raises(ValueError, match=r"call 1 of 3: .*closed"):
        seq.run()
    assert seq.failed_at == 1
    assert not np.isnan(outs["a"]).any()  # the call before it ran
    assert np.isnan(outs["y"]).all()  # the call after it did not
    ctx.close()


def test_the_sequence_entry_point_checks_its_arguments():
    ffi, lib = paskdnn._lib.load()
    done = ffi.new("int64_t *", -1)
    assert lib.pask_plan_execute_sequence(ffi.NULL, ffi.NULL, 0, ffi.NULL, ffi.NULL, ffi.NULL, done) == 0
    assert done[0] == 0
    with pytest.raises(paskdnn.Error, match="count must be >= 0"):
        paskdnn._lib.check(lib.pask_plan_execute_sequence(ffi.NULL, ffi.NULL, -1, ffi.NULL, ffi.NULL, ffi.NULL, done))
    with pytest.raises(ValueError, match="plans"):
        paskdnn._lib.check(lib.pask_plan_execute_sequence(ffi.NULL, ffi.NULL, 2, ffi.NULL, ffi.NULL, ffi.NULL, done))
    ctx = paskdnn.Context()
    calls, outs, _, _ = _chain(ctx, np.random.default_rng(13))
    plans = ffi.new("const_pask_plan_t[]", [calls[0].plan, ffi.NULL])
    args = ffi.new("pask_plan_args_t *[]", [calls[0].args, calls[1].args])
    with pytest.raises(ValueError, match=r"call 1 of 2: plans\[i\]"):
        paskdnn._lib.check(lib.pask_plan_execute_sequence(plans, args, 2, ffi.NULL, ffi.NULL, ffi.NULL, done))
    assert done[0] == 1 and not np.isnan(outs["a"]).any()
    ctx.close()


def test_a_runner_error_names_the_layer():
    g = _small_graph()
    ctx = paskdnn.Context()
    runner = G.Runner(g, ctx, batch=2)
    x = np.random.default_rng(1).standard_normal(runner.shapes["x"]).astype(np.float32)
    runner.run(x)
    ctx.close()
    for record in (True, False):
        with pytest.raises(ValueError, match=r"closed.*\(layer 'c1', conv2d\)"):
            runner.run(x, record=record)


def test_a_prepared_call_on_its_remembered_decision_follows_new_inputs_and_evictions():
    """After a plan's first executions its decision is remembered (the resident
    best), and later executions run on it: each still computes from its own
    inputs (checked against a float64 reference), and once that kernel is
    evicted from the resident set (capacity 1, another op's kernel loaded) the
    next execution loads it again instead of running on what it remembers."""
    rng = np.random.default_rng(11)
    ctx = paskdnn.Context(num_threads=1, resident_capacity=1, loader_threads=0, policy="reactive")
    w = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    for _ in range(12):  # the untimed and timed runs first, then the remembered decision
        a = rng.standard_normal((3, 5)).astype(np.float32)
        y = paskdnn.linear(a, w, b, context=ctx)
        np.testing.assert_allclose(y, a.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=1e-5, atol=1e-5)
    assert paskdnn.last_decision() == "resident"
    before = ctx.stats()
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    paskdnn.max_pool2d(x, 2, context=ctx)  # another object's kernel: the gemm kernel is evicted
    a = rng.standard_normal((3, 5)).astype(np.float32)
    y = paskdnn.linear(a, w, b, context=ctx)
    np.testing.assert_allclose(y, a.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=1e-5, atol=1e-5)
    after = ctx.stats()
    assert after["evictions"] >= before["evictions"] + 2  # the gemm's kernel, then the pool's
    assert after["blocking_loads"] == before["blocking_loads"] + 2
    assert paskdnn.last_decision() == "load"
    ctx.close()
