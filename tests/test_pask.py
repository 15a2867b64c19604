"""The PaSK machinery on the CPU backend, shown through stats and traces:
hint-driven preloading, selective reuse, the lookahead window, failed-load
fallback, record/replay, the resident set's bound, threads and lifetime.

Timing-dependent cases slow every load down with the documented debug knob
``debug_load_delay_ms``; the others run the real loads."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import paskdnn
import reference as ref

rng = np.random.default_rng(1234)


def r32(*shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


# Four layers whose best solvers differ, so each needs its own kernel.
X3 = r32(1, 16, 12, 12)
W3 = r32(16, 16, 3, 3)          # 3x3 -> conv2d.im2col_gemm
W1 = r32(32, 16, 1, 1)          # 1x1 -> conv2d.gemm_1x1
XP = r32(1, 16, 12, 12)         # max pool -> pool2d.direct
XL, WL = r32(1, 64), r32(10, 64)  # batch-1 linear -> gemm.small


def run_conv3(ctx):
    return paskdnn.conv2d(X3, W3, padding=1, context=ctx)


def run_conv1(ctx):
    return paskdnn.conv2d(X3, W1, context=ctx)


def run_pool(ctx):
    return paskdnn.max_pool2d(XP, 3, 2, 1, context=ctx)


def run_linear(ctx):
    return paskdnn.linear(XL, WL, context=ctx)


def hint_all(ctx):
    ctx.hint("conv2d", X3.shape, W3.shape, padding=1)
    ctx.hint("conv2d", X3.shape, W1.shape)
    ctx.hint("max_pool2d", XP.shape, 3, 2, 1)
    ctx.hint("linear", XL.shape, WL.shape)


def check_all(outs):
    ref.assert_within_bound(outs[0], ref.conv2d_ref(X3, W3, padding=1), ref.conv2d_bound(X3, W3, padding=1))
    ref.assert_within_bound(outs[1], ref.conv2d_ref(X3, W1), ref.conv2d_bound(X3, W1))
    np.testing.assert_array_equal(outs[2], ref.max_pool2d_ref(XP, 3, 2, 1).astype(np.float32))
    np.testing.assert_allclose(outs[3], XL.astype(np.float64) @ WL.T.astype(np.float64), rtol=1e-5, atol=1e-5)


def run_all(ctx):
    return [run_conv3(ctx), run_conv1(ctx), run_pool(ctx), run_linear(ctx)]


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


@pytest.mark.parametrize("policy", ["pask", "proactive"])
def test_hint_driven_preloading_makes_later_calls_hit_resident_kernels(policy, cache):
    ctx = paskdnn.Context(policy=policy, cache_dir=cache)
    hint_all(ctx)
    assert ctx.wait_loads(timeout=30)
    before = ctx.stats()
    assert before["prefetches"] == 4 and before["loads"] == 4 and before["resident"] == 4
    check_all(run_all(ctx))
    s = ctx.stats()
    assert s["calls"] == 4
    assert s["resident_hits"] == 4
    assert s["blocking_loads"] == 0 and s["inflight_waits"] == 0 and s["reuses"] == 0
    assert s["hints_matched"] == 4 and s["hints_dropped"] == 0


def test_reactive_ignores_hints_and_blocks_on_every_new_kernel(cache):
    ctx = paskdnn.Context(policy="reactive", cache_dir=cache)
    hint_all(ctx)
    ctx.wait_loads(timeout=30)
    assert ctx.stats()["prefetches"] == 0
    check_all(run_all(ctx))
    s = ctx.stats()
    assert s["blocking_loads"] == 4 and s["resident_hits"] == 0 and s["reuses"] == 0


def test_reuse_serves_layer_while_best_kernel_loads(cache):
    ctx = paskdnn.Context(policy="pask", cache_dir=cache, loader_threads=1, debug_load_delay_ms=300)
    run_conv3(ctx)  # loads conv2d.im2col_gemm (blocking): it is now resident
    assert paskdnn.last_solver() == "conv2d.im2col_gemm"
    y = run_conv1(ctx)  # best is conv2d.gemm_1x1, not resident: reuse im2col instead of blocking
    assert paskdnn.last_solver() == "conv2d.im2col_gemm"
    ref.assert_within_bound(y, ref.conv2d_ref(X3, W1), ref.conv2d_bound(X3, W1))
    s = ctx.stats()
    assert s["reuses"] == 1 and s["blocking_loads"] == 1
    assert ctx.wait_loads(timeout=30)  # the best kernel was queued in the background
    run_conv1(ctx)
    assert paskdnn.last_solver() == "conv2d.gemm_1x1"
    s = ctx.stats()
    assert s["resident_hits"] == 1 and s["loads"] == 2


def test_last_decision_names_what_the_policy_did_per_thread(cache):
    ctx = paskdnn.Context(policy="pask", cache_dir=cache, loader_threads=1, debug_load_delay_ms=300)
    run_conv3(ctx)
    assert paskdnn.last_decision() == "load"  # nothing resident: loaded on this thread
    run_conv3(ctx)
    assert paskdnn.last_decision() == "resident"
    run_conv1(ctx)  # its best kernel loads in the background meanwhile
    assert paskdnn.last_decision() == "reuse"
    with pytest.raises(ValueError):
        paskdnn.conv2d(X3, W3[:, :1], padding=1, context=ctx)
    assert paskdnn.last_decision() == "reuse"  # a failed call leaves it
    seen = []
    t = threading.Thread(target=lambda: seen.append(paskdnn.last_decision()))
    t.start()
    t.join()
    assert seen == [""]  # per thread
    s = ctx.stats()
    assert s["blocking_loads"] == 1 and s["resident_hits"] == 1 and s["reuses"] == 1


def test_reactive_never_reuses(cache):
    ctx = paskdnn.Context(policy="reactive", cache_dir=cache, debug_load_delay_ms=50)
    run_conv3(ctx)
    run_conv1(ctx)
    assert paskdnn.last_solver() == "conv2d.gemm_1x1"
    s = ctx.stats()
    assert s["reuses"] == 0 and s["blocking_loads"] == 2
    assert s["blocking_wait_ms"] >= 2 * 50 * 0.9


def test_reuse_policy_does_not_preload_from_hints(cache):
    ctx = paskdnn.Context(policy="reuse", cache_dir=cache)
    hint_all(ctx)
    ctx.wait_loads(timeout=30)
    assert ctx.stats()["prefetches"] == 0 and ctx.stats()["loads"] == 0


def test_proactive_call_waits_for_its_in_flight_kernel(cache):
    ctx = paskdnn.Context(policy="proactive", cache_dir=cache, loader_threads=1, debug_load_delay_ms=600)
    ctx.hint("conv2d", X3.shape, W3.shape, padding=1)
    time.sleep(0.2)  # the loader thread has started the (slow) load
    t0 = time.perf_counter()
    y = run_conv3(ctx)
    waited = time.perf_counter() - t0
    ref.assert_within_bound(y, ref.conv2d_ref(X3, W3, padding=1), ref.conv2d_bound(X3, W3, padding=1))
    s = ctx.stats()
    assert s["inflight_waits"] == 1 and s["blocking_loads"] == 0 and s["reuses"] == 0
    assert waited < 0.6  # it waited for the rest of the load, not a whole new one


def test_lookahead_window_advances_and_drops_hints_that_never_come(cache):
    ctx = paskdnn.Context(policy="pask", cache_dir=cache, lookahead=2)
    hint_all(ctx)  # conv3, conv1, pool, linear; the window covers the first two
    assert ctx.wait_loads(timeout=30)
    assert ctx.stats()["prefetches"] == 2
    run_conv1(ctx)  # the second hint: the first never came and is dropped
    s = ctx.stats()
    assert s["hints_matched"] == 1 and s["hints_dropped"] == 1 and s["resident_hits"] == 1
    assert ctx.wait_loads(timeout=30)
    assert ctx.stats()["prefetches"] == 4  # the window moved on to pool and linear
    run_linear(ctx)  # skips the pool hint
    s = ctx.stats()
    assert s["hints_matched"] == 2 and s["hints_dropped"] == 2 and s["resident_hits"] == 2
    run_pool(ctx)  # dropped from the queue, but its kernel was loaded: still a hit
    assert ctx.stats()["resident_hits"] == 3


def test_unhinted_calls_leave_the_window_alone(cache):
    ctx = paskdnn.Context(policy="pask", cache_dir=cache, lookahead=1)
    ctx.hint("linear", XL.shape, WL.shape)
    run_pool(ctx)
    s = ctx.stats()
    assert s["hints_matched"] == 0 and s["hints_dropped"] == 0
    run_linear(ctx)
    assert ctx.stats()["hints_matched"] == 1


def _broken_kernel_dir(tmp_path, obj):
    src = paskdnn._lib.library_dir() / "kernels"
    dst = tmp_path / "kernels"
    shutil.copytree(src, dst)
    broken = list(dst.glob(f"pask_cpu_{obj}.*.so"))
    assert broken
    for f in broken:
        f.write_bytes(b"this is not a shared object\n" * 10)
    return dst


def _slow_kernel_dir(tmp_path, obj, entry, pause_ms):
    """A copy of the kernel folder whose code objects of obj forward entry to the
    real ones after pause_ms (tests/doubles/slow_cpu_kernel.c)."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    from paskdnn import _lib
    src = _lib.library_dir() / "kernels"
    dst = tmp_path / "kernels"
    shutil.copytree(src, dst)
    helper = Path(__file__).parent / "doubles" / "slow_cpu_kernel.c"
    wrapped = list(dst.glob(f"pask_cpu_{obj}.*.so"))
    assert wrapped
    for f in wrapped:
        subprocess.run([cc, "-shared", "-fPIC", "-O1", f'-DREAL_OBJECT="{src / f.name}"', f"-DENTRY={entry}",
                        f"-DPAUSE_NS={int(pause_ms * 1e6)}L", "-o", str(f), str(helper), "-ldl"], check=True)
    return dst


