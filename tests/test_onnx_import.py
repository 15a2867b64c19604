"""paskdnn.load_onnx: ONNX graphs written with onnx.helper, random weights and
inputs, run through graph.Runner and compared with onnx.reference's
ReferenceEvaluator (an independent implementation) or, for average pooling
with asymmetric pads, a float64 numpy reference of our own; the refusals; and
the ONNX package's own backend node cases for the mapped operators
(tools/onnx_node_cases.py, whose table is in docs/onnx.md)."""
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as H  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import paskdnn  # noqa: E402
from paskdnn import graph as G  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tools"))
import onnx_node_cases  # noqa: E402

LAYOUTS = ["NCHW", "NHWC"]
RTOL = 1e-4


@pytest.fixture(scope="module")
def ctx(make_context):
    return make_context()


def rng(seed=0):
    return np.random.default_rng(seed)


def const(name, a):
    return nh.from_array(np.asarray(a, np.float32), name)


def make(nodes, inits, x_shape, opset=17, y_shape=None, x="x", y="y"):
    g = H.make_graph(nodes, "t", [H.make_tensor_value_info(x, T.FLOAT, list(x_shape))],
                     [H.make_tensor_value_info(y, T.FLOAT, y_shape)], inits)
    return H.make_model(g, opset_imports=[H.make_opsetid("", opset)])


def run(m, x, layout, ctx, batch=None):
    g = paskdnn.load_onnx(m, layout=layout, batch=batch)
    assert isinstance(g, G.Graph)
    runner = G.Runner(g, ctx, batch=g.batch)
    return g.output_to_onnx(runner.run(g.input_from_onnx(x))), g


def reference(m, x):
    return ReferenceEvaluator(m).run(None, {"x": x})[0]


def close(y, ref):
    ref = np.asarray(ref, np.float64)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    scale = max(np.abs(ref).max(), 1e-6)
    err = np.abs(y.astype(np.float64) - ref).max()
    assert err <= RTOL * scale, f"max error {err} vs max |ref| {scale}"


def check(m, x, layout, ctx, batch=None):
    y, g = run(m, x, layout, ctx, batch)
    close(y, reference(m, x))
    return g


def data(shape, seed=1):
    return rng(seed).standard_normal(shape).astype(np.float32)


# ---- Conv ---------------------------------------------------------------------------

CONV_CASES = [
    dict(),
    dict(pads=[1, 1, 1, 1]),
    dict(pads=[0, 1, 2, 1], strides=[2, 1]),
    dict(strides=[2, 2], dilations=[2, 1], pads=[2, 1, 2, 1]),
    dict(group=2),
    dict(group=4, pads=[1, 1, 1, 1]),  # depthwise: 4 channels, 4 groups
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="SAME_UPPER", kernel=(2, 2)),
    dict(auto_pad="SAME_LOWER", kernel=(2, 2)),
    dict(auto_pad="VALID", strides=[1, 2]),
    dict(kernel_shape=True, bias=False),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_attributes(ctx, layout, case):
    attrs = dict(CONV_CASES[case])
    kh, kw = attrs.pop("kernel", (3, 3))
    bias = attrs.pop("bias", True)
    c, o, g = 4, 6 if attrs.get("group", 1) != 4 else 4, attrs.get("group", 1)
    r = rng(case)
    w = r.standard_normal((o, c // g, kh, kw)) * 0.3
    if attrs.pop("kernel_shape", False):
        attrs["kernel_shape"] = [kh, kw]
    inits = [const("w", w)] + ([const("b", r.standard_normal(o))] if bias else [])
    node = H.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], name="conv", **attrs)
    x = data((2, c, 9, 8), case)
    check(make([node], inits, x.shape), x, layout, ctx)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("act", ["relu", "clip6", "clip6_attr", "clip0"])
