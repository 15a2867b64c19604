"""graph.relayout and the CPU Runner's compute layout: an NCHW graph computes in
NHWC on the CPU by default (its fast kernels), taking its input and giving its
output in NCHW as before. Checked against float64 NumPy references written
here (tests/reference.py), for every node kind a graph has."""
import numpy as np
import pytest

import paskdnn
from paskdnn import graph as G
from paskdnn.graph import Graph, Node
from reference import (adaptive_avg_pool2d_ref, avg_pool2d_ref, conv2d_ref, linear_ref,
                       max_pool2d_ref)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def every_kind(rng, flatten_hw_ok=True):
    """An NCHW graph with a node of every kind: grouped, dilated and strided
    convolutions with bias, residual and activations; max (padded, ceil) and
    average pools; element-wise ops with a per-channel constant, a full-shape
    constant and a graph operand; a channel concat; a flatten of a 2x2 value
    into two linear layers. Returns the graph and a float64 forward pass."""
    c = 6
    p = {"w1": _rand(rng, c, 3, 3, 3), "b1": _rand(rng, c),
         "w2": _rand(rng, c, c // 2, 3, 3), "b2": _rand(rng, c),
         "w3": _rand(rng, c, c, 1, 1),
         "mul": _rand(rng, 1, c, 1, 1), "add": _rand(rng, 1, c, 8, 8),
         "w4": _rand(rng, 2 * c, 2 * c, 3, 3),
         "l1": _rand(rng, 7, 2 * c * 2 * 2), "lb1": _rand(rng, 7), "l2": _rand(rng, 5, 7)}
    conv = lambda **kw: dict(dict(stride=1, padding=0, dilation=1, groups=1, activation=None, layout="NCHW",
                                  weight_layout="OIHW"), **kw)
    nodes = [
        Node("c1", "conv2d", ["x"], "a", conv(stride=2, padding=1, activation="relu"), {"weight": p["w1"], "bias": p["b1"]}),
        Node("c2", "conv2d", ["a"], "b", conv(padding=2, dilation=2, groups=2, activation="silu"),
             {"weight": p["w2"], "bias": p["b2"]}),
        Node("c3", "conv2d", ["b", "a"], "r", conv(activation="relu6"), {"weight": p["w3"]}),
        Node("e1", "eltwise", ["r"], "e", {"activation": "sigmoid"}, {"mul": p["mul"], "add": p["add"]}),
        Node("e2", "eltwise", ["e", "b"], "m", {"activation": None, "roles": ["mul"]}, {}),
        Node("cat", "cat", ["m", "r"], "k", {}),
        Node("c4", "conv2d", ["k"], "q", conv(padding=1), {"weight": p["w4"]}),
        Node("mp", "max_pool2d", ["q"], "mp", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                              "layout": "NCHW"}),
        Node("ap", "avg_pool2d", ["mp"], "ap", {"kernel_size": 2, "stride": 1, "padding": 0, "layout": "NCHW"}),
        Node("gp", "adaptive_avg_pool2d", ["ap"], "gp", {"output_size": 2, "layout": "NCHW"}),
        Node("fl", "flatten", ["gp"], "f", {}),
        Node("fc1", "linear", ["f"], "h", {"activation": "relu"}, {"weight": p["l1"], "bias": p["lb1"]}),
        Node("fc2", "linear", ["h"], "y", {"activation": None}, {"weight": p["l2"]}),
    ]
    g = Graph("every_kind", "x", (3, 16, 16), nodes, "y")

    def forward(x):
        d = {k: v.astype(np.float64) for k, v in p.items()}
        a = conv2d_ref(x, d["w1"], d["b1"], stride=2, padding=1, activation="relu")
        b = conv2d_ref(a, d["w2"], d["b2"], padding=2, dilation=2, groups=2)
        b = b / (1 + np.exp(-b))  # silu
        r = np.clip(conv2d_ref(b, d["w3"]) + a, 0, 6)
        e = 1 / (1 + np.exp(-(r * d["mul"] + d["add"])))
        k = np.concatenate([e * b, r], axis=1)
        q = conv2d_ref(k, d["w4"], padding=1)
        mp = max_pool2d_ref(q, 3, 2, 1, ceil_mode=True)
        gp = adaptive_avg_pool2d_ref(avg_pool2d_ref(mp, 2, 1), 2)
        h = linear_ref(gp.reshape(gp.shape[0], -1), d["l1"], d["lb1"], activation="relu")
        return linear_ref(h, d["l2"])

    return g, forward


