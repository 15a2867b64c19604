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