def test_conv_activation_is_fused(ctx, layout, act):
    r = rng(2)
    inits = [const("w", r.standard_normal((5, 3, 3, 3))), const("b", r.standard_normal(5))]
    nodes = [H.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    opset = 17
    if act == "relu":
        nodes.append(H.make_node("Relu", ["c"], ["y"], name="act"))
    elif act == "clip6":
        inits += [const("lo", np.float32(0)), const("hi", np.float32(6))]
        nodes.append(H.make_node("Clip", ["c", "lo", "hi"], ["y"], name="act"))
    elif act == "clip6_attr":  # opset 6: min and max are attributes
        nodes.append(H.make_node("Clip", ["c"], ["y"], min=0.0, max=6.0, name="act"))
        opset = 6
    else:  # Clip(0) with no max is a relu
        inits += [const("lo", np.float32(0))]
        nodes.append(H.make_node("Clip", ["c", "lo"], ["y"], name="act"))
    x = data((2, 3, 7, 7)) * 3
    g = check(make(nodes, inits, x.shape, opset=opset), x, layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d"]
    assert g.nodes[0].params["activation"] == ("relu6" if act.startswith("clip6") else "relu")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("conv_bias", [True, False])
def test_batch_norm_is_folded_into_the_conv(ctx, layout, conv_bias):
    r = rng(3)
    c = 6
    inits = [const("w", r.standard_normal((c, 3, 3, 3))), const("s", r.uniform(0.5, 1.5, c)),
             const("bb", r.standard_normal(c)), const("m", r.standard_normal(c)), const("v", r.uniform(0.5, 2, c))]
    if conv_bias:
        inits.append(const("b", r.standard_normal(c)))
    nodes = [H.make_node("Conv", ["x", "w"] + (["b"] if conv_bias else []), ["c"], name="conv"),
             H.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3, name="bn"),
             H.make_node("Relu", ["n"], ["y"], name="relu")]
    x = data((2, 3, 8, 8))
    g = check(make(nodes, inits, x.shape), x, layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d"]


# ---- residual add ------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("order", ["conv_first", "residual_first", "residual_computed_after"])
def test_residual_add_runs_as_the_conv_epilogue(ctx, layout, order):
    r = rng(4)
    c = 4
    inits = [const("w1", r.standard_normal((c, c, 3, 3)) * 0.3), const("w2", r.standard_normal((c, c, 1, 1)))]
    conv = H.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv")
    if order == "residual_computed_after":
        # the residual is a second conv that ONNX computes after the first (as torch exports ResNet's downsample)
        # and a pool between them keeps neither conv last
        nodes = [conv, H.make_node("Conv", ["x", "w2"], ["d"], name="down"),
                 H.make_node("Add", ["c", "d"], ["s"], name="add")]
        # make the first conv the only fusable one: the downsample is used twice
        nodes += [H.make_node("MaxPool", ["d"], ["p"], kernel_shape=[1, 1], name="pool"),
                  H.make_node("Relu", ["s"], ["r"], name="relu"),
                  H.make_node("Conv", ["p", "w2"], ["q"], name="conv3"),
                  H.make_node("Add", ["q", "r"], ["y"], name="add2")]
    else:
        args = ["c", "x"] if order == "conv_first" else ["x", "c"]
        nodes = [conv, H.make_node("Add", args, ["s"], name="add"), H.make_node("Relu", ["s"], ["y"], name="relu")]
    x = data((2, c, 6, 6))
    g = check(make(nodes, inits, x.shape), x, layout, ctx)
    assert all(n.op in ("conv2d", "max_pool2d") for n in g.nodes)
    assert any(len(n.inputs) == 2 for n in g.nodes)
    if order == "residual_computed_after":  # the conv moved after the residual's producer
        assert [n.name for n in g.nodes] == ["down", "conv", "pool", "conv3"]
        assert g.nodes[1].inputs == ["x", "d"] and g.nodes[1].params["activation"] == "relu"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(1, 5, 1, 1), (5, 1, 1), (1,)])
