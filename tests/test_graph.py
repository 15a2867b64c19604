"""The graph Runner: prepared calls, hints at load, per-layer report, against
the independent float64 model reference (tests/model_reference.py)."""
import dataclasses
import os

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


_FIRST_RUN_CHILD = r"""
import dataclasses, json, resource, sys
import numpy as np
import paskdnn
from paskdnn import graph as G, models
out, cache, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
sd = models.state_dict("mobilenet_v2", seed=3, num_classes=10)
g = dataclasses.replace(models.build("mobilenet_v2", weights=sd, layout="NHWC", num_classes=10),
                        input_shape=(size, size, 3))
runner = G.Runner(g, paskdnn.Context("cpu", num_threads=1, policy="pask", cache_dir=cache))
x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
xin = runner.input(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
y = np.array(runner.run(xin, record=False))
faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0
runner.run(xin)  # recorded: which solvers ran
np.save(out + ".x.npy", x)
np.save(out + ".y.npy", y)
with open(out + ".json", "w") as f:
    json.dump(dict(faults=faults, report=runner.report), f)
"""


@pytest.mark.skipif("san" in os.environ.get("LD_PRELOAD", ""),
                    reason="a sanitizer's allocator (tools/sanitize.sh) has its own page pattern: "
                           "malloc's mmap threshold does not apply")
def test_runner_set_up_readies_the_scratch_so_the_first_run_takes_no_page_faults(tmp_path):
    # MobileNetV2's stem (3 input channels) runs on conv2d.indirect_gemm_nhwc's
    # merged window rows over a zero-padded copy of the input: 162*162*3 floats
    # (77 pages) at 160x160, kept per thread. Set-up (pask_plan_pack_weights)
    # allocates and writes it, and the kernel objects' code is faulted in as
    # they load, so the first run takes (almost) no page faults. malloc's mmap
    # threshold is fixed so that the copy is always fresh pages (without the
    # reservation the first run took 80-180 faults).
    import json
    import os
    import subprocess
    import sys
    size = 160
    out = str(tmp_path / "run")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    subprocess.run([sys.executable, "-c", _FIRST_RUN_CHILD, out, str(tmp_path / "cache"), str(size)], env=env,
                   check=True, timeout=300)
    with open(out + ".json") as f:
        got = json.load(f)
    stem = got["report"][0]
    assert stem["layer"] == "features.0.0" and stem["solver"] == "conv2d.indirect_gemm_nhwc"
    assert any(r["solver"] == "conv2d.depthwise" for r in got["report"])
    assert got["faults"] <= 24, got["faults"]
    # and the first run's output is right
    sd = models.state_dict("mobilenet_v2", seed=3, num_classes=10)
    x = np.load(out + ".x.npy")
    expect = ref.FORWARD["mobilenet_v2"](sd, x.astype(np.float64))
    y = np.load(out + ".y.npy")
    assert y.shape == expect.shape
    assert np.abs(y - expect).max() <= 1e-4 * np.abs(expect).max()