def test_every_node_kind_computes_the_same_in_nhwc_and_nchw(tmp_path):
    rng = np.random.default_rng(7)
    g, forward = every_kind(rng)
    before = {n.name: {k: v.copy() for k, v in n.weights.items()} for n in g.nodes}
    ctx = paskdnn.Context(cache_dir=str(tmp_path))
    auto, nchw, nhwc = G.Runner(g, ctx, batch=3), G.Runner(g, ctx, batch=3, layout="NCHW"), \
        G.Runner(g, ctx, batch=3, layout="NHWC")
    assert (auto.layout, nchw.layout, nhwc.layout) == ("NHWC", "NCHW", "NHWC")
    assert auto.input_shape == (3, 3, 16, 16) and auto.output_shape == (3, 5)
    for seed in (1, 2):  # a second input through the same buffers
        x = _rand(np.random.default_rng(seed), 3, 3, 16, 16)
        expect = forward(x.astype(np.float64))
        bound = 2e-5 * np.abs(expect).max() + 1e-6
        for r in (auto, nchw, nhwc):
            y = r.run(x)
            assert y.shape == expect.shape
            assert np.abs(y - expect).max() <= bound, r.layout
    # the caller's graph is untouched: its layout, weights and params
    assert g.layout == "NCHW" and g.nodes[0].params["weight_layout"] == "OIHW"
    for n in g.nodes:
        for k, v in n.weights.items():
            np.testing.assert_array_equal(v, before[n.name][k])


def test_a_relayout_runner_shares_no_memory_with_the_callers_weights(tmp_path):
    # The runner keeps the arrays relayout made for it without copying them
    # again; none of its weights may alias the caller's (a 1x1 conv's OIHW ->
    # OHWI transpose is C-contiguous as a view), so changing the caller's
    # arrays in place afterwards must not change its results.
    rng = np.random.default_rng(11)
    g, forward = every_kind(rng)
    ctx = paskdnn.Context(cache_dir=str(tmp_path))
    r = G.Runner(g, ctx, batch=2)
    assert r.layout == "NHWC"
    for n in g.nodes:
        for v in n.weights.values():
            for mine in (w for ws in r._weights for w in ws.values()):
                assert not np.shares_memory(v, mine)
    x = _rand(np.random.default_rng(5), 2, 3, 16, 16)
    expect = forward(x.astype(np.float64))
    for n in g.nodes:
        for v in n.weights.values():
            v *= -3.0
    y = r.run(x)
    assert np.abs(y - expect).max() <= 2e-5 * np.abs(expect).max() + 1e-6


def test_a_4d_output_comes_back_in_the_graphs_layout(tmp_path):
    rng = np.random.default_rng(3)
    w, b = _rand(rng, 4, 3, 3, 3), _rand(rng, 4)
    g = Graph("one_conv", "x", (3, 9, 11), [Node("c", "conv2d", ["x"], "y",
              {"stride": 1, "padding": 1, "activation": "relu", "layout": "NCHW", "weight_layout": "OIHW"},
              {"weight": w, "bias": b})], "y")
    ctx = paskdnn.Context(cache_dir=str(tmp_path))
    r = G.Runner(g, ctx, batch=2)
    x = _rand(rng, 2, 3, 9, 11)
    y = r.run(r.input(x))
    assert r.layout == "NHWC" and y.shape == (2, 4, 9, 11) == r.output_shape
    expect = conv2d_ref(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=1,
                        activation="relu")
    assert np.abs(y - expect).max() <= 1e-5 * np.abs(expect).max()