def test_a_constant_add_after_a_conv_is_its_bias(ctx, layout, shape):
    r = rng(5)
    inits = [const("w", r.standard_normal((5, 3, 3, 3))), const("k", r.standard_normal(shape))]
    nodes = [H.make_node("Conv", ["x", "w"], ["c"], name="conv"), H.make_node("Add", ["k", "c"], ["y"], name="add")]
    x = data((1, 3, 6, 6))
    g = check(make(nodes, inits, x.shape), x, layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d"]


# ---- pooling ------------------------------------------------------------------------

MAXPOOL_CASES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], pads=[1, 0, 0, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[2, 2], dilations=[2, 2]),
    dict(kernel_shape=[3, 3], dilations=[2, 1], pads=[2, 1, 2, 1], strides=[1, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"),
    dict(kernel_shape=[3, 3]),  # ONNX's strides default to 1, not to the kernel
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", range(len(MAXPOOL_CASES)))
def test_max_pool_attributes(ctx, layout, case):
    node = H.make_node("MaxPool", ["x"], ["y"], name="pool", **MAXPOOL_CASES[case])
    x = data((2, 3, 9, 8), case)
    check(make([node], [], x.shape, opset=12), x, layout, ctx)


AVGPOOL_CASES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
    dict(kernel_shape=[3, 2], pads=[1, 0, 0, 1]),
    dict(kernel_shape=[3, 2], pads=[1, 0, 0, 1], count_include_pad=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"),
]


def avg_pool_reference(x, kernel_shape, strides=(1, 1), pads=(0, 0, 0, 0), ceil_mode=0, count_include_pad=0,
                       auto_pad=None):
    """float64 average pooling with ONNX's semantics: per-side pads; the divisor
    counts the pads (count_include_pad=1) but never cells past them (ceil_mode)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel_shape, strides
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        p = []
        for size, k, s in ((h, kh, sh), (w, kw, sw)):
            total = max(0, (-(-size // s) - 1) * s + k - size)
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            p.append((lo, total - lo))
        pads = (p[0][0], p[1][0], p[0][1], p[1][1])
        count_include_pad = 0  # ONNX: pads from auto_pad are not counted
    t, l, b, r = pads

    def out(size, k, s, lo, hi):
        span = size + lo + hi - k
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + lo:
            o -= 1
        return o

    oh, ow = out(h, kh, sh, t, b), out(w, kw, sw, l, r)
    y = np.zeros((n, c, oh, ow))
    xd = x.astype(np.float64)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - t, j * sw - l
            h1, w1 = h0 + kh, w0 + kw
            win = xd[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            if count_include_pad:
                cnt = (min(h1, h + b) - h0) * (min(w1, w + r) - w0)
            else:
                cnt = win.shape[2] * win.shape[3]
            y[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return y


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", range(len(AVGPOOL_CASES)))
def test_average_pool_attributes(ctx, layout, case):
    attrs = AVGPOOL_CASES[case]
    node = H.make_node("AveragePool", ["x"], ["y"], name="pool", **attrs)
    x = data((2, 3, 9, 8), case)
    m = make([node], [], x.shape, opset=19)
    y, _ = run(m, x, layout, ctx)
    close(y, avg_pool_reference(x, **attrs))
    pads = attrs.get("pads", (0, 0, 0, 0))
    if pads[0] == pads[2] and pads[1] == pads[3] and "auto_pad" not in attrs:  # the evaluator agrees here
        close(y, reference(m, x))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "ReduceMean13", "ReduceMean13_nokeep",
                                "ReduceMean18", "ReduceMean18_neg"])
def test_global_pools(ctx, layout, op):
    opset = 17
    inits = []
    if op.startswith("Global"):
        node = H.make_node(op, ["x"], ["y"], name="gp")
    elif op.startswith("ReduceMean13"):
        node = H.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0 if "nokeep" in op else 1, name="gp")
        opset = 13
    else:
        inits = [nh.from_array(np.array([-1, -2] if "neg" in op else [2, 3], np.int64), "axes")]
        node = H.make_node("ReduceMean", ["x", "axes"], ["y"], name="gp")
        opset = 18
    x = data((2, 5, 6, 7))
    check(make([node], inits, x.shape, opset=opset), x, layout, ctx)


# ---- Gemm, MatMul, Flatten, Reshape ------------------------------------------------------

GEMM_CASES = [
    dict(),
    dict(transB=1),
    dict(alpha=0.5, beta=2.0, transB=1, c=(4,)),
    dict(beta=0.5, c=()),
    dict(c=(1,)),
    dict(c=(1, 4)),
    dict(c=(1, 1), alpha=3.0),
    dict(c=(3, 1), beta=0.75),  # a C with rows: an eltwise add after the linear
    dict(c=(3, 4), alpha=2.0, transB=1),
]


@pytest.mark.parametrize("case", range(len(GEMM_CASES)))
def test_gemm_attributes(ctx, case):
    attrs = dict(GEMM_CASES[case])
    r = rng(case)
    cshape = attrs.pop("c", None)
    b = r.standard_normal((4, 6) if attrs.get("transB") else (6, 4))
    inits = [const("b", b)]
    ins = ["x", "b"]
    if cshape is not None:
        inits.append(const("c", r.standard_normal(cshape)))
        ins.append("c")
    x = data((3, 6), case)
    check(make([H.make_node("Gemm", ins, ["y"], name="fc", **attrs)], inits, x.shape), x, "NCHW", ctx)


def test_matmul_then_bias_add_then_relu(ctx):
    r = rng(6)
    inits = [const("w", r.standard_normal((6, 4))), const("b", r.standard_normal(4))]
    nodes = [H.make_node("MatMul", ["x", "w"], ["m"], name="mm"), H.make_node("Add", ["m", "b"], ["a"], name="bias"),
             H.make_node("Relu", ["a"], ["y"], name="relu")]
    x = data((5, 6))
    g = check(make(nodes, inits, x.shape), x, "NCHW", ctx)
    assert [n.op for n in g.nodes] == ["linear"] and g.nodes[0].params["activation"] == "relu"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("how", ["flatten", "flatten_neg", "reshape0", "reshape_n", "reshape_neg_first"])
@pytest.mark.parametrize("then", ["gemm", "matmul", "output"])
def test_flatten_and_reshape_keep_onnx_order(ctx, layout, how, then):
    """A flatten of a C x H x W map: in NHWC the following layer's columns are
    permuted (or the output is reordered), the result is ONNX's either way."""
    r = rng(7)
    n, c, h, w = 2, 3, 4, 5
    inits = [const("w", r.standard_normal((4, c, 3, 3)))]
    nodes = [H.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    if how.startswith("flatten"):
        nodes.append(H.make_node("Flatten", ["c"], ["f"], axis=-3 if how == "flatten_neg" else 1, name="flat"))
    else:
        shape = {"reshape0": [0, -1], "reshape_n": [n, -1], "reshape_neg_first": [-1, 4 * h * w]}[how]
        inits.append(nh.from_array(np.array(shape, np.int64), "shape"))
        nodes.append(H.make_node("Reshape", ["c", "shape"], ["f"], name="reshape"))
    if then == "gemm":
        inits += [const("fc", r.standard_normal((7, 4 * h * w))), const("fb", r.standard_normal(7))]
        nodes.append(H.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1, name="fc"))
    elif then == "matmul":
        inits += [const("fc", r.standard_normal((4 * h * w, 7)))]
        nodes.append(H.make_node("MatMul", ["f", "fc"], ["y"], name="fc"))
    else:
        nodes.append(H.make_node("Identity", ["f"], ["y"], name="id"))
    x = data((n, c, h, w))
    check(make(nodes, inits, x.shape), x, layout, ctx)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_identity_dropout_and_constant_nodes(ctx, layout):
    r = rng(8)
    wt = H.make_tensor("wc", T.FLOAT, (4, 3, 1, 1), r.standard_normal(12).astype(np.float32).tolist())
    nodes = [H.make_node("Constant", [], ["w"], value=wt, name="weight"),
             H.make_node("Identity", ["x"], ["x2"], name="id"),
             H.make_node("Conv", ["x2", "w"], ["c"], name="conv"),
             H.make_node("Dropout", ["c"], ["d"], name="drop"),
             H.make_node("Relu", ["d"], ["y"], name="relu")]
    x = data((2, 3, 5, 5))
    g = check(make(nodes, [], x.shape), x, layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d"]


# ---- a small ResNet, end to end ------------------------------------------------------


def resnet_block(c=8, classes=5, dynamic=True):
    r = rng(9)
    inits = [const("w1", r.standard_normal((c, 3, 3, 3)) * 0.3), const("w2", r.standard_normal((c, c, 3, 3)) * 0.2),
             const("wd", r.standard_normal((c, 3, 1, 1))), const("fc", r.standard_normal((classes, c * 4))),
             const("fcb", r.standard_normal(classes))]
    for p in ("bn1", "bn2", "bnd"):
        inits += [const(p + "s", r.uniform(.5, 1.5, c)), const(p + "b", r.standard_normal(c) * .1),
                  const(p + "m", r.standard_normal(c) * .1), const(p + "v", r.uniform(.5, 1.5, c))]
    bn = lambda p, i, o: H.make_node("BatchNormalization", [i, p + "s", p + "b", p + "m", p + "v"], [o], name=p)  # noqa
    nodes = [H.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"), bn("bn1", "c1", "b1"),
             H.make_node("Relu", ["b1"], ["r1"], name="relu1"),
             H.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"), bn("bn2", "c2", "b2"),
             H.make_node("Conv", ["x", "wd"], ["cd"], strides=[2, 2], name="down"), bn("bnd", "cd", "bd"),
             H.make_node("Add", ["b2", "bd"], ["s"], name="add"),
             H.make_node("Relu", ["s"], ["r2"], name="relu2"),
             H.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[3, 3], strides=[3, 3], name="pool"),
             H.make_node("Flatten", ["p"], ["f"], name="flat"),
             H.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1, name="fc")]
    return make(nodes, inits, ["N" if dynamic else 2, 3, 12, 12], y_shape=["N" if dynamic else 2, classes])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form", ["proto", "bytes", "path"])
def test_resnet_block_end_to_end(ctx, tmp_path, layout, form):
    m = resnet_block()
    src = {"proto": m, "bytes": m.SerializeToString(), "path": tmp_path / "m.onnx"}[form]
    if form == "path":
        onnx.save(m, src)
    x = data((2, 3, 12, 12))
    y, g = run(src, x, layout, ctx, batch=2)
    close(y, reference(m, x))
    assert [n.op for n in g.nodes] == ["conv2d", "conv2d", "conv2d", "max_pool2d", "flatten", "linear"]
    assert g.batch == 2 and g.onnx_input_shape == (2, 3, 12, 12)
    # hints, report and a second run like any graph
    runner = G.Runner(g, ctx, batch=2)
    runner.run(g.input_from_onnx(x))
    assert [row["layer"] for row in runner.report] == [n.name for n in g.nodes if n.op != "flatten"]


# ---- activations fused into conv / linear epilogues --------------------------------------


def _conv_model(tail, x_shape=(2, 6, 7, 7), o=8, k=3, opset=17, extra_inits=()):
    """x -> Conv(3x3, pad 1, bias) -> c -> tail nodes -> y."""
    w = const("w", rng(3).standard_normal((o, x_shape[1], k, k)) * 0.6)
    b = const("b", rng(4).standard_normal(o) * 0.5)
    conv = H.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv")
    return make([conv] + list(tail), [w, b] + list(extra_inits), x_shape, opset=opset)


def _gemm_model(tail, m=3, k=20, n=24, opset=17, extra_inits=()):
    w = const("w", rng(5).standard_normal((n, k)) * 0.5)
    b = const("b", rng(6).standard_normal(n))
    gemm = H.make_node("Gemm", ["x", "w", "b"], ["c"], transB=1, name="fc")
    return make([gemm] + list(tail), [w, b] + list(extra_inits), (m, k), opset=opset)


def _fused(g, act):
    (node,) = [n for n in g.nodes if n.op in ("conv2d", "linear")]
    assert node.params.get("activation") == act, node.params
    return node


# MobileNetV3: Conv + HardSwish, Conv + HardSigmoid (torch exports alpha = 1/6, beta = 0.5)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op, act, attrs", [("HardSwish", "hardswish", {}),
                                            ("HardSigmoid", "hardsigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
                                            ("Sigmoid", "sigmoid", {}), ("Relu", "relu", {})])
