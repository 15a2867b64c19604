"""graph.Runner's graph capture (capture once the kernels settle, replay, capture
again when a better kernel lands), checked against the CUDA test double; the
harness (a fresh process per test, the double's log) is test_graph_capture.py's.
What a replay computes on a real GPU is untested here."""
import textwrap

import pytest

import paskdnn
from test_graph_capture import double_path, named, run  # noqa: F401 (double_path is a fixture)

RUNNER = textwrap.dedent("""
    from paskdnn import graph as G
    rng = np.random.default_rng(3)
    def conv(name, inp, out, k, residual=None):
        return G.Node(name, "conv2d", [inp] + ([residual] if residual else []), out,
                      params=dict(stride=1, padding=k // 2, layout="NHWC", weight_layout="OHWI", activation="relu"),
                      weights=dict(weight=rng.standard_normal((16, k, k, 16)).astype(np.float32),
                                   bias=rng.standard_normal(16).astype(np.float32)))
    g = G.Graph("chain", "x", (8, 8, 16), [conv("c1", "x", "a", 3), conv("c2", "a", "b", 1),
                                            conv("c3", "b", "y", 3, residual="a")], "y", layout="NHWC",
                dtype="float16")
    x1 = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
    x2 = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
    def first8(y):
        return y.numpy().tobytes()[:8].hex()
""")


def test_runner_captures_once_settled_and_replays_with_the_eager_results(double_path, tmp_path):
    out = run(double_path, tmp_path, RUNNER + textwrap.dedent("""
        knob("digest", 1)
        c = ctx(loader_threads=0)
        r = G.Runner(g, c, settle_runs=3)
        out["capture_on"] = r.capture
        runs = []
        for i in range(6):
            mark = len(log())
            y = r.run(x1)
            runs.append(dict(decisions=[d["decision"] for d in r.report], solvers=[d["solver"] for d in r.report],
                             out=first8(y), captured=r.captured, log=since(mark)))
        out["runs"] = runs
        y = r.run(x2)
        out["replay_x2"], out["decisions_x2"] = first8(y), [d["decision"] for d in r.report]
        out["counts"] = [r.captures, r.replays]
        out["note"] = r.capture_note
        trace = os.environ["CACHE"] + "-trace.json"
        c.export_trace(trace)
        out["graph_events"] = sorted({e["name"] for e in json.load(open(trace))["traceEvents"] if e.get("cat") == "graph"})
        eager = G.Runner(g, c, capture=False)
        out["eager_x1"], out["eager_x2"] = first8(eager.run(x1)), first8(eager.run(x2))
        out["eager_capture"] = eager.capture
        r.close()
        out["graphs_after_close"] = D.double_live_graphs()
        mark = len(log())
        r.run(x1)  # closed: eager, on the thread's default stream
        out["after_close"] = [[d["decision"] for d in r.report],
                              sorted({ln.split("stream=")[1].split()[0] for ln in named(since(mark), "cudnnBackendExecute")})]
        c.close()
    """))
    assert out["capture_on"]
    runs = out["runs"]
    assert set(runs[0]["decisions"]) == {"load"}
    for i in (1, 2, 3):  # settling: eager, resident
        assert set(runs[i]["decisions"]) == {"resident"} and not runs[i]["captured"]
        assert len(named(runs[i]["log"], "cudnnBackendExecute")) == 3
    # the fifth run captures (nothing runs while capturing) and replays once
    cap = runs[4]["log"]
    assert len([ln for ln in cap if ln.startswith("capture cudnnBackendExecute")]) == 3
    assert len(named(cap, "cuGraphLaunch")) == 1 and len(named(cap, "cudnnBackendExecute")) == 3
    assert all("replay=1" in ln for ln in named(cap, "cudnnBackendExecute"))
    assert runs[4]["decisions"] == ["captured"] * 3 and runs[4]["solvers"] == runs[3]["solvers"]
    assert runs[5]["decisions"] == ["replay"] * 3
    # the sixth run only replays: one host call, no dispatch
    assert not [ln for ln in runs[5]["log"] if ln.startswith("capture")]
    assert len(named(runs[5]["log"], "cuGraphLaunch")) == 1
    assert out["counts"] == [1, 3] and "captured 3 calls" in out["note"]
    # replays compute what eager runs compute, from the current input
    assert len({r["out"] for r in runs}) == 1 and runs[0]["out"] == out["eager_x1"]
    assert out["decisions_x2"] == ["replay"] * 3 and out["replay_x2"] == out["eager_x2"] != out["eager_x1"]
    assert out["graph_events"] == ["graph capture", "graph launch"]
    assert out["eager_capture"] is False
    assert out["graphs_after_close"] == 0
    assert out["after_close"] == [["resident"] * 3, ["(nil)"]]