@pytest.mark.parametrize("pause_ms", [5, 0])
def test_a_cpu_solver_far_slower_than_its_estimate_gets_a_trial_of_another(tmp_path, cache, pause_ms):
    """When the fastest measured CPU candidate runs more than 3x its analytic
    estimate and 50 us over it, the next candidate whose estimate is below that
    time gets a timed trial, and the faster runs from then on (session 23: the
    few-channels kernel ran an NCHW stem in 113 ms, estimated at 1.2, and no
    other solver was ever timed). Here im2col + GEMM, the analytic best, pauses
    5 ms a call: conv2d.direct is tried and kept. Unpaused, im2col + GEMM stays
    (tried against direct only where it runs far over its estimate, as under
    the sanitizers, and faster either way)."""
    kdir = _slow_kernel_dir(tmp_path, "conv_im2col", "pask_conv2d_im2col_f32", pause_ms)
    ctx = paskdnn.Context(cache_dir=cache, kernel_dir=str(kdir), solvers=["conv2d.im2col_gemm", "conv2d.direct"],
                          policy="reactive", num_threads=1)
    seen = []
    for _ in range(12):
        y = run_conv3(ctx)
        seen.append(paskdnn.last_solver())
        ref.assert_within_bound(y, ref.conv2d_ref(X3, W3, padding=1), ref.conv2d_bound(X3, W3, padding=1))
    assert seen[0] == "conv2d.im2col_gemm", seen
    kept = "conv2d.direct" if pause_ms else "conv2d.im2col_gemm"
    assert seen[-6:] == [kept] * 6, seen