def test_conv_then_elementwise_activation_is_fused(layout, op, act, attrs, ctx):
    m = _conv_model([H.make_node(op, ["c"], ["y"], name="act", **attrs)])
    g = check(m, data((2, 6, 7, 7)) * 2, layout, ctx)
    _fused(g, act)
    assert len(g.nodes) == 1


# EfficientNet / RegNet: SiLU exported as x * Sigmoid(x), the Mul's operands in either order
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("order", ["c_s", "s_c"])
def test_conv_times_its_own_sigmoid_is_silu(layout, order, ctx):
    mul_in = ["c", "s"] if order == "c_s" else ["s", "c"]
    m = _conv_model([H.make_node("Sigmoid", ["c"], ["s"], name="sig"), H.make_node("Mul", mul_in, ["y"], name="mul")])
    g = check(m, data((2, 6, 7, 7)) * 2, layout, ctx)
    _fused(g, "silu")
    assert len(g.nodes) == 1


def test_gemm_silu_and_sigmoid(ctx):
    m = _gemm_model([H.make_node("Sigmoid", ["c"], ["s"], name="sig"), H.make_node("Mul", ["s", "c"], ["y"])])
    g = check(m, data((3, 20)), "NCHW", ctx)
    _fused(g, "silu")
    g = check(_gemm_model([H.make_node("HardSwish", ["c"], ["y"])]), data((3, 20)), "NCHW", ctx)
    _fused(g, "hardswish")


def _torch_gelu(x="c", y="y", scale_as_mul=False, swap=False):
    """torch's opset-17 export of F.gelu: Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)."""
    first = (H.make_node("Mul", [x, "inv_sqrt2"], ["d"], name="gelu_div") if scale_as_mul
             else H.make_node("Div", [x, "sqrt2"], ["d"], name="gelu_div"))
    return [first, H.make_node("Erf", ["d"], ["e"], name="gelu_erf"),
            H.make_node("Add", ["one", "e"] if swap else ["e", "one"], ["a"], name="gelu_add"),
            H.make_node("Mul", ["a", x] if swap else [x, "a"], ["m"], name="gelu_mul"),
            H.make_node("Mul", ["half", "m"] if swap else ["m", "half"], [y], name="gelu_half")]