def test_runner_without_capture_stays_eager(double_path, tmp_path):
    out = run(double_path, tmp_path, RUNNER + textwrap.dedent("""
        c = ctx(loader_threads=0)
        os.environ["PASKDNN_CAPTURE"] = "0"
        r = G.Runner(g, c, settle_runs=1)
        for i in range(4):
            r.run(x1)
        out["env"] = [r.capture, r.captures, r.capture_note, [d["decision"] for d in r.report]]
        del os.environ["PASKDNN_CAPTURE"]
        r2 = G.Runner(g, c, capture=False, settle_runs=1)
        for i in range(4):
            r2.run(x1)
        out["arg"] = [r2.capture, r2.captures, [d["decision"] for d in r2.report]]
        out["begins"] = [ln for ln in log().splitlines() if ln.startswith(("cuStreamBeginCapture", "cuStreamCreate"))]
        out["streams"] = sorted({ln.split("stream=")[1].split()[0] for ln in log().splitlines()
                                 if ln.startswith("cudnnBackendExecute")})
        c.close()
    """))
    assert out["env"] == [False, 0, "off", ["resident"] * 3]
    assert out["arg"] == [False, 0, ["resident"] * 3]
    assert [ln for ln in out["begins"] if ln.startswith("cuStreamBeginCapture")] == []
    # without capture a runner keeps the thread's default stream (and its loader threads their own)
    assert "(nil)" in out["streams"]


def test_runner_captures_again_when_a_better_kernel_lands(double_path, tmp_path):
    # Two cuDNN configurations: engine 10 (ranked first, 100 us here) and engine 11
    # (10 us). The runner captures on engine 10 before any run was timed; eager runs
    # of the same layer elsewhere then time engine 10, explore engine 11 (loaded in
    # the background) and measure it faster: the graph is stale, dropped, and the
    # runner captures again on engine 11 once settled.
    out = run(double_path, tmp_path, RUNNER + textwrap.dedent("""
        knob("time_10", 100)
        knob("time_11", 10)
        c = ctx(loader_threads=1, explore=True, solvers=["conv2d.cudnn", "conv2d.cudnn_h1"])
        g.nodes = g.nodes[:1]
        g.output_name = "a"
        r = G.Runner(g, c, settle_runs=1)
        c.wait_loads()
        for i in range(3):
            r.run(x1)
        out["first"] = [r.captures, r.report[0]["solver"], r.report[0]["decision"]]
        other = G.Runner(g, c, capture=False, hints=False)
        seen = []
        for i in range(30):
            other.run(x1)
            c.wait_loads()
            seen.append(other.report[0]["solver"])
        out["other"] = seen
        reports = []
        for i in range(4):
            mark = len(log())
            r.run(x1)
            reports.append([r.report[0]["solver"], r.report[0]["decision"], r.captures, r.capture_note,
                            [ln.split("engine=")[1].split()[0] for ln in named(since(mark), "cudnnBackendExecute")]])
        out["after"] = reports
        r.close()
        c.close()
    """))
    assert out["first"] == [1, "conv2d.cudnn", "replay"]
    assert out["other"][-1] == "conv2d.cudnn_h1", out["other"]
    after = out["after"]
    # the load landed: the graph is stale, dropped; an eager run on engine 11, then a new capture
    assert after[0][:3] == ["conv2d.cudnn_h1", "resident", 1] and "graph dropped" in after[0][3], after
    assert after[1][:3] == ["conv2d.cudnn_h1", "captured", 2] and after[1][4] == ["11"], after
    assert after[3][:3] == ["conv2d.cudnn_h1", "replay", 2] and after[3][4] == ["11"], after


def test_runner_gives_up_capturing_after_three_failures(double_path, tmp_path):
    out = run(double_path, tmp_path, RUNNER + textwrap.dedent("""
        knob("instantiate_fail", 1)
        c = ctx(loader_threads=0)
        r = G.Runner(g, c, settle_runs=1)
        notes = []
        for i in range(6):
            r.run(x1)
            notes.append([r.capture, [d["decision"] for d in r.report], r.capture_note])
        out["notes"] = notes
        mark = len(log())
        r.run(x1)
        out["last_streams"] = sorted({ln.split("stream=")[1].split()[0]
                                      for ln in named(since(mark), "cudnnBackendExecute")})
        out["begins"] = len([ln for ln in log().splitlines() if ln.startswith("cuStreamBeginCapture")])
        out["graphs"] = D.double_live_graphs()
        c.close()
    """))
    notes = out["notes"]
    assert [n[0] for n in notes] == [True, True, True, True, False, False], notes
    assert all(n[1] == ["resident"] * 3 for n in notes[1:]), notes
    assert "capture failed, running eagerly" in notes[2][2] and "cuGraphInstantiate" in notes[2][2]
    assert notes[4][2].startswith("off after 3 failed captures")
    assert out["begins"] == 3 and out["graphs"] == 0
    assert out["last_streams"] == ["(nil)"]