def test_an_nhwc_graph_computes_in_nchw_when_asked(tmp_path):
    rng = np.random.default_rng(5)
    g, forward = every_kind(rng)
    nhwc = G.relayout(g, "NHWC")
    assert nhwc.layout == "NHWC" and nhwc.input_shape == (16, 16, 3)
    assert G.relayout(nhwc, "NHWC") is nhwc
    back = G.Runner(nhwc, paskdnn.Context(cache_dir=str(tmp_path)), layout="NCHW")
    assert back.layout == "NCHW" and back.input_shape == (1, 16, 16, 3)
    x = _rand(rng, 1, 3, 16, 16)
    expect = forward(x.astype(np.float64))
    y = back.run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # the NHWC graph's input
    assert np.abs(y - expect).max() <= 2e-5 * np.abs(expect).max() + 1e-6


def test_a_flatten_read_by_other_than_linear_layers_keeps_the_graphs_layout(tmp_path):
    rng = np.random.default_rng(9)
    w = _rand(rng, 4, 3, 1, 1)
    nodes = [Node("c", "conv2d", ["x"], "a", {"layout": "NCHW", "weight_layout": "OIHW"}, {"weight": w}),
             Node("fl", "flatten", ["a"], "f", {}),
             Node("e", "eltwise", ["f"], "y", {"activation": "relu"}, {})]
    g = Graph("flat_eltwise", "x", (3, 2, 2), nodes, "y")
    assert G.relayout(g, "NHWC") is None
    ctx = paskdnn.Context(cache_dir=str(tmp_path))
    r = G.Runner(g, ctx)
    assert r.layout == "NCHW"  # the default falls back to the graph's own
    x = _rand(rng, 1, 3, 2, 2)
    expect = np.maximum(conv2d_ref(x.astype(np.float64), w.astype(np.float64)).reshape(1, -1), 0)
    assert np.abs(r.run(x) - expect).max() <= 1e-5 * np.abs(expect).max()
    with pytest.raises(ValueError, match="cannot compute in NHWC"):
        G.Runner(g, ctx, layout="NHWC")
    # a flatten of H*W > 1 as the graph's output: its order would change
    g2 = Graph("flat_out", "x", (3, 2, 2), nodes[:2], "f")
    assert G.relayout(g2, "NHWC") is None


def test_bad_layouts_and_inputs_are_refused(tmp_path):
    g, _ = every_kind(np.random.default_rng(1))
    ctx = paskdnn.Context(cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="layout"):
        G.Runner(g, ctx, layout="NCWH")
    with pytest.raises(ValueError, match="layout"):
        G.relayout(g, "nhwc")
    r = G.Runner(g, ctx)
    with pytest.raises(ValueError, match="shape"):
        r.run(np.ones((1, 16, 16, 3), np.float32))  # NHWC data for an NCHW graph
    with pytest.raises(ValueError, match="shape"):
        r.input(np.ones((1, 16, 16, 3), np.float32))


def test_shapes_of_a_concat_come_from_the_c_library_and_mismatches_are_refused():
    """graph.infer_shapes asks pask_cat_output_dims: channels add up in either
    layout, and inputs whose batch or spatial sizes differ are refused with
    the library's message before anything runs."""
    conv = dict(stride=1, padding=0, dilation=1, groups=1, activation=None, layout="NCHW", weight_layout="OIHW")
    w = lambda o, c, k: {"weight": np.ones((o, c, k, k), np.float32)}
    for pad, ok in ((1, True), (0, False)):
        nodes = [Node("a", "conv2d", ["x"], "a", dict(conv, padding=pad), w(4, 3, 3)),
                 Node("b", "conv2d", ["x"], "b", conv, w(5, 3, 1)),
                 Node("cat", "cat", ["a", "b"], "y", {})]
        g = Graph("cat", "x", (3, 6, 7), nodes, "y")
        for layout in ("NCHW", "NHWC"):
            shapes = lambda: G.infer_shapes(g if layout == "NCHW" else G.relayout(g, "NHWC"), 2)
            if ok:
                assert shapes()["y"] == ((2, 9, 6, 7) if layout == "NCHW" else (2, 6, 7, 9))
            else:
                with pytest.raises(paskdnn.ShapeMismatchError, match="N, H and W must agree"):
                    shapes()