GELU_CONSTS = [const("sqrt2", np.sqrt(2.0)), const("inv_sqrt2", np.sqrt(0.5)), const("one", 1.0),
               const("half", 0.5)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", [dict(), dict(scale_as_mul=True), dict(swap=True)])
def test_erf_form_gelu_pattern_is_fused(layout, variant, ctx):
    m = _conv_model(_torch_gelu(**variant), extra_inits=GELU_CONSTS)
    g = check(m, data((2, 6, 7, 7)) * 2, layout, ctx)
    _fused(g, "gelu")
    assert len(g.nodes) == 1
    g = check(_gemm_model(_torch_gelu(**variant), extra_inits=GELU_CONSTS), data((3, 20)) * 2, "NCHW", ctx)
    _fused(g, "gelu")


@pytest.mark.parametrize("approximate, act", [("none", "gelu"), ("tanh", "gelu_tanh")])
def test_opset_20_gelu_operator(approximate, act, ctx):
    m = _conv_model([H.make_node("Gelu", ["c"], ["y"], approximate=approximate, name="gelu")], opset=20)
    g = check(m, data((2, 6, 7, 7)) * 2, "NCHW", ctx)
    _fused(g, act)


def test_hard_sigmoid_other_than_torchs_is_refused():
    refused(_conv_model([H.make_node("HardSigmoid", ["c"], ["y"], name="hs")]), "hs", "HardSigmoid", "alpha")
    refused(_conv_model([H.make_node("HardSigmoid", ["c"], ["y"], alpha=1.0 / 6.0, beta=0.4, name="hs")]), "hs",
            "HardSigmoid", "beta")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_activation_on_a_shared_conv_output_runs_standalone(layout, ctx):
    # c feeds the Sigmoid and an Add: nothing to fuse into; a standalone sigmoid, then a standalone add
    x = data((2, 6, 7, 7))
    m = _conv_model([H.make_node("Sigmoid", ["c"], ["s"], name="sig"), H.make_node("Add", ["s", "c"], ["y"])])
    g = check(m, x, layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d", "eltwise", "eltwise"]
    # SiLU whose x is read a third time: one standalone silu
    m = _conv_model([H.make_node("Sigmoid", ["c"], ["s"], name="sig"), H.make_node("Mul", ["c", "s"], ["p"]),
                     H.make_node("Add", ["p", "c"], ["y"])])
    g = check(m, x, layout, ctx)
    assert [n.params.get("activation") for n in g.nodes if n.op == "eltwise"][0] == "silu"
    # Sigmoid(x) times another value: a real Mul
    m = _conv_model([H.make_node("Relu", ["c"], ["r"]), H.make_node("Sigmoid", ["c"], ["s"], name="sig"),
                     H.make_node("Mul", ["s", "r"], ["y"], name="gate")])
    g = check(m, x, layout, ctx)
    assert [n.params.get("activation") for n in g.nodes if n.op == "eltwise"] == ["relu", "sigmoid", None]


def test_near_miss_gelu_patterns_stop_at_the_erf():
    # x * 0.25 * (1 + erf(...)) is not GELU: the Div runs standalone, and Erf has no primitive
    consts = GELU_CONSTS[:3] + [const("half", 0.25)]
    nodes = _torch_gelu()
    msg = refused(_conv_model(nodes, extra_inits=consts), nodes[1].name or "Erf:" + nodes[1].output[0], "Erf", None)
    assert "not supported" in msg
    nodes = _torch_gelu()
    nodes[-1] = H.make_node("Mul", ["m", "half"], ["y2"], name="gelu_half")
    m = _conv_model(nodes + [H.make_node("Add", ["y2", "c"], ["y"])], extra_inits=GELU_CONSTS)  # x read 3 times
    refused(m, nodes[1].name or "Erf:" + nodes[1].output[0], "Erf", None)


# ---- refusals ------------------------------------------------------------------------------


def refused(m, node, op, attribute, **kw):
    with pytest.raises(paskdnn.UnsupportedError) as e:
        paskdnn.load_onnx(m, **kw)
    err = e.value
    assert err.op_type == op and err.attribute == attribute, str(err)
    assert repr(node) in str(err) and f"({op})" in str(err)
    if attribute:
        assert f"attribute {attribute}" in str(err)
    return str(err)


def conv_then(node, inits=(), x_shape=(1, 4, 6, 6), opset=17, extra=()):
    w = const("w", rng().standard_normal((4, 4, 1, 1)))
    return make([H.make_node("Conv", ["x", "w"], ["c"], name="conv")] + list(extra) + [node], [w] + list(inits),
                x_shape, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "Tanh", "Elu"])
def test_unmapped_operators_are_refused(op):
    msg = refused(conv_then(H.make_node(op, ["c"], ["y"], name="act")), "act", op, None)
    assert "not supported" in msg and "Conv" in msg  # lists what is


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_mul_and_concat_run_standalone(layout, ctx):
    x = data((1, 4, 6, 6))
    check(conv_then(H.make_node("Mul", ["c", "c"], ["y"], name="mul")), x, layout, ctx)
    g = check(conv_then(H.make_node("Concat", ["c", "x"], ["y"], axis=1, name="cat")), x, layout, ctx)
    assert g.nodes[-1].op == "cat"
    g = check(conv_then(H.make_node("Concat", ["x", "c", "x"], ["y"], axis=-3, name="cat")), x, layout, ctx)
    refused(conv_then(H.make_node("Concat", ["c", "x"], ["y"], axis=2, name="cat")), "cat", "Concat", "axis")


def test_max_pool_storage_order_and_indices_are_refused():
    refused(conv_then(H.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], storage_order=1, name="mp")),
            "mp", "MaxPool", "storage_order")
    m = conv_then(H.make_node("MaxPool", ["c"], ["y", "idx"], kernel_shape=[2, 2], name="mp"))
    refused(m, "mp", "MaxPool", "outputs")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_pool_pads_up_to_the_window_and_dilated_averages(layout, ctx):
    from reference import pool2d_onnx_ref
    x = data((1, 4, 6, 6))
    for op, extra in (("MaxPool", {}), ("AveragePool", {"count_include_pad": 1}), ("AveragePool", {})):
        mode, cip = ("max" if op == "MaxPool" else "avg"), bool(extra)
        # symmetric pads of 2 around a 3x3 window: the ONNX evaluator agrees
        check(make([H.make_node(op, ["x"], ["y"], kernel_shape=[3, 3], pads=[2, 2, 2, 2], name="p", **extra)], [],
                   x.shape), x, layout, ctx)
        # asymmetric (the evaluator mis-sizes those: our tap-by-tap reference) and dilated (opset 19)
        for k, st, dl, pads in (((3, 3), (1, 1), (1, 1), [2, 0, 1, 2]), ((2, 3), (2, 1), (2, 2), [1, 3, 2, 0])):
            m = make([H.make_node(op, ["x"], ["y"], kernel_shape=list(k), strides=list(st), dilations=list(dl),
                                  pads=pads, name="p", **extra)], [], x.shape, opset=19)
            y, _ = run(m, x, layout, ctx)
            want = pool2d_onnx_ref(x, mode, k, st, ((pads[0], pads[2]), (pads[1], pads[3])), dl, False, cip)
            close(y, want)
    msg = refused(conv_then(H.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], pads=[3, 0, 0, 0], name="mp")),
                  "mp", "MaxPool", "pads")
    assert "wholly in the padding" in msg