def test_runner_capture_is_off_on_the_cpu():
    from paskdnn import graph as G

    g = G.Graph("one", "x", (3, 5, 5), [G.Node("c", "conv2d", ["x"], "y", params=dict(padding=1),
                                               weights=dict(weight=__import__("numpy").ones((4, 3, 3, 3), "float32")))],
                "y")
    c = paskdnn.Context("cpu")
    try:
        r = G.Runner(g, c)
        assert not r.capture and r.capture_note == "off: cpu contexts run eagerly"
        r.run(__import__("numpy").ones((1, 3, 5, 5), "float32"))
        assert r.report[0]["decision"] in ("load", "resident", "reuse", "waited")
        with pytest.raises(ValueError, match="capture=True needs a CUDA context"):
            G.Runner(g, c, capture=True)
        with pytest.raises(ValueError, match="settle_runs"):
            G.Runner(g, c, settle_runs=0)
    finally:
        c.close()


def test_coldstart_times_the_captured_steady_state_once_the_runner_replays(double_path, tmp_path):
    """The main job's captured column (_coldstart_child._captured_steady): runs until the
    runner has captured, then times replays; None for a runner that does not
    capture, or that does not capture within the limit it is given."""
    out = run(double_path, tmp_path, RUNNER + textwrap.dedent("""
        from paskdnn import _coldstart_child as coldstart
        c = ctx(loader_threads=0)
        r = G.Runner(g, c, settle_runs=3)
        ms = coldstart._captured_steady(r, x1, 5)
        out["ms"], out["captured"], out["counts"] = ms, r.captured, [r.captures, r.replays]
        out["too_few"] = coldstart._captured_steady(G.Runner(g, c, settle_runs=50), x1, 5, settle_limit=10)
        out["eager"] = coldstart._captured_steady(G.Runner(g, c, capture=False), x1, 5)
        c.close()
    """))
    assert isinstance(out["ms"], float) and out["ms"] > 0
    assert out["captured"] and out["counts"][0] == 1 and out["counts"][1] >= 5
    assert out["too_few"] is None and out["eager"] is None


def test_runner_captures_its_stand_ins_while_the_best_kernels_build_then_captures_again(double_path, tmp_path):
    # cuDNN plans (the analytic best) take 0.8 s each to build on the one loader
    # thread; paskdnn's prebuilt implicit GEMM stands in meanwhile. After
    # STAND_IN_SETTLE * settle_runs eager runs with the same choices the runner
    # captures the stand-ins and replays them; once the plans land, the graph is
    # stale and the runner captures again on cuDNN.
    out = run(double_path, tmp_path, RUNNER + textwrap.dedent("""
        probe = ctx(solvers=["conv2d.cuda_igemm"], loader_threads=0)
        try:
            paskdnn.conv2d(paskdnn.asarray(x1, dtype="float16", context=probe),
                           paskdnn.asarray(rng.standard_normal((16, 3, 3, 16)).astype(np.float32), dtype="float16",
                                           context=probe), padding=1, layout="NHWC", weight_layout="OHWI",
                           context=probe)
        except paskdnn.Error as e:
            print("RESULT" + json.dumps({"skip": str(e)}))  # a libpaskdnn built without nvcc: no prebuilt kernels
            sys.exit(0)
        probe.close()
        knob("finalize_ms", 800)
        c = ctx(loader_threads=1, policy="pask", solvers=["conv2d.cudnn", "conv2d.cuda_igemm"])
        r = G.Runner(g, c, settle_runs=2)
        during = []
        for i in range(11):
            r.run(x1)
            during.append([r.captures, sorted({e["decision"] for e in r.report}),
                           sorted({e["solver"] for e in r.report})])
        out["during"] = during
        out["loading"] = not c.wait_loads(0)
        assert c.wait_loads(30)
        after = []
        for i in range(4):
            r.run(x1)
            after.append([r.captures, sorted({e["decision"] for e in r.report}),
                          sorted({e["solver"] for e in r.report}), r.capture_note])
        out["after"] = after
        r.close()
        c.close()
    """))
    if "skip" in out:
        pytest.skip(out["skip"])
    during = out["during"]
    assert out["loading"], during  # the plans were still building through these runs
    # the first run finds the stand-in loaded by the quick lane (or, if the run came
    # first, loads it or waits for the lane), then eight eager runs on the stand-ins
    # (settle_runs 2 x STAND_IN_SETTLE 4), then a capture of them, then replays
    assert during[0][0] == 0 and set(during[0][1]) <= {"load", "waited", "reuse"}, during
    assert during[0][2] == ["conv2d.cuda_igemm"], during
    first = 0 if during[0][1] == ["reuse"] else 1  # the first run on the stand-in without a load
    assert all(d == [0, ["reuse"], ["conv2d.cuda_igemm"]] for d in during[first:first + 8]), during
    assert during[first + 8] == [1, ["captured"], ["conv2d.cuda_igemm"]], during
    assert all(d == [1, ["replay"], ["conv2d.cuda_igemm"]] for d in during[first + 9:]), during
    after = out["after"]
    # the plans landed: dropped (an eager run), settled again (2 runs), captured on cuDNN
    assert after[0][:3] == [1, ["resident"], ["conv2d.cudnn"]] and "graph dropped" in after[0][3], after
    assert after[2][:3] == [2, ["captured"], ["conv2d.cudnn"]], after
    assert after[3][:3] == [2, ["replay"], ["conv2d.cudnn"]], after
