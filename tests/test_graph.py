"""The graph Runner: prepared calls, hints at load, per-layer report, against
the independent float64 model reference (tests/model_reference.py)."""
import dataclasses

import numpy as np
import pytest

import model_reference as ref
import paskdnn
from paskdnn import graph as G
from paskdnn import models


def small(name, layout, size=64):
    sd = models.state_dict(name, seed=3, num_classes=10)
    g = models.build(name, weights=sd, layout=layout, num_classes=10)
    hw = (3, size, size) if layout == "NCHW" else (size, size, 3)
    return sd, dataclasses.replace(g, input_shape=hw)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("layout,compute", [("NCHW", None), ("NCHW", "NCHW"), ("NHWC", None)])
def test_runner_matches_the_unfolded_float64_model(tmp_path, name, layout, compute):
    # compute None: the runner's choice (NHWC on the CPU); "NCHW": the NCHW kernels
    sd, g = small(name, layout)
    ctx = paskdnn.Context(cache_dir=str(tmp_path))
    runner = G.Runner(g, ctx, batch=2, layout=compute)
    assert runner.layout == (compute or "NHWC")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    xin = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y = runner.run(runner.input(xin))
    expect = ref.FORWARD[name](sd, x.astype(np.float64))
    assert y.shape == expect.shape
    assert np.abs(y - expect).max() <= 1e-4 * np.abs(expect).max()
    # a second run of another input reuses the prepared calls and buffers
    x2 = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    y2 = runner.run(x2 if layout == "NCHW" else np.ascontiguousarray(x2.transpose(0, 2, 3, 1)))
    expect2 = ref.FORWARD[name](sd, x2.astype(np.float64))
    assert np.abs(y2 - expect2).max() <= 1e-4 * np.abs(expect2).max()


def test_runner_gives_one_hint_per_call_and_the_hinted_run_hits_resident_kernels(tmp_path):
    _, g = small("resnet18", "NHWC")
    ctx = paskdnn.Context(cache_dir=str(tmp_path), policy="pask")
    runner = G.Runner(g, ctx)
    calls = sum(1 for n in g.nodes if n.op != "flatten")
    assert ctx.stats()["hints"] == calls
    assert ctx.wait_loads(timeout=60)
    runner.run(runner.input(np.ones((1, 64, 64, 3), np.float32)))
    s = ctx.stats()
    assert s["calls"] == calls and s["resident_hits"] == calls and s["hints_matched"] == calls
    assert len(runner.report) == calls
    assert {r["decision"] for r in runner.report} == {"resident"}
    assert all(r["solver"] for r in runner.report)


def test_runner_rejects_an_input_of_the_wrong_shape(tmp_path):
    _, g = small("resnet18", "NCHW")
    runner = G.Runner(g, paskdnn.Context(cache_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="shape"):
        runner.input(np.ones((1, 3, 32, 32), np.float32))


def test_graph_validate_catches_use_before_definition():
    _, g = small("resnet18", "NCHW")
    broken = dataclasses.replace(g, nodes=list(reversed(g.nodes)))
    with pytest.raises(ValueError, match="before it is computed"):
        broken.validate()