def test_a_dynamic_batch_needs_batch():
    m = resnet_block(dynamic=True)
    with pytest.raises(paskdnn.UnsupportedError, match="dim 0 is dynamic.*pass batch=") as e:
        paskdnn.load_onnx(m)
    assert e.value.node is None and e.value.op_type is None and e.value.attribute == "shape"
    assert paskdnn.load_onnx(m, batch=3).batch == 3


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_a_relu_that_cannot_be_fused_runs_standalone(layout, ctx):
    # the conv's output has a second consumer: its pre-activation value is needed
    m = conv_then(H.make_node("Add", ["r", "c"], ["y"], name="add"),
                  extra=[H.make_node("Relu", ["c"], ["r"], name="relu")])
    g = check(m, data((1, 4, 6, 6)), layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d", "eltwise", "eltwise"]
    # on the graph input: nothing to fuse into
    m = make([H.make_node("Relu", ["x"], ["y"], name="relu")], [], (1, 3, 4, 4))
    check(m, data((1, 3, 4, 4)), layout, ctx)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_clip_and_leaky_relu_run_as_eltwise(layout, ctx):
    # Clip other than (0, 6) and (0, inf): the conv's clamp epilogue
    lo, hi = const("lo", np.float32(-1)), const("hi", np.float32(1))
    g = check(conv_then(H.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip"), inits=[lo, hi]), data((1, 4, 6, 6)),
              layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d"] and g.nodes[0].params["activation"] == "clamp"
    assert g.nodes[0].params["activation_params"] == (-1.0, 1.0)
    # only a max (min left out) and the opset-6 attribute form
    g = check(conv_then(H.make_node("Clip", ["c", "", "hi"], ["y"], name="clip"), inits=[hi]), data((1, 4, 6, 6)),
              layout, ctx)
    g = check(conv_then(H.make_node("Clip", ["c"], ["y"], min=-0.5, max=0.25, name="clip"), opset=6),
              data((1, 4, 6, 6)), layout, ctx)
    g = check(conv_then(H.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2, name="lr")), data((1, 4, 6, 6)), layout, ctx)
    assert g.nodes[0].params["activation"] == "leaky_relu"
    # after an Add: fused into the add's eltwise node
    m = conv_then(H.make_node("LeakyRelu", ["s"], ["y"], name="lr"), extra=[H.make_node("Add", ["c", "x"], ["s"])])
    g = check(m, data((1, 4, 6, 6)), layout, ctx)
    assert [n.op for n in g.nodes] == ["conv2d", "eltwise"] or [n.op for n in g.nodes] == ["conv2d"]
    # bounds of shape (1,) (some exporters write them so) are scalars; longer ones are refused
    lo1 = const("lo1", np.array([-0.5], np.float32))
    g = check(conv_then(H.make_node("Clip", ["c", "lo1"], ["y"], name="clip"), inits=[lo1]), data((1, 4, 6, 6)),
              layout, ctx)
    assert g.nodes[0].params["activation_params"] == (-0.5, float("inf"))
    lo2 = const("lo2", np.array([-0.5, 0.5], np.float32))
    refused(conv_then(H.make_node("Clip", ["c", "lo2"], ["y"], name="clip"), inits=[lo2]), "clip", "Clip", "min")
    # a clip whose bounds are not constants is refused
    m = make([H.make_node("Clip", ["x", "x"], ["y"], name="clip")], [], (1, 3, 4, 4))
    refused(m, "clip", "Clip", "min")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_standalone_batch_norm_and_add(layout, ctx):
    r = rng()
    bn = [const(k, r.uniform(0.5, 1, 3)) for k in ("s", "b", "m", "v")]
    m = make([H.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", epsilon=1e-3)], bn,
             (2, 3, 4, 4))
    g = check(m, data((2, 3, 4, 4)), layout, ctx)
    assert g.nodes[0].op == "eltwise" and set(g.nodes[0].weights) == {"mul", "add"}
    m = make([H.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 1], name="p"),
              H.make_node("Add", ["p", "x"], ["y"], name="add")], [], (1, 3, 4, 4))
    check(m, data((1, 3, 4, 4)), layout, ctx)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cshape", [(1,), (3, 1, 1), (1, 3, 1, 1), (4,), (3, 4, 4), (1, 1, 4, 1)])
def test_constant_operands_broadcast(layout, cshape, ctx):
    c = const("k", rng(3).uniform(0.5, 2, cshape))
    x = data((2, 3, 4, 4))
    for op in ("Add", "Mul", "Div"):
        m = make([H.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 1]),
                  H.make_node(op, ["p", "k"], ["y"], name="op")], [c], (2, 3, 4, 4))
        check(m, x, layout, ctx)
    # the constant first (Add and Mul commute)
    m = make([H.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 1]),
              H.make_node("Mul", ["k", "p"], ["y"], name="op")], [c], (2, 3, 4, 4))
    check(m, x, layout, ctx)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("gate", ["Sigmoid", "HardSigmoid"])