def test_failed_load_falls_back_to_another_solver(tmp_path, cache):
    kdir = _broken_kernel_dir(tmp_path, "conv_im2col")
    ctx = paskdnn.Context(cache_dir=cache, kernel_dir=str(kdir), solvers=["conv2d.im2col_gemm", "conv2d.direct"])
    y = run_conv3(ctx)
    assert paskdnn.last_solver() == "conv2d.direct"
    ref.assert_within_bound(y, ref.conv2d_ref(X3, W3, padding=1), ref.conv2d_bound(X3, W3, padding=1))
    assert ctx.stats()["load_failures"] == 1
    run_conv3(ctx)  # the bad kernel is not tried again
    assert ctx.stats()["load_failures"] == 1


def test_failed_hinted_load_is_recorded_and_the_call_still_runs(tmp_path, cache):
    kdir = _broken_kernel_dir(tmp_path, "conv_im2col")
    ctx = paskdnn.Context(cache_dir=cache, kernel_dir=str(kdir), trace=True)
    ctx.hint("conv2d", X3.shape, W3.shape, padding=1)
    assert ctx.wait_loads(timeout=30)
    assert ctx.stats()["load_failures"] == 1
    y = run_conv3(ctx)
    assert paskdnn.last_solver() != "conv2d.im2col_gemm"
    ref.assert_within_bound(y, ref.conv2d_ref(X3, W3, padding=1), ref.conv2d_bound(X3, W3, padding=1))
    # the trace's event of the failed load says why it failed
    trace_path = tmp_path / "trace.json"
    ctx.export_trace(str(trace_path))
    events = json.loads(trace_path.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    failed = [e for e in events if e.get("cat") == "load" and e["name"].startswith("load failed ")]
    assert len(failed) == 1 and "conv_im2col" in failed[0]["name"]
    assert "conv_im2col" in failed[0]["args"]["kernel"] and failed[0]["args"]["error"].strip()
    assert all("error" not in e.get("args", {}) for e in events if e.get("cat") == "load" and e not in failed)


def test_all_loads_failing_is_a_clear_error(tmp_path, cache):
    kdir = _broken_kernel_dir(tmp_path, "pool_direct")
    ctx = paskdnn.Context(cache_dir=cache, kernel_dir=str(kdir))
    out = np.full((1, 16, 6, 6), 7.0, np.float32)
    with pytest.raises(paskdnn.LoadError, match="pool_direct"):
        paskdnn.max_pool2d(XP, 3, 2, 1, out=out, context=ctx)
    assert (out == 7.0).all()


def test_eight_threads_calling_one_context_get_correct_results(cache):
    ctx = paskdnn.Context(policy="pask", cache_dir=cache, debug_load_delay_ms=20)
    hint_all(ctx)
    errors = []

    def worker(i):
        try:
            for _ in range(12):
                check_all(run_all(ctx))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    s = ctx.stats()
    assert s["calls"] == 8 * 12 * 4
    assert s["loads"] <= 8  # concurrent requests for one kernel shared one load


def test_record_and_replay_start_the_next_context_warm(tmp_path, cache, monkeypatch):
    first = paskdnn.Context(cache_dir=cache)
    run_all(first)
    run_all(first)  # repeats are recorded once
    record = tmp_path / "hints.json"
    first.save_record(str(record))
    doc = json.loads(record.read_text())
    assert doc["format"] == "paskdnn-hints" and len(doc["problems"]) == 4
    first.close()

    second = paskdnn.Context(cache_dir=cache, hints=str(record))
    assert second.stats()["hints"] == 4
    assert second.wait_loads(timeout=30)
    check_all(run_all(second))
    s = second.stats()
    assert s["resident_hits"] == 4 and s["blocking_loads"] == 0 and s["hints_matched"] == 4

    monkeypatch.setenv("PASKDNN_HINTS", str(record))
    third = paskdnn.Context(cache_dir=cache)
    assert third.stats()["hints"] == 4


@pytest.mark.parametrize("content", ["not json", '{"format": "other", "problems": []}',
                                     '{"format": "paskdnn-hints", "version": 1, "problems": [{"fields": [9, 9]}]}'])
def test_bad_hints_file_is_a_clear_error(tmp_path, cache, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(paskdnn.InvalidArgumentError, match="hints file"):
        paskdnn.Context(cache_dir=cache, hints=str(bad))


def test_load_costs_are_measured_and_persisted_beside_the_store(tmp_path):
    cache = tmp_path / "fresh" / "cache"
    ctx = paskdnn.Context(cache_dir=str(cache))
    run_all(ctx)
    ctx.close()
    record = cache / "load_costs.json"
    doc = json.loads(record.read_text())
    assert doc["format"] == "paskdnn-load-costs"
    assert any("conv_im2col" in k for k in doc["load_ms"])
    assert all(v >= 0 for v in doc["load_ms"].values())
    assert (cache.stat().st_mode & 0o777) == 0o700
    assert not list(cache.glob("*.tmp.*"))  # no half-written file left behind


def test_trace_has_a_row_per_caller_and_loader_thread(tmp_path, cache):
    ctx = paskdnn.Context(cache_dir=cache, loader_threads=2)
    hint_all(ctx)
    ctx.wait_loads(timeout=30)
    run_all(ctx)
    path = tmp_path / "trace.json"
    ctx.export_trace(str(path))
    doc = json.loads(path.read_text())
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e.get("name") == "thread_name"}
    assert {"loader 0", "loader 1"} <= set(names.values())
    loads = [e for e in doc["traceEvents"] if e.get("cat") == "load"]
    calls = [e for e in doc["traceEvents"] if e.get("cat") == "call"]
    assert len(loads) == 4 and len(calls) == 4
    assert all(names[e["tid"]].startswith("loader") for e in loads)
    assert all(names[e["tid"]].startswith("caller") for e in calls)
    assert {e["args"]["decision"] for e in calls} == {"resident"}


def test_trace_call_events_name_each_calls_problem(cache, tmp_path):
    """The dispatcher keeps each problem's trace text after its first traced
    call: calls of two problems, interleaved and repeated, still each name
    their own problem."""
    ctx = paskdnn.Context(policy="reactive", cache_dir=cache)
    for _ in range(3):
        run_conv3(ctx)
        run_conv1(ctx)
    path = tmp_path / "trace.json"
    ctx.export_trace(str(path))
    calls = [e for e in json.loads(path.read_text())["traceEvents"] if e.get("cat") == "call"]
    assert len(calls) == 6
    for i, e in enumerate(calls):
        want = "w=[16,16,3,3]" if i % 2 == 0 else "w=[32,16,1,1]"
        assert want in e["args"]["problem"], e["args"]["problem"]
        assert e["args"]["problem"].startswith("conv2d float32 NCHW x=[1,16,12,12]")


def test_resident_set_is_bounded_with_lru_eviction(cache):
    ctx = paskdnn.Context(policy="reactive", cache_dir=cache, resident_capacity=2)
    run_all(ctx)
    s = ctx.stats()
    assert s["resident"] == 2 and s["evictions"] == 2
    run_linear(ctx)  # most recent: still resident
    assert ctx.stats()["resident_hits"] == 1
    run_conv3(ctx)  # evicted earlier: loaded again
    assert ctx.stats()["blocking_loads"] == 5
    ctx.set_resident_capacity(0)
    assert ctx.stats()["resident"] == 0
    check_all(run_all(ctx))  # capacity 0 still runs every call
    assert ctx.stats()["resident"] == 0


def test_destroying_a_context_with_loads_in_flight_is_clean(cache):
    ctx = paskdnn.Context(cache_dir=cache, debug_load_delay_ms=300)
    hint_all(ctx)
    t0 = time.perf_counter()
    ctx.close()
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValueError):
        run_conv3(ctx)


def test_interpreter_exit_with_pending_hints_does_not_hang(tmp_path):
    code = (
        "import paskdnn\n"
        f"ctx = paskdnn.Context(cache_dir={str(tmp_path)!r}, debug_load_delay_ms=200)\n"
        "for i in range(1, 9):\n"
        "    ctx.hint('conv2d', (1, 8, 8, 8), (8, 8, i % 3 + 1, i % 3 + 1))\n"
        "paskdnn.set_default_context(ctx)\n"
    )
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""  # the library never prints
    assert time.perf_counter() - t0 < 30


def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ctx = paskdnn.Context(cache_dir=str(shared))
    check_all(run_all(ctx))  # still works, memory only
    ctx.close()
    assert not (shared / "load_costs.json").exists()
