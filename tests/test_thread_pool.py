"""The CPU backend's ThreadPool (src/backends/cpu/thread_pool.cpp), checked in
C++ (tests/c/test_thread_pool.cpp): each task of each job once, workers woken
from spinning and from sleep, two callers at once, destruction in either state;
again under ThreadSanitizer where the compiler has it."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = [str(ROOT / "tests" / "c" / "test_thread_pool.cpp"), str(ROOT / "src" / "backends" / "cpu" / "thread_pool.cpp")]


def _build(exe: Path, extra: list) -> subprocess.CompletedProcess:
    return subprocess.run(["c++", "-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", *extra,
                           "-I", str(ROOT / "src" / "backends" / "cpu"), *SRC, "-o", str(exe)],
                          capture_output=True, text=True)


def _run(exe: Path) -> None:
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)  # a lost wake-up hangs
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout, run.stdout
    assert "WARNING: ThreadSanitizer" not in run.stderr, run.stderr


@pytest.mark.skipif(shutil.which("c++") is None or not Path(SRC[1]).exists(), reason="needs a C++ compiler and the source tree")
def test_every_task_runs_once_whether_workers_spin_or_sleep(tmp_path):
    exe = tmp_path / "test_thread_pool"
    built = _build(exe, [])
    assert built.returncode == 0, built.stderr
    _run(exe)


@pytest.mark.skipif(shutil.which("c++") is None or not Path(SRC[1]).exists(), reason="needs a C++ compiler and the source tree")
def test_the_pool_under_thread_sanitizer(tmp_path):
    exe = tmp_path / "test_thread_pool_tsan"
    built = _build(exe, ["-fsanitize=thread"])
    if built.returncode != 0:
        pytest.skip("this compiler cannot build with -fsanitize=thread: " + built.stderr[-300:])
    _run(exe)