def test_squeeze_excite_block(layout, gate, ctx):
    """MobileNetV3 / EfficientNet's squeeze-and-excitation: x * gate(fc(relu(fc(mean(x))))),
    the gate a per-image, per-channel (N, C, 1, 1) value; HardSwish / SiLU around it."""
    r = rng(4)
    inits = [const("w0", r.standard_normal((8, 4, 3, 3)) * 0.3), const("w1", r.standard_normal((2, 8, 1, 1))),
             const("b1", r.standard_normal(2)), const("w2", r.standard_normal((8, 2, 1, 1))),
             const("b2", r.standard_normal(8))]
    kw = dict(alpha=1.0 / 6.0, beta=0.5) if gate == "HardSigmoid" else {}
    nodes = [H.make_node("Conv", ["x", "w0"], ["c"], pads=[1, 1, 1, 1]),
             H.make_node("HardSwish", ["c"], ["a"]),
             H.make_node("GlobalAveragePool", ["a"], ["s"]),
             H.make_node("Conv", ["s", "w1", "b1"], ["f1"]),
             H.make_node("Relu", ["f1"], ["r1"]),
             H.make_node("Conv", ["r1", "w2", "b2"], ["f2"]),
             H.make_node(gate, ["f2"], ["g"], **kw),
             H.make_node("Mul", ["a", "g"], ["y"], name="scale")]
    g = check(make(nodes, inits, (2, 4, 6, 6)), data((2, 4, 6, 6)), layout, ctx)
    assert g.nodes[-1].op == "eltwise" and g.nodes[-1].params["roles"] == ["mul"]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_densenet_block(layout, ctx):
    """DenseNet's pre-activation layers on concatenations: BN -> ReLU -> Conv, then Concat."""
    r = rng(5)
    bn = lambda p, c: [const(p + k, r.uniform(0.5, 1.5, c)) for k in ("s", "b", "m", "v")]  # noqa: E731
    inits = bn("a", 4) + bn("b", 7) + [const("w1", r.standard_normal((3, 4, 3, 3)) * 0.3),
                                       const("w2", r.standard_normal((3, 7, 3, 3)) * 0.3)]
    nodes = [H.make_node("BatchNormalization", ["x", "as", "ab", "am", "av"], ["n1"]),
             H.make_node("Relu", ["n1"], ["r1"]),
             H.make_node("Conv", ["r1", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             H.make_node("Concat", ["x", "c1"], ["k1"], axis=1),
             H.make_node("BatchNormalization", ["k1", "bs", "bb", "bm", "bv"], ["n2"]),
             H.make_node("Relu", ["n2"], ["r2"]),
             H.make_node("Conv", ["r2", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             H.make_node("Concat", ["x", "c1", "c2"], ["y"], axis=1)]
    g = check(make(nodes, inits, (2, 4, 5, 5)), data((2, 4, 5, 5)), layout, ctx)
    assert [n.op for n in g.nodes] == ["eltwise", "conv2d", "cat", "eltwise", "conv2d", "cat"]
    assert g.nodes[0].params["activation"] == "relu"


def test_gemm_attributes_it_cannot_honour_are_refused():
    b = const("b", rng().standard_normal((3, 4)))
    refused(make([H.make_node("Gemm", ["x", "b"], ["y"], transA=1, name="g")], [b], (3, 2)), "g", "Gemm", "transA")
    c = const("c", rng().standard_normal((3, 4)))  # 3 rows for a batch of 2
    refused(make([H.make_node("Gemm", ["x", "b", "c"], ["y"], name="g")], [b, c], (2, 3)), "g", "Gemm", "C")
    # a weight that is not a constant
    g = H.make_graph([H.make_node("Conv", ["x", "w"], ["y"], name="conv")], "t",
                     [H.make_tensor_value_info("x", T.FLOAT, [1, 3, 4, 4]),
                      H.make_tensor_value_info("w", T.FLOAT, [2, 3, 1, 1])],
                     [H.make_tensor_value_info("y", T.FLOAT, None)])
    with pytest.raises(paskdnn.UnsupportedError, match="2 inputs"):
        paskdnn.load_onnx(H.make_model(g, opset_imports=[H.make_opsetid("", 17)]))


def test_bad_arguments():
    m = resnet_block(dynamic=False)
    with pytest.raises(ValueError, match="layout"):
        paskdnn.load_onnx(m, layout="CHWN")
    with pytest.raises(ValueError, match="dtype"):
        paskdnn.load_onnx(m, dtype="int8")
    with pytest.raises(ValueError, match="batch"):
        paskdnn.load_onnx(m, batch=0)
    with pytest.raises(TypeError, match="model"):
        paskdnn.load_onnx(42)


# ---- ONNX's own backend node cases -------------------------------------------------------

CASES = onnx_node_cases.supported_cases()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op_case", CASES, ids=[c.name for _, c in CASES])
def test_onnx_backend_node_case(ctx, layout, op_case):
    status, detail = onnx_node_cases.run_case(op_case[1], layout, ctx)
    if status == "skip":
        pytest.skip(detail)
    assert status == "pass", detail


def test_the_docs_table_is_current():
    """docs/onnx.md's table is what tools/onnx_node_cases.py makes now."""
    text, counts = onnx_node_cases.table()
    with open(onnx_node_cases.DOC) as f:
        doc = f.read()
    assert counts["fail"] == 0
    assert text in doc, "rerun python tools/onnx_node_cases.py"


# ---- python -m paskdnn run ------------------------------------------------------------------


def cli(*args):
    import subprocess

    return subprocess.run([sys.executable, "-m", "paskdnn", "run", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_run_prints_shape_top5_and_report(tmp_path):
    m = resnet_block()
    onnx.save(m, tmp_path / "m.onnx")
    x = data((3, 3, 12, 12), 11)
    np.save(tmp_path / "x.npy", x)
    r = cli(str(tmp_path / "m.onnx"), "--device", "cpu", "--layout", "NHWC", "--input", str(tmp_path / "x.npy"))
    assert r.returncode == 0, r.stderr
    assert "output y: shape (3, 5)" in r.stdout
    ref = reference(m, x)
    for i in range(3):  # the printed top-5 are the reference's top classes
        line = next(s for s in r.stdout.splitlines() if s.strip().startswith(f"sample {i} top-5:"))
        shown = [int(t.split(":")[0]) for t in line.split("top-5:")[1].split(",")]
        assert shown == list(np.argsort(-ref[i], kind="stable")[:5])
    for layer in ("conv1", "conv2", "down", "pool", "fc"):
        assert f"  {layer} " in r.stdout


def test_cli_run_errors_exit_2(tmp_path):
    m = resnet_block()
    onnx.save(m, tmp_path / "m.onnx")
    r = cli(str(tmp_path / "m.onnx"), "--device", "cpu")
    assert r.returncode == 2 and "pass --batch N" in r.stderr
    bad = conv_then(H.make_node("Softmax", ["c"], ["y"], name="act"))
    onnx.save(bad, tmp_path / "bad.onnx")
    r = cli(str(tmp_path / "bad.onnx"), "--device", "cpu")
    assert r.returncode == 2 and "ONNX node 'act' (Softmax)" in r.stderr and "Traceback" not in r.stderr
    np.save(tmp_path / "x.npy", data((2, 3, 5, 5)))
    r = cli(str(tmp_path / "m.onnx"), "--device", "cpu", "--input", str(tmp_path / "x.npy"))
    assert r.returncode == 2 and "model takes (2, 3, 12, 12)" in r.stderr
    r = cli(str(tmp_path / "missing.onnx"))
    assert r.returncode == 2 and "no such file" in r.stderr


# ---- python -m paskdnn coldstart --model MODEL.onnx ----------------------------------------


def test_coldstart_runs_an_onnx_model(tmp_path):
    import json
    import subprocess

    onnx.save(resnet_block(), tmp_path / "m.onnx")
    out = tmp_path / "cs"
    cmd = [sys.executable, "-m", "paskdnn", "coldstart", "--model", "m.onnx", "--device", "cpu", "--policies", "pask",
           "--repeats", "1", "--steady", "1", "--batch", "2", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "coldstart.json").read_text())
    assert doc["model"] == str(tmp_path / "m.onnx") and doc["batch"] == 2
    assert {run["cache"] for run in doc["runs"]} == {"cold", "warm"}
    assert all(run["first_from_ready_ms"] > 0 for run in doc["runs"])
    layers = [row["layer"] if isinstance(row, dict) else row[0] for row in doc["runs"][0]["layers"]]
    assert any("conv1" in str(layer) for layer in layers)
    # an operator paskdnn cannot run: refused in the parent, exit 2, no process started, nothing written
    onnx.save(conv_then(H.make_node("Softmax", ["c"], ["y"], name="act")), tmp_path / "bad.onnx")
    cmd[cmd.index("m.onnx")] = "bad.onnx"
    cmd[-1] = str(tmp_path / "bad-out")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "ONNX node 'act' (Softmax)" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad-out").exists()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_elementwise_ops_on_linear_outputs(layout, ctx):
    # (N, features) values: LeakyRelu (no epilogue takes it), Add of two values, Mul by a constant row
    k = const("k", rng(8).uniform(0.5, 2, (24,)))
    m = _gemm_model([H.make_node("LeakyRelu", ["c"], ["l"], alpha=0.1, name="lr"),
                     H.make_node("Add", ["l", "c"], ["s"], name="add"),
                     H.make_node("Mul", ["s", "k"], ["y"], name="mul")], extra_inits=[k])
    g = check(m, data((3, 20)), layout, ctx)  # the linear's value has two readers: the leaky relu stands alone
    assert [n.op for n in g.nodes] == ["linear", "eltwise", "eltwise", "eltwise"]
    # a per-row (N, 1) operand, a Clip after a Gemm with a C of rows
    c = const("cc", rng(9).standard_normal((3, 1)))
    m = _gemm_model([H.make_node("Sigmoid", ["c"], ["g"], name="sig"),
                     H.make_node("Gemm", ["g", "w2", "cc"], ["h"], transB=1, name="fc2"),
                     H.make_node("Clip", ["h", "lo"], ["y"], name="clip")],
                    extra_inits=[c, const("w2", rng(10).standard_normal((5, 24))), const("lo", np.float32(-0.5))])
    g = check(m, data((3, 20)), layout, ctx)
    assert [n.op for n in g.nodes] == ["linear", "linear", "eltwise"]
